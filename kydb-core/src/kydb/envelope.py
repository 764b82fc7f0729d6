"""The stored form of a value: the one place blobs are encoded, signed, verified and decoded.

A blob is ``header [+ signature] + payload``::

    b"KYDB"      magic
    0x01         envelope version
    flags        bit 0: the payload is a DbObj record; bit 1: a signature follows the header
    serialiser   0 = pickle protocol 5, 1 = JSON, 2 = msgpack
    [32 bytes]   HMAC-SHA256 of header + payload, when signed

A DbObj is stored as the record ``{"class_name", "key", "stored_dict"}`` — a
plain dict, never a pickle of its class, so classes can move between modules.

A :class:`Codec` holds one DB's choices: the serialiser it writes with, its
signing keys (the first signs; all verify, for rotation), whether unsigned
blobs are refused, and which modules its unpickler may load globals from.
Every blob says which serialiser wrote it, so a store can hold several.
Nothing is unpickled before the header is valid and, with signing keys, the
signature has been verified with a constant-time compare.  Any failure is
:class:`~kydb.CorruptValue` naming the key.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import io
import json
import os
import pickle
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import CorruptValue

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "SAFE_GLOBALS",
    "Codec",
    "DbObjRecord",
    "decode",
    "describe",
    "encode",
    "encode_record",
]

MAGIC = b"KYDB"
VERSION = 1
FLAG_DBOBJ = 0x01
FLAG_SIGNED = 0x02
_KNOWN_FLAGS = FLAG_DBOBJ | FLAG_SIGNED
HEADER_SIZE = 7
MAC_SIZE = 32
PICKLE_PROTOCOL = 5
SERIALIZERS = {"pickle": 0, "json": 1, "msgpack": 2}
_SERIALIZER_NAMES = {code: name for name, code in SERIALIZERS.items()}
MIN_KEY_BYTES = 16

#: Globals a restricted unpickler always allows: plain data types of the
#: standard library.  Functions (``builtins.eval``, ``os.system``...) never are.
SAFE_GLOBALS: dict[str, frozenset[str]] = {
    "builtins": frozenset(
        {
            "bool",
            "bytearray",
            "bytes",
            "complex",
            "dict",
            "float",
            "frozenset",
            "int",
            "list",
            "object",
            "range",
            "set",
            "slice",
            "str",
            "tuple",
        }
    ),
    "datetime": frozenset({"date", "datetime", "time", "timedelta", "timezone"}),
    "decimal": frozenset({"Decimal"}),
    "collections": frozenset({"Counter", "OrderedDict", "defaultdict", "deque"}),
}

_storing = threading.local()
_PLAIN_PICKLE = MAGIC + bytes((VERSION, 0, 0))  # no flags, serialiser 0


def is_storing() -> bool:
    """Whether the current thread is pickling a value for a store."""
    return getattr(_storing, "depth", 0) > 0


@dataclass(frozen=True)
class DbObjRecord:
    """A decoded DbObj before its class is looked up."""

    class_name: str
    key: str
    stored_dict: dict[str, Any]


def _module_allowed(module: str, allowed: Iterable[str]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in allowed)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: io.BytesIO, allowed: frozenset[str], trusted: Callable[[], Iterable[str]] | None) -> None:
        super().__init__(data)
        self._allowed = allowed
        self._trusted = trusted

    def find_class(self, module: str, name: str) -> Any:
        safe = SAFE_GLOBALS.get(module)
        if (safe is not None and name in safe) or _module_allowed(module, self._allowed):
            return super().find_class(module, name)
        if self._trusted is not None and _module_allowed(module, self._trusted()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load global {module}.{name}: its module is not in allowed_modules")


def _check_plain(value: Any, serializer: str, where: str = "value") -> None:
    """Refuse what a plain-data serialiser would silently change (tuples, non-str keys...)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, bytes) and serializer == "msgpack":
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, serializer, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise TypeError(f"the {serializer} serializer cannot store the non-str key {k!r} in {where}")
            _check_plain(item, serializer, f"{where}[{k!r}]")
        return
    raise TypeError(
        f"the {serializer} serializer stores plain data only (dict with str keys, list, str, int, float, "
        f"bool, None{', bytes' if serializer == 'msgpack' else ''}); {where} is a {type(value).__name__}. "
        "Convert it, or connect with serializer='pickle'"
    )


def _msgpack() -> Any:
    try:
        return importlib.import_module("msgpack")
    except ImportError as exc:
        raise ImportError("the msgpack serializer needs the msgpack package: pip install msgpack") from exc


