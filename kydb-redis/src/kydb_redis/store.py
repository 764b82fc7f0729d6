""":class:`RedisStore`: kydb's storage hooks on Redis or a Redis Cluster (see :mod:`kydb_redis.layout`).

Cost per call, in round trips to the server:

* put into an existing folder: 1 (one ``EVALSHA``: ``SET ... GET`` and at
  most two more commands inside), whatever its depth; a put into a folder
  that does not exist yet: that call, then one round trip making the
  folders and putting again (on a cluster two: the folders' entries, then
  their markers with the put);
* get (one ``GET``: blob, time and version together), ``read_versioned``,
  exists, is_dir, one page of ``ls``, ``stat`` of a batch: 1;
* one page of a folder query (``recent``, ``folder(...).by(...)``): 1 (one
  ``EVALSHA``), O(log n + page) on the server whatever the folder's size;
* ``get_many``: 1 (one ``MGET`` per 1,000 keys of a hash slot, pipelined),
  plus one ``EXISTS`` when some keys are missing;
* ``set_many``/``delete_many``: one script call per folder and 1,000 keys,
  pipelined ten at a time (per node of a cluster);
* ``rm_tree``: about one round trip per level of the tree for the walk and
  two per level for the folders, plus one per ten folders' objects.

Connections: one pool per server (per node of a cluster) per process, shared
by every store on it whatever its base path (:data:`POOLS`), at most
``?pool_size=`` connections (default 10); a thread that finds them all busy
for ``?pool_timeout=`` seconds (default 5) gets :class:`kydb.StoreUnavailable`.

Failures: a refused, reset or timed-out connection is retried with
redis-py's ``Retry`` (``?retries=N``, default 3, jittered exponential
backoff from 50 ms up to 1 s), then raises :class:`kydb.StoreUnavailable`;
a refused login or ACL permission raises ``PermissionError``; any other
error Redis answers with (out of memory, a read-only replica, a key of the
wrong type written by something else) raises :class:`RedisCommandError`.
Every message names the server and the URL with its password masked.
"""

from __future__ import annotations

import contextlib
import hashlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import redis
from redis.backoff import EqualJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    AuthenticationError,
    ClusterDownError,
    NoPermissionError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.retry import Retry

import kydb
from kydb.pools import SharedPools
from kydb.url import StoreURL

from .layout import (
    CONFLICT,
    DELETE,
    FOLDER_MISSING,
    HEADER_BYTES,
    MAGIC,
    MARKER,
    PUT,
    PUT_ONE,
    QUERY,
    REGISTER,
    RMDIR,
    SORTABLE_WIDTH,
    LuaScript,
    folder_key,
    from_sortable,
    index_hash_key,
    new_version,
    object_key,
    object_keys,
    refuse_on_cluster,
    sortable,
    split_path,
)
from .options import RETRY_BACKOFF_BASE, RETRY_BACKOFF_CAP, RedisOptions, parse_options
from .replies import connection_class

__all__ = [
    "MAX_VALUE_BYTES",
    "POOLS",
    "LayoutError",
    "NotReplicated",
    "PoolExhausted",
    "RedisCommandError",
    "RedisStore",
]

#: Redis's limit on one string (and one request argument, ``proto-max-bulk-len``), less kydb's header.
MAX_VALUE_BYTES = 512 * 1024 * 1024 - HEADER_BYTES
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
#: How often a put whose folder vanished again (a concurrent ``rmdir``) lists it anew before giving up.
REGISTER_ATTEMPTS = 3

Call = tuple[str, list[Any], list[Any], int]  # folder, KEYS, ARGV, blob bytes


class RedisCommandError(kydb.KydbError):
    """Redis rejected a command for a reason other than connectivity or permissions.

    For example: out of memory (``maxmemory``), a read-only replica, or a key
    kydb uses that holds another type because something else wrote it.  The
    redis-py exception is chained.
    """


class LayoutError(RedisCommandError):
    """The base path holds a store in kydb-redis's first layout, which this version does not read.

    The message names the command that moves it into the current layout.
    """


class NotReplicated(RedisCommandError):
    """A write reached the master, but fewer replicas than ``?wait_replicas=`` acknowledged it in time."""


class PoolExhausted(RedisError):
    """Every connection of the shared pool stayed busy for ``pool_timeout`` seconds (becomes StoreUnavailable)."""


class _BlockingPool(redis.BlockingConnectionPool):
    """redis-py's blocking pool, raising :class:`PoolExhausted` (not a retried ``ConnectionError``) on timeout.

    A connection taken from it is checked for something to read (a reply
    left unread, or the server having closed it) with one ``select``:
    redis-py's own check makes three system calls (the socket made
    non-blocking, a read, blocking again), which costs a put about a tenth
    of its time.  Only when ``select`` finds something, or for a TLS socket
    (which may hold decrypted bytes ``select`` cannot see) or a parser
    without redis-py's socket buffer, does redis-py's check run, and it
    reconnects as usual.  The socket and the buffer are redis-py's own
    attributes, read with ``getattr``: a release without them gets
    redis-py's check every time.
    """

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.ConnectionError as exc:
            if "No connection available" not in str(exc):
                raise
            raise PoolExhausted(
                f"no pooled connection became free within {self.timeout:g} s; all {self.max_connections} were busy"
            ) from None

    def ensure_connection(self, connection: Any) -> None:
        sock = getattr(connection, "_sock", None)
        unread = getattr(getattr(getattr(connection, "_parser", None), "_buffer", None), "unread_bytes", None)
        if type(sock) is not socket.socket or unread is None or unread() or select.select([sock], [], [], 0)[0]:
            super().ensure_connection(connection)


