"""Recency and index queries over one folder: ``db.folder(...)`` and ``db.recent(...)``.

Every write records the object's modification time (``mtime``) and, when it
is new, its creation time (``ctime``) — integer nanoseconds from one clock
reading per write.  ``db.set(key, value, index={'class_date': 20260905})``
adds user index values.  A :class:`FolderQuery` orders a folder's objects by
one of them::

    db.folder('/reports').by('mtime').desc().limit(10)          # names, newest first
    db.folder('/books').by('class_date').since(20260101).items()  # (name, value) pairs
    db.recent('/reports', limit=10)                              # the same as the first, as a list

Stores that keep an ordered index answer with one indexed query per page;
others raise :class:`~kydb.IndexNotSupported` unless ``allow_scan=True``.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .hookspecs import Entry, QueryPage, QueryRequest

if TYPE_CHECKING:
    from .front import BaseDB

__all__ = [
    "MAX_INDEX_NAME_CHARS",
    "RESERVED_INDEX_NAMES",
    "FolderQuery",
    "check_index_name",
    "check_index_values",
    "scan_page",
]

RESERVED_INDEX_NAMES = frozenset(
    {"mtime", "ctime", "path", "folder", "parent", "name", "key", "kind", "data", "size", "value", "index"}
)
_INDEX_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
#: The longest index name, the same on every store (a SQL column holds it).
MAX_INDEX_NAME_CHARS = 64
_INT64 = (-(2**63), 2**63 - 1)
QUERY_PAGE = 200


def check_index_name(name: object, *, for_query: bool = False) -> str:
    """``name`` if it may name a user index (or, ``for_query``, also ``mtime``/``ctime``)."""
    if not isinstance(name, str) or not _INDEX_NAME.match(name):
        raise ValueError(f"index name {name!r} must match [A-Za-z][A-Za-z0-9_]*")
    if len(name) > MAX_INDEX_NAME_CHARS:
        raise ValueError(f"index name {name!r} is {len(name)} characters long; the limit is {MAX_INDEX_NAME_CHARS}")
    if name in RESERVED_INDEX_NAMES and not (for_query and name in ("mtime", "ctime")):
        raise ValueError(f"index name {name!r} is reserved; choose another name")
    return name


def _check_value(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int (not {type(value).__name__})")
    if not _INT64[0] <= value <= _INT64[1]:
        raise ValueError(f"{what} {value} does not fit in a signed 64-bit integer")
    return value


def check_index_values(index: Mapping[str, int | None] | None) -> dict[str, int | None]:
    """Validate ``set(..., index=...)`` before anything is written; ``None`` values clear an index."""
    if index is None:
        return {}
    if not isinstance(index, Mapping):
        raise TypeError(f"index must be a mapping of index names to int values, not {type(index).__name__}")
    return {
        check_index_name(name): None if value is None else _check_value(value, f"index {name!r} value")
        for name, value in index.items()
    }


def _bound(value: int | datetime.datetime | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1_000_000_000)  # naive datetimes are local time, as in datetime itself
    return _check_value(value, what)


@dataclass(frozen=True)
class FolderQuery:
    """A lazy, immutable query over the objects directly in one folder.

    Each builder call returns a new query; nothing is fetched until you
    iterate, and no more pages than ``limit`` needs.  Iterating yields
    names; :meth:`items` yields ``(name, value)``; :meth:`entries` yields
    :class:`~kydb.Entry`.  Order is by ``(index value, name)``, ascending by
    default.
    """

    db: BaseDB
    folder: str
    index: str = "mtime"
    ascending: bool = True
    since_value: int | None = None
    until_value: int | None = None
    limit_n: int | None = None
    allow_scan: bool = False

    def by(self, index: str) -> FolderQuery:
        """Order by ``'mtime'`` (the default), ``'ctime'`` or a user index name."""
        return replace(self, index=check_index_name(index, for_query=True))

    def asc(self) -> FolderQuery:
        """Smallest (oldest) first."""
        return replace(self, ascending=True)

    def desc(self) -> FolderQuery:
        """Largest (newest) first."""
        return replace(self, ascending=False)

    def since(self, value: int | datetime.datetime) -> FolderQuery:
        """Only index values ``>= value`` (nanoseconds, or a datetime, for times)."""
        return replace(self, since_value=_bound(value, "since"))

    def until(self, value: int | datetime.datetime) -> FolderQuery:
        """Only index values ``<= value``.  An inverted range yields nothing."""
        return replace(self, until_value=_bound(value, "until"))

    def limit(self, n: int) -> FolderQuery:
        """At most ``n`` results."""
        if _check_value(n, "limit") < 0:
            raise ValueError(f"limit must be >= 0, got {n}")
        return replace(self, limit_n=n)

    def request(self, limit: int = QUERY_PAGE, cursor: str | None = None) -> QueryRequest:
        """The :class:`~kydb.hookspecs.QueryRequest` for one page of this query (paths without a base path)."""
        return QueryRequest(
            self.folder, self.index, self.ascending, self.since_value, self.until_value, limit, cursor, self.allow_scan
        )

    def entries(self) -> Iterator[Entry]:
        """:class:`~kydb.Entry` (name, mtime, ctime, index value) for each result, lazily."""
        return self.db._query(self)  # noqa: SLF001 - the query runs on the DB that made it

    def __iter__(self) -> Iterator[str]:
        return (entry.key for entry in self.entries())

    def items(self) -> Iterator[tuple[str, Any]]:
        """``(name, value)`` for each result, reading values a page at a time."""
        page: list[str] = []
        for entry in self.entries():
            page.append(entry.key)
            if len(page) == QUERY_PAGE:
                yield from self._values(page)
                page = []
        yield from self._values(page)

    def _values(self, names: list[str]) -> Iterator[tuple[str, Any]]:
        values = self.db.get_many([self.folder + name for name in names])
        for name in names:
            key = self.folder + name
            if key in values:  # deleted since the query ran: left out rather than a stale answer
                yield name, values[key]


def scan_page(entries: Iterable[Entry], request: QueryRequest) -> QueryPage:
    """One page of ``request`` over a folder's scanned ``entries`` (any order): the scan-based ``kydb_query``.

    Keeps the entries inside the request's bounds, orders them by (index
    value, name) as asked, resumes after the request's cursor and cuts the
    page at its limit.  Cost: the whole scan, every page — which is why
    stores without an ordered index refuse unless ``allow_scan``.
    """
    low, high, after = request.since, request.until, request.after()
    kept = [e for e in entries if (low is None or e.index_value >= low) and (high is None or e.index_value <= high)]
    kept.sort(key=lambda e: (e.index_value, e.key), reverse=not request.ascending)
    if after is not None:
        if request.ascending:
            kept = [e for e in kept if (e.index_value, e.key) > after]
        else:
            kept = [e for e in kept if (e.index_value, e.key) < after]
    return QueryPage.of(kept[: request.limit], len(kept) > request.limit)
