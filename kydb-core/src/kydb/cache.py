"""The in-process read cache every DB keeps (``docs/contract.md`` section 4).

Entries are keyed by the DB's canonical key.  Three rules keep the cache from
ever holding a value the store does not have:

* a write caches its value only after the store accepted it;
* a failed write drops the entry (the store may or may not hold the new value);
* a read or a write fills the cache only if no write or invalidation happened
  since it started (:meth:`ReadCache.token`, then :meth:`ReadCache.fill` or
  :meth:`ReadCache.put`), so a slow reader or writer cannot bring back a value
  that a delete, ``rm_tree`` or newer write has replaced in the meantime.  A
  write that loses that race drops its entry instead: the next read asks the
  store, which knows the order the writes landed in.

``cache_context()`` blocks nest: entries added inside a block are dropped when
it exits; entries that were cached before it stay.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["ReadCache"]

_MISSING: Any = object()


class ReadCache:
    """A thread-safe key -> value cache with nestable scoped contexts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}
        #: The entries, for lookups on a hot path (``entries.get(key)``); never replaced, only changed
        #: under the cache's own rules — do not write to it.
        self.entries = self._data
        self._epoch = 0
        self._scopes: list[set[str]] = []

    def reset_after_fork(self) -> None:
        """Replace the lock, which another thread may have held at fork time."""
        self._lock = threading.Lock()

    def lookup(self, key: str) -> tuple[bool, Any]:
        """``(True, value)`` on a hit, ``(False, None)`` on a miss."""
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            return False, None
        return True, value

    def token(self) -> int:
        """A marker to take before a store read or write, for :meth:`fill` or :meth:`put` after it."""
        return self._epoch

    def _insert(self, key: str, value: Any) -> None:
        if self._scopes and key not in self._data:
            self._scopes[-1].add(key)
        self._data[key] = value

    def fill(self, key: str, value: Any, token: int) -> None:
        """Cache a value read from the store, unless the cache changed since ``token``."""
        with self._lock:
            if self._epoch == token:
                if self._scopes and key not in self._data:
                    self._scopes[-1].add(key)
                self._data[key] = value

    def fill_many(self, items: Iterable[tuple[str, Any]], token: int) -> None:
        """:meth:`fill` for several values, under one lock."""
        with self._lock:
            if self._epoch != token:
                return
            if self._scopes:
                for key, value in items:
                    self._insert(key, value)
            else:
                self._data.update(items)

    def put(self, key: str, value: Any, token: int) -> None:
        """Cache a value the store has just accepted, if nothing changed since ``token`` (else drop it)."""
        with self._lock:
            unchanged = self._epoch == token
            self._epoch += 1
            if not unchanged:
                self._data.pop(key, None)
            elif self._scopes and key not in self._data:
                self._scopes[-1].add(key)
                self._data[key] = value
            else:
                self._data[key] = value

    def put_many(self, items: Iterable[tuple[str, Any]], token: int) -> None:
        """Cache values the store has just accepted, if nothing changed since ``token`` (else drop them)."""
        with self._lock:
            unchanged = self._epoch == token
            self._epoch += 1
            for key, value in items:
                if unchanged:
                    self._insert(key, value)
                else:
                    self._data.pop(key, None)

    def discard(self, keys: Iterable[str]) -> None:
        """Drop entries (missing ones are ignored)."""
        with self._lock:
            self._epoch += 1
            for key in keys:
                self._data.pop(key, None)

    def discard_folder(self, folder: str) -> None:
        """Drop every entry under ``folder`` (``/a/`` drops ``/a/b`` and ``/a/b/c``)."""
        with self._lock:
            self._epoch += 1
            for key in [k for k in self._data if k.startswith(folder)]:
                del self._data[key]

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._epoch += 1
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Drop, on exit, the entries added inside the block."""
        added: set[str] = set()
        with self._lock:
            self._scopes.append(added)
        try:
            yield
        finally:
            with self._lock:
                # by identity: another thread's scope may hold an equal set
                del self._scopes[next(i for i, s in enumerate(self._scopes) if s is added)]
                self._epoch += 1
                for key in added:
                    self._data.pop(key, None)
