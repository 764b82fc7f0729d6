"""The table of open DBs: one DB object per URL and codec per process.

It sits below the DB front so that a DB can be pickled (it travels as its
URL and codec, and :func:`reconnect` brings it back) and closed (:func:`forget`)
without the front importing :mod:`kydb.connect`.  Opening a DB that is not in
the table is :mod:`kydb.connect`'s job; it installs its opener here when
``kydb`` is imported, which every unpickling of a DB does first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .envelope import Codec
    from .front import BaseDB

__all__ = ["forget", "reconnect", "set_opener"]

Opener = Callable[[str, "Codec"], "BaseDB"]

_lock = threading.RLock()
_instances: dict[tuple[str, Codec], BaseDB] = {}
_opener: Opener | None = None


def set_opener(opener: Opener) -> None:
    """Install the function that opens a DB for a URL and codec (:mod:`kydb.connect` does)."""
    global _opener
    _opener = opener


def reconnect(url: str, codec: Codec) -> BaseDB:
    """The open DB for ``url`` and ``codec``, opening it on first use.  Thread-safe."""
    key = (url.strip(), codec)
    with _lock:
        db = _instances.get(key)
        if db is None:
            if _opener is None:
                raise RuntimeError("kydb.connect is not imported; import kydb first")
            db = _opener(key[0], codec)
            _instances[key] = db
        return db


def forget(db: BaseDB) -> None:
    """Drop ``db`` from the table, so the next connect of its URL opens a new DB."""
    with _lock:
        for key in [k for k, v in _instances.items() if v is db]:
            del _instances[key]
