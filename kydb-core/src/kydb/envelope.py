"""The stored form of a value: the one place blobs are encoded and decoded.

A blob is ``header + payload``::

    b"KYDB"   magic
    0x01      envelope version
    flags     bit 0: the payload is a DbObj record, not a plain value
    0x00      serialiser: 0 = pickle protocol 5

A DbObj is stored as the record ``{"class_name", "key", "stored_dict"}``
pickled as a plain dict — never as a pickle of its class, so classes can move
between modules.  A blob without a valid header is :class:`~kydb.CorruptValue`;
it is never handed to the unpickler.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

from .errors import CorruptValue

__all__ = ["HEADER_SIZE", "MAGIC", "DbObjRecord", "decode", "encode", "encode_record"]

MAGIC = b"KYDB"
VERSION = 1
SERIALISER_PICKLE = 0
FLAG_DBOBJ = 0x01
_KNOWN_FLAGS = FLAG_DBOBJ
HEADER_SIZE = 7
PICKLE_PROTOCOL = 5


@dataclass(frozen=True)
class DbObjRecord:
    """A decoded DbObj before its class is looked up."""

    class_name: str
    key: str
    stored_dict: dict[str, Any]


def _header(flags: int) -> bytes:
    return MAGIC + bytes((VERSION, flags, SERIALISER_PICKLE))


def encode(value: Any) -> bytes:
    """Encode any picklable value.  Raises the pickling error, touching nothing."""
    return _header(0) + pickle.dumps(value, protocol=PICKLE_PROTOCOL)


def encode_record(record: DbObjRecord) -> bytes:
    """Encode a DbObj record (class name, key and stored dict only)."""
    payload = {"class_name": record.class_name, "key": record.key, "stored_dict": record.stored_dict}
    return _header(FLAG_DBOBJ) + pickle.dumps(payload, protocol=PICKLE_PROTOCOL)


def decode(blob: bytes, key: str) -> Any:
    """Decode a blob read from ``key``: the value, or a :class:`DbObjRecord`.

    Raises :class:`~kydb.CorruptValue` naming ``key`` for a blob that is not
    kydb data: wrong magic, unknown version/flags/serialiser, or a payload
    the unpickler rejects for any reason (including a class that can no
    longer be imported — the cause is chained).
    """
    view = memoryview(blob)
    if len(view) < HEADER_SIZE or view[:4] != MAGIC:
        raise CorruptValue(f"{key}: the stored blob is not kydb data (no kydb header)")
    version, flags, serialiser = view[4], view[5], view[6]
    if version != VERSION or flags & ~_KNOWN_FLAGS or serialiser != SERIALISER_PICKLE:
        raise CorruptValue(
            f"{key}: unsupported kydb envelope (version {version}, flags {flags:#x}, "
            f"serialiser {serialiser}); was it written by a newer kydb?"
        )
    try:
        payload = pickle.loads(view[HEADER_SIZE:])
    except Exception as exc:  # any failure of the unpickler means the bytes are bad
        raise CorruptValue(f"{key}: the stored value cannot be unpickled: {exc!r}") from exc
    if not flags & FLAG_DBOBJ:
        return payload
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("class_name"), str)
        or not isinstance(payload.get("stored_dict"), dict)
    ):
        raise CorruptValue(f"{key}: the stored DbObj record is malformed")
    return DbObjRecord(payload["class_name"], str(payload.get("key", key)), payload["stored_dict"])
