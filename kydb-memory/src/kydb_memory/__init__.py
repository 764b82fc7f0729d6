"""kydb's in-process backend: ``memory://NAME[/base/path]``.

Every ``connect`` in the process that names the same store shares it.  Each
store keeps its blobs in a dict and, per folder, a sorted list of child names
(``name`` for objects, ``name/`` for folders), so listing a folder costs
O(children) however big the store is, and a page starts with one bisect.
Per folder it also keeps a sorted list of ``(value, name)`` for ``mtime``,
``ctime`` and every user index, so ordered queries start with a bisect too.
One lock per store makes each hook call atomic.
"""

from __future__ import annotations

import json
import os
import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import kydb
from kydb.keys import folder_of
from kydb.url import StoreURL

__all__ = ["MemoryStore", "drop_store"]
__version__ = "0.1.0"


def _remove(ordered: list[tuple[int, str]], item: tuple[int, str]) -> None:
    i = bisect_left(ordered, item)
    if i < len(ordered) and ordered[i] == item:
        del ordered[i]


@dataclass
class _Meta:
    mtime: int
    ctime: int
    indexes: dict[str, int] = field(default_factory=dict)

    def values(self) -> dict[str, int]:
        return {"mtime": self.mtime, "ctime": self.ctime, **self.indexes}


class _Tree:
    """The contents of one named store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, bytes] = {}
        self.meta: dict[str, _Meta] = {}
        self.children: dict[str, list[str]] = {"/": []}
        # folder -> index name -> sorted [(value, name)] of the objects directly in the folder
        self.ordered: dict[str, dict[str, list[tuple[int, str]]]] = {}

    def index_out(self, folder: str, name: str, meta: _Meta) -> None:
        lists = self.ordered.get(folder, {})
        for index, value in meta.values().items():
            _remove(lists.get(index, []), (value, name))

    def index_in(self, folder: str, name: str, meta: _Meta) -> None:
        lists = self.ordered.setdefault(folder, {})
        for index, value in meta.values().items():
            insort(lists.setdefault(index, []), (value, name))

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
    def kydb_put(self, items: dict[str, bytes], mtime_ns: int, indexes: Mapping[str, Mapping[str, int | None]]) -> None:
        tree = self.tree
        with tree.lock:
            for path, blob in items.items():
                parent = folder_of(path)
                name = path[len(parent) :]
                tree.ensure_folder(parent)
                old = tree.meta.get(path)
                if old is None:
                    insort(tree.children[parent], name)
                    meta = _Meta(mtime_ns, mtime_ns)
                else:
                    tree.index_out(parent, name, old)
                    meta = _Meta(mtime_ns, old.ctime, dict(old.indexes))
                for index, value in indexes.get(path, {}).items():
                    if value is None:
                        meta.indexes.pop(index, None)
                    else:
                        meta.indexes[index] = value
                tree.index_in(parent, name, meta)
                tree.meta[path] = meta
                tree.objects[path] = bytes(blob)

    @kydb.hookimpl
    def kydb_delete(self, paths: Sequence[str]) -> None:
        tree = self.tree
        with tree.lock:
            for path in paths:
                if tree.objects.pop(path, None) is not None:
                    parent = folder_of(path)
                    tree.unlink(parent, path[len(parent) :])
                    tree.index_out(parent, path[len(parent) :], tree.meta.pop(path))

    @kydb.hookimpl
    def kydb_exists(self, path: str) -> bool:
        return path in self.tree.objects

    @kydb.hookimpl
    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, kydb.ObjectInfo]:
        tree = self.tree
        with tree.lock:
            return {
                p: kydb.ObjectInfo(
                    len(tree.objects[p]), tree.meta[p].mtime, tree.meta[p].ctime, dict(tree.meta[p].indexes)
                )
                for p in paths
                if p in tree.objects
            }

    @kydb.hookimpl
    def kydb_query(
        self,
        folder: str,
        index: str,
        ascending: bool,
        since: int | None,
        until: int | None,
        limit: int,
        cursor: str | None,
    ) -> kydb.QueryPage:
        tree = self.tree
        with tree.lock:
            ordered = tree.ordered.get(folder, {}).get(index, [])
            low = bisect_left(ordered, (since,)) if since is not None else 0
            high = bisect_left(ordered, (until + 1,)) if until is not None else len(ordered)
            if cursor is not None:
                after = tuple(json.loads(cursor))
                if ascending:
                    low = max(low, bisect_right(ordered, after))
                else:
                    high = min(high, bisect_left(ordered, after))
            chosen = ordered[low:high] if ascending else ordered[low:high][::-1]
            page = chosen[:limit]
            entries = []
            for value, name in page:
                meta = tree.meta[folder + name]
                entries.append(kydb.Entry(name, meta.mtime, meta.ctime, value))
        more = len(chosen) > limit
        return kydb.QueryPage(entries, json.dumps([page[-1][0], page[-1][1]]) if more else None)

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
            tree.ordered.pop(folder, None)
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
                tree.ordered.pop(f, None)
                for name in tree.children.pop(f, ()):
                    if tree.objects.pop(f + name, None) is not None:
                        del tree.meta[f + name]
                        deleted += 1
            if folder == "/":
                tree.children["/"] = []
            else:
                parent = folder_of(folder)
                tree.unlink(parent, folder[len(parent) :])
        return deleted
