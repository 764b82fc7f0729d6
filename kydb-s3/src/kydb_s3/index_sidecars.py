"""Where kydb-s3 keeps user index values: one small JSON object beside each indexed object.

The values of ``db.set(key, value, index={...})`` for the object with S3 key
``books/B1`` live in the object ``books/.kydb-index/B1``, a JSON mapping of
index name to int (``{"class_date": 20260905}``).

Why not the object's own metadata: ``PutObject`` replaces an object's
metadata, so values kept there would vanish on every rewrite that does not
repeat them, and a plain ``db[key] = value`` knows nothing of them without
first reading them back (a second request per put).  A sidecar is written
only by puts that carry index values, so a plain rewrite stays one
``PutObject`` and leaves the values alone.  S3 metadata names are also
case-insensitive (``classDate`` and ``classdate`` would be one header),
which index names are not; JSON keeps them as given.

``.kydb-index`` is a dot-name, which kydb keys cannot use outside system
objects.  kydb-s3 reserves it everywhere: to every read (listing,
``is_dir``, ``exists``, get, stat, query) a reserved folder and everything
in it is absent, and every write or delete inside it (put, ``mkdir``,
delete, ``rmdir``, ``rm_tree``) raises :class:`kydb.InvalidKey`.  Sidecars
go only with their objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from kydb.keys import MAX_PATH_BYTES

__all__ = [
    "INDEX_FOLDER",
    "decode_index_values",
    "encode_index_values",
    "fitting_sidecar_key",
    "in_index_folder",
    "owner_key",
    "sidecar_key",
    "sidecar_prefix",
]

#: The hidden folder, in every folder holding indexed objects, that holds their sidecars.
INDEX_FOLDER = ".kydb-index"

_INT64 = (-(2**63), 2**63 - 1)


def sidecar_prefix(folder_prefix: str) -> str:
    """The key prefix of the sidecars of the objects directly under ``folder_prefix`` (``''`` or ``'a/b/'``)."""
    return f"{folder_prefix}{INDEX_FOLDER}/"


def sidecar_key(key: str) -> str:
    """The key of the sidecar holding the index values of the object with S3 key ``key``.

    It is 12 bytes longer than ``key``: a key within 12 bytes of S3's
    1,024-byte limit can have no sidecar (see :func:`fitting_sidecar_key`).
    """
    folder, _, name = key.rpartition("/")
    return sidecar_prefix(f"{folder}/" if folder else "") + name


def fitting_sidecar_key(key: str) -> str | None:
    """:func:`sidecar_key` of ``key``, or ``None`` when it would be over S3's key limit.

    S3 keys are at most :data:`kydb.keys.MAX_PATH_BYTES` (1,024) bytes of
    UTF-8; an object whose sidecar key would be longer has no sidecar.
    """
    sidecar = sidecar_key(key)
    return sidecar if len(sidecar.encode()) <= MAX_PATH_BYTES else None


def owner_key(sidecar: str) -> str:
    """The key of the object whose index values the sidecar ``sidecar`` holds (the inverse of :func:`sidecar_key`)."""
    folder, _, name = sidecar.rpartition("/")
    return folder[: -len(INDEX_FOLDER)] + name


def in_index_folder(path: str) -> bool:
    """Whether ``path`` (a kydb path, object or folder, or an S3 key) lies in a reserved sidecar folder."""
    return f"/{INDEX_FOLDER}/" in f"/{path.strip('/')}/"


def encode_index_values(values: Mapping[str, int]) -> bytes:
    """A sidecar's body: the values as a JSON object, names sorted."""
    return json.dumps(dict(sorted(values.items())), separators=(",", ":")).encode()


def decode_index_values(body: bytes) -> dict[str, int]:
    """The values in a sidecar's body; ``ValueError`` if it is not a JSON object of names to 64-bit ints."""
    try:
        values = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(values, dict):
        raise ValueError(f"a JSON {type(values).__name__}, not an object of index names to ints")
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"index {name!r} has the value {value!r}, not a 64-bit int")
    return values
