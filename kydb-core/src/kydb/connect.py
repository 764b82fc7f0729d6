"""``kydb.connect``: one DB object per URL per process."""

from __future__ import annotations

import threading

from .compose import CacheDB, UnionDB
from .db import DB
from .front import BaseDB
from .registry import backend_class
from .url import parse_store_url, scheme_of, split_composite

__all__ = ["connect", "forget"]

_lock = threading.RLock()
_instances: dict[str, BaseDB] = {}


def connect(url: str) -> BaseDB:
    """The DB for ``url``: one store, a ``;`` union or a ``cache|persist`` cache DB.

    The same URL string returns the same DB object within a process (a DB
    pickled to another process reconnects there by its URL).  Thread-safe.

    Raises :class:`~kydb.UnknownScheme` when no installed backend serves the
    scheme, and ``ValueError`` (naming the URL with passwords masked) for a
    malformed URL.  Nothing is written to any store.
    """
    if not isinstance(url, str):
        raise TypeError(f"kydb.connect() takes a URL string, not {type(url).__name__}")
    key = url.strip()
    with _lock:
        db = _instances.get(key)
        if db is None:
            db = _open(key)
            _instances[key] = db
        return db


def _open(url: str) -> BaseDB:
    kind, parts = split_composite(url)
    if kind == "union":
        return UnionDB(url, [connect(part) for part in parts])
    if kind == "cache":
        return CacheDB(url, connect(parts[0]), connect(parts[1]))
    cls = backend_class(scheme_of(url), url)
    return DB(parse_store_url(url, path_is_base=getattr(cls, "url_path_is_base", True)), cls)


def forget(db: BaseDB) -> None:
    """Drop ``db`` from the registry, so the next ``connect`` of its URL opens a new DB."""
    with _lock:
        for key in [k for k, v in _instances.items() if v is db]:
            del _instances[key]
