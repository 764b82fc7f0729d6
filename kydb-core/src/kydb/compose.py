"""DBs composed of other DBs: :class:`UnionDB` (``a;b;c``) and :class:`CacheDB` (``cache|persist``).

They are fronts, not backends: each layer is itself a DB (usually shared with
anyone who connects to that layer's URL) and keeps its own base path.  A
composite keeps its own read cache — so a DbObj read through it has
``obj.db`` set to the composite — and drops the layers' cache entries for
whatever it writes behind their backs.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace

from .envelope import Codec
from .errors import Conflict
from .front import BaseDB
from .hookspecs import Entry, ObjectInfo, VersionedBlob
from .query import FolderQuery
from .store import Capabilities

__all__ = ["CacheDB", "UnionDB"]


def _dedupe(sorted_names: Iterator[str]) -> Iterator[str]:
    last = None
    for name in sorted_names:
        if name != last:
            yield name
            last = name


def _tagged(layer_number: int, entries: Iterator[Entry]) -> Iterator[tuple[int, Entry]]:
    for entry in entries:
        yield layer_number, entry


class _Composite(BaseDB):
    def __init__(self, url: str, codec: Codec, layers: Sequence[BaseDB]) -> None:
        super().__init__(url, codec)
        self._layers = tuple(layers)
        self._base_bytes = max(layer._base_bytes for layer in self._layers)

    def _forget_in_layers(self, keys: Sequence[str]) -> None:
        for layer in self._layers:
            layer._forget(keys)

    def _forget_folder(self, folder: str) -> None:
        super()._forget_folder(folder)
        for layer in self._layers:
            layer._forget_folder(folder)

    def _release_connections(self) -> None:
        super()._release_connections()
        for layer in self._layers:
            layer.close()  # the holds this composite took when it connected its layers


class UnionDB(_Composite):
    """Layers searched in order: reads return the first hit; writes go to the front layer.

    ``ls`` merges every layer (sorted, no duplicates).  ``delete``, ``mkdir``,
    ``rmdir``, ``rm_tree``, ``new`` and ``upload_objdb_config`` act on the
    front layer only, so an object deleted from the front may still be read
    from a later layer.
    """

    def __init__(self, url: str, codec: Codec, layers: Sequence[BaseDB]) -> None:
        super().__init__(url, codec, layers)
        front, every = self._layers[0].capabilities, [layer.capabilities for layer in self._layers]
        # Reads and queries merge every layer; writes (conditional ones included) go to the front.
        self.capabilities = Capabilities(
            keeps_times=any(c.keeps_times for c in every),
            keeps_ctime=all(c.keeps_ctime for c in every),
            native_queries=all(c.native_queries for c in every),
            shared_between_processes=all(c.shared_between_processes for c in every),
            conditional_writes=front.conditional_writes,
            writable=front.writable,
        )

    @property
    def dbs(self) -> tuple[BaseDB, ...]:
        """The layers, front first."""
        return self._layers

    def _fetch_blobs(self, keys: Sequence[str], fresh: bool = False) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        wanted = list(keys)
        for layer in self._layers:
            if not wanted:
                break
            found.update(layer._fetch_blobs(wanted, fresh))
            wanted = [k for k in wanted if k not in found]
        return found

    def _write_blobs(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None] | None = None,
    ) -> None:
        self._layers[0]._write_blobs(items, mtime_ns, indexes, expect)

    def _fetch_versioned(self, keys: Sequence[str]) -> dict[str, VersionedBlob]:
        return self._layers[0]._fetch_versioned(keys)  # conditional writes act on the front layer

    def _query(self, query: FolderQuery) -> Iterator[Entry]:
        """Every layer's results merged in order; on a name in several layers, the front one wins."""
        streams = [_tagged(i, layer._query(replace(query, db=layer))) for i, layer in enumerate(self._layers)]
        merged = heapq.merge(*streams, key=lambda pair: (pair[1].index_value, pair[1].key), reverse=not query.ascending)
        seen: set[str] = set()
        for layer_number, entry in merged:
            if query.limit_n is not None and len(seen) >= query.limit_n:
                return
            if entry.key in seen:
                continue
            key = query.folder + entry.key
            if any(layer._exists(key) for layer in self._layers[:layer_number]):
                continue  # a layer in front holds this name; its own entry counts
            seen.add(entry.key)
            yield entry

    def _delete_keys(self, keys: Sequence[str], expect: Mapping[str, str] | None = None) -> None:
        self._layers[0]._delete_keys(keys, expect)

    def _exists(self, key: str) -> bool:
        return any(layer._exists(key) for layer in self._layers)

    def _stat_keys(self, keys: Sequence[str]) -> dict[str, ObjectInfo]:
        found: dict[str, ObjectInfo] = {}
        for layer in self._layers:
            wanted = [k for k in keys if k not in found]
            if not wanted:
                break
            found.update(layer._stat_keys(wanted))
        return found

    def _list(self, folder: str, include_dirs: bool, page_size: int) -> Iterator[str]:
        return _dedupe(heapq.merge(*(layer._list(folder, include_dirs, page_size) for layer in self._layers)))

    def _is_dir(self, folder: str) -> bool:
        return any(layer._is_dir(folder) for layer in self._layers)

    def _mkdir(self, folder: str) -> None:
        self._layers[0]._mkdir(folder)

    def _rmdir(self, folder: str) -> None:
        self._layers[0]._rmdir(folder)

    def _delete_tree(self, folder: str) -> int:
        return self._layers[0]._delete_tree(folder)

    # Removals act on the front layer, so they are checked against it alone.

    def delete(self, key: str, *, system_obj: bool = False, if_version: str | None = None) -> None:
        """Delete ``key`` from the front layer; ``KeyError`` if the front layer lacks it.

        ``if_version`` is checked against the front layer's object (see :meth:`BaseDB.delete`).
        """
        k = self._key(key, system_obj)
        if if_version is not None:
            self._require_versions(f"delete({k!r}, if_version=...)")
        try:
            self._layers[0].delete(k, system_obj=system_obj, if_version=if_version)
        except Conflict:
            raise  # nothing was deleted: the caches stay as they were
        except BaseException:
            self._forget([k])
            raise
        self._forget([k])

    def rmdir(self, folder: str, *, system_obj: bool = False) -> None:
        """Remove an empty folder from the front layer."""
        f = self._folder(folder, system=system_obj)
        try:
            self._layers[0].rmdir(f, system_obj=system_obj)
        finally:
            self._forget_folder(f)

    def rm_tree(self, folder: str, *, system_obj: bool = False) -> int:
        """Delete a folder and its contents from the front layer; return how many objects went."""
        f = self._folder(folder, system=system_obj)
        try:
            return self._layers[0].rm_tree(f, system_obj=system_obj)
        finally:
            self._forget_folder(f)


