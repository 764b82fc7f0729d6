"""Generic implementations of the optional hooks, registered ``trylast``.

Each is built on the required hooks and calls them through the plugin
manager's hook relay, so middleware sees those inner calls too.  A backend
overrides one only where it has a faster native path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .errors import IndexNotSupported
from .hookspecs import Entry, ObjectInfo, QueryPage, hookimpl

__all__ = ["DefaultHooks"]

DELETE_BATCH = 1000
_WALK_PAGE = 1000


class DefaultHooks:
    """The core's fallback plugin; one instance per store's plugin manager."""

    def __init__(self, hook: Any) -> None:
        self._hook = hook

    @hookimpl(trylast=True)
    def kydb_exists(self, path: str) -> bool:
        return path in self._hook.kydb_get(paths=[path])

    @hookimpl(trylast=True)
    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, ObjectInfo]:
        return {path: ObjectInfo(len(blob)) for path, blob in self._hook.kydb_get(paths=paths).items()}

    @hookimpl(trylast=True)
    def kydb_query(
        self,
        folder: str,
        index: str,
        ascending: bool,
        since: int | None,
        until: int | None,
        limit: int,
        cursor: str | None,
        allow_scan: bool,
    ) -> QueryPage:
        if not allow_scan:
            raise IndexNotSupported(
                f"{folder}: this store keeps no ordered index of {index!r}; pass allow_scan=True to "
                "scan the folder instead (it reads every object's metadata on each page)"
            )
        entries: list[Entry] = []
        if since is not None and until is not None and since > until:
            return QueryPage(entries, None)  # nothing can match: no scan
        for names in self._object_pages(folder):
            for name, info in sorted(self._hook.kydb_stat(paths=[folder + n for n in names]).items()):
                if info.mtime_ns is None or (index == "ctime" and info.ctime_ns is None):
                    what = "creation" if index == "ctime" else "modification"
                    raise IndexNotSupported(f"{folder}: this store keeps no {what} times to order by")
                value = {"mtime": info.mtime_ns, "ctime": info.ctime_ns}.get(index, info.indexes.get(index))
                if value is None or (since is not None and value < since) or (until is not None and value > until):
                    continue
                entries.append(Entry(name[len(folder) :], info.mtime_ns, info.ctime_ns, value))
        entries.sort(key=lambda e: (e.index_value, e.key), reverse=not ascending)
        if cursor is not None:
            after = tuple(json.loads(cursor))
            entries = [
                e for e in entries if ((e.index_value, e.key) > after) == ascending and (e.index_value, e.key) != after
            ]
        page = entries[:limit]
        more = len(entries) > limit
        return QueryPage(page, json.dumps([page[-1].index_value, page[-1].key]) if more else None)

    def _object_pages(self, folder: str) -> Iterator[list[str]]:
        cursor: str | None = None
        while True:
            page = self._hook.kydb_list(folder=folder, include_dirs=False, page_size=_WALK_PAGE, cursor=cursor)
            yield page.names
            if page.cursor is None:
                return
            cursor = page.cursor

    @hookimpl(trylast=True)
    def kydb_walk(self, folder: str) -> Iterator[str]:
        pending = [folder]
        while pending:
            current = pending.pop()
            cursor: str | None = None
            while True:
                page = self._hook.kydb_list(folder=current, include_dirs=True, page_size=_WALK_PAGE, cursor=cursor)
                for name in page.names:
                    path = current + name
                    yield path
                    if name.endswith("/"):
                        pending.append(path)
                if page.cursor is None:
                    break
                cursor = page.cursor

    @hookimpl(trylast=True)
    def kydb_delete_tree(self, folder: str) -> int:
        objects: list[str] = []
        folders: list[str] = []
        for path in self._hook.kydb_walk(folder=folder):
            (folders if path.endswith("/") else objects).append(path)
        for start in range(0, len(objects), DELETE_BATCH):
            self._hook.kydb_delete(paths=objects[start : start + DELETE_BATCH])
        if folder != "/":
            folders.append(folder)
        for path in sorted(folders, key=lambda p: p.count("/"), reverse=True):
            self._hook.kydb_rmdir(folder=path)
        return len(objects)