class Server:
    """The connections of one process to one Redis server or cluster, shared by every store on it.

    ``client`` is a thread-safe ``redis.Redis`` or ``redis.cluster.RedisCluster``.
    """

    def __init__(self, options: RedisOptions) -> None:
        retry = Retry(EqualJitterBackoff(cap=RETRY_BACKOFF_CAP, base=RETRY_BACKOFF_BASE), options.retries)
        self.cluster = options.cluster
        self.client: Any
        if options.cluster:
            seeds = [(options.host, options.port), *options.nodes]
            nodes = [ClusterNode(host, port) for host, port in seeds]  # type: ignore[no-untyped-call]
            self.client = RedisCluster(
                startup_nodes=nodes,
                connection_pool_class=_BlockingPool,
                max_connections=options.pool_size,
                timeout=options.pool_timeout,
                retry=retry,
                ssl=options.tls,
                connection_class=connection_class(options.tls),  # see kydb_redis.replies
                **options.connection,
            )
        else:
            pool = _BlockingPool(  # type: ignore[no-untyped-call]
                connection_class=connection_class(options.tls),  # see kydb_redis.replies
                max_connections=options.pool_size,
                timeout=options.pool_timeout,
                retry=retry,
                retry_on_error=RETRIED,  # named, or redis-py drops ``retry`` and never retries
                **options.connection,
            )
            self.client = redis.Redis(connection_pool=pool)
        #: Scripts sent with EVAL through this client: EVALSHA finds them (until NOSCRIPT says otherwise).
        self.loaded: set[bytes] = set()
        #: Base paths checked for a layout-1 store.
        self.checked: set[str] = set()

    def command(self, key: Any, *args: Any) -> Any:
        """The reply to the command ``args`` on ``key``, sent and read straight on a pooled connection.

        For the hot commands (a put's script call, a cold read's ``GET``),
        each of which may be sent again.  redis-py's ``execute_command``
        wraps every command in layers (metrics, reply callbacks, and on a
        cluster its routing) that cost more client time than a put's
        round trip leaves to kydb; this keeps what matters of it: the pool
        (its limit and timeout, and its check that a connection has
        nothing unread), the connection's parser, and the retries.  On a
        single server a lost connection is retried as redis-py retries it
        (``?retries=``, with backoff, each on a new connection).  On a
        cluster the command goes to its slot's master; a redirection
        (``MOVED``/``ASK``), ``TRYAGAIN``, ``CLUSTERDOWN`` or a lost
        connection then hands it to the cluster client, which follows
        redirections, reads the slot map again and makes its own
        ``?retries=``.  An error reply is raised as it is.
        """
        client = self.client
        if not self.cluster:
            return _round_trip(client.connection_pool, args, retry=True)
        try:
            pool = client.get_redis_connection(client.get_node_from_key(key)).connection_pool
            return _round_trip(pool, args, retry=False)
        except _CLUSTER_CLIENT_HANDLES:  # the connection is back in its pool, where the cluster client may need it
            return _execute(client, *args)

    def close(self) -> None:
        """Close every connection (the last store using this server was closed)."""
        if self.cluster:
            self.client.close()
        else:
            self.client.connection_pool.disconnect()


#: Every server this process talks to: one :class:`Server` per server and pool settings, never per base path.
POOLS: SharedPools[Server] = SharedPools(Server.close)


def _describe(paths: Sequence[str]) -> str:
    if len(paths) == 1:
        return repr(paths[0])
    shown = ", ".join(repr(p) for p in paths[:3])
    return f"{len(paths)} paths ({shown}{', ...' if len(paths) > 3 else ''})"


#: What a command sent straight to a cluster's master hands to the cluster client (``MOVED`` is an ``AskError``).
_CLUSTER_CLIENT_HANDLES = (
    AskError,
    TryAgainError,
    ClusterDownError,
    redis.ConnectionError,
    redis.TimeoutError,
    RedisClusterException,
)


def _round_trip(pool: Any, args: Sequence[Any], retry: bool) -> Any:
    """Send the command ``args`` on a connection of ``pool`` and read its reply, then give the connection back.

    With ``retry``, a lost connection is retried with the connection's own
    ``Retry``, as redis-py retries it.  A connection is given back only with
    nothing left unread on it: any failure but an error reply closes it.
    """
    connection = pool.get_connection()

    def send() -> Any:
        connection.send_packed_command(connection.pack_command(*args))
        return connection.read_response()

    try:
        if retry:
            return connection.retry.call_with_retry(send, lambda error: connection.disconnect())
        return send()
    except ResponseError:
        raise
    except BaseException:  # a lost connection, or e.g. KeyboardInterrupt while reading
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


def _execute(target: Any, *args: Any) -> Any:
    """``target.execute_command(*args)`` on a client or pipeline (redis-py leaves it untyped)."""
    return target.execute_command(*args)


_T = TypeVar("_T")


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _by_folder(paths: Iterable[str]) -> dict[str, list[str]]:
    """``paths`` grouped by the folder holding them (one hash slot each), in order."""
    groups: dict[str, list[str]] = {}
    for path in paths:
        groups.setdefault(split_path(path)[0], []).append(path)
    return groups


def _blob(value: bytes | bytearray) -> bytes:
    """The blob in a stored value: without its header, and as ``bytes`` (a large reply is a ``bytearray``)."""
    if type(value) is bytes:
        return value[HEADER_BYTES:] if value.startswith(MAGIC) else value
    # A large reply (see kydb_redis.replies): one copy, the header left behind.
    return bytes(memoryview(value)[HEADER_BYTES:] if value.startswith(MAGIC) else value)


def _entry_name(member: bytes) -> str:
    """The child's name in a listing member: ``L`` + name (+ ``\\0`` + ctime for an object)."""
    return member[1:].split(b"\x00", 1)[0].decode()


