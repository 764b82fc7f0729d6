"""kydb's in-process backend: ``memory://NAME[/base/path]``.

Every ``connect`` in the process that names the same store shares it.  Each
store keeps its blobs in a dict and, per folder, a sorted list of child names
(``name`` for objects, ``name/`` for folders), so listing a folder costs
O(children) however big the store is, and a page starts with one bisect.
Per folder it also keeps a sorted list of ``(value, name)`` for ``mtime``,
``ctime`` and every user index, so ordered queries start with a bisect too.
Those lists are :class:`~kydb_memory.sorted_list.SortedList`\\ s, so a put
costs the same in a folder of 50,000 objects as in one of 1,000.  An
overwrite only notes that its object moved in the ``mtime`` order; the next
query, delete or index change settles the noted moves first, so an
overwrite touches no sorted list.

One lock per store makes each hook call atomic — conditional writes
included: an object's version is a per-store counter, checked and bumped
under the lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence

import kydb
from kydb.keys import folder_of, split_path
from kydb.url import StoreURL

from .sorted_list import SortedList

__all__ = ["MemoryStore", "drop_store"]
__version__ = "0.1.0"


class _Meta:
    """An object's times, version and user index values."""

    __slots__ = ("ctime", "indexes", "mtime", "version")

    def __init__(self, mtime: int, ctime: int, version: int, indexes: dict[str, int] | None = None) -> None:
        self.mtime = mtime
        self.ctime = ctime
        self.version = version
        self.indexes: dict[str, int] = {} if indexes is None else indexes

    def values(self) -> dict[str, int]:
        return {"mtime": self.mtime, "ctime": self.ctime, **self.indexes}

    def changed(self, old: _Meta) -> dict[str, tuple[int | None, int | None]]:
        """``{index: (old value, new value)}`` for the orders this write moves the object in."""
        moves: dict[str, tuple[int | None, int | None]] = {}
        if self.mtime != old.mtime:
            moves["mtime"] = (old.mtime, self.mtime)
        if self.indexes != old.indexes:
            for name in self.indexes.keys() | old.indexes.keys():
                before, after = old.indexes.get(name), self.indexes.get(name)
                if before != after:
                    moves[name] = (before, after)
        return moves


def _apply(values: dict[str, int], changes: Mapping[str, int | None] | None) -> None:
    """Set (or, for ``None``, clear) user index values."""
    for index, value in (changes or {}).items():
        if value is None:
            values.pop(index, None)
        else:
            values[index] = value


class _Tree:
    """The contents of one named store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, bytes] = {}
        self.meta: dict[str, _Meta] = {}
        self.children: dict[str, SortedList[str]] = {"/": SortedList()}
        # folder -> index name -> sorted (value, name) of the objects directly in the folder
        self.ordered: dict[str, dict[str, SortedList[tuple[int, str]]]] = {}
        # Objects an overwrite has moved in time whose place in their folder's mtime order still has
        # the old mtime: a put only notes them, and settle() moves them before anything reads an order.
        self.moved: dict[str, int] = {}  # path -> the mtime its order entry has
        self.clock = 0  # the last version handed out

    def settle(self) -> None:
        """Bring every folder's mtime order up to date with the overwrites noted in :attr:`moved`."""
        for path, listed in self.moved.items():
            meta = self.meta[path]
            if meta.mtime != listed:
                folder, name = split_path(path)
                ordered = self.ordered[folder]["mtime"]
                ordered.discard((listed, name))
                ordered.add((meta.mtime, name))
        self.moved.clear()

    def index_move(self, folder: str, name: str, moves: Mapping[str, tuple[int | None, int | None]]) -> None:
        lists = self.ordered.setdefault(folder, {})
        for index, (before, after) in moves.items():
            ordered = lists.get(index)
            if ordered is None:
                ordered = lists[index] = SortedList()
            if before is not None:
                ordered.discard((before, name))
            if after is not None:
                ordered.add((after, name))

    def index_out(self, folder: str, name: str, meta: _Meta) -> None:
        lists = self.ordered.get(folder, {})
        for index, value in meta.values().items():
            ordered = lists.get(index)
            if ordered is not None:
                ordered.discard((value, name))

    def index_in(self, folder: str, name: str, meta: _Meta) -> None:
        lists = self.ordered.setdefault(folder, {})
        for index, value in meta.values().items():
            ordered = lists.get(index)
            if ordered is None:
                ordered = lists[index] = SortedList()
            ordered.add((value, name))

    def ensure_folder(self, folder: str) -> None:
        if folder in self.children:
            return
        parent = folder_of(folder)
        self.ensure_folder(parent)
        self.children[folder] = SortedList()
        self.children[parent].add(folder[len(parent) :])

    def unlink(self, parent: str, name: str) -> None:
        names = self.children.get(parent)
        if names is not None:
            names.discard(name)

    def subtree(self, folder: str) -> list[str]:
        """``folder`` and every folder below it."""
        found = [folder]
        for f in found:
            found.extend(f + n for n in self.children.get(f, ()) if n.endswith("/"))
        return found

    def check(self, expect: Mapping[str, str | None]) -> None:
        """Raise :class:`kydb.Conflict` unless every path has the version ``expect`` says (None: absent)."""
        for path, version in expect.items():
            meta = self.meta.get(path)
            actual = None if meta is None else str(meta.version)
            if actual != version:
                now = "absent" if actual is None else f"at version {actual}"
                wanted = "absent" if version is None else f"at version {version}"
                raise kydb.Conflict(f"{path}: expected the object {wanted}, but it is {now}; nothing was written")


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


