"""``kydb.connect``: one DB object per URL (and options) per process (the table is :mod:`kydb.opened`)."""

from __future__ import annotations

from collections.abc import Iterable

from . import opened
from .compose import CacheDB, UnionDB
from .db import DB
from .envelope import Codec
from .front import BaseDB
from .registry import backend_class
from .store import capabilities_of
from .url import parse_store_url, scheme_of, split_composite

__all__ = ["connect", "reconnect"]

reconnect = opened.reconnect


def connect(
    url: str,
    *,
    signing_key: str | bytes | Iterable[str | bytes] | None = None,
    require_signed: bool | None = None,
    allowed_modules: Iterable[str] | None = None,
    serializer: str = "pickle",
    legacy_signatures: bool = False,
) -> BaseDB:
    """The DB for ``url``: one store, a ``;`` union or a ``cache|persist`` cache DB.

    The same URL (with the same options) returns the same DB object within a
    process; a DB pickled to another process reconnects there.  Thread-safe.

    Options (every layer of a composite URL gets them):

    * ``signing_key`` — a key, or several for rotation (the first signs, all
      verify); default ``$KYDB_SIGNING_KEY`` (comma-separated).  With a key,
      every blob written is HMAC-SHA256 signed, and a blob whose signature is
      missing or wrong raises :class:`~kydb.CorruptValue` before anything is
      unpickled.
    * ``require_signed`` — refuse unsigned blobs (default: true when there is
      a key; pass false only to read blobs written before signing began).
    * ``allowed_modules`` — unpickle only classes defined in these modules
      (plus plain standard-library types); anything else raises
      :class:`~kydb.CorruptValue` naming the global.  Nothing in the store
      (the DbObj config included) adds to this list.
    * ``serializer`` — ``'pickle'`` (default, any picklable value), ``'json'``
      or ``'msgpack'`` (plain data only; pickles are then read restricted).
    * ``legacy_signatures`` — also accept blobs signed before signatures
      were bound to their key (while you rewrite them; see SECURITY.md).

    Raises :class:`~kydb.UnknownScheme` when no installed backend serves the
    scheme, and ``ValueError`` (naming the URL with passwords masked) for a
    malformed URL or option.  Nothing is written to any store.
    """
    if not isinstance(url, str):
        raise TypeError(f"kydb.connect() takes a URL string, not {type(url).__name__}")
    codec = Codec.from_options(
        signing_key=signing_key,
        require_signed=require_signed,
        allowed_modules=allowed_modules,
        serializer=serializer,
        legacy_signatures=legacy_signatures,
    )
    return reconnect(url, codec)


def _open(url: str, codec: Codec) -> BaseDB:
    kind, parts = split_composite(url)
    if kind == "union":
        return UnionDB(url, codec, [reconnect(part, codec) for part in parts])
    if kind == "cache":
        return CacheDB(url, codec, reconnect(parts[0], codec), reconnect(parts[1], codec))
    cls = backend_class(scheme_of(url), url)
    return DB(parse_store_url(url, path_is_base=capabilities_of(cls).url_path_is_base), cls, codec)


opened.set_opener(_open)
