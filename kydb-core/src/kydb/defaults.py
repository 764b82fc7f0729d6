"""Generic implementations of the optional hooks, registered ``trylast``.

Each is built on the required hooks and calls them through the plugin
manager's hook relay, so middleware sees those inner calls too.  A backend
overrides one only where it has a faster native path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .hookspecs import ObjectInfo, hookimpl

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
