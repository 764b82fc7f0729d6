"""The dict-like API every kydb DB offers, whatever is behind it.

:class:`BaseDB` owns what is the same for one store, a union and a cache DB:
key validation, encoding, the read cache, DbObj, and the public methods —
values (``db[key]``, ``set``, ``get_many``...) and, for tools that move data
without unpickling it, stored blobs (:meth:`BaseDB.get_blobs`,
:meth:`BaseDB.put_blobs`, :meth:`BaseDB.stat_many`).  Subclasses supply a
handful of primitives (``_fetch_blobs``, ``_write_blobs``, ``_list``, ...)
that work on canonical keys (``/a/b``) and folders (``/a/b/``) *without* any
base path and never touch the read cache.
"""

from __future__ import annotations

import abc
import copy
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from . import envelope, opened
from .cache import ReadCache
from .dbobj import OBJDB_CONFIG_KEY, DbObj, check_objdb_config, make_dbobj, remember_stored, resolve_class
from .envelope import DbObjRecord
from .errors import (
    ConditionalWritesNotSupported,
    Conflict,
    DbObjException,
    FolderNotEmpty,
    InvalidKey,
    NotFound,
    ReadOnlyStore,
)
from .hookspecs import Entry, ObjectInfo, VersionedBlob
from .keys import MAX_PATH_BYTES, canonical_key, normalize_folder, normalize_key
from .query import FolderQuery, check_index_values
from .store import Capabilities
from .url import mask_url

__all__ = ["BaseDB", "Versioned"]

DEFAULT_PAGE_SIZE = 200

_DB = TypeVar("_DB", bound="BaseDB")
_ABSENT: Any = object()
_NO_INDEXES: Mapping[str, Mapping[str, int | None]] = MappingProxyType({})
#: update() waits a random time up to min(CAP, BASE * 2**attempt) seconds after each conflict.
_BACKOFF_BASE, _BACKOFF_CAP = 0.001, 0.1


class Versioned(NamedTuple):
    """A value and the version of the object it was read from (:meth:`BaseDB.read_versioned`)."""

    value: Any
    version: str


