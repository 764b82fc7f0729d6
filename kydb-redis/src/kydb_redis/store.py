""":class:`RedisStore`: kydb's storage hooks on Redis (see :mod:`kydb_redis.layout`).

Cost per call, in round trips to the server:

* put of one object: 1 (one ``EVALSHA``), whatever its depth, with its
  times and index values;
* get, exists, is_dir, one page of ``ls``, ``stat`` of a batch: 1;
* one page of a folder query (``recent``, ``folder(...).by(...)``): 1 (one
  ``EVALSHA``), O(log n + page) on the server whatever the folder's size;
* ``get_many``: 1 (one ``MGET`` per 1,000 keys, pipelined), plus one
  ``EXISTS`` when some keys are missing;
* ``set_many``/``delete_many``: 1 per 10,000 keys (script calls of 1,000
  keys, pipelined ten at a time);
* ``rm_tree``: one per level of the tree and per 1,000 names of one folder
  for the walk, plus one per 10,000 objects deleted — never one per object.

Failures: a refused, reset or timed-out connection is retried by redis-py
(``?retries=N``, default 3, jittered exponential backoff from 50 ms up to
1 s), then raises :class:`kydb.StoreUnavailable`; a refused login or ACL
permission raises ``PermissionError``; any other error Redis answers with
(out of memory, a read-only replica, a key of the wrong type written by
something else) raises :class:`RedisCommandError`.  Every message names the
server and the URL with its password masked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import redis
from redis.backoff import EqualJitterBackoff
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    NoScriptError,
    RedisError,
)
from redis.retry import Retry

import kydb
from kydb.url import StoreURL

from .layout import (
    DELETE,
    PUT,
    QUERY,
    SORTABLE_WIDTH,
    LuaScript,
    from_sortable,
    index_key,
    meta_key,
    sortable,
    split_path,
)
from .options import RETRY_BACKOFF_BASE, RETRY_BACKOFF_CAP, RedisOptions, parse_options

__all__ = ["MAX_VALUE_BYTES", "RedisCommandError", "RedisStore"]

#: Redis's limit on one string (and one request argument, ``proto-max-bulk-len``).
MAX_VALUE_BYTES = 512 * 1024 * 1024
#: Objects (or folders, or keys read) per script call / ``MGET``.
BATCH = 1000
#: Blob bytes per put script call; a larger blob goes alone.
BATCH_BYTES = 16 * 1024 * 1024
#: Calls sent in one pipeline (one round trip), and the bytes that flush it early.
PIPELINE_CALLS = 10
PIPELINE_BYTES = 64 * 1024 * 1024
#: Names fetched per folder per round trip when walking a tree.
WALK_PAGE = 1000
#: Errors redis-py retries (``?retries=N``) before kydb raises :class:`kydb.StoreUnavailable`.
RETRIED = [redis.ConnectionError, redis.TimeoutError]

Call = tuple[list[Any], list[Any], int]  # KEYS, ARGV, blob bytes


class RedisCommandError(kydb.KydbError):
    """Redis rejected a command for a reason other than connectivity or permissions.

    For example: out of memory (``maxmemory``), a read-only replica, or a key
    kydb uses that holds another type because something else wrote it.  The
    redis-py exception is chained.
    """


def _describe(paths: Sequence[str]) -> str:
    if len(paths) == 1:
        return repr(paths[0])
    shown = ", ".join(repr(p) for p in paths[:3])
    return f"{len(paths)} paths ({shown}{', ...' if len(paths) > 3 else ''})"


def _execute(target: Any, *args: Any) -> Any:
    """``target.execute_command(*args)`` on a client or pipeline (redis-py leaves it untyped)."""
    return target.execute_command(*args)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RedisStore(kydb.Store):
    """kydb's hooks on one Redis database, through one thread-safe connection pool.

    Connecting does no I/O: the first operation opens a connection.
    """

    capabilities = kydb.Capabilities(keeps_times=True, keeps_ctime=True, native_queries=True)

    def __init__(self, url: StoreURL) -> None:
        super().__init__(url)
        self.options: RedisOptions = parse_options(url)
        self._where = f"Redis at {self.options.server} ({url.masked})"
        retry = Retry(EqualJitterBackoff(cap=RETRY_BACKOFF_CAP, base=RETRY_BACKOFF_BASE), self.options.retries)
        connection_class = redis.SSLConnection if self.options.tls else redis.Connection
        self._pool = redis.ConnectionPool(
            connection_class=connection_class,
            retry=retry,
            retry_on_error=RETRIED,  # named, or redis-py 5 drops ``retry`` and never retries
            **self.options.connection,
        )
        #: The redis-py client (thread-safe; shares this store's pool).
        self.client = redis.Redis(connection_pool=self._pool)
        self._loaded: set[str] = set()  # scripts this store has sent with EVAL, so EVALSHA finds them

    def __repr__(self) -> str:
        return f"<RedisStore {self._where}>"

    # ------------------------------------------------------------------ errors

    def _failure(self, exc: RedisError, doing: str) -> Exception:
        """The kydb error for ``exc``, raised while ``doing`` (e.g. "writing '/a/b'")."""
        detail = str(exc)[:300].rstrip(". ")  # redis-py ends some messages with a period
        if isinstance(exc, (AuthenticationError, NoPermissionError)):
            return PermissionError(
                f"{self._where} refused {doing}: {detail}. Check the user name and password in the URL "
                "and the user's ACL permissions"
            )
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            return kydb.StoreUnavailable(
                f"{self._where} is unavailable: {doing} failed after {self.options.retries} retries: {detail}. "
                "Check that the server is running and reachable"
            )
        return RedisCommandError(f"{self._where} rejected {doing}: {detail}")

    # ------------------------------------------------------------------ scripts

    def _call(self, script: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run ``script`` once: one round trip (``EVAL`` the first time this store uses it, then ``EVALSHA``)."""
        if script.sha in self._loaded:
            try:
                return _execute(self.client, "EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:  # the server restarted or its script cache was flushed
                self._loaded.discard(script.sha)
        result = _execute(self.client, "EVAL", script.body, len(keys), *keys, *args)
        self._loaded.add(script.sha)
        return result

    def _call_many(self, script: LuaScript, calls: Iterable[Call]) -> list[Any]:
        """Run ``script`` once per call, up to :data:`PIPELINE_CALLS` calls per round trip."""
        results: list[Any] = []
        group: list[Call] = []
        size = 0
        for call in calls:
            group.append(call)
            size += call[2]
            if len(group) >= PIPELINE_CALLS or size >= PIPELINE_BYTES:
                results += self._pipeline(script, group)
                group, size = [], 0
        if group:
            results += self._pipeline(script, group)
        return results

    def _pipeline(self, script: LuaScript, group: list[Call]) -> list[Any]:
        if len(group) == 1:
            keys, args, _ = group[0]
            return [self._call(script, keys, args)]
        if script.sha in self._loaded:
            pipe = self.client.pipeline(transaction=False)
            for keys, args, _ in group:
                _execute(pipe, "EVALSHA", script.sha, len(keys), *keys, *args)
            try:
                return pipe.execute()
            except NoScriptError:  # every call is idempotent: send them again with EVAL
                self._loaded.discard(script.sha)
        pipe = self.client.pipeline(transaction=False)
        for keys, args, _ in group:
            _execute(pipe, "EVAL", script.body, len(keys), *keys, *args)
        results = pipe.execute()
        self._loaded.add(script.sha)
        return results

    # ------------------------------------------------------------------ objects

    @kydb.hookimpl
    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        try:
            if len(paths) == 1:  # GET raises WRONGTYPE for a key that holds something else
                blob = _execute(self.client, "GET", paths[0])
                return {} if blob is None else {paths[0]: blob}
            if len(paths) <= BATCH:
                blobs = _execute(self.client, "MGET", *paths) if paths else []
            else:
                pipe = self.client.pipeline(transaction=False)
                for chunk in _chunks(paths, BATCH):
                    _execute(pipe, "MGET", *chunk)
                blobs = [blob for reply in pipe.execute() for blob in reply]
            found = {path: blob for path, blob in zip(paths, blobs, strict=True) if blob is not None}
            if len(found) < len(paths):
                self._check_absent([path for path in paths if path not in found])
        except RedisError as exc:
            raise self._failure(exc, f"reading {_describe(paths)}") from exc
        return found

    def _check_absent(self, paths: list[str]) -> None:
        """Raise if a key ``MGET`` answered as missing exists holding another type (written by something else).

        One ``EXISTS`` for all of them (one more round trip, only when a batch
        misses keys); ``TYPE`` of each only if some exist — which also
        happens when a concurrent writer created them since the ``MGET``.
        """
        if not _execute(self.client, "EXISTS", *paths):
            return
        pipe = self.client.pipeline(transaction=False)
        for path in paths:
            _execute(pipe, "TYPE", path)
        odd = [
            f"{path!r} holds a {kind.decode()}"
            for path, kind in zip(paths, pipe.execute(), strict=True)
            if kind not in (b"none", b"string")
        ]
        if odd:
            raise RedisCommandError(
                f"{self._where}: WRONGTYPE {', '.join(odd[:3])}{', ...' if len(odd) > 3 else ''}, not a string "
                "(a kydb object): something other than kydb wrote there"
            )

    @kydb.hookimpl
    def kydb_put(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None],
    ) -> None:
        for path, blob in items.items():
            if len(blob) > MAX_VALUE_BYTES:
                raise ValueError(
                    f"{path}: the encoded value is {len(blob):,} bytes, over Redis's limit of "
                    f"{MAX_VALUE_BYTES:,} bytes for one string; nothing was written to {self._where}"
                )
        try:
            self._call_many(PUT, self._put_calls(items, sortable(mtime_ns), indexes))
        except RedisError as exc:
            raise self._failure(exc, f"writing {_describe(list(items))}") from exc

    @staticmethod
    def _put_calls(
        items: dict[str, bytes], mtime: bytes, indexes: Mapping[str, Mapping[str, int | None]]
    ) -> Iterator[Call]:
        """:data:`PUT` calls writing ``items`` at ``mtime``, each of at most :data:`BATCH` objects and BATCH_BYTES."""
        paths: list[Any] = []
        blobs: list[Any] = []
        changes: list[Any] = []  # (position in paths, index name, sortable value or b'' to clear) triples
        size = 0
        for path, blob in items.items():
            if paths and (len(paths) >= BATCH or size + len(blob) > BATCH_BYTES):
                yield paths, [len(paths), mtime, *blobs, *changes], size
                paths, blobs, changes, size = [], [], [], 0
            paths.append(path)
            blobs.append(blob)
            for name, value in indexes.get(path, {}).items():
                changes += (len(paths), name, b"" if value is None else sortable(value))
            size += len(blob)
        if paths:
            yield paths, [len(paths), mtime, *blobs, *changes], size

    @kydb.hookimpl
    def kydb_delete(self, paths: Sequence[str], expect: Mapping[str, str]) -> None:
        try:
            self._call_many(DELETE, self._delete_calls(paths, []))
        except RedisError as exc:
            raise self._failure(exc, f"deleting {_describe(paths)}") from exc

    @staticmethod
    def _delete_calls(objects: Sequence[str], folders: Sequence[str]) -> Iterator[Call]:
        """Script calls deleting ``objects``, then removing ``folders`` (deepest first) if empty."""
        for chunk in _chunks(objects, BATCH):
            yield list(chunk), [len(chunk)], 0
        for chunk in _chunks(folders, BATCH):
            yield list(chunk), [0], 0

    @kydb.hookimpl
    def kydb_exists(self, path: str) -> bool:
        try:
            return bool(_execute(self.client, "EXISTS", path))
        except RedisError as exc:
            raise self._failure(exc, f"checking {path!r}") from exc

    @kydb.hookimpl
    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, kydb.ObjectInfo]:
        """Sizes, times and index values: ``EXISTS``, ``STRLEN`` and ``HGETALL`` per path, one round trip.

        An object something other than kydb wrote has no metadata: its times
        are ``None`` and it has no index values.
        """
        pipe = self.client.pipeline(transaction=False)
        for path in paths:
            _execute(pipe, "EXISTS", path)
            _execute(pipe, "STRLEN", path)
            _execute(pipe, "HGETALL", meta_key(path))
        try:
            replies = pipe.execute()
        except RedisError as exc:
            raise self._failure(exc, f"reading the metadata of {_describe(paths)}") from exc
        found: dict[str, kydb.ObjectInfo] = {}
        for i, path in enumerate(paths):
            exists, size, meta = replies[3 * i : 3 * i + 3]
            if exists:
                values = {field.decode(): self._value(value, path, meta_key(path)) for field, value in meta.items()}
                found[path] = kydb.ObjectInfo(size, values.pop("mtime", None), values.pop("ctime", None), values)
        return found

    def _value(self, text: bytes | None, path: str, key: str) -> int:
        """A time or index value of ``path``, read from ``key``, decoded from its sortable form."""
        try:
            return from_sortable(text or b"")
        except ValueError:
            raise RedisCommandError(
                f"{self._where}: {key} has {'no value' if text is None else repr(text)} where kydb keeps a time or "
                f"index value of {path!r}: something other than kydb changed it"
            ) from None

    @kydb.hookimpl
    def kydb_query(self, request: kydb.QueryRequest) -> kydb.QueryPage:
        """One page from the index's sorted set: one :data:`QUERY` call, O(log n + limit) on the server."""
        folder, index, since, until, limit = request.folder, request.index, request.since, request.until, request.limit
        ascending, after = request.ascending, request.after()
        low = b"[" + sortable(since) + b":" if since is not None else b"-"
        high = b"(" + sortable(until) + b";" if until is not None else b"+"  # ';' follows ':': every name of until
        if after is not None:  # resume after the last member returned (which lies within the bounds)
            member = b"(" + sortable(after[0]) + b":" + after[1].encode()
            if ascending:
                low = member
            else:
                high = member
        bounds = [low, high] if ascending else [high, low]
        direction = "asc" if ascending else "desc"
        try:
            reply = self._call(QUERY, [index_key(index, folder)], [*bounds, limit, direction, folder])
        except RedisError as exc:
            raise self._failure(exc, f"querying {folder!r} by {index!r}") from exc
        entries = []
        for i in range(0, min(len(reply), 3 * limit), 3):
            member, mtime, ctime = reply[i : i + 3]
            name = member[SORTABLE_WIDTH + 1 :].decode()
            path, meta = folder + name, meta_key(folder + name)
            value = self._value(member[:SORTABLE_WIDTH], path, index_key(index, folder))
            entries.append(kydb.Entry(name, self._value(mtime, path, meta), self._value(ctime, path, meta), value))
        return kydb.QueryPage.of(entries, len(reply) > 3 * limit)

    # ------------------------------------------------------------------ folders

    @kydb.hookimpl
    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        start = b"(" + cursor.encode() if cursor is not None else b"-"
        try:
            raw = _execute(self.client, "ZRANGEBYLEX", folder, start, b"+", "LIMIT", 0, page_size)
        except RedisError as exc:
            raise self._failure(exc, f"listing {folder!r}") from exc
        names = [name.decode() for name in raw]
        more = names[-1] if len(names) == page_size else None
        if not include_dirs:
            names = [name for name in names if not name.endswith("/")]
        return kydb.ListPage(names, more)

    @kydb.hookimpl
    def kydb_mkdir(self, folder: str) -> None:
        try:
            self._call(PUT, [folder], [0, b""])
        except RedisError as exc:
            raise self._failure(exc, f"creating folder {folder!r}") from exc

    @kydb.hookimpl
    def kydb_rmdir(self, folder: str) -> None:
        try:
            self._call(DELETE, [folder], [0])
        except RedisError as exc:
            raise self._failure(exc, f"removing folder {folder!r}") from exc

    @kydb.hookimpl
    def kydb_is_dir(self, folder: str) -> bool:
        if folder == "/":
            return True
        parent, name = split_path(folder)
        try:
            return _execute(self.client, "ZSCORE", parent, name) is not None
        except RedisError as exc:
            raise self._failure(exc, f"checking folder {folder!r}") from exc

    def _pages(self, top: str) -> Iterator[tuple[str, list[str]]]:
        """``(folder, names)`` pages of ``top`` and every folder below it, breadth first.

        Each round trip fetches the next page of up to :data:`BATCH` pending
        folders at once, so a walk costs about one round trip per level.
        Paging resumes after the last name seen, so deleting what was already
        listed does not disturb it.
        """
        pending: list[tuple[str, bytes]] = [(top, b"-")]
        while pending:
            batch, pending = pending[:BATCH], pending[BATCH:]
            pipe = self.client.pipeline(transaction=False)
            for folder, start in batch:
                _execute(pipe, "ZRANGEBYLEX", folder, start, b"+", "LIMIT", 0, WALK_PAGE)
            try:
                replies = pipe.execute()
            except RedisError as exc:
                raise self._failure(exc, f"walking {top!r}") from exc
            for (folder, _), raw in zip(batch, replies, strict=True):
                names = [name.decode() for name in raw]
                if len(raw) == WALK_PAGE:
                    pending.append((folder, b"(" + raw[-1]))
                pending.extend((folder + name, b"-") for name in names if name.endswith("/"))
                yield folder, names

    @kydb.hookimpl
    def kydb_walk(self, folder: str) -> Iterator[str]:
        for parent, names in self._pages(folder):
            for name in names:
                yield parent + name

    @kydb.hookimpl
    def kydb_delete_tree(self, folder: str) -> int:
        deleted: int = 0
        objects: list[str] = []
        folders: list[str] = [] if folder == "/" else [folder]
        try:
            for parent, names in self._pages(folder):
                for name in names:
                    (folders if name.endswith("/") else objects).append(parent + name)
                if len(objects) >= BATCH * PIPELINE_CALLS:  # delete as we go: memory stays bounded
                    deleted += sum(map(int, self._call_many(DELETE, self._delete_calls(objects, []))))
                    objects = []
            folders.sort(key=lambda path: path.count("/"), reverse=True)
            deleted += sum(map(int, self._call_many(DELETE, self._delete_calls(objects, folders))))
        except RedisError as exc:
            raise self._failure(exc, f"deleting the tree {folder!r}") from exc
        return deleted

    @kydb.hookimpl
    def kydb_close(self) -> None:
        self._pool.disconnect()
