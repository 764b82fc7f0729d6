"""Paged folder listings over a directory that has no sorted index.

A directory lists in no particular order, so a sorted page needs the whole
directory read.  :class:`ListingPages` reads it once for the first page,
keeps the sorted names for the pages after it (the cursor names the
snapshot), and reads again when the snapshot is gone (a store keeps its last
eight) or, where the caller gives a ``signature``, when the directory changed
since.  ``present`` lets the caller drop names that went away since the
snapshot, so a page never lists a deleted object.
"""

from __future__ import annotations

import json
import secrets
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

import kydb

__all__ = ["ListingPages"]


@dataclass(frozen=True)
class _Snapshot:
    key: str
    names: list[str]
    signature: Hashable
    settled: bool  # the signature will show any change made after the snapshot was read


class ListingPages:
    """Sorted pages of folder listings, each listing read once and paged from memory.

    Thread-safe.  ``keep`` is how many listings still being paged are kept.
    """

    def __init__(self, keep: int = 8) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[str, _Snapshot] = OrderedDict()

    def page(
        self,
        key: str,
        cursor: str | None,
        page_size: int,
        include_dirs: bool,
        read: Callable[[], Iterable[str]],
        signature: Callable[[], Hashable] | None = None,
        present: Callable[[str], bool] | None = None,
        settled: Callable[[Hashable], bool] | None = None,
    ) -> kydb.ListPage:
        """One page of the listing of ``key`` (a folder): the sorted names after the cursor's.

        ``read()`` returns the folder's names (``name`` or ``name/``, any
        order, duplicates allowed); ``signature()`` something that changes
        when the folder does; ``present(name)`` whether a name still exists,
        asked of the names of a snapshot read for an earlier page unless
        ``settled(signature)`` said, when it was read, that the signature
        would show every later change (a directory's time can stay the same
        for changes within one tick of a coarse clock).
        """
        token: str | None = None
        after: str | None = None
        if cursor is not None:
            try:
                token, after = (str(part) for part in json.loads(cursor))
            except (ValueError, TypeError):
                raise ValueError(f"{key}: not a listing cursor of this store: {cursor!r}") from None
        snapshot = None
        reused = False  # a snapshot read for an earlier page: names in it may have gone since
        if token is not None:
            with self._lock:
                snapshot = self._snapshots.get(token)
            if snapshot is not None and (
                snapshot.key != key or (signature is not None and signature() != snapshot.signature)
            ):
                snapshot = None
            reused = snapshot is not None
        if snapshot is None:
            mark = signature() if signature is not None else None  # before reading: a change while reading shows
            snapshot = _Snapshot(key, sorted(set(read())), mark, settled is not None and settled(mark))
        names = snapshot.names
        position = bisect_right(names, after) if after is not None else 0
        page: list[str] = []
        while position < len(names) and len(page) < page_size:
            name = names[position]
            position += 1
            if (include_dirs or not name.endswith("/")) and (
                not reused or snapshot.settled or present is None or present(name)
            ):
                page.append(name)
        more = any(include_dirs or not names[i].endswith("/") for i in range(position, len(names)))
        with self._lock:
            if token is not None:
                self._snapshots.pop(token, None)
            if not more:
                return kydb.ListPage(page, None)
            token = token or secrets.token_hex(8)
            self._snapshots[token] = snapshot
            while len(self._snapshots) > self._keep:
                self._snapshots.popitem(last=False)
        return kydb.ListPage(page, json.dumps([token, page[-1]]))
