"""The base class of every kydb backend: :class:`Store`, and what it declares, :class:`Capabilities`.

A backend is one ``Store`` subclass plus an entry point::

    class MyStore(kydb.Store):
        capabilities = kydb.Capabilities(keeps_times=True)

        def __init__(self, url: kydb.StoreURL) -> None:
            super().__init__(url)
            ...

        def kydb_get(self, paths): ...
        ...  # the other six required hooks, and any optional ones

Its ``kydb_*`` methods are the hook implementations (see :mod:`kydb.hookspecs`
for each one's contract); they need no decorator.  The required hooks are
abstract here, so a subclass that misses one cannot be instantiated.  The
optional hooks are declared here with their signatures, so ``mypy --strict``
checks an override against the contract, but the base's own declarations are
not implementations: kydb's defaults answer until a subclass overrides one.

``capabilities`` is the one place a store says what it can do: ``kydb.connect``
reads the URL form from it, the DB front reads the rest, and the conformance
suite tests exactly what it declares — a capability declared without the
hooks it needs is refused at connect time, and one declared but not
delivered (or delivered but not declared) fails the suite.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .hookspecs import ListPage, ObjectInfo, QueryPage, QueryRequest, VersionedBlob
from .url import StoreURL

__all__ = ["Capabilities", "Store", "capabilities_of"]


@dataclass(frozen=True)
class Capabilities:
    """What a store can do, declared once on its class.

    * ``url_path_is_base`` — the URL path is the base path (``redis://host/base``);
      false when it names something else (a database, a file) and the base
      path comes from ``?base=`` only.
    * ``keeps_times`` — every put records the object's modification time and
      user index values, and ``kydb_stat`` reports them (queries can then at
      least scan with ``allow_scan=True``).
    * ``keeps_ctime`` — the store also keeps each object's creation time
      across overwrites (``ctime`` queries work).
    * ``native_queries`` — ``kydb_query`` answers from an ordered index,
      one indexed request per page, without ``allow_scan``.
    * ``shared_between_processes`` — another process connecting to the same
      URL sees the same data (false for an in-process store).
    * ``conditional_writes`` — objects carry versions: ``kydb_stat`` reports
      them, ``kydb_get_versioned`` is implemented, and ``kydb_put`` /
      ``kydb_delete`` honour ``expect`` atomically.
    * ``writable`` — false for a read-only store; kydb then refuses every
      write with :class:`kydb.ReadOnlyStore` before calling the store.
    """

    url_path_is_base: bool = True
    keeps_times: bool = False
    keeps_ctime: bool = False
    native_queries: bool = False
    shared_between_processes: bool = True
    conditional_writes: bool = False
    writable: bool = True

    def __post_init__(self) -> None:
        if self.keeps_ctime and not self.keeps_times:
            raise ValueError("Capabilities(keeps_ctime=True) needs keeps_times=True too")
        if self.native_queries and not self.keeps_times:
            raise ValueError("Capabilities(native_queries=True) needs keeps_times=True too")


#: Each capability that needs an optional hook, and that hook.
NEEDED_HOOKS = {
    "keeps_times": ("kydb_stat",),
    "native_queries": ("kydb_query",),
    "conditional_writes": ("kydb_stat", "kydb_get_versioned"),
}


def capabilities_of(cls: type[Any], url: StoreURL | None = None) -> Capabilities:
    """What the store class ``cls`` declares (for ``url``, when given); plain classes declare the defaults."""
    if isinstance(cls, type) and issubclass(cls, Store):
        return cls.capabilities if url is None else cls.capabilities_for(url)
    declared = getattr(cls, "capabilities", None)
    return declared if isinstance(declared, Capabilities) else Capabilities()


class Store(abc.ABC):
    """A kydb backend: one instance per connected URL, its ``kydb_*`` methods the hooks.

    Paths arrive absolute, validated, with the base path applied (``/a/b`` for
    an object, ``/a/b/`` for a folder, ``/`` for the root).  ``url`` is the
    parsed URL the store was connected with.  Raise ``ValueError`` naming
    ``url.masked`` for an option you do not understand.
    """

    #: What this store can do (see :class:`Capabilities`); override on the subclass.
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, url: StoreURL) -> None:
        self.url = url

    @classmethod
    def capabilities_for(cls, url: StoreURL) -> Capabilities:
        """The capabilities of a store of this class connected to ``url`` (default: :attr:`capabilities`).

        Override only when one URL form of a scheme differs from the rest
        (SQLite's in-process ``sqlite://`` is not shared between processes);
        ``url_path_is_base`` must not change with the URL.
        """
        return cls.capabilities

    # ------------------------------------------------------------------ required hooks

    @abc.abstractmethod
    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        """See :func:`kydb.hookspecs.kydb_get`."""

    @abc.abstractmethod
    def kydb_put(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None],
    ) -> None:
        """See :func:`kydb.hookspecs.kydb_put`."""

    @abc.abstractmethod
    def kydb_delete(self, paths: Sequence[str], expect: Mapping[str, str]) -> None:
        """See :func:`kydb.hookspecs.kydb_delete`."""

    @abc.abstractmethod
    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> ListPage:
        """See :func:`kydb.hookspecs.kydb_list`."""

    @abc.abstractmethod
    def kydb_mkdir(self, folder: str) -> None:
        """See :func:`kydb.hookspecs.kydb_mkdir`."""

    @abc.abstractmethod
    def kydb_rmdir(self, folder: str) -> None:
        """See :func:`kydb.hookspecs.kydb_rmdir`."""

    @abc.abstractmethod
    def kydb_is_dir(self, folder: str) -> bool:
        """See :func:`kydb.hookspecs.kydb_is_dir`."""

    # ------------------------------------------------------------------ optional hooks
    # Declared for their signatures only: kydb's defaults answer until a subclass overrides one.

    def kydb_exists(self, path: str) -> bool:
        """See :func:`kydb.hookspecs.kydb_exists`."""
        raise NotImplementedError

    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, ObjectInfo]:
        """See :func:`kydb.hookspecs.kydb_stat`."""
        raise NotImplementedError

    def kydb_get_versioned(self, paths: Sequence[str]) -> Mapping[str, VersionedBlob]:
        """See :func:`kydb.hookspecs.kydb_get_versioned`."""
        raise NotImplementedError

    def kydb_query(self, request: QueryRequest) -> QueryPage:
        """See :func:`kydb.hookspecs.kydb_query`."""
        raise NotImplementedError

    def kydb_walk(self, folder: str) -> Iterator[str]:
        """See :func:`kydb.hookspecs.kydb_walk`."""
        raise NotImplementedError

    def kydb_delete_tree(self, folder: str) -> int:
        """See :func:`kydb.hookspecs.kydb_delete_tree`."""
        raise NotImplementedError

    def kydb_close(self) -> None:
        """See :func:`kydb.hookspecs.kydb_close`."""
        raise NotImplementedError


def overrides(store: object, name: str) -> bool:
    """Whether ``store``'s class implements hook ``name`` itself (not just :class:`Store`'s declaration)."""
    method = getattr(type(store), name, None)
    return callable(method) and method is not getattr(Store, name, None)