def _keys_from(signing_key: str | bytes | Iterable[str | bytes] | None) -> tuple[bytes, ...]:
    if signing_key is None:
        text = os.environ.get("KYDB_SIGNING_KEY", "")
        raw: list[str | bytes] = [k.strip() for k in text.split(",") if k.strip()]
    elif isinstance(signing_key, (str, bytes)):
        raw = [signing_key]
    else:
        raw = list(signing_key)
    keys = tuple(k.encode() if isinstance(k, str) else bytes(k) for k in raw)
    for i, k in enumerate(keys):
        if len(k) < MIN_KEY_BYTES:
            raise ValueError(f"signing key #{i + 1} is {len(k)} bytes; use at least {MIN_KEY_BYTES} random bytes")
    return keys


@dataclass(frozen=True)
class Codec:
    """How one DB writes and reads blobs.  Its ``repr`` never shows the keys."""

    serializer: str = "pickle"
    signing_keys: tuple[bytes, ...] = field(default=(), repr=False)
    require_signed: bool = False
    allowed_modules: frozenset[str] | None = None

    @classmethod
    def from_options(
        cls,
        *,
        signing_key: str | bytes | Iterable[str | bytes] | None = None,
        require_signed: bool | None = None,
        allowed_modules: Iterable[str] | None = None,
        serializer: str = "pickle",
    ) -> Codec:
        """Build a codec from :func:`kydb.connect`'s options.

        ``signing_key`` defaults to ``$KYDB_SIGNING_KEY`` (comma-separated for
        several).  With keys, ``require_signed`` defaults to true; set it to
        false only to read blobs written before signing was turned on.
        ``require_signed=True`` without a key is an error: nothing could be
        verified.  Raises ``ValueError`` for a bad option.
        """
        if serializer not in SERIALIZERS:
            raise ValueError(f"unknown serializer {serializer!r}; choose one of {sorted(SERIALIZERS)}")
        if serializer == "msgpack":
            _msgpack()
        keys = _keys_from(signing_key)
        if require_signed and not keys:
            raise ValueError(
                "require_signed=True needs a signing key (signing_key=... or $KYDB_SIGNING_KEY) to verify with"
            )
        modules: frozenset[str] | None = None
        if allowed_modules is not None:
            if isinstance(allowed_modules, str):
                raise TypeError("allowed_modules is a list of module names, not one string")
            modules = frozenset(allowed_modules)
        elif serializer != "pickle":
            modules = frozenset()  # a store that writes plain data never runs arbitrary pickles
        return cls(serializer, keys, bool(keys) if require_signed is None else require_signed, modules)

    # ------------------------------------------------------------------ writing

    def _seal(self, flags: int, payload: bytes) -> bytes:
        if not self.signing_keys:
            return MAGIC + bytes((VERSION, flags, SERIALIZERS[self.serializer])) + payload
        header = MAGIC + bytes((VERSION, flags | FLAG_SIGNED, SERIALIZERS[self.serializer]))
        mac = hmac.new(self.signing_keys[0], header, hashlib.sha256)
        mac.update(payload)
        return header + mac.digest() + payload

    def _serialize(self, value: Any) -> bytes:
        if self.serializer == "pickle":
            depth = getattr(_storing, "depth", 0)  # marks this thread as pickling for a store (is_storing)
            _storing.depth = depth + 1
            try:
                return pickle.dumps(value, protocol=PICKLE_PROTOCOL)
            finally:
                _storing.depth = depth
        _check_plain(value, self.serializer)
        if self.serializer == "json":
            return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        return bytes(_msgpack().packb(value, use_bin_type=True))

    def encode(self, value: Any) -> bytes:
        """Encode any value the serialiser takes.  Raises its error (pickling, TypeError), touching nothing."""
        return self._seal(0, self._serialize(value))

    def encode_record(self, record: DbObjRecord) -> bytes:
        """Encode a DbObj record (class name, key and stored dict only)."""
        payload = {"class_name": record.class_name, "key": record.key, "stored_dict": record.stored_dict}
        return self._seal(FLAG_DBOBJ, self._serialize(payload))

    # ------------------------------------------------------------------ reading

    def _verified_payload(self, view: memoryview, flags: int, key: str) -> memoryview:
        if not flags & FLAG_SIGNED:
            if self.require_signed:
                raise CorruptValue(f"{key}: the stored blob is not signed, and this DB requires signed blobs")
            return view[HEADER_SIZE:]
        if len(view) < HEADER_SIZE + MAC_SIZE:
            raise CorruptValue(f"{key}: the stored blob is truncated (no room for its signature)")
        payload = view[HEADER_SIZE + MAC_SIZE :]
        if self.signing_keys:
            signature = bytes(view[HEADER_SIZE : HEADER_SIZE + MAC_SIZE])
            for signing_key in self.signing_keys:
                mac = hmac.new(signing_key, view[:HEADER_SIZE], hashlib.sha256)
                mac.update(payload)
                if hmac.compare_digest(mac.digest(), signature):
                    break
            else:
                raise CorruptValue(
                    f"{key}: the stored blob's signature does not verify with any of this DB's signing keys "
                    "(tampered with, or signed with a key this DB does not have)"
                )
        return payload

    def _deserialize(self, payload: memoryview, serializer: int, trusted: Callable[[], Iterable[str]] | None) -> Any:
        if serializer == SERIALIZERS["pickle"]:
            if self.allowed_modules is None:
                return pickle.loads(payload)
            return _RestrictedUnpickler(io.BytesIO(payload), self.allowed_modules, trusted).load()
        if serializer == SERIALIZERS["json"]:
            return json.loads(bytes(payload))
        return _msgpack().unpackb(payload, raw=False)

    def decode(self, blob: bytes, key: str, trusted: Callable[[], Iterable[str]] | None = None) -> Any:
        """Decode a blob read from ``key``: the value, or a :class:`DbObjRecord`.

        ``trusted`` lists further modules a restricted unpickler may load from
        (the DbObj config's); it is only called when a global needs it.
        Raises :class:`~kydb.CorruptValue` naming ``key`` for anything that is
        not valid kydb data this DB accepts: wrong magic, unknown
        version/flags/serialiser, a missing or wrong signature, a refused
        global, or a payload the deserialiser rejects for any reason (a class
        that can no longer be imported included — the cause is chained).
        """
        if not self.require_signed and self.allowed_modules is None and blob.startswith(_PLAIN_PICKLE):
            # The common case: an unsigned pickle of a plain value, with nothing to check first.
            try:
                return pickle.loads(memoryview(blob)[HEADER_SIZE:])
            except Exception as exc:
                raise CorruptValue(f"{key}: the stored value cannot be loaded (pickle): {exc}") from exc
        view = memoryview(blob)
        if len(view) < HEADER_SIZE or view[:4] != MAGIC:
            raise CorruptValue(f"{key}: the stored blob is not kydb data (no kydb header)")
        version, flags, serializer = view[4], view[5], view[6]
        if version != VERSION or flags & ~_KNOWN_FLAGS or serializer not in _SERIALIZER_NAMES:
            raise CorruptValue(
                f"{key}: unsupported kydb envelope (version {version}, flags {flags:#x}, "
                f"serializer {serializer}); was it written by a newer kydb?"
            )
        payload = self._verified_payload(view, flags, key)
        try:
            value = self._deserialize(payload, serializer, trusted)
        except Exception as exc:  # any failure of the deserialiser means the bytes are not usable
            name = _SERIALIZER_NAMES[serializer]
            raise CorruptValue(f"{key}: the stored value cannot be loaded ({name}): {exc}") from exc
        if not flags & FLAG_DBOBJ:
            return value
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("class_name"), str)
            or not isinstance(value.get("stored_dict"), dict)
        ):
            raise CorruptValue(f"{key}: the stored DbObj record is malformed")
        return DbObjRecord(value["class_name"], str(value.get("key", key)), value["stored_dict"])


