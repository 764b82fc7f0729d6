"""The table of open DBs: one DB object per URL and codec per process, and who holds it.

It sits below the DB front so that a DB can be pickled (it travels as its
URL and codec, and :func:`reconnect` brings it back) and closed (:func:`release`)
without the front importing :mod:`kydb.connect`.  Opening a DB that is not in
the table is :mod:`kydb.connect`'s job; it installs its opener here when
``kydb`` is imported, which every unpickling of a DB does first.

**Lifetimes.**  ``connect`` returns the same object for the same URL, so one
part of a program must not close it under another.  Each ``connect`` (and
each unpickling) is a *hold*; ``db.close()`` — or leaving ``with db:`` —
gives one back, and the DB releases its connections when the last hold is
given back.  A DB used after that opens its connections again on first use
and is back in the table (held by nobody until someone connects).  Closing a
DB nobody holds is a no-op, so ``close()`` is safe to repeat.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .envelope import Codec
    from .front import BaseDB

__all__ = ["adopt", "holds", "reconnect", "release", "set_opener"]

Opener = Callable[[str, "Codec"], "BaseDB"]


@dataclass
class _Entry:
    db: BaseDB
    holds: int = 0


_lock = threading.RLock()
_instances: dict[tuple[str, Codec], _Entry] = {}
_opener: Opener | None = None


def set_opener(opener: Opener) -> None:
    """Install the function that opens a DB for a URL and codec (:mod:`kydb.connect` does)."""
    global _opener
    _opener = opener


def reconnect(url: str, codec: Codec) -> BaseDB:
    """The open DB for ``url`` and ``codec`` (opened on first use), with one more hold on it.  Thread-safe."""
    key = (url.strip(), codec)
    with _lock:
        entry = _instances.get(key)
        if entry is None:
            if _opener is None:
                raise RuntimeError("kydb.connect is not imported; import kydb first")
            entry = _instances[key] = _Entry(_opener(key[0], codec))
        entry.holds += 1
        return entry.db


def release(url: str, codec: Codec, db: BaseDB) -> bool:
    """Give back one hold on ``db``; true when that was the last, and its connections must go."""
    key = (url.strip(), codec)
    with _lock:
        entry = _instances.get(key)
        if entry is None or entry.db is not db:
            return False  # not open (closed already): closing again is a no-op
        if entry.holds > 1:
            entry.holds -= 1
            return False
        del _instances[key]
        return True


def adopt(url: str, codec: Codec, db: BaseDB) -> None:
    """Put ``db`` back in the table after it reopened on use, unless another DB took its URL meanwhile."""
    with _lock:
        _instances.setdefault((url.strip(), codec), _Entry(db))


def holds(url: str, codec: Codec) -> int:
    """How many holds the open DB for ``url`` has (0 when none is open)."""
    with _lock:
        entry = _instances.get((url.strip(), codec))
        return 0 if entry is None else entry.holds
