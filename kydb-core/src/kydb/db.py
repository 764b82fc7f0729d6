""":class:`DB`: the front of one connected store, talking to it through pluggy hooks.

Each DB has its own :class:`pluggy.PluginManager` holding exactly one
backend (the store instance), kydb's defaults and the middleware plugins —
see :mod:`kydb.hookspecs` for why one manager per store.  ``db.plugins`` is
that manager: ``db.plugins.register(obj)`` adds middleware to this store
only.

After ``os.fork()`` the child reopens the store on first use (fresh
connections, never the parent's sockets), keeping the same middleware.

Dispatch: a hook that only the store implements (no middleware wraps it, no
default competes) is called straight on the store, with the keyword
arguments pluggy would pass — the same call, without pluggy's per-call
dispatch, which costs a few percent of a loopback round trip.  Registering
or unregistering any plugin, or monitoring hook calls
(``add_hookcall_monitoring``, ``enable_tracing``), sends every call back
through pluggy.

A DB with no middleware makes its manager only when ``db.plugins`` is first
asked for: until then each hook is the store's own method (or, for a hook
the store does not implement, the default's), worked out once per store
class.  Registering a store with pluggy looks at every attribute of it and
of the defaults, which made each new connect cost milliseconds — a thousand
base paths on one server would have spent seconds on it.
"""

from __future__ import annotations

import inspect
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pluggy

from . import hookspecs, opened
from .defaults import DefaultHooks
from .envelope import Codec
from .errors import ReadOnlyStore
from .front import BaseDB
from .hookspecs import Entry, ObjectInfo, VersionedBlob, follow
from .query import QUERY_PAGE, FolderQuery
from .registry import middleware_factories
from .store import NEEDED_HOOKS, Store, capabilities_of, overrides
from .url import StoreURL

__all__ = ["DB"]

_STORE = "store"
_NO_EXPECT: Mapping[str, str | None] = MappingProxyType({})
_DEFAULTS = "kydb-defaults"


class _ForkEpoch:
    """Bumped in every forked child, so DBs know their connections are the parent's."""

    value = 0


_LIVE: weakref.WeakSet[DB] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _ForkEpoch.value += 1
    for db in list(_LIVE):
        db.reset_locks_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


#: What each attribute of a store class (and of the defaults) declares: (class, name) -> hook options.
_IMPL_OPTS: dict[tuple[type[Any], str], pluggy.HookimplOpts | None] = {}


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, counting changes to its plugins so the DB knows when to rebuild its dispatch."""

    def __init__(self) -> None:
        super().__init__("kydb")
        #: Bumped by every (un)registration and by hook call monitoring.
        self.generation = 0
        self.monitored = False

    def register(self, plugin: object, name: str | None = None) -> str | None:
        try:
            return super().register(plugin, name)
        finally:
            self.generation += 1

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any | None:
        try:
            return super().unregister(plugin, name)
        finally:
            self.generation += 1

    def add_hookcall_monitoring(self, before: Any, after: Any) -> Callable[[], None]:
        self.monitored = True  # for good: monitoring sees every call, so every call goes through pluggy
        self.generation += 1
        return super().add_hookcall_monitoring(before, after)

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        """A :class:`kydb.Store`'s own ``kydb_*`` methods are hook implementations, decorated or not.

        What a store's (or the defaults') attribute declares is its class's:
        it is worked out once per class and name — pluggy's look at each
        attribute of a plugin (``inspect.getattr_static``) costs about a
        millisecond per plugin.
        """
        if not isinstance(plugin, (Store, DefaultHooks)):
            return super().parse_hookimpl_opts(plugin, name)
        key = (type(plugin), name)
        if key not in _IMPL_OPTS:
            opts = super().parse_hookimpl_opts(plugin, name)
            if opts is None and name.startswith("kydb_") and isinstance(plugin, Store) and overrides(plugin, name):
                opts = pluggy.HookimplOpts(  # what a bare @kydb.hookimpl gives
                    wrapper=False, hookwrapper=False, optionalhook=False, tryfirst=False, trylast=False, specname=None
                )
            _IMPL_OPTS[key] = opts
        opts = _IMPL_OPTS[key]
        return None if opts is None else pluggy.HookimplOpts(**opts)  # a copy: pluggy fills in defaults

    def parse_hookspec_opts(self, module_or_class: Any, name: str) -> pluggy.HookspecOpts | None:
        return super().parse_hookspec_opts(module_or_class, name) if name.startswith("kydb_") else None


def _dispatch(pm: _PluginManager) -> SimpleNamespace:
    """Each hook's callable: the store's own method where it is the only implementation, else pluggy's caller."""
    calls: dict[str, Callable[..., Any]] = {}
    for name in pm.hook.__dict__:
        caller = getattr(pm.hook, name)
        impls = caller.get_hookimpls()
        direct = (
            not pm.monitored
            and caller.spec is not None
            and caller.spec.opts.get("firstresult")
            and len(impls) == 1
            and not (impls[0].wrapper or impls[0].hookwrapper)
            and impls[0].argnames == caller.spec.argnames
            and not impls[0].kwargnames
        )
        calls[name] = impls[0].function if direct else caller
    return SimpleNamespace(**calls)


