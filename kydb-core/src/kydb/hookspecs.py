"""The blob-storage contract between kydb and a backend, as pluggy hookspecs.

A backend is a :class:`kydb.Store` subclass (see :mod:`kydb.store`): its
``kydb_*`` methods implement these hooks, and its ``capabilities`` declare
what it can do.  Every connected store gets its own
:class:`pluggy.PluginManager` holding exactly one backend (the store
instance), kydb's generic defaults (``trylast``) and any middleware (made
when first needed: see :mod:`kydb.db`).  Every
hook but :func:`kydb_close` is ``firstresult``: the store's implementation
answers, and a default answers only for a hook the store does not implement.
``docs/contract.md`` is the behaviour these hooks serve.

**Paths.** Hooks receive absolute paths with the DB's base path already
applied and already validated (see :mod:`kydb.keys`): an object path is
``/a/b/c``; a folder path is ``/a/b/`` and the root is ``/``.  Names
returned by :func:`kydb_list` are single components, folders with a trailing
``/``.

**Blobs.** Values arrive as ``bytes`` already encoded by kydb (the envelope);
a store keeps them byte for byte.

**Errors.** A store raises :class:`kydb.StoreUnavailable` (with its own
exception chained) for connection failures, timeouts and throttling that
survive its retry policy, and ``PermissionError`` (or a subclass) for access
denied.  It never raises ``KeyError`` for those: a ``KeyError`` means absent.

**Batch shape.** ``get``, ``put`` and ``delete`` take several paths at once
and a single path is just a batch of one.  That keeps one place for a store's
bulk path (MGET, pipelines, ``DeleteObjects``, one SQL statement) and one
place for middleware to wrap: a ``wrapper=True`` hookimpl on ``kydb_put`` may
replace values in the ``items`` dict before it yields, and one on
``kydb_get`` may transform the returned mapping — that is how compression or
encryption middleware sees every blob, whichever API call caused it.  (Such
a middleware wraps :func:`kydb_get_versioned` the same way.)

**Times and indexes.** ``kydb_put`` also receives the write's time
(``mtime_ns``, one clock reading per write call) and any user index values
given with it.  A store that keeps them declares ``keeps_times``, serves
``kydb_stat`` with times and indexes and, if it can answer ordered queries
from an index, ``kydb_query`` natively (``native_queries``); the default
``kydb_query`` refuses with :class:`kydb.IndexNotSupported` unless the
request allows a scan.

**Versions.** A store that declares ``conditional_writes`` gives every
object a version — an opaque ``str`` that changes on every write of it —
reports it in :class:`ObjectInfo` and :func:`kydb_get_versioned`, and honours
the ``expect`` argument of :func:`kydb_put` and :func:`kydb_delete`
atomically.  kydb never sends ``expect`` to a store that does not declare it.

**Required hooks** (abstract on :class:`kydb.Store`; missing ones fail at
connect time): ``kydb_get``, ``kydb_put``, ``kydb_delete``, ``kydb_list``,
``kydb_mkdir``, ``kydb_rmdir``, ``kydb_is_dir``.  **Optional hooks** have
generic defaults built on the required ones: ``kydb_exists``, ``kydb_stat``,
``kydb_query``, ``kydb_walk``, ``kydb_delete_tree``; ``kydb_get_versioned``
has none (it comes with ``conditional_writes``); ``kydb_close`` is called on
every plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple, TypeVar

import pluggy

__all__ = [
    "OPTIONAL_HOOKS",
    "REQUIRED_HOOKS",
    "Entry",
    "ListPage",
    "ObjectInfo",
    "QueryPage",
    "QueryRequest",
    "VersionedBlob",
    "follow",
    "hookimpl",
    "hookspec",
]

hookspec = pluggy.HookspecMarker("kydb")
#: Decorate a plain class's (or a middleware's) methods with this to implement hooks;
#: the ``kydb_*`` methods of a :class:`kydb.Store` subclass need no decorator.
hookimpl = pluggy.HookimplMarker("kydb")

REQUIRED_HOOKS = (
    "kydb_get",
    "kydb_put",
    "kydb_delete",
    "kydb_list",
    "kydb_mkdir",
    "kydb_rmdir",
    "kydb_is_dir",
)
OPTIONAL_HOOKS = (
    "kydb_exists",
    "kydb_stat",
    "kydb_query",
    "kydb_walk",
    "kydb_delete_tree",
    "kydb_get_versioned",
    "kydb_close",
)

_T = TypeVar("_T")


class ListPage(NamedTuple):
    """One page of a folder listing.

    ``names`` are in ascending code-point order (folders carry their trailing
    ``/`` and sort with it); ``cursor`` is ``None`` on the last page, otherwise
    an opaque value to pass back to get the next page.
    """

    names: list[str]
    cursor: str | None


class ObjectInfo(NamedTuple):
    """What a store knows about one object without reading it.

    ``size`` is the stored blob's length in bytes; ``mtime_ns`` and
    ``ctime_ns`` are nanoseconds since the epoch when the store keeps them,
    else ``None``; ``indexes`` are the object's user index values, when the
    store keeps them; ``version`` is the object's current version on a store
    with conditional writes, else ``None``.
    """

    size: int
    mtime_ns: int | None = None
    ctime_ns: int | None = None
    indexes: Mapping[str, int] = MappingProxyType({})
    version: str | None = None


class VersionedBlob(NamedTuple):
    """A stored blob and the version it had when it was read (:func:`kydb_get_versioned`)."""

    blob: bytes
    version: str


class Entry(NamedTuple):
    """One result of a folder query: the object's name in the folder, its times and the index's value.

    ``ctime`` is ``None`` on a store that keeps no creation time (S3).
    """

    key: str
    mtime: int
    ctime: int | None
    index_value: int


class QueryPage(NamedTuple):
    """One page of a folder query, in query order; ``cursor`` is ``None`` on the last page."""

    entries: list[Entry]
    cursor: str | None

    @classmethod
    def of(cls, entries: list[Entry], more: bool) -> QueryPage:
        """A page of ``entries``, with the cursor that resumes after its last entry when there are ``more``."""
        if not (more and entries):
            return cls(entries, None)
        last = entries[-1]
        return cls(entries, f"{last.index_value} {last.key}")  # the value has no space; the name may


@dataclass(frozen=True)
class QueryRequest:
    """One page's worth of a folder query, as :func:`kydb_query` receives it.

    ``index`` is ``'mtime'``, ``'ctime'`` or a user index name; ``since`` and
    ``until`` bound its value inclusively (``None``: unbounded); ``limit`` is
    the most entries the page may hold (at least 1); ``cursor`` is ``None``
    for the first page, else the previous page's; ``allow_scan`` lets a store
    without an ordered index read the folder's metadata instead of refusing.
    """

    folder: str
    index: str = "mtime"
    ascending: bool = True
    since: int | None = None
    until: int | None = None
    limit: int = 200
    cursor: str | None = None
    allow_scan: bool = False

    def after(self) -> tuple[int, str] | None:
        """The ``(index value, name)`` the page resumes after, decoded from ``cursor`` (``None`` on the first page)."""
        if self.cursor is None:
            return None
        value, _, name = self.cursor.partition(" ")
        return int(value), name

    def empty_range(self) -> bool:
        """Whether ``since > until``: nothing can match, and no store needs to look."""
        return self.since is not None and self.until is not None and self.since > self.until


def follow(fetch: Callable[[str | None], tuple[Iterable[_T], str | None]]) -> Iterator[_T]:
    """Every item of a cursor-paged hook, lazily: ``fetch(cursor)`` returns one page and the next cursor.

    The first call gets ``None``; paging stops at a ``None`` cursor.
    """
    cursor: str | None = None
    while True:
        items, cursor = fetch(cursor)
        yield from items
        if cursor is None:
            return


@hookspec(firstresult=True)
def kydb_get(paths: Sequence[str]) -> Mapping[str, bytes]:
    """Read the blobs stored at ``paths`` (object paths).

    Returns a mapping holding every path that exists; an absent path is simply
    missing from it (never an exception).  Cost: one request/round trip per
    batch where the store has a bulk read (MGET, ``IN (...)``), otherwise one
    per path, run concurrently where that is natural.
    """


@hookspec(firstresult=True)
def kydb_put(
    items: dict[str, bytes],
    mtime_ns: int,
    indexes: Mapping[str, Mapping[str, int | None]],
    expect: Mapping[str, str | None],
) -> None:
    """Store each ``path -> blob`` in ``items``, replacing existing objects.

    ``mtime_ns`` is the write's time (nanoseconds since the epoch): stores
    that keep times record it as each object's modification time, and as its
    creation time only when the object is new (an overwrite keeps its
    creation time).  ``indexes`` maps some paths to user index values to set
    (``None`` clears one); an index not mentioned keeps its value.  Stores
    that keep neither may ignore both arguments.

    ``expect`` is empty for a plain write.  On a store with
    ``conditional_writes`` it maps some paths to the version each must have
    now (``None``: the object must not exist); if any does not, raise
    :class:`kydb.Conflict` naming it and write nothing.  The check and the
    write are one atomic step: no other writer's change may land between
    them.  Every successful write gives its objects new versions.

    Each object is written atomically (a reader sees the old or the new blob,
    never a mix), and every ancestor folder of each path becomes visible to
    :func:`kydb_list` and :func:`kydb_is_dir` with it — in the same request,
    transaction or round trip where the store allows.  Concurrent writers to
    different paths of one folder must never lose each other's objects or
    folder entries.  On failure, raise; paths not reported as written may or
    may not have been written.  Middleware wrappers may replace values in
    ``items`` before yielding.
    """


@hookspec(firstresult=True)
def kydb_delete(paths: Sequence[str], expect: Mapping[str, str]) -> None:
    """Delete the objects at ``paths``; absent paths are ignored.

    Removes each object's entry from its folder's listing in the same
    operation.  The folders above each object stay, listed and
    :func:`kydb_is_dir`, even when this empties them (until
    :func:`kydb_rmdir` or :func:`kydb_delete_tree` removes them).  ``expect`` is empty for a
    plain delete; on a store with ``conditional_writes`` it maps paths to the
    version each must have now — if one has another version or is absent,
    raise :class:`kydb.Conflict` and delete nothing (check and delete
    atomically).  Cost: bulk where the store has it (UNLINK in a pipeline,
    ``DeleteObjects``, one ``DELETE``).
    """


@hookspec(firstresult=True)
def kydb_list(folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> ListPage:
    """One page of the immediate children of ``folder``.

    Returns at most ``page_size`` names, sorted (see :class:`ListPage`):
    objects as ``name``, subfolders as ``name/``; with ``include_dirs``
    false, objects only.  ``cursor`` is ``None`` for the first page.  A folder
    that does not exist lists as empty.  Cost: O(page) — never a scan of the
    whole store.
    """


@hookspec(firstresult=True)
def kydb_mkdir(folder: str) -> None:
    """Create ``folder`` (never the root) and any missing ancestors, as empty folders.

    An existing folder is left as it is.
    """


@hookspec(firstresult=True)
def kydb_rmdir(folder: str) -> None:
    """Remove the empty ``folder``'s own entry (from its parent's listing); the parent stays, even if emptied.

    kydb has checked that ``folder`` exists, is not the root and is empty.
    """


@hookspec(firstresult=True)
def kydb_is_dir(folder: str) -> bool:
    """Whether ``folder`` exists: created by ``mkdir`` or implied by a descendant.

    The root always exists.  Cost: O(1) requests.
    """


@hookspec(firstresult=True)
def kydb_exists(path: str) -> bool:
    """Whether an object exists at ``path`` (folders do not count).

    Default: ``kydb_get`` of the one path.  Stores override it to avoid
    transferring the blob (EXISTS, HEAD, ``SELECT 1``).
    """


@hookspec(firstresult=True)
def kydb_stat(paths: Sequence[str]) -> Mapping[str, ObjectInfo]:
    """:class:`ObjectInfo` for each of ``paths`` that is an object; absent paths are missing.

    Default: ``kydb_get`` and the blobs' lengths, no times.  Stores override
    it to answer from metadata (HEAD, ``LENGTH(data)``, ``STRLEN``) and to
    report the modification and creation times, index values and versions
    they keep (as their capabilities declare).
    """


@hookspec(firstresult=True)
def kydb_get_versioned(paths: Sequence[str]) -> Mapping[str, VersionedBlob]:
    """Each existing object's blob together with its current version, read consistently.

    The version is the one the returned blob has (never a newer write's), in
    one request per object where the store allows.  Absent paths are missing.
    Only stores with ``conditional_writes`` implement it.
    """


@hookspec(firstresult=True)
def kydb_query(request: QueryRequest) -> QueryPage:
    """One page (at most ``request.limit`` entries) of the objects directly in a folder, ordered by an index.

    See :class:`QueryRequest`.  Objects without the user index are left out;
    an inverted range yields nothing; ties are ordered by name.  Build the
    page with :meth:`QueryPage.of` and resume from :meth:`QueryRequest.after`
    (one cursor encoding for every store).  A store serving this natively
    costs one indexed query per page, whatever the folder's size.  The
    default refuses with :class:`kydb.IndexNotSupported` unless
    ``request.allow_scan``, and then reads the whole folder's
    :func:`kydb_stat` (see :func:`kydb.query.scan_page`).
    """


@hookspec(firstresult=True)
def kydb_walk(folder: str) -> Iterator[str]:
    """Every object path and every folder path (trailing ``/``) below ``folder``.

    ``folder`` itself is not included; order is unspecified; the iterator is
    lazy.  Default: depth-first over :func:`kydb_list`.
    """


@hookspec(firstresult=True)
def kydb_delete_tree(folder: str) -> int:
    """Delete everything below ``folder`` and ``folder`` itself; return the number of objects deleted.

    For the root, empty the store (the root itself stays); otherwise the
    folder above stays, even if emptied.  kydb has checked that ``folder``
    exists.  Default: :func:`kydb_walk`, then
    :func:`kydb_delete` in batches of 1,000 and :func:`kydb_rmdir` deepest
    folders first.  Stores with a bulk range delete override it.
    """


@hookspec
def kydb_close() -> None:
    """Release connections and other resources; called on every plugin."""
