"""kydb's in-process backend: ``memory://NAME[/base/path]``.

Every ``connect`` in the process that names the same store shares it.  Each
store keeps its blobs in a dict and, per folder, a sorted list of child names
(``name`` for objects, ``name/`` for folders), so listing a folder costs
O(children) however big the store is, and a page starts with one bisect.
One lock per store makes each hook call atomic.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping, Sequence

import kydb
from kydb.keys import folder_of
from kydb.url import StoreURL

__all__ = ["MemoryStore", "drop_store"]
__version__ = "0.1.0"


class _Tree:
    """The contents of one named store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, bytes] = {}
        self.children: dict[str, list[str]] = {"/": []}

    def ensure_folder(self, folder: str) -> None:
        if folder in self.children:
            return
        parent = folder_of(folder)
        self.ensure_folder(parent)
        self.children[folder] = []
        insort(self.children[parent], folder[len(parent) :])

    def unlink(self, parent: str, name: str) -> None:
        names = self.children.get(parent)
        if names is not None:
            i = bisect_left(names, name)
            if i < len(names) and names[i] == name:
                del names[i]

    def subtree(self, folder: str) -> list[str]:
        """``folder`` and every folder below it."""
        found = [folder]
        for f in found:
            found.extend(f + n for n in self.children.get(f, ()) if n.endswith("/"))
        return found


_trees: dict[str, _Tree] = {}
_trees_lock = threading.Lock()


def _reset_locks_after_fork() -> None:
    global _trees_lock
    _trees_lock = threading.Lock()
    for tree in _trees.values():
        tree.lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_locks_after_fork)


def drop_store(name: str) -> None:
    """Forget the named store and its contents (mainly for tests)."""
    with _trees_lock:
        _trees.pop(name, None)


class MemoryStore:
    """The hook implementations for one named in-process store."""

    url_path_is_base = True

    def __init__(self, url: StoreURL) -> None:
        if not url.netloc:
            raise ValueError(f"invalid kydb URL {url.masked!r}: memory URLs need a store name, e.g. memory://scratch")
        if url.options:
            raise ValueError(
                f"invalid kydb URL {url.masked!r}: memory:// takes no query options "
                f"other than base (got {sorted(url.options)})"
            )
        self.name = url.netloc
        with _trees_lock:
            self.tree = _trees.setdefault(self.name, _Tree())

    @kydb.hookimpl
    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        objects = self.tree.objects
        with self.tree.lock:
            return {p: objects[p] for p in paths if p in objects}

    @kydb.hookimpl
    def kydb_put(self, items: dict[str, bytes]) -> None:
        tree = self.tree
        with tree.lock:
            for path, blob in items.items():
                parent = folder_of(path)
                tree.ensure_folder(parent)
                if path not in tree.objects:
                    insort(tree.children[parent], path[len(parent) :])
                tree.objects[path] = bytes(blob)

    @kydb.hookimpl
    def kydb_delete(self, paths: Sequence[str]) -> None:
        tree = self.tree
        with tree.lock:
            for path in paths:
                if tree.objects.pop(path, None) is not None:
                    parent = folder_of(path)
                    tree.unlink(parent, path[len(parent) :])

    @kydb.hookimpl
    def kydb_exists(self, path: str) -> bool:
        return path in self.tree.objects

    @kydb.hookimpl
    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        with self.tree.lock:
            names = self.tree.children.get(folder, [])
            i = bisect_right(names, cursor) if cursor is not None else 0
            page: list[str] = []
            while i < len(names) and len(page) < page_size:
                if include_dirs or not names[i].endswith("/"):
                    page.append(names[i])
                i += 1
            more = i < len(names)
        return kydb.ListPage(page, page[-1] if more and page else None)

    @kydb.hookimpl
    def kydb_mkdir(self, folder: str) -> None:
        with self.tree.lock:
            self.tree.ensure_folder(folder)

    @kydb.hookimpl
    def kydb_rmdir(self, folder: str) -> None:
        tree = self.tree
        with tree.lock:
            if tree.children.pop(folder, None) is not None:
                parent = folder_of(folder)
                tree.unlink(parent, folder[len(parent) :])

    @kydb.hookimpl
    def kydb_is_dir(self, folder: str) -> bool:
        return folder in self.tree.children

    @kydb.hookimpl
    def kydb_delete_tree(self, folder: str) -> int:
        tree = self.tree
        deleted = 0
        with tree.lock:
            for f in tree.subtree(folder):
                for name in tree.children.pop(f, ()):
                    if tree.objects.pop(f + name, None) is not None:
                        deleted += 1
            if folder == "/":
                tree.children["/"] = []
            else:
                parent = folder_of(folder)
                tree.unlink(parent, folder[len(parent) :])
        return deleted
