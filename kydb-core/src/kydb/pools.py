"""One connection pool per server per process, shared by every store on it.

SQLAlchemy's guidance is one engine per database per process, redis-py's one
connection pool per server, boto3's one client per configuration: a process
that opens a thousand base paths (or tables) on one server must not open a
thousand pools.  A backend keeps its pools in a :class:`SharedPools` keyed by
what identifies the server and the pool's settings — never by kydb's own
options such as the base path or table — and each store instance acquires a
reference when it opens and releases it in ``kydb_close``; the pool is closed
when its last store releases it.

A forked child never uses its parent's pools: the first call in a new process
forgets them (without closing them, which would close the parent's sockets)
and builds its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SharedPools"]

T = TypeVar("T")


class SharedPools(Generic[T]):
    """A thread-safe, reference-counted table of pools of one kind (engines, clients...).

    ``close`` is how a pool is closed when its last user releases it.
    """

    def __init__(self, close: Callable[[T], None]) -> None:
        self._close = close
        self._lock = threading.Lock()
        self._pools: dict[Hashable, tuple[T, int]] = {}
        self._pid = os.getpid()

    def _same_process(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's pools are not ours to use or close
            self._lock = threading.Lock()
            self._pools = {}
            self._pid = os.getpid()

    def acquire(self, key: Hashable, create: Callable[[], T]) -> T:
        """The pool for ``key`` (``create()``-d on first use), with one more reference to it."""
        self._same_process()
        with self._lock:
            pool, users = self._pools.get(key, (None, 0))
            if pool is None:
                pool = create()
            self._pools[key] = (pool, users + 1)
            return pool

    def release(self, key: Hashable) -> None:
        """Drop one reference to ``key``'s pool, closing it when that was the last."""
        self._same_process()
        with self._lock:
            found = self._pools.get(key)
            if found is None:
                return
            pool, users = found
            if users > 1:
                self._pools[key] = (pool, users - 1)
                return
            del self._pools[key]
        self._close(pool)

    def users(self, key: Hashable) -> int:
        """How many references ``key``'s pool has (0: none open)."""
        self._same_process()
        with self._lock:
            return self._pools.get(key, (None, 0))[1]

    def __len__(self) -> int:
        self._same_process()
        with self._lock:
            return len(self._pools)