class CacheDB(_Composite):
    """A read-through cache store in front of a persistent store.

    Reads try the cache store, and on a miss read the persistent store and
    fill the cache store.  Writes go to the persistent store first, then the
    cache store, so a failed persistent write leaves the cache store
    unchanged.  Deletes and folder removals go to both (cache store first, so
    a failure never leaves it holding what the persistent store lost);
    ``ls``, ``is_dir`` and ``mkdir`` use the persistent store.
    """

    def __init__(self, url: str, codec: Codec, cache_db: BaseDB, persist_db: BaseDB) -> None:
        super().__init__(url, codec, (cache_db, persist_db))
        # The persistent store is the source of truth for metadata, queries and conditional writes.
        self.capabilities = Capabilities(
            keeps_times=persist_db.capabilities.keeps_times,
            keeps_ctime=persist_db.capabilities.keeps_ctime,
            native_queries=persist_db.capabilities.native_queries,
            shared_between_processes=persist_db.capabilities.shared_between_processes,
            conditional_writes=persist_db.capabilities.conditional_writes,
            writable=persist_db.capabilities.writable and cache_db.capabilities.writable,
        )

    @property
    def cache_db(self) -> BaseDB:
        """The cache store."""
        return self._layers[0]

    @property
    def persist_db(self) -> BaseDB:
        """The persistent store."""
        return self._layers[1]

    def _fetch_blobs(self, keys: Sequence[str], fresh: bool = False) -> dict[str, bytes]:
        """The cache store's blobs, the persistent store's for the rest (filling the cache store).

        ``fresh`` (a reload) reads the persistent store, the source of truth,
        for every key, refreshes the cache store with what it found and drops
        from it what the persistent store no longer has.
        """
        cache, persist = self._layers
        found = {} if fresh else cache._fetch_blobs(keys)
        missing = [k for k in keys if k not in found]
        if missing:
            loaded = persist._fetch_blobs(missing, fresh)
            if loaded:
                cache._write_blobs(loaded, time.time_ns(), {})
                cache._forget(list(loaded))
                found.update(loaded)
            gone = [k for k in missing if k not in loaded] if fresh else []
            if gone:
                cache._delete_keys(gone)
                cache._forget(gone)
        return found

    def _write_blobs(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None] | None = None,
    ) -> None:
        cache, persist = self._layers
        persist._write_blobs(items, mtime_ns, indexes, expect)  # a conditional write is decided here
        cache._write_blobs(items, mtime_ns, indexes)

    def _fetch_versioned(self, keys: Sequence[str]) -> dict[str, VersionedBlob]:
        return self.persist_db._fetch_versioned(keys)  # versions are the persistent store's

    def _query(self, query: FolderQuery) -> Iterator[Entry]:
        return self.persist_db._query(replace(query, db=self.persist_db))

    def _delete_keys(self, keys: Sequence[str], expect: Mapping[str, str] | None = None) -> None:
        cache, persist = self._layers
        if expect:  # decided by the persistent store: the cache store follows only if it agreed
            persist._delete_keys(keys, expect)
            cache._delete_keys(keys)
            return
        for layer in self._layers:  # cache store first: a failure never leaves it holding what persist lost
            layer._delete_keys(keys)

    def _exists(self, key: str) -> bool:
        return any(layer._exists(key) for layer in self._layers)

    def _stat_keys(self, keys: Sequence[str]) -> dict[str, ObjectInfo]:
        return self.persist_db._stat_keys(keys)  # the persistent store's size and times are the real ones

    def _list(self, folder: str, include_dirs: bool, page_size: int) -> Iterator[str]:
        return self.persist_db._list(folder, include_dirs, page_size)

    def _is_dir(self, folder: str) -> bool:
        return self.persist_db._is_dir(folder)

    def _mkdir(self, folder: str) -> None:
        self.persist_db._mkdir(folder)

    def _rmdir(self, folder: str) -> None:
        cache, persist = self._layers
        if cache._is_dir(folder):
            cache._delete_tree(folder)  # whatever the cache store holds there is stale
        persist._rmdir(folder)

    def _delete_tree(self, folder: str) -> int:
        cache, persist = self._layers
        if folder == "/" or cache._is_dir(folder):
            cache._delete_tree(folder)
        return persist._delete_tree(folder)