_DEFAULT = Codec()


def describe(blob: bytes) -> str:
    """What a stored blob's header says, e.g. ``'pickle, signed, DbObj record'`` (only the header is read)."""
    if len(blob) < HEADER_SIZE or blob[:4] != MAGIC:
        return "not kydb data"
    version, flags, serializer = blob[4], blob[5], blob[6]
    if version != VERSION or flags & ~_KNOWN_FLAGS or serializer not in _SERIALIZER_NAMES:
        return f"unsupported kydb envelope (version {version}, flags {flags:#x}, serializer {serializer})"
    parts = [_SERIALIZER_NAMES[serializer], "signed" if flags & FLAG_SIGNED else "unsigned"]
    if flags & FLAG_DBOBJ:
        parts.append("DbObj record")
    return ", ".join(parts)


def encode(value: Any) -> bytes:
    """Encode ``value`` the default way (pickle, unsigned)."""
    return _DEFAULT.encode(value)


def encode_record(record: DbObjRecord) -> bytes:
    """Encode a DbObj record the default way (pickle, unsigned)."""
    return _DEFAULT.encode_record(record)


def decode(blob: bytes, key: str) -> Any:
    """Decode a blob the default way: any serialiser, signatures not checked, pickles unrestricted."""
    return _DEFAULT.decode(blob, key)
