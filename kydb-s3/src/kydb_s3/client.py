"""One boto3 client per configuration per process, and the resources that go with it.

boto3's guidance is one client per configuration: a client is thread-safe,
holds the pool of HTTP connections to its endpoint, and costs milliseconds
and memory to make.  A process that opens a thousand base paths (or
buckets) on one endpoint must not make a thousand clients, so every store
takes its :class:`S3Connection` from :data:`CONNECTIONS`, a
:class:`kydb.pools.SharedPools` keyed by :class:`ClientKey` — the endpoint,
region, profile (which picks the credentials), timeouts, pool size and retry
budget — never by bucket or base path.  The last store to close releases it:
its thread pool stops and its connections close.  A forked child makes its
own (``SharedPools`` forgets the parent's).

An :class:`S3Connection` holds, besides the client:

* **connection slots** (:class:`Slots`): botocore never waits for a
  connection — when its pool of ``max_pool_connections`` is in use it opens
  more and drops them after one request.  So kydb counts its own requests:
  each takes a slot of ``?pool_size=`` for as long as it runs (each part of
  a multipart upload is a request of its own), and a request that finds
  none free waits at most ``?pool_timeout=`` seconds, then raises
  :class:`kydb.StoreUnavailable` saying the pool is exhausted and how to
  raise it.  The connections open to the endpoint are therefore at most
  ``pool_size``.
* **a thread pool** of :data:`CONCURRENCY` workers (fewer if the pool is
  smaller) for batches (``get_many``, ``set_many``, ``stat``, scans,
  ``mkdir``'s markers, ``rm_tree``'s deletes, a multipart upload's parts),
  shared by the client's stores.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.session
from botocore.config import Config
from botocore.retries.standard import DEFAULT_MAX_ATTEMPTS

from kydb.pools import SharedPools

from .options import S3Options

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = [
    "CONCURRENCY",
    "CONNECTIONS",
    "MULTIPART_CHUNKSIZE",
    "MULTIPART_THRESHOLD",
    "ClientKey",
    "S3Connection",
    "Slots",
    "acquire",
]

#: Requests one batch runs at once (get_many, set_many, stat, scans, mkdir, rm_tree's deletes, a multipart
#: upload's parts).
CONCURRENCY = 16
#: Blobs this large or larger are uploaded in parts: the parts go up in parallel, and one ``PutObject``
#: takes at most 5 GB.
MULTIPART_THRESHOLD = 8 * 1024 * 1024
#: The size of each part but the last (S3 takes at most 10,000 parts: blobs up to 78 GiB).
MULTIPART_CHUNKSIZE = 8 * 1024 * 1024

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class ClientKey:
    """What makes two stores' clients interchangeable: everything but the bucket, base path and pool wait."""

    endpoint_url: str | None
    region: str | None
    profile: str | None
    connect_timeout: float
    read_timeout: float
    pool_size: int
    #: botocore's retry budget (``AWS_MAX_ATTEMPTS`` or ``max_attempts`` in ~/.aws/config, else 3), read
    #: when the store opens: a store opened after it changes gets a client that follows it.
    max_attempts: int