class MemoryStore(kydb.Store):
    """The hook implementations for one named in-process store."""

    capabilities = kydb.Capabilities(
        keeps_times=True,
        keeps_ctime=True,
        native_queries=True,
        shared_between_processes=False,
        conditional_writes=True,
    )

    def __init__(self, url: StoreURL) -> None:
        super().__init__(url)
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

    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        # No lock: each lookup is atomic, and a blob is replaced whole, never changed in place.
        objects = self.tree.objects
        if len(paths) == 1:
            blob = objects.get(paths[0])
            return {} if blob is None else {paths[0]: blob}
        return {p: objects[p] for p in paths if p in objects}

    def kydb_get_versioned(self, paths: Sequence[str]) -> Mapping[str, kydb.VersionedBlob]:
        tree = self.tree
        with tree.lock:
            return {
                p: kydb.VersionedBlob(tree.objects[p], str(tree.meta[p].version)) for p in paths if p in tree.objects
            }

    def kydb_put(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None],
    ) -> None:
        tree = self.tree
        with tree.lock:
            if expect:
                tree.check(expect)
            metas, moved = tree.meta, tree.moved
            for path, blob in items.items():
                old = metas.get(path)
                tree.clock += 1
                changes = indexes.get(path) if indexes else None
                if old is not None and not changes:
                    # The common overwrite: only the object's place in the mtime order moves, and that is
                    # noted for settle(), so a put costs the same however big its folder is.
                    moved.setdefault(path, old.mtime)
                    old.mtime, old.version = mtime_ns, tree.clock
                else:
                    if moved:
                        tree.settle()
                    parent, name = split_path(path)
                    if old is None:
                        if parent not in tree.children:
                            tree.ensure_folder(parent)
                        meta = _Meta(mtime_ns, mtime_ns, tree.clock)
                        _apply(meta.indexes, changes)
                        tree.children[parent].add(name)
                        tree.index_in(parent, name, meta)
                    else:
                        meta = _Meta(mtime_ns, old.ctime, tree.clock, dict(old.indexes))
                        _apply(meta.indexes, changes)
                        tree.index_move(parent, name, meta.changed(old))
                    metas[path] = meta
                tree.objects[path] = blob if type(blob) is bytes else bytes(blob)

    def kydb_delete(self, paths: Sequence[str], expect: Mapping[str, str]) -> None:
        tree = self.tree
        with tree.lock:
            tree.check(expect)
            tree.settle()
            for path in paths:
                if tree.objects.pop(path, None) is not None:
                    parent, name = split_path(path)
                    tree.unlink(parent, name)
                    tree.index_out(parent, name, tree.meta.pop(path))

    def kydb_exists(self, path: str) -> bool:
        return path in self.tree.objects

    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, kydb.ObjectInfo]:
        tree = self.tree
        with tree.lock:
            found = {}
            for p in paths:
                if p in tree.objects:
                    meta = tree.meta[p]
                    found[p] = kydb.ObjectInfo(
                        len(tree.objects[p]), meta.mtime, meta.ctime, dict(meta.indexes), str(meta.version)
                    )
            return found

    def kydb_query(self, request: kydb.QueryRequest) -> kydb.QueryPage:
        tree = self.tree
        folder, since, until, after = request.folder, request.since, request.until, request.after()
        entries: list[kydb.Entry] = []
        more = False
        with tree.lock:
            tree.settle()
            ordered = tree.ordered.get(folder, {}).get(request.index)
            if ordered is None or request.empty_range():
                return kydb.QueryPage([], None)
            if request.ascending:
                start = (since,) if since is not None else None
                if after is not None and (start is None or after >= start):
                    chosen = ordered.ascending(after, inclusive=False)
                else:
                    chosen = ordered.ascending(start)
            else:
                end = (until + 1,) if until is not None else None
                if after is not None and (end is None or after < end):
                    chosen = ordered.descending(after)
                else:
                    chosen = ordered.descending(end)
            for value, name in chosen:
                if (until is not None and value > until) or (since is not None and value < since):
                    break
                if len(entries) == request.limit:
                    more = True
                    break
                meta = tree.meta[folder + name]
                entries.append(kydb.Entry(name, meta.mtime, meta.ctime, value))
        return kydb.QueryPage.of(entries, more)

    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        with self.tree.lock:
            names = self.tree.children.get(folder)
            if names is None:
                return kydb.ListPage([], None)
            page: list[str] = []
            more = False
            for name in names.ascending(cursor, inclusive=False) if cursor is not None else names.ascending():
                if len(page) == page_size:
                    more = True
                    break
                if include_dirs or not name.endswith("/"):
                    page.append(name)
        return kydb.ListPage(page, page[-1] if more and page else None)

    def kydb_mkdir(self, folder: str) -> None:
        with self.tree.lock:
            self.tree.ensure_folder(folder)

    def kydb_rmdir(self, folder: str) -> None:
        tree = self.tree
        with tree.lock:
            tree.settle()
            tree.ordered.pop(folder, None)
            if tree.children.pop(folder, None) is not None:
                parent = folder_of(folder)
                tree.unlink(parent, folder[len(parent) :])

    def kydb_is_dir(self, folder: str) -> bool:
        return folder in self.tree.children

    def kydb_delete_tree(self, folder: str) -> int:
        tree = self.tree
        deleted = 0
        with tree.lock:
            tree.settle()
            for f in tree.subtree(folder):
                tree.ordered.pop(f, None)
                for name in tree.children.pop(f, ()):
                    if tree.objects.pop(f + name, None) is not None:
                        del tree.meta[f + name]
                        deleted += 1
            if folder == "/":
                tree.children["/"] = SortedList()
            else:
                parent = folder_of(folder)
                tree.unlink(parent, folder[len(parent) :])
        return deleted
