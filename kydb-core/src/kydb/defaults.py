"""Generic implementations of the optional hooks, registered ``trylast``.

Each is built on the required hooks and calls them through the plugin
manager's hook relay, so middleware sees those inner calls too.  A backend
overrides one only where it has a faster native path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .errors import IndexNotSupported
from .hookspecs import Entry, ObjectInfo, QueryPage, QueryRequest, follow, hookimpl
from .query import scan_page

__all__ = ["DefaultHooks"]

DELETE_BATCH = 1000
_WALK_PAGE = 1000


class DefaultHooks:
    """The core's fallback plugin; one instance per store's plugin manager."""

    def __init__(self, hook: Any) -> None:
        self._hook = hook

    def _list(self, folder: str, include_dirs: bool) -> Iterator[str]:
        def fetch(cursor: str | None) -> tuple[list[str], str | None]:
            page = self._hook.kydb_list(folder=folder, include_dirs=include_dirs, page_size=_WALK_PAGE, cursor=cursor)
            return page.names, page.cursor

        return follow(fetch)

    @hookimpl(trylast=True)
    def kydb_exists(self, path: str) -> bool:
        return path in self._hook.kydb_get(paths=[path])

    @hookimpl(trylast=True)
    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, ObjectInfo]:
        return {path: ObjectInfo(len(blob)) for path, blob in self._hook.kydb_get(paths=paths).items()}

    @hookimpl(trylast=True)
    def kydb_query(self, request: QueryRequest) -> QueryPage:
        folder, index = request.folder, request.index
        if not request.allow_scan:
            raise IndexNotSupported(
                f"{folder}: this store keeps no ordered index of {index!r}; pass allow_scan=True to "
                "scan the folder instead (it reads every object's metadata on each page)"
            )
        if request.empty_range():
            return QueryPage([], None)  # nothing can match: no scan
        return scan_page(self._scan(folder, index), request)

    def _scan(self, folder: str, index: str) -> Iterator[Entry]:
        batch: list[str] = []
        for name in self._list(folder, include_dirs=False):
            batch.append(folder + name)
            if len(batch) == _WALK_PAGE:
                yield from self._entries(folder, index, batch)
                batch = []
        yield from self._entries(folder, index, batch)

    def _entries(self, folder: str, index: str, paths: list[str]) -> Iterator[Entry]:
        if not paths:
            return
        for path, info in self._hook.kydb_stat(paths=paths).items():
            if info.mtime_ns is None or (index == "ctime" and info.ctime_ns is None):
                what = "creation" if index == "ctime" else "modification"
                raise IndexNotSupported(f"{folder}: this store keeps no {what} times to order by")
            value = {"mtime": info.mtime_ns, "ctime": info.ctime_ns}.get(index, info.indexes.get(index))
            if value is not None:
                yield Entry(path[len(folder) :], info.mtime_ns, info.ctime_ns, value)

    @hookimpl(trylast=True)
    def kydb_walk(self, folder: str) -> Iterator[str]:
        pending = [folder]
        while pending:
            current = pending.pop()
            for name in self._list(current, include_dirs=True):
                path = current + name
                yield path
                if name.endswith("/"):
                    pending.append(path)

    @hookimpl(trylast=True)
    def kydb_delete_tree(self, folder: str) -> int:
        objects: list[str] = []
        folders: list[str] = []
        for path in self._hook.kydb_walk(folder=folder):
            (folders if path.endswith("/") else objects).append(path)
        for start in range(0, len(objects), DELETE_BATCH):
            self._hook.kydb_delete(paths=objects[start : start + DELETE_BATCH], expect={})
        if folder != "/":
            folders.append(folder)
        for path in sorted(folders, key=lambda p: p.count("/"), reverse=True):
            self._hook.kydb_rmdir(folder=path)
        return len(objects)