class Slots:
    """A count of requests in flight, at most ``size``: what keeps a client within its pool of connections."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._changed = threading.Condition()

    @contextmanager
    def held(self, count: int, timeout: float) -> Iterator[bool]:
        """Hold ``count`` slots (at most :attr:`size`) while the block runs.

        Yields ``False``, holding nothing, if they did not come free within
        ``timeout`` seconds.
        """
        count = min(count, self.size)
        with self._changed:
            if not self._changed.wait_for(lambda: self._free >= count, timeout):
                got = False
            else:
                self._free -= count
                got = True
        try:
            yield got
        finally:
            if got:
                with self._changed:
                    self._free += count
                    self._changed.notify_all()


# One boto3 session per (profile, region): making a session loads botocore's models again (~75 ms), a
# client of a loaded one takes a few ms.  Sessions are not thread-safe, so clients are made under the lock.
_sessions: dict[tuple[str | None, str | None], tuple[boto3.session.Session, botocore.session.Session]] = {}
_sessions_lock = threading.Lock()


def _forget_sessions_in_child() -> None:
    global _sessions_lock
    _sessions_lock = threading.Lock()  # another thread of the parent may have held it at fork time
    _sessions.clear()


os.register_at_fork(after_in_child=_forget_sessions_in_child)


def _session(profile: str | None, region: str | None) -> tuple[boto3.session.Session, botocore.session.Session]:
    """The process's session for ``(profile, region)``; call under ``_sessions_lock``."""
    found = _sessions.get((profile, region))
    if found is None:
        core = botocore.session.get_session()
        found = (boto3.session.Session(profile_name=profile, region_name=region, botocore_session=core), core)
        _sessions[(profile, region)] = found
    return found


_worker = threading.local()


def _mark_worker() -> None:
    _worker.active = True


class S3Connection:
    """A boto3 client and what its stores share with it: connection slots and a thread pool."""

    def __init__(self, key: ClientKey) -> None:
        self.key = key
        with _sessions_lock:
            session, _ = _session(key.profile, key.region)
            #: The boto3 client (thread-safe), shared by every store of this configuration in the process.
            self.client: S3Client = session.client(
                "s3",
                endpoint_url=key.endpoint_url,
                config=Config(
                    retries={"mode": "standard", "total_max_attempts": key.max_attempts},
                    max_pool_connections=key.pool_size,
                    connect_timeout=key.connect_timeout,
                    read_timeout=key.read_timeout,
                ),
            )
        #: kydb's requests in flight through the client (see the module docstring).
        self.slots = Slots(key.pool_size)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ batches

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    min(CONCURRENCY, self.key.pool_size), thread_name_prefix="kydb-s3", initializer=_mark_worker
                )
            return self._pool

    def submit(self, work: Callable[..., _R], *args: Any) -> Future[_R]:
        """``work(*args)`` on the thread pool."""
        return self._executor().submit(work, *args)

    def each(self, work: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``work`` applied to every item, on the thread pool when there are several; results in order.

        On the first failure the items not yet started are cancelled, the
        requests already under way are waited for, and the failure is raised.
        Called from one of the pool's own workers, it runs the items there,
        one after the other: a worker waiting for work queued behind it could
        wait for ever.
        """
        if len(items) <= 1 or getattr(_worker, "active", False):
            return [work(item) for item in items]
        futures = [self.submit(work, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            for future in futures:
                future.cancel()
            wait(futures)
            failed.result()  # raises
        return [future.result() for future in futures]

    def close(self) -> None:
        """Stop the thread pool (waiting for its work) and close the connections."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()


#: The process's connections, one per :class:`ClientKey`.
CONNECTIONS: SharedPools[S3Connection] = SharedPools(S3Connection.close)


def client_key(options: S3Options) -> ClientKey:
    """The :class:`ClientKey` of a store's options, reading the retry budget from boto3's configuration.

    Raises botocore's ``ProfileNotFound`` for an unknown profile.
    """
    with _sessions_lock:
        _, core = _session(options.profile, options.region)
        configured = core.get_config_variable("max_attempts")
    return ClientKey(
        endpoint_url=options.endpoint_url,
        region=options.region,
        profile=options.profile,
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        pool_size=options.pool_size,
        max_attempts=int(configured) if configured is not None else DEFAULT_MAX_ATTEMPTS,
    )


def acquire(key: ClientKey) -> S3Connection:
    """The process's connection for ``key`` (made on first use), with one more user; give it back with ``release``."""
    return CONNECTIONS.acquire(key, lambda: S3Connection(key))


def release(key: ClientKey) -> None:
    """Give back one use of ``key``'s connection; the last one closes it."""
    CONNECTIONS.release(key)