#: Every hook of the contract, with its spec function.
_SPECS: dict[str, Callable[..., Any]] = {
    name: getattr(hookspecs, name) for name in hookspecs.REQUIRED_HOOKS + hookspecs.OPTIONAL_HOOKS
}
#: Parses hook implementations outside any DB's manager (what a store class implements, for connect's checks).
_PARSER = _PluginManager()


def _argnames(function: Callable[..., Any]) -> tuple[tuple[str, ...], bool]:
    """A function's parameter names but ``self``, and whether any has a default."""
    params = [p for name, p in inspect.signature(function).parameters.items() if name != "self"]
    return tuple(p.name for p in params), any(p.default is not p.empty for p in params)


#: What each store class implements (see :func:`_store_hooks`).
_STORE_HOOKS: dict[type[Any], tuple[frozenset[str], bool]] = {}


def _store_hooks(store: Any) -> tuple[frozenset[str], bool]:
    """The hooks ``store``'s class implements, and whether all can be called straight (see :func:`_direct_calls`).

    Worked out once per class.  Straight means: every hook implementation of
    the class is plain (no wrapper, no ``specname``) and takes exactly its
    spec's arguments; otherwise the DB calls the store through pluggy.
    """
    cls = type(store)
    known = _STORE_HOOKS.get(cls)
    if known is not None:
        return known
    found: set[str] = set()
    plain = True
    for attribute in dir(cls):
        opts = _PARSER.parse_hookimpl_opts(store, attribute)
        if opts is None:
            continue
        name = opts.get("specname") or attribute
        if not (opts.get("wrapper") or opts.get("hookwrapper")):  # a wrapper alone implements nothing
            found.add(name)
        args, defaults = _argnames(getattr(cls, attribute))
        plain = plain and name == attribute and not (opts.get("wrapper") or opts.get("hookwrapper"))
        plain = plain and name in _SPECS and not defaults and args == _argnames(_SPECS[name])[0]
    known = _STORE_HOOKS[cls] = (frozenset(found), plain)
    return known


def _direct_calls(store: Any, implemented: frozenset[str]) -> SimpleNamespace:
    """Each hook's callable without a plugin manager: the store's method, else the default's.

    What pluggy would call for a store with no middleware: the store
    answers every hook it implements (the contract's rule; a default answers
    only for a hook the store does not implement), and ``kydb_close`` calls
    the store's, returning the list of results as pluggy does.
    """
    calls = SimpleNamespace()
    defaults = DefaultHooks(calls)
    for name in _SPECS:
        if name in implemented:
            setattr(calls, name, getattr(store, name))
        elif hasattr(defaults, name):
            setattr(calls, name, getattr(defaults, name))
        else:
            setattr(calls, name, _nothing)
    if "kydb_close" in implemented:
        close = store.kydb_close
        calls.kydb_close = lambda: [close()]
    else:
        calls.kydb_close = list
    return calls


def _nothing(**kwargs: Any) -> None:
    """What pluggy returns for a ``firstresult`` hook nobody implements."""