class RedisStore(kydb.Store):
    """kydb's hooks on one Redis database or cluster, through the process's shared pool for that server.

    Connecting does no I/O: the first operation takes the pool (opening it,
    and on a cluster reading its slot map), checks once that the base path
    holds no layout-1 store, and goes on.
    """

    capabilities = kydb.Capabilities(keeps_times=True, keeps_ctime=True, native_queries=True, conditional_writes=True)

    def __init__(self, url: StoreURL, *, check_layout: bool = True) -> None:
        """``check_layout=False`` skips the layout-1 check (for :mod:`kydb_redis.migrate`, which writes beside it)."""
        super().__init__(url)
        self.options: RedisOptions = parse_options(url)
        self.base_folder = url.base_path + "/"
        self._where = f"Redis at {self.options.server} ({url.masked})"
        if self.options.cluster:
            try:
                refuse_on_cluster(self.base_folder)
            except ValueError as exc:
                raise ValueError(f"invalid kydb URL {url.masked!r}: base path {exc}") from None
        self._server: Server | None = None
        self._checked = not check_layout
        self._open_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RedisStore {self._where}>"

    # ------------------------------------------------------------------ connections

    def _acquire(self) -> Server:
        """This store's shared :class:`Server`, taken on first use (no I/O on a single server)."""
        server = self._server
        if server is not None:
            return server
        with self._open_lock:
            if self._server is None:
                try:
                    self._server = POOLS.acquire(self.options.pool_key(), lambda: Server(self.options))
                except (RedisError, RedisClusterException) as exc:
                    raise self._failure(exc, "connecting") from exc
            return self._server

    def _connected(self) -> Server:
        """The shared :class:`Server`, once this store has checked its base path holds no layout-1 store."""
        server = self._server
        if server is not None and self._checked:
            return server
        server = self._acquire()
        if not self._checked:
            self._check_layout(server)
            self._checked = True
        return server

    def _client(self) -> Any:
        """The client, for an operation: the base path checked first (once)."""
        return self._connected().client

    @property
    def client(self) -> Any:
        """The redis-py client (``redis.Redis`` or ``RedisCluster``), shared with every store on this server."""
        return self._acquire().client

    def _check_layout(self, server: Server) -> None:
        """Refuse a base path holding a layout-1 store: its folder was the sorted set named by its own path."""
        if self.base_folder in server.checked:
            return
        try:
            old = _execute(server.client, "EXISTS", self.base_folder)
        except RedisError as exc:
            raise self._failure(exc, "checking the store's layout") from exc
        if old:
            raise LayoutError(
                f"{self._where}: {self.base_folder!r} holds a kydb store in kydb-redis's first layout (the key "
                f"{self.base_folder!r} lists it), which this version does not read. Move it into the current layout "
                f"with: python -m kydb_redis.migrate '{self.url.masked}' (it copies every object with its times and "
                "indexes, then removes the old keys)"
            )
        server.checked.add(self.base_folder)

    @kydb.hookimpl
    def kydb_close(self) -> None:
        with self._open_lock:
            if self._server is not None:
                self._server = None
                POOLS.release(self.options.pool_key())

    # ------------------------------------------------------------------ errors

    def _failure(self, exc: BaseException, doing: str) -> Exception:
        """The kydb error for ``exc``, raised while ``doing`` (e.g. "writing '/a/b'")."""
        detail = str(exc)[:300].rstrip(". ")  # redis-py ends some messages with a period
        if isinstance(exc, (AuthenticationError, NoPermissionError)) or "NOPERM" in detail:
            return PermissionError(
                f"{self._where} refused {doing}: {detail}. Check the user name and password in the URL "
                "and the user's ACL permissions"
            )
        if isinstance(exc, PoolExhausted):
            return kydb.StoreUnavailable(
                f"{self._where}: the connection pool is exhausted while {doing}: {detail}. Raise ?pool_size= "
                f"(now {self.options.pool_size}) or ?pool_timeout= (now {self.options.pool_timeout:g} s) in the URL, "
                "or use fewer threads"
            )
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, RedisClusterException)) or (
            isinstance(exc, redis.exceptions.ClusterError) and not isinstance(exc, redis.ResponseError)
        ):
            return kydb.StoreUnavailable(
                f"{self._where} is unavailable: {doing} failed after {self.options.retries} retries: {detail}. "
                "Check that the server is running and reachable"
            )
        return RedisCommandError(f"{self._where} rejected {doing}: {detail}")

    def error(self, exc: BaseException, doing: str) -> Exception:
        """The kydb error (``StoreUnavailable``, ``PermissionError``, :class:`RedisCommandError`) for a redis-py one."""
        return self._failure(exc, doing)

    def _folder_key(self, folder: str) -> str:
        if self.options.cluster:
            refuse_on_cluster(folder)
        return folder_key(folder)

    # ------------------------------------------------------------------ scripts

    def _call(self, script: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run ``script`` once: one round trip (``EVAL`` the first time, then ``EVALSHA``; ``EVAL`` after NOSCRIPT)."""
        server = self._connected()
        if self.options.wait_replicas and script is not QUERY:
            return self._pipeline(script, [("", list(keys), list(args), 0)], ())[0]
        numkeys = b"%d" % len(keys)  # bytes, as the keys of a put are: redis-py sends them as they are
        if script.sha in server.loaded:
            try:
                return server.command(keys[0], "EVALSHA", script.sha, numkeys, *keys, *args)
            except NoScriptError:  # a restarted or new node, a flushed script cache: this call loads it there
                pass
        result = _execute(server.client, "EVAL", script.body, numkeys, *keys, *args)
        server.loaded.add(script.sha)
        return result

    def _call_many(
        self,
        script: LuaScript,
        calls: Iterable[Call],
        before: Sequence[Sequence[Any]] = (),
        before_replies: list[Any] | None = None,
    ) -> list[Any]:
        """Run ``script`` once per call, up to :data:`PIPELINE_CALLS` calls per round trip.

        ``before`` are commands sent ahead of the first call in the same
        round trip; their replies go to ``before_replies``, when given.
        """
        results: list[Any] = []
        group: list[Call] = []
        size = 0
        for call in calls:
            group.append(call)
            size += call[3]
            if len(group) >= PIPELINE_CALLS or size >= PIPELINE_BYTES:
                results += self._pipeline(script, group, before, before_replies)
                group, size, before = [], 0, ()
        if group or before:
            results += self._pipeline(script, group, before, before_replies)
        return results

    def _pipeline(
        self,
        script: LuaScript,
        group: list[Call],
        before: Sequence[Sequence[Any]],
        before_replies: list[Any] | None = None,
    ) -> list[Any]:
        server = self._connected()
        wait = self.options.wait_replicas
        if len(group) == 1 and not before and not wait:
            _, keys, args, _ = group[0]
            return [self._call(script, keys, args)]
        if wait and self.options.cluster:  # each call on its master's connection, then WAIT there
            replies = self._send(before)
            if before_replies is not None:
                before_replies += replies
            return [self._script_on_node(script, keys, args) for _, keys, args, _ in group]
        for command in ("EVALSHA", "EVAL") if script.sha in server.loaded else ("EVAL",):
            pipe = server.client.pipeline(transaction=False)
            for command_args in before:
                _execute(pipe, *command_args)
            for _, keys, argv, _ in group:
                _execute(pipe, command, script.sha if command == "EVALSHA" else script.body, len(keys), *keys, *argv)
            if wait:
                _execute(pipe, "WAIT", wait, int(self.options.wait_timeout * 1000))
            try:
                replies = list(pipe.execute())
            except NoScriptError:  # every call and command is idempotent: send them again with EVAL
                continue
            server.loaded.add(script.sha)
            if wait:
                self._check_replicas(replies.pop())
            if before_replies is not None:
                before_replies += replies[: len(before)]
            return replies[len(before) :]
        raise AssertionError("unreachable: the EVAL pipeline returned or raised")

    def _send(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Plain commands in one pipelined round trip (one per master of a cluster); their replies.

        With ``?wait_replicas=N`` the writes among them return only once N
        replicas acknowledged them (``WAIT`` on the same connection).
        """
        if not commands:
            return []
        wait = self.options.wait_replicas
        if wait and self.options.cluster:
            return [self._on_node(command[1], [command])[0] for command in commands]
        pipe = self._client().pipeline(transaction=False)
        for command in commands:
            _execute(pipe, *command)
        if wait:
            _execute(pipe, "WAIT", wait, int(self.options.wait_timeout * 1000))
        replies = list(pipe.execute())
        if wait:
            self._check_replicas(replies.pop())
        return replies

    def _script_on_node(self, script: LuaScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        server = self._connected()
        if script.sha in server.loaded:
            try:
                return self._on_node(keys[0], [("EVALSHA", script.sha, len(keys), *keys, *args)])[0]
            except NoScriptError:
                pass
        result = self._on_node(keys[0], [("EVAL", script.body, len(keys), *keys, *args)])[0]
        server.loaded.add(script.sha)
        return result

    def _on_node(self, key: Any, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Commands of ``key``'s hash slot, then ``WAIT``, on one connection to the slot's master (a cluster).

        The cluster client cannot send ``WAIT`` on the connection that wrote,
        so this asks the master's own client, and after a redirection, a
        ``TRYAGAIN`` or a lost connection (a failover) reads the slot map
        again and retries, ``?retries=`` times with backoff.
        """
        client = self._client()
        backoff = EqualJitterBackoff(cap=RETRY_BACKOFF_CAP, base=RETRY_BACKOFF_BASE)
        for attempt in range(self.options.retries + 1):
            try:
                pipe = client.get_redis_connection(client.get_node_from_key(key)).pipeline(transaction=False)
                for command in commands:
                    _execute(pipe, *command)
                _execute(pipe, "WAIT", self.options.wait_replicas, int(self.options.wait_timeout * 1000))
                replies = list(pipe.execute())
            except (redis.ConnectionError, redis.TimeoutError, AskError, TryAgainError, ClusterDownError) as exc:
                if attempt == self.options.retries:
                    raise
                time.sleep(backoff.compute(attempt + 1))
                with contextlib.suppress(RedisError, RedisClusterException):
                    client.nodes_manager.initialize()
                last = exc
                continue
            self._check_replicas(replies.pop())
            return replies
        raise last  # pragma: no cover - the loop returns or raises

    def _check_replicas(self, acknowledged: int) -> None:
        if int(acknowledged) < self.options.wait_replicas:
            raise NotReplicated(
                f"{self._where}: the write was applied on the master but acknowledged by {acknowledged} of the "
                f"{self.options.wait_replicas} replicas ?wait_replicas= asks for within "
                f"{self.options.wait_timeout:g} s: it is lost if the master fails before they catch up"
            )

    def _conflict(self, path: str, doing: str) -> kydb.Conflict:
        return kydb.Conflict(
            f"{path}: its version is not the one expected, so {doing} was refused and nothing was changed in "
            f"{self._where}; read it again (db.read_versioned) and retry"
        )

    # ------------------------------------------------------------------ objects

    def _read(self, paths: Sequence[str]) -> list[bytes | None]:
        """The stored values (header included) of ``paths``, ``None`` for missing ones."""
        server = self._connected()
        client = server.client
        keys = object_keys(paths)
        if self.options.cluster:
            for path in paths:
                refuse_on_cluster(split_path(path)[0])
        if len(keys) == 1:  # GET raises WRONGTYPE for a key that holds something else
            return [server.command(keys[0], "GET", keys[0])]
        if not keys:
            return []
        if self.options.cluster:
            values: list[bytes | None] = client.mget_nonatomic(keys)
        elif len(keys) <= BATCH:
            values = _execute(client, "MGET", *keys)
        else:
            pipe = client.pipeline(transaction=False)
            for chunk in _chunks(keys, BATCH):
                _execute(pipe, "MGET", *chunk)
            values = [value for reply in pipe.execute() for value in reply]
        if None in values:
            self._check_absent([key for key, value in zip(keys, values, strict=True) if value is None])
        return values

    @kydb.hookimpl
    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        try:
            values = self._read(paths)
        except RedisError as exc:
            raise self._failure(exc, f"reading {_describe(paths)}") from exc
        return {path: _blob(value) for path, value in zip(paths, values, strict=True) if value is not None}

    @kydb.hookimpl
    def kydb_get_versioned(self, paths: Sequence[str]) -> Mapping[str, kydb.VersionedBlob]:
        """Blob and version from one ``GET`` (``MGET``) per object: the header travels with the blob."""
        try:
            values = self._read(paths)
        except RedisError as exc:
            raise self._failure(exc, f"reading {_describe(paths)}") from exc
        return {
            path: kydb.VersionedBlob(_blob(value), self._version(value))
            for path, value in zip(paths, values, strict=True)
            if value is not None
        }

    @staticmethod
    def _version(value: bytes) -> str:
        """The version of a stored value: its header's, or ``raw:`` + SHA-1 for a value another tool wrote."""
        if value.startswith(MAGIC):
            return value[24:HEADER_BYTES].decode()
        return "raw:" + hashlib.sha1(value).hexdigest()

    def _check_absent(self, keys: list[bytes]) -> None:
        """Raise if a key ``MGET`` answered as missing exists holding another type (written by something else).

        One ``EXISTS`` for all of them (one more round trip, only when a batch
        misses keys); ``TYPE`` of each only if some exist — which also
        happens when a concurrent writer created them since the ``MGET``.
        """
        if not _execute(self._client(), "EXISTS", *keys):
            return
        pipe = self._client().pipeline(transaction=False)
        for key in keys:
            _execute(pipe, "TYPE", key)
        odd = [
            f"{key.decode()!r} holds a {kind.decode()}"
            for key, kind in zip(keys, pipe.execute(), strict=True)
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
                    f"{path}: the encoded value is {len(blob):,} bytes, over the limit of {MAX_VALUE_BYTES:,} bytes "
                    f"for one object (Redis's 512 MiB for a string, less kydb's header); nothing was written to "
                    f"{self._where}"
                )
        if len(items) == 1 and not indexes and not expect:
            self._put_one(items, mtime_ns)
            return
        groups = _by_folder(items)
        if expect and len(groups) > 1:
            raise ValueError(
                f"a conditional write of {_describe(list(items))} spans {len(groups)} folders; {self._where} checks "
                "and writes atomically within one folder only: write them one folder at a time"
            )
        try:
            calls = list(self._put_calls(groups, items, sortable(mtime_ns), indexes, expect))
            results = self._call_many(PUT, calls)
            for attempt in range(REGISTER_ATTEMPTS + 1):
                self._raise_conflicts(calls, results, "the write")
                retry = [call for call, result in zip(calls, results, strict=True) if result == FOLDER_MISSING]
                if not retry:
                    return
                if attempt == REGISTER_ATTEMPTS:
                    break
                calls = retry
                results = self._into_new_folders(PUT, calls, lambda args: [args[0], args[1], b"m", *args[3:]])
        except RedisError as exc:
            raise self._failure(exc, f"writing {_describe(list(items))}") from exc
        raise RedisCommandError(
            f"{self._where}: writing {_describe(list(items))} failed: its folder was removed again each of "
            f"{REGISTER_ATTEMPTS} times it was created (a concurrent rmdir or rm_tree)"
        )

    def _put_one(self, items: dict[str, bytes], mtime_ns: int) -> None:
        """The common put: one object, no index values, no expectation: one :data:`PUT_ONE` call."""
        ((path, blob),) = items.items()
        cut = path.rfind("/") + 1
        folder = path[:cut]
        key = self._folder_key(folder).encode()  # bytes, which redis-py sends as they are
        keys = [key, key + path[cut:].encode()]
        value = b"".join((MAGIC, sortable(mtime_ns), new_version(), blob))
        try:
            if folder == "/":  # the root always exists
                self._call(PUT_ONE, keys, [value, b"m"])
                return
            if self._call(PUT_ONE, keys, [value]) != FOLDER_MISSING:
                return
            for _ in range(REGISTER_ATTEMPTS):  # a new folder: list it (and those above), mark it, put again
                call = (folder, keys, [value], len(blob))
                if self._into_new_folders(PUT_ONE, [call], lambda args: [*args, b"m"])[0] != FOLDER_MISSING:
                    return
        except RedisError as exc:
            raise self._failure(exc, f"writing {path!r}") from exc
        raise RedisCommandError(f"{self._where}: writing {path!r} failed: its folder could not be created")

    def _into_new_folders(
        self, script: LuaScript, calls: list[Call], marking: Callable[[list[Any]], list[Any]]
    ) -> list[Any]:
        """Create the folders of the put ``calls`` (which found them missing), then run the calls again.

        On a single server, one round trip: a :data:`REGISTER` call lists and
        marks every missing folder atomically, top down, and the puts follow
        on the same connection.  If the base folder is missing, it writes
        nothing and the puts find their folders unmarked: the base folder
        (and those above it) is created, and the caller tries again.  On a
        cluster, whose folders lie in several slots, two round trips: the
        entries in the parents (:meth:`_list_folders`), then the markers with
        the puts, whose ``marking`` of their arguments makes them mark their
        own folders.
        """
        folders = {folder for folder, *_ in calls}
        if not self.options.cluster:
            registered: list[Any] = []
            results = self._call_many(script, calls, [self._register_command(folders)], registered)
            if not int(registered[0]):
                self._create_base()
            return results
        markers = [("ZADD", self._folder_key(f), 0, MARKER) for f in self._list_folders(folders) if f not in folders]
        return self._call_many(script, [(f, keys, marking(args), size) for f, keys, args, size in calls], markers)

    def _below_base(self, folders: set[str]) -> list[str]:
        """``folders`` and every folder between them and the base folder, top down."""
        below: set[str] = set()
        for start in folders:
            folder = start
            while folder not in (self.base_folder, "/"):
                below.add(folder)
                folder = split_path(folder)[0]
        return sorted(below, key=lambda f: (f.count("/"), f))

    def _register_command(self, folders: set[str]) -> tuple[Any, ...]:
        """The :data:`REGISTER` call listing and marking ``folders`` and those above (one ``EVAL``: it is rare)."""
        keys: list[Any] = [self._folder_key(self.base_folder)]
        args: list[Any] = [b"root" if self.base_folder == "/" else b""]
        for folder in self._below_base(folders):
            parent, name = split_path(folder)
            keys += (self._folder_key(parent), self._folder_key(folder))
            args.append("L" + name)
        return ("EVAL", REGISTER.body, len(keys), *keys, *args)

    def _raise_conflicts(self, calls: list[Call], results: list[Any], doing: str) -> None:
        for (folder, keys, _, _), result in zip(calls, results, strict=True):
            if int(result) < CONFLICT:  # CONFLICT - i: the i-th object of the call, KEYS[i + 1]
                raise self._conflict(folder + keys[CONFLICT - int(result)][len(keys[0]) :], doing)

    def _put_calls(
        self,
        groups: dict[str, list[str]],
        items: dict[str, bytes],
        mtime: bytes,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None],
    ) -> Iterator[Call]:
        """:data:`PUT` calls, one folder each, of at most :data:`BATCH` objects and :data:`BATCH_BYTES`."""
        for folder, paths in groups.items():
            key = self._folder_key(folder)
            mark = b"m" if folder == "/" else b""  # the root always exists
            keys: list[Any] = [key]
            values: list[Any] = []
            changes: list[Any] = []  # (object number, index name, sortable value or b'' to clear) triples
            checks: list[Any] = []  # (object number, version or b'' for "absent") pairs
            size = 0
            for path in paths:
                blob = items[path]
                if values and (len(values) >= BATCH or size + len(blob) > BATCH_BYTES):
                    yield folder, keys, [len(values), mtime, mark, len(checks) // 2, *checks, *values, *changes], size
                    keys, values, changes, checks, size = [key], [], [], [], 0
                keys.append(key + split_path(path)[1])
                values.append(b"".join((MAGIC, mtime, new_version(), blob)))
                number = len(values)
                for name, value in indexes.get(path, {}).items():
                    changes += (number, name, b"" if value is None else sortable(value))
                if path in expect:
                    version = expect[path]
                    checks += (number, b"" if version is None else version.encode())
                size += len(blob)
            if values:
                yield folder, keys, [len(values), mtime, mark, len(checks) // 2, *checks, *values, *changes], size

    def _list_folders(self, folders: set[str]) -> list[str]:
        """List every folder of ``folders`` and the missing ones above it in its parent; return them top down.

        One pipelined round trip adds each folder's entry to its parent, from
        the base folder down (existing entries are left as they are), and reads
        the base folder's marker.  Folders above the base path are created only
        if the base folder is missing.  The caller then writes the markers of
        the returned folders (after their entries, so an existing folder is
        always listed).
        """
        ordered = self._below_base(folders)
        commands: list[tuple[Any, ...]] = []
        if self.base_folder != "/":
            commands.append(("ZSCORE", self._folder_key(self.base_folder), MARKER))
        for folder in ordered:
            parent, name = split_path(folder)
            commands.append(("ZADD", self._folder_key(parent), 0, "L" + name))
        replies = self._send(commands)
        if self.base_folder != "/" and replies[0] is None:
            self._create_base()
        return ordered

    def _create_base(self) -> None:
        """Create the missing base folder and the missing folders above it: the only writes outside the base path."""
        chain = []
        folder = self.base_folder
        while folder != "/":
            chain.append(folder)
            folder = split_path(folder)[0]
        chain.reverse()
        try:
            markers = self._send([("ZSCORE", self._folder_key(folder), MARKER) for folder in chain])
            missing = [folder for folder, marker in zip(chain, markers, strict=True) if marker is None]
            self._send([("ZADD", self._folder_key(split_path(f)[0]), 0, "L" + split_path(f)[1]) for f in missing])
            self._send([("ZADD", self._folder_key(folder), 0, MARKER) for folder in missing])
        except (AuthenticationError, NoPermissionError) as exc:
            raise PermissionError(
                f"{self._where}: the base folder {self.base_folder!r} does not exist, and this user may not create "
                f"it ({str(exc)[:200]}). An administrator creates it once, for example: kydb -u "
                f"'{self.url.with_base('')}' mkdir {self.url.base_path!r}"
            ) from exc

    @kydb.hookimpl
    def kydb_delete(self, paths: Sequence[str], expect: Mapping[str, str]) -> None:
        groups = _by_folder(paths)
        if expect and len(groups) > 1:
            raise ValueError(
                f"a conditional delete of {_describe(paths)} spans {len(groups)} folders; {self._where} checks and "
                "deletes atomically within one folder only"
            )
        try:
            calls = list(self._delete_calls(groups, expect))
            self._raise_conflicts(calls, self._call_many(DELETE, calls), "the delete")
        except RedisError as exc:
            raise self._failure(exc, f"deleting {_describe(paths)}") from exc

    def _delete_calls(self, groups: Mapping[str, Sequence[str]], expect: Mapping[str, str]) -> Iterator[Call]:
        """:data:`DELETE` calls, one folder and at most :data:`BATCH` objects each."""
        for folder, paths in groups.items():
            key = self._folder_key(folder)
            for chunk in _chunks(paths, BATCH):
                checks: list[Any] = []
                for number, path in enumerate(chunk, 1):
                    if path in expect:
                        checks += (number, expect[path])
                keys = [key, *(key + split_path(path)[1] for path in chunk)]
                yield folder, keys, [len(checks) // 2, *checks], 0

    @kydb.hookimpl
    def kydb_exists(self, path: str) -> bool:
        try:
            return bool(_execute(self._client(), "EXISTS", object_key(path)))
        except RedisError as exc:
            raise self._failure(exc, f"checking {path!r}") from exc

    @kydb.hookimpl
    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, kydb.ObjectInfo]:
        """Size, times, version and index values: five commands per path, one round trip.

        ``EXISTS``, ``STRLEN`` and ``GETRANGE`` of the header of the object,
        ``ZRANGEBYLEX`` of its listing entry (which holds its ctime) and
        ``HGETALL`` of its index values.  An object another tool wrote has no
        times and its version is ``raw:`` + the SHA-1 of its bytes (read with
        one more ``GET``).
        """
        pipe = self._client().pipeline(transaction=False)
        for path in paths:
            folder, name = split_path(path)
            key = self._folder_key(folder) + name
            _execute(pipe, "EXISTS", key)
            _execute(pipe, "STRLEN", key)
            _execute(pipe, "GETRANGE", key, 0, HEADER_BYTES - 1)
            _execute(pipe, "ZRANGEBYLEX", self._folder_key(folder), f"[L{name}\x00", f"(L{name}\x01", "LIMIT", 0, 1)
            _execute(pipe, "HGETALL", key + "\x00i")
        try:
            replies = pipe.execute()
            raw = [path for i, path in enumerate(paths) if replies[5 * i] and not replies[5 * i + 2].startswith(MAGIC)]
            foreign = dict(zip(raw, self._read(raw), strict=True)) if raw else {}
        except RedisError as exc:
            raise self._failure(exc, f"reading the metadata of {_describe(paths)}") from exc
        found: dict[str, kydb.ObjectInfo] = {}
        for i, path in enumerate(paths):
            exists, size, head, entry, values = replies[5 * i : 5 * i + 5]
            if not exists:
                continue
            index_key = index_hash_key(path)
            indexes = {field.decode(): self._value(value, path, index_key) for field, value in values.items()}
            if path in foreign:
                found[path] = kydb.ObjectInfo(size, None, None, indexes, self._version(foreign[path] or b""))
                continue
            mtime = self._value(head[4:24], path, object_key(path))
            ctime = (
                self._value(entry[0][-SORTABLE_WIDTH:], path, self._folder_key(split_path(path)[0])) if entry else None
            )
            found[path] = kydb.ObjectInfo(size - HEADER_BYTES, mtime, ctime, indexes, head[24:].decode())
        return found

    def _value(self, text: bytes | None, path: str, key: str) -> int:
        """A time or index value of ``path``, read from ``key``, decoded from its sortable form."""
        try:
            return from_sortable(text or b"")
        except ValueError:
            raise RedisCommandError(
                f"{self._where}: {key!r} has {'no value' if text is None else repr(text)} where kydb keeps a time or "
                f"index value of {path!r}: something other than kydb changed it"
            ) from None

    @kydb.hookimpl
    def kydb_query(self, request: kydb.QueryRequest) -> kydb.QueryPage:
        """One page from the folder's index members: one :data:`QUERY` call, O(log n + limit) on the server."""
        folder, index, since, until, limit = request.folder, request.index, request.since, request.until, request.limit
        ascending, after = request.ascending, request.after()
        prefix = {"mtime": b"M", "ctime": b"C"}.get(index) or b"I" + index.encode() + b":"
        low = b"[" + prefix + sortable(since) + b":" if since is not None else b"[" + prefix
        end = prefix[:-1] + bytes([prefix[-1] + 1])  # the first member past every member with this prefix
        high = b"(" + prefix + sortable(until) + b";" if until is not None else b"(" + end  # ';' follows ':'
        if after is not None:  # resume after the last member returned (which lies within the bounds)
            member = b"(" + prefix + sortable(after[0]) + b":" + after[1].encode()
            if ascending:
                low = member
            else:
                high = member
        bounds = [low, high] if ascending else [high, low]
        key = self._folder_key(folder)
        try:
            reply = self._call(QUERY, [key], [*bounds, limit, "asc" if ascending else "desc", prefix])
        except RedisError as exc:
            raise self._failure(exc, f"querying {folder!r} by {index!r}") from exc
        entries = []
        cut = len(prefix)
        for i in range(0, min(len(reply), 3 * limit), 3):
            member, mtime, ctime = reply[i : i + 3]
            name = member[cut + SORTABLE_WIDTH + 1 :].decode()
            path = folder + name
            value = self._value(member[cut : cut + SORTABLE_WIDTH], path, key)
            entries.append(
                kydb.Entry(
                    name,
                    self._value(mtime or None, path, object_key(path)),
                    self._value(ctime or None, path, key),
                    value,
                )
            )
        return kydb.QueryPage.of(entries, len(reply) > 3 * limit)

    # ------------------------------------------------------------------ folders

    @kydb.hookimpl
    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        start = b"[L"
        if cursor is not None:  # past every member of the cursor's name (an object's carries \0 + its ctime)
            start = b"(L" + cursor.encode() + (b"" if cursor.endswith("/") else b"\x01")
        try:
            raw = _execute(self._client(), "ZRANGEBYLEX", self._folder_key(folder), start, b"(M", "LIMIT", 0, page_size)
        except RedisError as exc:
            raise self._failure(exc, f"listing {folder!r}") from exc
        names = [_entry_name(member) for member in raw]
        more = names[-1] if len(names) == page_size else None
        if not include_dirs:
            names = [name for name in names if not name.endswith("/")]
        return kydb.ListPage(names, more)

    @kydb.hookimpl
    def kydb_mkdir(self, folder: str) -> None:
        """One round trip on a single server (a :data:`REGISTER` call); two on a cluster: entries, then markers."""
        try:
            if not self.options.cluster:
                if not int(self._send([self._register_command({folder})])[0]):
                    self._create_base()
                    self._send([self._register_command({folder})])
                return
            markers = self._list_folders({folder})
            self._send([("ZADD", self._folder_key(created), 0, MARKER) for created in markers])
        except RedisError as exc:
            raise self._failure(exc, f"creating folder {folder!r}") from exc

    @kydb.hookimpl
    def kydb_rmdir(self, folder: str) -> None:
        try:
            self._remove_folders([folder])
        except RedisError as exc:
            raise self._failure(exc, f"removing folder {folder!r}") from exc

    def _remove_folders(self, folders: Sequence[str]) -> None:
        """Remove empty folders, deepest first: each folder's set (if it lists nothing), then its entry.

        Two round trips per level; a folder a concurrent put refilled (or
        marked again) in between keeps, or gets back, its entry.
        """
        by_depth: dict[int, list[str]] = {}
        for folder in folders:
            by_depth.setdefault(folder.count("/"), []).append(folder)
        for depth in sorted(by_depth, reverse=True):
            level = by_depth[depth]
            removed = self._call_many(RMDIR, [(f, [self._folder_key(f)], [], 0) for f in level])
            gone = [folder for folder, result in zip(level, removed, strict=True) if int(result) == 1]
            if not gone:
                continue
            entries = [(self._folder_key(split_path(f)[0]), "L" + split_path(f)[1]) for f in gone]
            replies = self._send(
                [("ZREM", *entry) for entry in entries] + [("ZSCORE", self._folder_key(f), MARKER) for f in gone]
            )
            back = [entry for entry, marker in zip(entries, replies[len(gone) :], strict=True) if marker is not None]
            self._send([("ZADD", key, 0, member) for key, member in back])  # created again since: list it again

    @kydb.hookimpl
    def kydb_is_dir(self, folder: str) -> bool:
        """One ``ZSCORE`` of the folder's own marker (inside the folder, so inside the base path)."""
        if folder == "/":
            return True
        try:
            return _execute(self._client(), "ZSCORE", self._folder_key(folder), MARKER) is not None
        except RedisError as exc:
            raise self._failure(exc, f"checking folder {folder!r}") from exc

    def _pages(self, top: str) -> Iterator[tuple[str, list[str]]]:
        """``(folder, names)`` pages of ``top`` and every folder below it, breadth first.

        Each round trip fetches the next page of up to :data:`BATCH` pending
        folders at once (per node of a cluster), so a walk costs about one
        round trip per level.  Paging resumes after the last member seen, so
        deleting what was already listed does not disturb it.
        """
        pending: list[tuple[str, bytes]] = [(top, b"[L")]
        while pending:
            batch, pending = pending[:BATCH], pending[BATCH:]
            pipe = self._client().pipeline(transaction=False)
            for folder, start in batch:
                _execute(pipe, "ZRANGEBYLEX", self._folder_key(folder), start, b"(M", "LIMIT", 0, WALK_PAGE)
            try:
                replies = pipe.execute()
            except RedisError as exc:
                raise self._failure(exc, f"walking {top!r}") from exc
            for (folder, _), raw in zip(batch, replies, strict=True):
                names = [_entry_name(member) for member in raw]
                if len(raw) == WALK_PAGE:
                    pending.append((folder, b"(" + raw[-1]))
                pending.extend((folder + name, b"[L") for name in names if name.endswith("/"))
                yield folder, names

    @kydb.hookimpl
    def kydb_walk(self, folder: str) -> Iterator[str]:
        for parent, names in self._pages(folder):
            for name in names:
                yield parent + name

    @kydb.hookimpl
    def kydb_delete_tree(self, folder: str) -> int:
        """Walk, delete the objects folder by folder, then the folders deepest first (``folder`` too, but
        never the base folder or the root, which stay, empty)."""
        deleted = 0
        objects: dict[str, list[str]] = {}
        pending = 0
        folders: list[str] = [] if folder in ("/", self.base_folder) else [folder]
        try:
            for parent, names in self._pages(folder):
                for name in names:
                    if name.endswith("/"):
                        folders.append(parent + name)
                    else:
                        objects.setdefault(parent, []).append(parent + name)
                        pending += 1
                if pending >= BATCH * PIPELINE_CALLS:  # delete as we go: memory stays bounded
                    deleted += sum(map(int, self._call_many(DELETE, self._delete_calls(objects, {}))))
                    objects, pending = {}, 0
            deleted += sum(map(int, self._call_many(DELETE, self._delete_calls(objects, {}))))
            self._remove_folders(folders)
        except RedisError as exc:
            raise self._failure(exc, f"deleting the tree {folder!r}") from exc
        return deleted
