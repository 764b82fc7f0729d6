"""A sorted list whose inserts and removals cost O(log n + chunk), not O(n).

A plain Python list kept sorted with ``bisect.insort`` moves every later
element on each insert or delete: in a folder of 50,000 objects, every
overwrite (which moves an object in its folder's ``mtime`` order) would copy
hundreds of kilobytes.  :class:`SortedList` keeps the items in sorted chunks
of at most ``2 * LOAD`` and a list of each chunk's largest item, so a change
touches one chunk.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

__all__ = ["SortedList"]

#: Folder children are names; index orders are (value, name) pairs.
T = TypeVar("T", str, tuple[int, str])

LOAD = 256


class SortedList(Generic[T]):
    """A set of mutually comparable items, iterated in ascending order from any point."""

    __slots__ = ("_chunks", "_maxes")

    def __init__(self) -> None:
        self._chunks: list[list[T]] = []
        self._maxes: list[T] = []

    def __len__(self) -> int:
        return sum(len(chunk) for chunk in self._chunks)

    def __bool__(self) -> bool:
        return bool(self._chunks)

    def __iter__(self) -> Iterator[T]:
        for chunk in self._chunks:
            yield from chunk

    def add(self, item: T) -> None:
        """Insert ``item`` (which must not be present)."""
        chunks, maxes = self._chunks, self._maxes
        if not chunks:
            chunks.append([item])
            maxes.append(item)
            return
        i = bisect_left(maxes, item)
        if i == len(chunks):
            i -= 1
            chunk = chunks[i]
            chunk.append(item)
            maxes[i] = item
        else:
            chunk = chunks[i]
            insort(chunk, item)
        if len(chunk) > 2 * LOAD:
            chunks[i : i + 1] = [chunk[:LOAD], chunk[LOAD:]]
            maxes[i : i + 1] = [chunk[LOAD - 1], chunk[-1]]

    def discard(self, item: T) -> None:
        """Remove ``item`` if present."""
        chunks, maxes = self._chunks, self._maxes
        i = bisect_left(maxes, item)
        if i == len(chunks):
            return
        chunk = chunks[i]
        j = bisect_left(chunk, item)
        if j == len(chunk) or chunk[j] != item:
            return
        del chunk[j]
        if chunk:
            maxes[i] = chunk[-1]
        else:
            del chunks[i], maxes[i]

    def __contains__(self, item: Any) -> bool:
        i = bisect_left(self._maxes, item)
        if i == len(self._chunks):
            return False
        chunk = self._chunks[i]
        j = bisect_left(chunk, item)
        return j < len(chunk) and chunk[j] == item

    def ascending(self, low: Any = None, *, inclusive: bool = True) -> Iterator[T]:
        """Items ``>= low`` (``> low`` unless ``inclusive``), smallest first; every item when ``low`` is None."""
        chunks = self._chunks
        if low is None:
            i, j = 0, 0
        else:
            find = bisect_left if inclusive else bisect_right
            i = find(self._maxes, low)
            if i == len(chunks):
                return
            j = find(chunks[i], low)
        for k in range(i, len(chunks)):
            chunk = chunks[k]
            yield from (chunk[j:] if k == i else chunk)

    def descending(self, high: Any = None, *, inclusive: bool = False) -> Iterator[T]:
        """Items ``< high`` (``<= high`` if ``inclusive``), largest first; every item when ``high`` is None."""
        chunks = self._chunks
        if not chunks:
            return
        if high is None:
            i, j = len(chunks) - 1, len(chunks[-1])
        else:
            find = bisect_right if inclusive else bisect_left
            i = find(self._maxes, high)
            if i == len(chunks):
                i, j = i - 1, len(chunks[-1])
            else:
                j = find(chunks[i], high)
        for k in range(i, -1, -1):
            chunk = chunks[k]
            for m in range((j if k == i else len(chunk)) - 1, -1, -1):
                yield chunk[m]