class DB(BaseDB):
    """One store behind a base path; what :func:`kydb.connect` returns for a single URL."""

    def __init__(self, url: StoreURL, store_cls: type[Any], codec: Codec) -> None:
        super().__init__(url.raw, codec)
        self.store_url = url
        self.base_path = url.base_path
        self._base_bytes = len(url.base_path.encode("utf-8"))
        self._store_cls = store_cls
        self.capabilities = capabilities_of(store_cls, url)
        self._open_lock = threading.Lock()
        self._epoch = -1
        self._pm: _PluginManager | None
        self._calls: SimpleNamespace
        self._dispatched = -1  # the manager's generation self._calls was built for
        self._open([(name, factory(url)) for name, factory in middleware_factories()])
        _LIVE.add(self)

    def _open(self, middleware: Sequence[tuple[str | None, object]]) -> None:
        store = self._store_cls(self.store_url)
        implemented, plain = _store_hooks(store)
        cls = self._store_cls
        where = f"backend {cls.__module__}.{cls.__qualname__} for {self.url}"
        missing = [name for name in hookspecs.REQUIRED_HOOKS if name not in implemented]
        if missing:
            raise TypeError(
                f"{where} does not implement the required hook(s) {missing}; define them on its kydb.Store subclass"
            )
        for capability, hooks in NEEDED_HOOKS.items():
            if getattr(self.capabilities, capability) and not implemented.issuperset(hooks):
                raise TypeError(
                    f"{where} declares {capability} but does not implement {[h for h in hooks if h not in implemented]}"
                )
        self._store = store
        self._dispatched = -1  # a new manager may have reached the old one's generation
        plugins = [(name, plugin) for name, plugin in middleware if plugin is not None]
        if plugins or not plain:
            self._pm = self._manager(store, plugins)
        else:  # no plugin manager until someone asks for one (db.plugins): a connect costs no registrations
            self._pm = None
            self._calls = _direct_calls(store, implemented)
        self._epoch = _ForkEpoch.value

    @staticmethod
    def _manager(store: Any, middleware: Sequence[tuple[str | None, object]]) -> _PluginManager:
        """A plugin manager holding ``store``, kydb's defaults and ``middleware``."""
        pm = _PluginManager()
        pm.add_hookspecs(hookspecs)
        pm.register(store, name=_STORE)
        pm.register(DefaultHooks(pm.hook), name=_DEFAULTS)
        for name, plugin in middleware:
            pm.register(plugin, name=name)
        pm.check_pending()
        return pm

    def _hooks(self) -> Any:
        """The hooks to call, as :func:`_dispatch` has them for the plugins registered now."""
        if self._epoch != _ForkEpoch.value:
            self._reopen()
        pm = self._pm
        if pm is not None and self._dispatched != pm.generation:
            generation = pm.generation  # read first: a registration while building forces another rebuild
            self._calls = _dispatch(pm)
            self._dispatched = generation
        return self._calls

    def _reopen(self) -> None:
        with self._open_lock:
            if self._epoch == _ForkEpoch.value:
                return
            pm = self._pm
            plugins = [] if pm is None else pm.list_name_plugin()
            keep = [(n, p) for n, p in plugins if p is not None and n not in (_STORE, _DEFAULTS)]
            self._open(keep)
            opened.adopt(self._url, self._codec, self)  # closed, then used again: the DB for its URL once more

    def reset_locks_after_fork(self) -> None:
        """In a forked child: replace locks that another thread of the parent may have held at fork time."""
        self._open_lock = threading.Lock()
        self._cache.reset_after_fork()

    @property
    def store(self) -> Any:
        """The backend's store instance (its hook implementations)."""
        self._hooks()
        return self._store

    @property
    def plugins(self) -> pluggy.PluginManager:
        """This store's plugin manager: register middleware on it for this store only."""
        self._hooks()
        with self._open_lock:
            if self._pm is None:  # made on first use: until then the DB calls the store straight
                self._pm = self._manager(self._store, [])
                self._dispatched = -1
            return self._pm

    def _release_connections(self) -> None:
        super()._release_connections()
        with self._open_lock:
            if self._epoch == _ForkEpoch.value:
                self._epoch = -1  # the next use reopens
                self._hooks_for_close().kydb_close()

    def _hooks_for_close(self) -> Any:
        return self._calls if self._pm is None else self._pm.hook

    # ------------------------------------------------------------------ primitives

    def _writable(self) -> Any:
        """The hooks, for a write: :class:`~kydb.ReadOnlyStore` on a store that declares it cannot be written."""
        if not self.capabilities.writable:
            raise ReadOnlyStore(f"{self.url} is read-only: write to another store (a union puts one in front)")
        return self._hooks()

    def _fetch_blobs(self, keys: Sequence[str], fresh: bool = False) -> dict[str, bytes]:
        base = self.base_path
        if not base:
            found = self._hooks().kydb_get(paths=keys)
            return found if type(found) is dict else dict(found)
        found = self._hooks().kydb_get(paths=[base + k for k in keys])
        cut = len(base)
        return {path[cut:]: blob for path, blob in found.items()}

    def _write_blobs(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None] | None = None,
    ) -> None:
        hook = self._writable()
        base = self.base_path
        if base:
            items = {base + k: blob for k, blob in items.items()}
            indexes = {base + k: values for k, values in indexes.items()} if indexes else indexes
            expect = {base + k: version for k, version in expect.items()} if expect else expect
        elif self._pm is not None:
            items = dict(items)  # middleware may change it; the caller's (a cache DB's, say) stays as it was
        hook.kydb_put(items=items, mtime_ns=mtime_ns, indexes=indexes, expect=expect or _NO_EXPECT)

    def _fetch_versioned(self, keys: Sequence[str]) -> dict[str, VersionedBlob]:
        base = self.base_path
        found = self._hooks().kydb_get_versioned(paths=[base + k for k in keys])
        cut = len(base)
        return {path[cut:]: versioned for path, versioned in found.items()}

    def _query(self, query: FolderQuery) -> Iterator[Entry]:
        hook = self._hooks()
        remaining = query.limit_n
        folder = self.base_path + query.folder

        def fetch(cursor: str | None) -> tuple[list[Entry], str | None]:
            # Always ask for at least one entry: limit(0) still gets a store's refusal to query at all.
            wanted = QUERY_PAGE if remaining is None else max(1, min(remaining, QUERY_PAGE))
            page = hook.kydb_query(request=replace(query.request(wanted, cursor), folder=folder))
            return page.entries, page.cursor

        if remaining is None:
            yield from follow(fetch)
            return
        if remaining == 0:
            fetch(None)  # a store that cannot answer the query at all still says so
            return
        for entry in follow(fetch):
            yield entry
            remaining -= 1
            if remaining == 0:
                return  # before follow() fetches a page nobody asked for

    def _delete_keys(self, keys: Sequence[str], expect: Mapping[str, str] | None = None) -> None:
        if keys:
            base = self.base_path
            self._writable().kydb_delete(
                paths=[base + k for k in keys], expect={base + k: v for k, v in expect.items()} if expect else {}
            )

    def _stat_keys(self, keys: Sequence[str]) -> dict[str, ObjectInfo]:
        base = self.base_path
        found = self._hooks().kydb_stat(paths=[base + k for k in keys])
        cut = len(base)
        return {path[cut:]: info for path, info in found.items()}

    def _exists(self, key: str) -> bool:
        return bool(self._hooks().kydb_exists(path=self.base_path + key))

    def _list(self, folder: str, include_dirs: bool, page_size: int) -> Iterator[str]:
        hook = self._hooks()
        path = self.base_path + folder

        def fetch(cursor: str | None) -> tuple[list[str], str | None]:
            page = hook.kydb_list(folder=path, include_dirs=include_dirs, page_size=page_size, cursor=cursor)
            return page.names, page.cursor

        return follow(fetch)

    def _mkdir(self, folder: str) -> None:
        self._writable().kydb_mkdir(folder=self.base_path + folder)

    def _rmdir(self, folder: str) -> None:
        self._writable().kydb_rmdir(folder=self.base_path + folder)

    def _is_dir(self, folder: str) -> bool:
        return bool(self._hooks().kydb_is_dir(folder=self.base_path + folder))

    def _delete_tree(self, folder: str) -> int:
        hook = self._writable()
        path = self.base_path + folder
        if path != folder and folder == "/" and not hook.kydb_is_dir(folder=path):
            return 0  # the base folder was never created: nothing to delete
        return int(hook.kydb_delete_tree(folder=path))
