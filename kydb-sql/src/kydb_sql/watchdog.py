"""A read timeout for drivers that have none (psycopg): end an operation the database stopped answering.

psycopg waits on its socket for as long as the server takes, and neither
libpq's ``connect_timeout`` nor TCP keepalives notice a server (or a network
path) that stopped answering while its kernel still acknowledges packets.
Each store operation on such a driver is watched: if it is still running at
its deadline, the watchdog shuts its connection's socket down, the driver's
wait ends with a lost connection, and the store raises
:class:`kydb.StoreUnavailable` saying it timed out.

One daemon thread per process serves every watched operation; watching costs
a lock and a dict update, no thread or timer per operation.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

__all__ = ["Watch", "watching"]


class Watch:
    """One operation's deadline on one socket; ``expired`` tells whether the watchdog ended it."""

    __slots__ = ("deadline", "expired", "fileno")

    def __init__(self, fileno: int, deadline: float) -> None:
        self.fileno = fileno
        self.deadline = deadline
        self.expired = False


class _Watchdog:
    def __init__(self) -> None:
        self._wakeup = threading.Condition(threading.Lock())
        self._watches: dict[int, Watch] = {}  # id(watch) -> watch, while its operation runs
        self._wake_at: float | None = None  # when the thread wakes next; None: it waits for a watch
        self._thread: threading.Thread | None = None

    def start(self, fileno: int, seconds: float) -> Watch:
        watch = Watch(fileno, time.monotonic() + seconds)
        with self._wakeup:
            self._watches[id(watch)] = watch
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="kydb-sql-watchdog", daemon=True)
                self._thread.start()
            elif self._wake_at is None or watch.deadline < self._wake_at:
                self._wakeup.notify()
        return watch

    def stop(self, watch: Watch) -> None:
        """Stop watching; once this returns, the watchdog never touches the socket again."""
        with self._wakeup:
            self._watches.pop(id(watch), None)

    def _serve(self) -> None:
        with self._wakeup:
            while True:
                now = time.monotonic()
                for key, watch in list(self._watches.items()):
                    if watch.deadline <= now:
                        del self._watches[key]
                        watch.expired = True
                        _shut_down(watch.fileno)  # under the lock: the operation still owns the socket
                self._wake_at = min((w.deadline for w in self._watches.values()), default=None)
                self._wakeup.wait(None if self._wake_at is None else self._wake_at - now)


def _shut_down(fileno: int) -> None:
    """End both directions of the socket ``fileno`` (its owner's next read sees the end of the stream)."""
    with contextlib.suppress(OSError):  # already closed
        duplicate = socket.socket(fileno=os.dup(fileno))
        with duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)


_watchdog = _Watchdog()


def _after_fork_in_child() -> None:
    global _watchdog
    _watchdog = _Watchdog()  # the parent's thread does not exist in the child


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def watching(fileno: int, seconds: float) -> Iterator[Watch]:
    """Shut the socket ``fileno`` down if the block is still running after ``seconds``."""
    watchdog = _watchdog
    watch = watchdog.start(fileno, seconds)
    try:
        yield watch
    finally:
        watchdog.stop(watch)
