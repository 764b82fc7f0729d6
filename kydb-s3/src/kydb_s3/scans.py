"""Folder queries by scanning: S3 keeps no ordered index, so a query reads the folder's metadata.

A scan of a folder by ``mtime`` lists the folder (one page per 1,000
objects) and reads each object's ``HeadObject`` (kydb's time is in its
metadata; listings carry none).  A scan by a user index lists the folder's
index sidecars (one page per 1,000) and reads each one (``GetObject``); the
mtimes of the entries a page returns are read then, one ``HeadObject``
each, and an object gone since the scan is left out.

Pages come from :func:`kydb.query.scan_page`, and their cursors are the
``[index value, name]`` every kydb store uses (:meth:`kydb.QueryPage.of`),
nothing more.  So that a query's later pages do not scan again, a store
keeps the scans of its last :data:`SCANS_KEPT` queries still being paged, by
what the query asks (folder, index, order, bounds): a later page is served
from the kept scan, resuming after its cursor, and sees the folder as it was
at that query's first page.  A later page whose scan is not kept (pushed out
by other queries, or asked of another store or process with the cursor)
scans again and resumes after the cursor.  A first page always scans.
"""

from __future__ import annotations

import datetime
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING

import kydb
from kydb.query import scan_page

from .folders import Folders, representable
from .index_sidecars import IndexSidecars, in_index_folder
from .requests import BucketRequests

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef

__all__ = ["MTIME_METADATA", "SCANS_KEPT", "Scans", "mtime_ns"]

#: The object metadata (``x-amz-meta-kydb-mtime``) holding kydb's modification time, in nanoseconds.
MTIME_METADATA = "kydb-mtime"
#: Scans per store whose later pages may still be asked for (each holds its folder's sort keys in memory).
SCANS_KEPT = 8

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
# What identifies a query's scan: folder, index, ascending, since, until.
_ScanKey = tuple[str, str, bool, "int | None", "int | None"]


def _ns(moment: datetime.datetime) -> int:
    """An aware datetime as integer nanoseconds since the epoch (exact, no float rounding)."""
    return (moment - _EPOCH) // datetime.timedelta(microseconds=1) * 1000


def mtime_ns(head: HeadObjectOutputTypeDef) -> int:
    """kydb's modification time of an object, from its metadata; ``LastModified`` for objects other tools wrote."""
    stamp = head.get("Metadata", {}).get(MTIME_METADATA, "")
    return int(stamp) if stamp.isascii() and stamp.isdigit() else _ns(head["LastModified"])


class _KeptScans:
    """Scans whose later pages may still be asked for: at most ``size``, least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._scans: OrderedDict[_ScanKey, list[kydb.Entry]] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, key: _ScanKey, entries: list[kydb.Entry]) -> None:
        with self._lock:
            self._scans[key] = entries
            self._scans.move_to_end(key)
            while len(self._scans) > self._size:
                self._scans.popitem(last=False)

    def get(self, key: _ScanKey) -> list[kydb.Entry] | None:
        with self._lock:
            entries = self._scans.get(key)
            if entries is not None:
                self._scans.move_to_end(key)
            return entries

    def drop(self, key: _ScanKey) -> None:
        with self._lock:
            self._scans.pop(key, None)


class Scans:
    """Scan-based folder queries over one bucket (see the module docstring)."""

    def __init__(self, requests: BucketRequests, folders: Folders, sidecars: IndexSidecars) -> None:
        self._requests = requests
        self._folders = folders
        self._sidecars = sidecars
        self._kept = _KeptScans(SCANS_KEPT)

    def _scan(self, folder: str, index: str) -> list[kydb.Entry]:
        """Every object directly in ``folder`` with a value of ``index``, as entries in no particular order.

        ``mtime``: complete entries.  A user index: entries whose ``mtime``
        is 0 until :meth:`_with_mtimes` reads it.
        """
        each = self._requests.connection.each
        if index == "mtime":
            names = self._folders.object_names(folder)
            heads = each(self._requests.head, [folder[1:] + name for name in names])
            mtimes = [mtime_ns(head) if head is not None else None for head in heads]
            return [
                kydb.Entry(name, mtime, None, mtime)
                for name, mtime in zip(names, mtimes, strict=True)
                if mtime is not None  # gone since the listing
            ]
        names = [name for name in self._sidecars.indexed_names(folder) if representable(folder, name)]
        values = each(self._sidecars.values_of, [folder + name for name in names])
        return [
            kydb.Entry(name, 0, None, found[index]) for name, found in zip(names, values, strict=True) if index in found
        ]

    def _with_mtimes(self, folder: str, entries: list[kydb.Entry]) -> list[kydb.Entry]:
        """``entries`` with their objects' mtimes read (one ``HeadObject`` each); objects gone since are left out."""
        heads = self._requests.connection.each(self._requests.head, [folder[1:] + e.key for e in entries])
        return [
            kydb.Entry(entry.key, mtime_ns(head), entry.ctime, entry.index_value)
            for entry, head in zip(entries, heads, strict=True)
            if head is not None
        ]

    def query(self, request: kydb.QueryRequest) -> kydb.QueryPage:
        """One page of a folder query, by scanning (see the module docstring)."""
        folder, index = request.folder, request.index
        if in_index_folder(folder):
            return kydb.QueryPage([], None)
        key: _ScanKey = (folder, index, request.ascending, request.since, request.until)
        scanned = None if request.cursor is None else self._kept.get(key)
        if scanned is None:
            scanned = self._scan(folder, index)
            self._kept.keep(key, scanned)
        entries: list[kydb.Entry] = []
        cursor = request.cursor
        while True:
            page = scan_page(scanned, replace(request, cursor=cursor, limit=request.limit - len(entries)))
            entries += page.entries if index == "mtime" else self._with_mtimes(folder, page.entries)
            if page.cursor is None:
                self._kept.drop(key)
                return kydb.QueryPage(entries, None)
            if len(entries) == request.limit:
                return kydb.QueryPage.of(entries, True)
            cursor = page.cursor  # some entries' objects went since the scan: fill the page from later ones