class BaseDB(abc.ABC):
    """What :func:`kydb.connect` returns: a single store, a union or a cache DB.

    Not instantiated directly — use :func:`kydb.connect`.
    """

    #: UTF-8 length of the longest base path behind this DB: every key must fit under it.
    _base_bytes: int
    #: What the store (or, for a composite, its layers together) can do.
    capabilities: Capabilities

    def __init__(self, url: str, codec: envelope.Codec) -> None:
        self._url = url
        self._codec = codec
        self._cache = ReadCache()
        self._cached = self._cache.entries  # for the cached-read fast path of __getitem__

    # ------------------------------------------------------------------ primitives

    @abc.abstractmethod
    def _fetch_blobs(self, keys: Sequence[str], fresh: bool = False) -> dict[str, bytes]:
        """The blobs of the keys that exist (missing keys are absent).

        ``fresh`` (a reload) asks the source of truth: a cache DB's persistent
        store rather than its cache store.
        """

    @abc.abstractmethod
    def _write_blobs(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None] | None = None,
    ) -> None:
        """Store encoded blobs (creating folders along the way), written at ``mtime_ns``, with index values.

        ``expect`` makes the write conditional (see ``kydb_put``); only called
        with it when :attr:`capabilities` has ``conditional_writes``.
        """

    @abc.abstractmethod
    def _delete_keys(self, keys: Sequence[str], expect: Mapping[str, str] | None = None) -> None:
        """Delete objects; absent keys are ignored (unless ``expect`` says what each must be)."""

    @abc.abstractmethod
    def _fetch_versioned(self, keys: Sequence[str]) -> dict[str, VersionedBlob]:
        """The blobs and versions of the keys that exist (conditional-write stores only)."""

    @abc.abstractmethod
    def _exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""

    @abc.abstractmethod
    def _list(self, folder: str, include_dirs: bool, page_size: int) -> Iterator[str]:
        """The sorted immediate children of ``folder``, fetched lazily."""

    @abc.abstractmethod
    def _query(self, query: FolderQuery) -> Iterator[Entry]:
        """The query's entries, lazily, fetching no more pages than its limit needs."""

    @abc.abstractmethod
    def _stat_keys(self, keys: Sequence[str]) -> dict[str, ObjectInfo]:
        """:class:`ObjectInfo` of the keys that exist."""

    @abc.abstractmethod
    def _mkdir(self, folder: str) -> None:
        """Create a folder and its ancestors."""

    @abc.abstractmethod
    def _rmdir(self, folder: str) -> None:
        """Remove an existing, empty folder."""

    @abc.abstractmethod
    def _is_dir(self, folder: str) -> bool:
        """Whether a folder exists (explicit or implied); not called for the root."""

    @abc.abstractmethod
    def _delete_tree(self, folder: str) -> int:
        """Delete an existing folder and everything below it."""

    def _forget(self, keys: Sequence[str]) -> None:
        """Drop ``keys`` from this DB's read cache and from its layers' caches."""
        self._cache.discard(keys)
        self._forget_in_layers(keys)

    def _forget_in_layers(self, keys: Sequence[str]) -> None:  # noqa: B027 - a no-op for single stores
        """Composite DBs drop ``keys`` from their layers' caches (they wrote behind them)."""

    def _forget_folder(self, folder: str) -> None:
        """Drop everything under ``folder`` from this DB's (and its layers') caches."""
        if folder == "/":
            self._cache.clear()
        else:
            self._cache.discard_folder(folder)

    # ------------------------------------------------------------------ identity

    @property
    def url(self) -> str:
        """The URL this DB was connected with, passwords masked."""
        return mask_url(self._url)

    @property
    def key_room(self) -> int:
        """How many bytes of UTF-8 a key may have here: 1,024 less the longest base path behind this DB."""
        return MAX_PATH_BYTES - self._base_bytes

    @property
    def codec(self) -> envelope.Codec:
        """How this DB encodes, signs, verifies and decodes blobs (its ``repr`` never shows keys)."""
        return self._codec

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {mask_url(self._url)}>"

    def __reduce__(self) -> tuple[Any, tuple[str, envelope.Codec]]:
        # A DB travels to other processes as its URL and options and reconnects there.  That
        # carries credentials and signing keys, so it must never end up inside a store.
        if envelope.is_storing():
            raise TypeError(
                f"{self!r} cannot be stored in a kydb store: a pickled DB carries its URL credentials "
                "and signing keys. Store its URL (db.url) instead"
            )
        return opened.reconnect, (self._url, self._codec)

    def close(self) -> None:
        """Give back this holder's hold on the DB; the last one releases its connections.

        Every :func:`kydb.connect` of the URL is a hold, so one part of a
        program closing the DB never closes it under another part.  Closing
        a DB nobody holds does nothing.  A DB used after its last holder
        closed it opens its connections again.
        """
        if opened.release(self._url, self._codec, self):
            self._release_connections()

    def _release_connections(self) -> None:
        """Release connections (and the read cache): the last holder has closed the DB."""
        self._cache.clear()

    def __enter__(self: _DB) -> _DB:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ keys and values

    def _key(self, key: str, system: bool = False) -> str:
        if type(key) is str:  # the common case, one call shorter
            return canonical_key(key, system, self._base_bytes)
        return normalize_key(key, system, self._base_bytes)

    def _folder(self, folder: str, system: bool = True) -> str:
        return normalize_folder(folder, system, self._base_bytes)

    def _encode(self, key: str, value: Any) -> bytes:
        if isinstance(value, DbObj):
            record = DbObjRecord(value.class_name, key, value.get_stored_dict())
            return self._codec.encode_record(record)
        return self._codec.encode(value, key)

    def _decode(self, key: str, blob: bytes) -> Any:
        value = self._codec.decode(blob, key)
        return self._dbobj(key, blob, value) if isinstance(value, DbObjRecord) else value

    def _decode_many(self, blobs: Mapping[str, bytes]) -> dict[str, Any]:
        """:meth:`_decode` of each blob: the codec's calls first, then the DbObjs among them made."""
        decode = self._codec.decode
        values = {key: decode(blob, key) for key, blob in blobs.items()}
        for key, value in values.items():
            if isinstance(value, DbObjRecord):
                values[key] = self._dbobj(key, blobs[key], value)
        return values

    def _dbobj(self, key: str, blob: bytes, record: DbObjRecord) -> DbObj:
        cls = resolve_class(self._objdb_config(), record.class_name, key)
        obj = make_dbobj(cls, self, record.class_name, key, record.stored_dict, from_store=True)
        remember_stored(obj, blob)
        return obj

    # ------------------------------------------------------------------ objects

    def read(self, key: str, reload: bool = False, *, system_obj: bool = False) -> Any:
        """The value at ``key``, from the read cache unless ``reload``.

        Raises :class:`~kydb.NotFound` (a ``KeyError``) if absent,
        :class:`~kydb.InvalidKey` for a bad key, :class:`~kydb.CorruptValue`
        for a blob that is not kydb data.  Cost: no request on a cache hit,
        one store read otherwise.
        """
        k = self._key(key, system_obj)
        if not reload:
            value = self._cached.get(k, _ABSENT)
            if value is not _ABSENT:
                return value
        cache = self._cache
        token = cache.token()
        blob = self._fetch_blobs([k], reload).get(k)
        if blob is None:
            cache.discard([k])
            raise NotFound(f"{k}: no such key in {self.url}")
        value = self._decode(k, blob)
        cache.fill(k, value, token)
        return value

    def __getitem__(self, key: str) -> Any:
        # The cache holds only canonical, valid keys: a hit needs no key check, except that a system
        # object (a '.' component) is only for read(..., system_obj=True).
        try:
            value = self._cached[key]
        except (KeyError, TypeError):  # a miss, or a key that cannot be one (unhashable)
            return self.read(key)
        if "/." in key:
            return self.read(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """Like :meth:`read`, but ``default`` when the key is absent."""
        try:
            return self.read(key)
        except NotFound:
            return default

    def _require_versions(self, what: str) -> None:
        if not self.capabilities.writable:
            raise ReadOnlyStore(f"{what}: {self.url} is read-only: write to another store (a union puts one in front)")
        if not self.capabilities.conditional_writes:
            raise ConditionalWritesNotSupported(
                f"{what}: {self.url} keeps no object versions, so it cannot write conditionally; nothing was "
                "written (use a store whose backend declares conditional writes, or write unconditionally)"
            )

    def set(
        self,
        key: str,
        value: Any,
        system_obj: bool = False,
        *,
        index: Mapping[str, int | None] | None = None,
        if_version: str | None = None,
        if_absent: bool = False,
    ) -> None:
        """Store ``value`` at ``key`` and cache it.

        ``system_obj`` allows dot-prefixed components (``/.configs/objdb``).
        ``index`` sets user index values for :meth:`folder` queries (names
        ``[A-Za-z][A-Za-z0-9_]*`` of at most 64 characters, case-sensitive;
        int values, ``None`` to clear); indexes not mentioned keep their
        values.  A value that cannot be stored, or a bad index, raises
        before anything is written.  If the store write fails, the cache
        entry is dropped.

        ``if_version=v`` writes only if the object's current version is
        ``v`` (from :meth:`stat` or :meth:`read_versioned`); ``if_absent``
        only if there is no object at ``key``.  Otherwise
        :class:`~kydb.Conflict` is raised and neither the store nor the read
        cache changes.  On a store without versions both raise
        :class:`~kydb.ConditionalWritesNotSupported` and write nothing.
        """
        k = self._key(key, system_obj)
        indexes = check_index_values(index) if index is not None else None
        expect: dict[str, str | None] | None = None
        if if_version is not None or if_absent:
            if if_version is not None and if_absent:
                raise ValueError(f"{k}: pass if_version or if_absent, not both")
            if if_version is not None and not isinstance(if_version, str):
                raise TypeError(f"{k}: if_version is a version string (from stat or read_versioned)")
            self._require_versions(f"set({k!r}, if_{'version' if if_version is not None else 'absent'}=...)")
            expect = {k: if_version}
        blob = self._encode(k, value)
        cache = self._cache
        token = cache.token()
        try:
            self._write_blobs({k: blob}, time.time_ns(), {k: indexes} if indexes else _NO_INDEXES, expect)
        except Conflict:
            raise  # nothing was written: the cache stays as it was
        except BaseException:
            self._forget([k])
            raise
        self._forget_in_layers([k])
        cache.put(k, value, token)
        if isinstance(value, DbObj):
            remember_stored(value, blob)

    def read_versioned(self, key: str, *, system_obj: bool = False) -> Versioned:
        """The value at ``key`` and its version, read from the store (never the cache) in one request.

        Pass the version to ``set(..., if_version=...)`` or ``delete(...,
        if_version=...)`` to write only if nobody has since.  Raises
        :class:`~kydb.NotFound` if absent and
        :class:`~kydb.ConditionalWritesNotSupported` on a store without
        versions.  A union reads its front layer; a cache DB its persistent
        store.
        """
        k = self._key(key, system_obj)
        value, version = self._read_versioned(k)
        return Versioned(value, version)

    def _read_versioned(self, k: str, fill_cache: bool = True) -> Versioned:
        self._require_versions(f"read_versioned({k!r})")
        token = self._cache.token()
        found = self._fetch_versioned([k]).get(k)
        if found is None:
            raise NotFound(f"{k}: no such key in {self.url}")
        value = self._decode(k, found.blob)
        if fill_cache:
            self._cache.fill(k, value, token)
        return Versioned(value, found.version)

    def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = _ABSENT,
        retries: int = 10,
        system_obj: bool = False,
    ) -> Any:
        """Replace the value at ``key`` with ``fn(old)`` atomically; return the value written.

        Reads the value with its version, calls ``fn`` (with ``default`` when
        the key is absent and a default was given) and writes the result only
        if the object has not changed meanwhile; on a :class:`~kydb.Conflict`
        it waits a short random time and tries again, up to ``retries``
        times, then raises the conflict.  ``fn`` may run more than once and
        gets a fresh copy each time, so it may mutate it.  Raises
        :class:`~kydb.NotFound` when the key is absent and no default was
        given, :class:`~kydb.ConditionalWritesNotSupported` on a store without
        versions.
        """
        k = self._key(key, system_obj)
        self._require_versions(f"update({k!r})")
        attempt = 0
        while True:
            try:
                old, version = self._read_versioned(k, fill_cache=False)
            except NotFound:
                if default is _ABSENT:
                    raise
                old, version = copy.deepcopy(default), None  # fn may mutate it, and may run again
            new = fn(old)
            try:
                if version is None:
                    self.set(k, new, system_obj, if_absent=True)
                else:
                    self.set(k, new, system_obj, if_version=version)
            except Conflict as exc:
                if attempt >= retries:
                    raise Conflict(f"{k}: still changing under other writers after {retries} retries") from exc
                import random  # noqa: PLC0415 - only update() under contention needs it

                time.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)))
                attempt += 1
                continue
            return new

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def exists(self, key: str, *, system_obj: bool = False) -> bool:
        """Whether an object exists at ``key`` (folders do not count). Asks the store."""
        return self._exists(self._key(key, system_obj))

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            raise InvalidKey(f"invalid key {key!r}: keys are str, not {type(key).__name__}")
        return self.exists(key)

    def stat(self, key: str, *, system_obj: bool = False) -> ObjectInfo:
        """Size (and times, where the store keeps them) of the object at ``key``.

        :class:`~kydb.NotFound` if there is none.  Does not read the value
        where the store can answer from metadata.
        """
        k = self._key(key, system_obj)
        info = self._stat_keys([k]).get(k)
        if info is None:
            raise NotFound(f"{k}: no such key in {self.url}")
        return info

    def delete(self, key: str, *, system_obj: bool = False, if_version: str | None = None) -> None:
        """Delete the object at ``key``; :class:`~kydb.NotFound` if there is none.

        ``if_version=v`` deletes only if the object's current version is
        ``v``: otherwise (another version, or no object) :class:`~kydb.Conflict`,
        and neither the store nor the read cache changes.
        """
        k = self._key(key, system_obj)
        if if_version is not None:
            self._require_versions(f"delete({k!r}, if_version=...)")
            try:
                self._delete_keys([k], {k: if_version})
            except Conflict:
                raise  # nothing was deleted: the cache stays as it was
            except BaseException:
                self._forget([k])
                raise
            self._forget([k])
            return
        if not self._exists(k):
            raise NotFound(f"{k}: no such key in {self.url}")
        try:
            self._delete_keys([k])
        finally:
            self._forget([k])

    def __delitem__(self, key: str) -> None:
        self.delete(key)

    # ------------------------------------------------------------------ batches

    def get_many(self, keys: Iterable[str], reload: bool = False) -> dict[str, Any]:
        """``{key: value}`` for the keys that exist, in one batch request for the misses.

        Keys come back as given; absent keys are left out.  Cached values are
        used unless ``reload``.
        """
        key_of = self._key
        wanted = {key: key_of(key) for key in keys}
        found: dict[str, Any] = {}
        fetch: dict[str, None] = {}  # ordered and de-duplicated in O(1) per key
        if reload:
            fetch = dict.fromkeys(wanted.values())
        else:
            for k in wanted.values():
                hit, value = self._cache.lookup(k)
                if hit:
                    found[k] = value
                else:
                    fetch[k] = None
        if fetch:
            token = self._cache.token()
            loaded = self._decode_many(self._fetch_blobs(list(fetch), reload))
            self._cache.fill_many(loaded.items(), token)
            found.update(loaded)
        return {key: found[k] for key, k in wanted.items() if k in found}

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        """Store several values in one batch. Every value is encoded before anything is written."""
        items: dict[str, bytes] = {}
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            k = self._key(key)
            items[k] = self._encode(k, value)
            values[k] = value
        keys = list(items)
        token = self._cache.token()
        try:
            self._write_blobs(items, time.time_ns(), {})
        except BaseException:
            self._forget(keys)
            raise
        self._forget_in_layers(keys)
        self._cache.put_many(values.items(), token)
        for k, value in values.items():
            if isinstance(value, DbObj):
                remember_stored(value, items[k])

    def delete_many(self, keys: Iterable[str], *, system_obj: bool = False) -> None:
        """Delete several objects in one batch; absent keys are ignored."""
        ks = list(dict.fromkeys(self._key(key, system_obj) for key in keys))
        try:
            self._delete_keys(ks)
        finally:
            self._forget(ks)

    # ------------------------------------------------------------------ stored blobs

    def get_blobs(self, keys: Iterable[str], *, system_obj: bool = False) -> dict[str, bytes]:
        """``{key: blob}``: the stored bytes of the keys that exist, read from the store in one batch.

        Blobs come as the store holds them (kydb's envelope: header, any
        signature, payload) — nothing is decoded, verified or cached; keys
        come back as given.  For tools that move data without loading it
        (``kydb cp``); :func:`kydb.envelope.describe` reads a blob's header.
        """
        wanted = {key: self._key(key, system_obj) for key in keys}
        found = self._fetch_blobs(list(dict.fromkeys(wanted.values())))
        return {key: found[k] for key, k in wanted.items() if k in found}

    def put_blobs(
        self,
        items: Mapping[str, bytes],
        *,
        indexes: Mapping[str, Mapping[str, int | None]] | None = None,
        system_obj: bool = False,
    ) -> None:
        """Store already-encoded blobs (from :meth:`get_blobs`) in one batch, with optional index values.

        Every key and index is checked before anything is written; the keys
        leave the read cache.  The bytes are stored as given: reading one that
        is not kydb data, or whose signature does not verify for its key, raises
        :class:`~kydb.CorruptValue` then.
        """
        blobs = {self._key(key, system_obj): blob for key, blob in items.items()}
        checked = {self._key(key, system_obj): check_index_values(values) for key, values in (indexes or {}).items()}
        stray = sorted(set(checked) - set(blobs))
        if stray:
            raise ValueError(f"put_blobs: index values for keys that are not written: {stray[:5]}")
        keys = list(blobs)
        try:
            self._write_blobs(blobs, time.time_ns(), {k: v for k, v in checked.items() if v})
        finally:
            self._forget(keys)

    def get_versioned_blobs(self, keys: Iterable[str], *, system_obj: bool = False) -> dict[str, VersionedBlob]:
        """``{key: VersionedBlob(blob, version)}`` for the keys that exist, read from the store.

        Like :meth:`get_blobs`, with each object's version; raises
        :class:`~kydb.ConditionalWritesNotSupported` on a store without versions.
        """
        self._require_versions("get_versioned_blobs")
        wanted = {key: self._key(key, system_obj) for key in keys}
        found = self._fetch_versioned(list(dict.fromkeys(wanted.values())))
        return {key: found[k] for key, k in wanted.items() if k in found}

    def stat_many(self, keys: Iterable[str], *, system_obj: bool = False) -> dict[str, ObjectInfo]:
        """``{key: ObjectInfo}`` for the keys that are objects, in one batch (see :meth:`stat`); keys as given."""
        wanted = {key: self._key(key, system_obj) for key in keys}
        found = self._stat_keys(list(dict.fromkeys(wanted.values())))
        return {key: found[k] for key, k in wanted.items() if k in found}

    # ------------------------------------------------------------------ cache

    def refresh(self, key: str | None = None) -> None:
        """Drop ``key`` from the read cache, or every entry when ``key`` is None."""
        if key is None:
            self._cache.clear()
        else:
            self._cache.discard([normalize_key(key, system=True)])

    def clear_cache(self) -> None:
        """Drop every entry of the read cache."""
        self._cache.clear()

    @contextmanager
    def cache_context(self: _DB) -> Iterator[_DB]:
        """A block whose cached entries are dropped when it exits; blocks nest."""
        with self._cache.scope():
            yield self

    # ------------------------------------------------------------------ folders

    def list_dir(
        self, folder: str = "/", include_dir: bool = True, page_size: int = DEFAULT_PAGE_SIZE, *, system: bool = False
    ) -> Iterator[str]:
        """Lazily yield the sorted immediate children of ``folder``.

        Subfolders end with ``/`` (left out when ``include_dir`` is false).
        Names starting with ``.`` are system objects (``.configs/``) and are
        left out unless ``system``.  ``page_size`` sets how many names each
        store request fetches, never the result.  A missing folder lists as
        empty.  Cost: O(children).
        """
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be a positive int, got {page_size!r}")
        names = self._list(self._folder(folder), include_dir, page_size)
        return names if system else (name for name in names if not name.startswith("."))

    def ls(self, folder: str = "/", include_dir: bool = True, *, system: bool = False) -> list[str]:
        """The sorted immediate children of ``folder`` as a list (see :meth:`list_dir`)."""
        return list(self.list_dir(folder, include_dir, system=system))

    def walk(self, folder: str = "/", *, system: bool = False) -> Iterator[tuple[str, list[str], list[str]]]:
        """Like :func:`os.walk`: ``(folder, subfolder names, object names)`` for ``folder`` and each folder below.

        Top-down and lazy: one folder is listed at a time, so the first
        folders come before the store has been read through, and memory holds
        only the folders still to visit.  Folders come as ``/a/b/``, names
        without a trailing ``/``; system names (``.configs``) only with
        ``system``.  Cost: one listing per folder.
        """
        pending = [self._folder(folder)]
        while pending:
            current = pending.pop()
            subfolders: list[str] = []
            objects: list[str] = []
            for name in self.list_dir(current, system=system):
                (subfolders if name.endswith("/") else objects).append(name.rstrip("/"))
            yield current, subfolders, objects
            pending.extend(current + name + "/" for name in reversed(subfolders))

    def keys(self, folder: str = "/", *, recursive: bool = False, system: bool = False) -> Iterator[str]:
        """The full keys (``/a/b``) of the objects in ``folder`` — and below it with ``recursive`` — lazily.

        In listing order, folder by folder (as :meth:`walk` visits them).
        The dict-like way to go through a store: a DB has no ``len()`` and
        cannot be iterated, because either would read the whole store.
        """
        if not recursive:
            f = self._folder(folder)
            return (f + name for name in self.list_dir(f, include_dir=False, system=system))
        return (current + name for current, _, objects in self.walk(folder, system=system) for name in objects)

    def __iter__(self) -> Iterator[str]:
        raise TypeError(
            f"{self!r} is not iterable: that would read the whole store. Use db.keys(folder, recursive=True) "
            "or db.walk(folder), which go folder by folder, lazily"
        )

    def __bool__(self) -> bool:
        return True  # a DB is always true, though it has no len()

    def __len__(self) -> int:
        raise TypeError(
            f"{self!r} has no len(): counting it would read the whole store. Count a folder with "
            "sum(1 for _ in db.keys(folder, recursive=True)), or use db.ls(folder)"
        )

    def is_dir(self, folder: str) -> bool:
        """Whether ``folder`` exists (made by :meth:`mkdir` or implied by an object under it)."""
        f = self._folder(folder)
        return f == "/" or self._is_dir(f)

    def mkdir(self, folder: str, *, system_obj: bool = False) -> None:
        """Create ``folder`` and any missing ancestors. ``ValueError`` for the root."""
        f = self._folder(folder, system=system_obj)
        if f == "/":
            raise InvalidKey(f"mkdir({folder!r}): the root always exists; name a folder to create")
        self._mkdir(f)

    def _require_removable(self, folder: str, system: bool) -> str:
        f = self._folder(folder, system)
        if f == "/":
            raise InvalidKey(f"{folder!r}: the root folder cannot be removed (rm_tree('/') empties it)")
        if not self._is_dir(f):
            raise NotFound(f"{f}: no such folder in {self.url}")
        return f

    def rmdir(self, folder: str, *, system_obj: bool = False) -> None:
        """Remove an empty folder.

        Raises :class:`~kydb.FolderNotEmpty` if it has children and
        ``KeyError`` if it does not exist or is the root.
        """
        f = self._require_removable(folder, system_obj)
        if next(iter(self._list(f, True, 1)), None) is not None:
            raise FolderNotEmpty(f"{f}: folder is not empty; use rm_tree to remove it with its contents")
        self._rmdir(f)

    def rm_tree(self, folder: str, *, system_obj: bool = False) -> int:
        """Delete ``folder`` and everything below it, like ``rm -rf``; return how many objects went.

        ``rm_tree('/')`` empties the store (below this DB's base path),
        system objects included.  ``KeyError`` if ``folder`` is not a folder.
        Uses the store's bulk deletes.
        """
        f = self._folder(folder, system=system_obj)
        if f != "/" and not self._is_dir(f):
            raise NotFound(f"{f}: no such folder in {self.url}")
        try:
            return self._delete_tree(f)
        finally:
            self._forget_folder(f)

    # ------------------------------------------------------------------ queries

    def folder(self, folder: str, allow_scan: bool = False) -> FolderQuery:
        """A query over the objects directly in ``folder`` (see :class:`~kydb.query.FolderQuery`).

        Ordered by modification time unless ``.by(...)`` says otherwise.
        Stores without an ordered index raise :class:`~kydb.IndexNotSupported`
        when the query runs, unless ``allow_scan``.
        """
        return FolderQuery(self, self._folder(folder), allow_scan=allow_scan)

    def recent(self, folder: str, limit: int | None = None, allow_scan: bool = False) -> list[str]:
        """Names of the objects directly in ``folder``, newest first by modification time."""
        query = self.folder(folder, allow_scan).by("mtime").desc()
        return list(query if limit is None else query.limit(limit))

    # ------------------------------------------------------------------ DbObj

    def _objdb_config(self) -> Mapping[str, Any]:
        try:
            config = self.read(OBJDB_CONFIG_KEY, system_obj=True)
        except NotFound:
            raise DbObjException(
                f"no DbObj config at {OBJDB_CONFIG_KEY} in {self.url}; upload one with db.upload_objdb_config({{...}})"
            ) from None
        if not isinstance(config, Mapping):
            raise DbObjException(f"the DbObj config at {OBJDB_CONFIG_KEY} is not a mapping")
        return config

    def upload_objdb_config(self, config: Mapping[str, Mapping[str, str]]) -> None:
        """Store the class-name -> ``{module_path, class_name}`` map at ``/.configs/objdb``.

        Raises :class:`~kydb.DbObjException` naming the bad entry before
        writing anything.
        """
        check_objdb_config(config)
        self.set(OBJDB_CONFIG_KEY, {name: dict(entry) for name, entry in config.items()}, system_obj=True)

    def new(self, class_name: str, key: str, **kwargs: Any) -> Any:
        """A new, unsaved DbObj of the configured class ``class_name`` at ``key``.

        ``kwargs`` set stored attributes.  ``KeyError`` if ``class_name`` is
        not in the config; :class:`~kydb.DbObjException` if the config is
        missing or its entry is malformed.  Call ``obj.write()`` to store it.
        """
        k = self._key(key)
        cls = resolve_class(self._objdb_config(), class_name, k, for_new=True)
        return make_dbobj(cls, self, class_name, k, kwargs)
