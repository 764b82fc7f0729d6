"""The stored form of a value: the one place blobs are encoded, signed, verified and decoded.

A blob is ``header [+ signature] + payload``::

    b"KYDB"      magic
    0x01         envelope version
    flags        bit 0: the payload is a DbObj record; bit 1: a signature follows the header;
                 bit 2: the signature covers the object's key (always set when kydb signs)
    serialiser   0 = pickle protocol 5, 1 = JSON, 2 = msgpack
    [32 bytes]   HMAC-SHA256 of header + key + payload, when signed

A DbObj is stored as the record ``{"class_name", "key", "stored_dict"}`` — a
plain dict, never a pickle of its class, so classes can move between modules.

A :class:`Codec` holds one DB's choices: the serialiser it writes with, its
signing keys (the first signs; all verify, for rotation), whether unsigned
blobs are refused, and which modules its unpickler may load globals from.
Every blob says which serialiser wrote it, so a store can hold several.
Nothing is unpickled before the header is valid and, with signing keys, the
signature has been verified with a constant-time compare.  Any failure is
:class:`~kydb.CorruptValue` naming the key.

A signature binds the blob to the key it was written at — the key as the
writing DB names it, relative to its base path — so a blob moved to another
key no longer verifies.  Blobs signed before keys were bound (flag bit 2
clear) are refused unless the codec has ``legacy_signatures``.

The restricted unpickler hands out only what its own ``allowed_modules``
allow: the plain types of :data:`SAFE_GLOBALS`, classes defined in an
allowed module (looked up by a plain, undotted name), and the few
constructor functions of :data:`SAFE_CALLABLES` when their package is
allowed.  Nothing read from a store widens that list.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import CorruptValue, UnstorableValue

if TYPE_CHECKING:
    import hmac

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "SAFE_CALLABLES",
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
FLAG_KEY_BOUND = 0x04
_KNOWN_FLAGS = FLAG_DBOBJ | FLAG_SIGNED | FLAG_KEY_BOUND
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

#: Functions (not classes) that rebuild plain data of well-known packages.  They are
#: handed out only when their package is in ``allowed_modules`` (``'numpy'`` for numpy's).
SAFE_CALLABLES: dict[str, frozenset[str]] = {
    "numpy._core.numeric": frozenset({"_frombuffer"}),
    "numpy.core.numeric": frozenset({"_frombuffer"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
}

_storing = threading.local()
_PLAIN_PICKLE = MAGIC + bytes((VERSION, 0, 0))  # no flags, serialiser 0
_SLICE_BELOW = 4096  # payloads shorter than this are copied out of their envelope to be unpickled


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
    def __init__(self, data: io.BytesIO, allowed: frozenset[str]) -> None:
        super().__init__(data)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        safe = SAFE_GLOBALS.get(module)
        if safe is not None and name in safe:
            return super().find_class(module, name)
        # A dotted name (protocol 4's STACK_GLOBAL('mymodels', 'os.system')) would walk from an
        # allowed module into whatever it imported: refused outright.
        if "." not in name and _module_allowed(module, self._allowed):
            found = super().find_class(module, name)
            if name in SAFE_CALLABLES.get(module, ()):
                return found
            # Only classes defined in an allowed module: not functions, and not what it imported.
            if isinstance(found, type) and _module_allowed(found.__module__, self._allowed):
                return found
            raise pickle.UnpicklingError(
                f"refused to load global {module}.{name}: only classes defined in allowed_modules are loaded"
            )
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
    """How one DB writes and reads blobs.  Its ``repr`` never shows the keys, and it is never stored."""

    serializer: str = "pickle"
    signing_keys: tuple[bytes, ...] = field(default=(), repr=False)
    require_signed: bool = False
    allowed_modules: frozenset[str] | None = None
    legacy_signatures: bool = False
    _header: bytes = field(init=False, repr=False, compare=False)
    _loads_plain: bool = field(init=False, repr=False, compare=False)
    _fast_encode: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Derived once, for the hot paths: the header of an unsigned blob, and whether a plain
        # unsigned pickle may be loaded with nothing to check first.
        object.__setattr__(self, "_header", MAGIC + bytes((VERSION, 0, SERIALIZERS[self.serializer])))
        object.__setattr__(self, "_loads_plain", not self.require_signed and self.allowed_modules is None)
        object.__setattr__(self, "_fast_encode", self.serializer == "pickle" and not self.signing_keys)

    @classmethod
    def from_options(
        cls,
        *,
        signing_key: str | bytes | Iterable[str | bytes] | None = None,
        require_signed: bool | None = None,
        allowed_modules: Iterable[str] | None = None,
        serializer: str = "pickle",
        legacy_signatures: bool = False,
    ) -> Codec:
        """Build a codec from :func:`kydb.connect`'s options.

        ``signing_key`` defaults to ``$KYDB_SIGNING_KEY`` (comma-separated for
        several).  With keys, ``require_signed`` defaults to true; set it to
        false only to read blobs written before signing was turned on.
        ``require_signed=True`` without a key is an error: nothing could be
        verified.  ``legacy_signatures`` accepts blobs signed before
        signatures were bound to keys (for migrating them).  Raises
        ``ValueError`` for a bad option.
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
        required = bool(keys) if require_signed is None else require_signed
        return cls(serializer, keys, required, modules, bool(legacy_signatures))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # A codec travels with a pickled DB (it reconnects with the same options), but it holds the
        # signing keys: written into a store, it would publish them.
        if is_storing():
            raise TypeError(
                "a kydb codec cannot be stored in a kydb store: it holds the signing keys. Store plain data instead"
            )
        return Codec, (
            self.serializer,
            self.signing_keys,
            self.require_signed,
            self.allowed_modules,
            self.legacy_signatures,
        )

    # ------------------------------------------------------------------ writing

    def _seal(self, flags: int, payload: bytes, key: str) -> bytes:
        if not self.signing_keys:
            return MAGIC + bytes((VERSION, flags, SERIALIZERS[self.serializer])) + payload
        header = MAGIC + bytes((VERSION, flags | FLAG_SIGNED | FLAG_KEY_BOUND, SERIALIZERS[self.serializer]))
        return header + _mac(self.signing_keys[0], header, key, payload) + payload

    def _serialize(self, value: Any, key: str) -> bytes:
        try:
            return self._serialize_unchecked(value)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise _unstorable(value, key, exc) from exc

    def _serialize_unchecked(self, value: Any) -> bytes:
        if self.serializer == "pickle":
            depth = getattr(_storing, "depth", 0)  # marks this thread as pickling for a store (is_storing)
            _storing.depth = depth + 1
            try:
                return pickle.dumps(value, protocol=PICKLE_PROTOCOL)
            finally:
                _storing.depth = depth
        _check_plain(value, self.serializer)
        if self.serializer == "json":
            import json  # noqa: PLC0415 - imported by the DBs that use it, not by every import of kydb

            return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        return bytes(_msgpack().packb(value, use_bin_type=True))

    def encode(self, value: Any, key: str) -> bytes:
        """Encode any value the serialiser takes, for the object at ``key`` (which a signature binds).

        Raises :class:`~kydb.UnstorableValue` (a ``TypeError``) naming the key
        and the value's type, with the serialiser's error chained, for a value
        it cannot encode.
        """
        if self.serializer == "pickle" and _is_large(value):
            return self._encode_large(value, key)
        if not self._fast_encode:
            return self._seal(0, self._serialize(value, key), key)
        # The common case, inlined: an unsigned pickle (see _serialize_unchecked).
        depth = getattr(_storing, "depth", 0)
        _storing.depth = depth + 1
        try:
            return self._header + pickle.dumps(value, protocol=PICKLE_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise _unstorable(value, key, exc) from exc
        finally:
            _storing.depth = depth

    def _encode_large(self, value: Any, key: str) -> bytes:
        """Pickle a large value straight after its header, in one buffer: no copy of the payload to seal it.

        ``io.BytesIO.getvalue`` hands over its buffer without copying when it
        is not shared, so the blob is the only copy of the pickle; the
        signature, when there is one, is written into room left for it.
        """
        flags = FLAG_SIGNED | FLAG_KEY_BOUND if self.signing_keys else 0
        header = MAGIC + bytes((VERSION, flags, SERIALIZERS["pickle"]))
        buffer = io.BytesIO()
        buffer.write(header + bytes(MAC_SIZE if self.signing_keys else 0))
        start = buffer.tell()
        depth = getattr(_storing, "depth", 0)
        _storing.depth = depth + 1
        try:
            pickle.Pickler(buffer, protocol=PICKLE_PROTOCOL).dump(value)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise _unstorable(value, key, exc) from exc
        finally:
            _storing.depth = depth
        if self.signing_keys:
            with buffer.getbuffer() as written:
                mac = _mac(self.signing_keys[0], header, key, written[start:])
            buffer.seek(HEADER_SIZE)
            buffer.write(mac)
        return buffer.getvalue()

    def encode_record(self, record: DbObjRecord) -> bytes:
        """Encode a DbObj record (class name, key and stored dict only), bound to ``record.key``."""
        payload = {"class_name": record.class_name, "key": record.key, "stored_dict": record.stored_dict}
        return self._seal(FLAG_DBOBJ, self._serialize(payload, record.key), record.key)

    def reseal(self, blob: bytes, from_key: str, to_key: str, source: Codec) -> bytes:
        """The blob stored at ``from_key`` (read with ``source``), signed for ``to_key`` with this codec's key.

        Unsigned blobs, and blobs that stay at their key, come back unchanged.
        A signed blob is verified with ``source``'s keys first, then signed
        again without being deserialised.  Raises :class:`~kydb.CorruptValue`
        if it does not verify, and ``ValueError`` when either side has no
        signing key (a signed blob moved without one would never verify).
        """
        view = memoryview(blob)
        if from_key == to_key or len(view) < HEADER_SIZE or view[:4] != MAGIC or not view[5] & FLAG_SIGNED:
            return blob
        if not source.signing_keys or not self.signing_keys:
            raise ValueError(
                f"{from_key}: a signed blob copied to another key ({to_key}) must be signed again for it; "
                "connect both stores with the signing key (signing_key=... or $KYDB_SIGNING_KEY)"
            )
        payload = source._verified_payload(view, view[5], from_key)
        header = bytes(view[:4]) + bytes((view[4], view[5] | FLAG_KEY_BOUND, view[6]))
        return header + _mac(self.signing_keys[0], header, to_key, payload) + bytes(payload)

    # ------------------------------------------------------------------ reading

    def _verified_payload(self, view: memoryview, flags: int, key: str) -> memoryview:
        if not flags & FLAG_SIGNED:
            if self.require_signed:
                raise CorruptValue(f"{key}: the stored blob is not signed, and this DB requires signed blobs")
            return view[HEADER_SIZE:]
        if len(view) < HEADER_SIZE + MAC_SIZE:
            raise CorruptValue(f"{key}: the stored blob is truncated (no room for its signature)")
        payload = view[HEADER_SIZE + MAC_SIZE :]
        if not self.signing_keys:
            return payload  # a reader without keys does not verify (and has said so by not requiring it)
        bound = bool(flags & FLAG_KEY_BOUND)
        if not bound and not self.legacy_signatures:
            raise CorruptValue(
                f"{key}: the stored blob was signed by an older kydb, without binding it to its key; "
                "connect with legacy_signatures=True to read it, and write it again to sign it the current way"
            )
        header = view[:HEADER_SIZE]
        signature = bytes(view[HEADER_SIZE : HEADER_SIZE + MAC_SIZE])
        for signing_key in self.signing_keys:
            expected = _mac(signing_key, header, key, payload) if bound else _legacy_mac(signing_key, header, payload)
            if _compare_digest(expected, signature):
                return payload
        raise CorruptValue(
            f"{key}: the stored blob's signature does not verify with any of this DB's signing keys "
            "(tampered with, moved from another key, or signed with a key this DB does not have)"
        )

    def _deserialize(self, payload: memoryview, serializer: int) -> Any:
        if serializer == SERIALIZERS["pickle"]:
            if self.allowed_modules is None:
                return pickle.loads(payload)
            return _RestrictedUnpickler(io.BytesIO(payload), self.allowed_modules).load()
        if serializer == SERIALIZERS["json"]:
            import json  # noqa: PLC0415 - imported by the DBs that use it, not by every import of kydb

            return json.loads(bytes(payload))
        return _msgpack().unpackb(payload, raw=False)

    def decode(self, blob: bytes, key: str) -> Any:
        """Decode a blob read from ``key``: the value, or a :class:`DbObjRecord`.

        Raises :class:`~kydb.CorruptValue` naming ``key`` for anything that is
        not valid kydb data this DB accepts: wrong magic, unknown
        version/flags/serialiser, a missing or wrong signature (or one made
        for another key), a refused global, or a payload the deserialiser
        rejects for any reason (a class that can no longer be imported
        included — the cause is chained).
        """
        if self._loads_plain and blob[:HEADER_SIZE] == _PLAIN_PICKLE:
            # The common case: an unsigned pickle of a plain value, with nothing to check first.  A small
            # payload is sliced (cheaper than a view); a large one is read in place, never copied.
            try:
                return pickle.loads(blob[HEADER_SIZE:] if len(blob) < _SLICE_BELOW else memoryview(blob)[HEADER_SIZE:])
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
            value = self._deserialize(payload, serializer)
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


#: A value at least this big is pickled straight into its envelope (see Codec._encode_large).
LARGE_VALUE_BYTES = 1 << 20


#: Types never large in that sense (not buffers): the common values, answered without a lookup.
_NEVER_LARGE = frozenset({dict, list, tuple, set, int, float, bool, type(None)})


def _is_large(value: Any) -> bool:
    """Whether ``value`` is a big buffer or string, whose copies count (a cheap check, no traversal)."""
    if type(value) in _NEVER_LARGE:
        return False
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return len(value) >= LARGE_VALUE_BYTES
    nbytes = getattr(value, "nbytes", None)  # numpy arrays and the like
    return isinstance(nbytes, int) and nbytes >= LARGE_VALUE_BYTES


def _unstorable(value: Any, key: str, exc: Exception) -> UnstorableValue:
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return UnstorableValue(f"{key}: cannot store a value of type {name}: {exc}")


def _hmac_sha256(signing_key: bytes, header: bytes | memoryview) -> hmac.HMAC:
    import hashlib  # noqa: PLC0415 - signing DBs import these, not every import of kydb
    import hmac  # noqa: PLC0415

    return hmac.new(signing_key, header, hashlib.sha256)


def _compare_digest(a: bytes, b: bytes) -> bool:
    import hmac  # noqa: PLC0415 - signing DBs import it, not every import of kydb

    return hmac.compare_digest(a, b)


def _mac(signing_key: bytes, header: bytes | memoryview, key: str, payload: bytes | memoryview) -> bytes:
    """HMAC-SHA256 over the header, the object's key (length-prefixed UTF-8) and the payload."""
    encoded = key.encode("utf-8")
    mac = _hmac_sha256(signing_key, header)
    mac.update(len(encoded).to_bytes(2, "big") + encoded)
    mac.update(payload)
    return mac.digest()


def _legacy_mac(signing_key: bytes, header: bytes | memoryview, payload: bytes | memoryview) -> bytes:
    """The signature of blobs written before signatures were bound to keys (header and payload only)."""
    mac = _hmac_sha256(signing_key, header)
    mac.update(payload)
    return mac.digest()


_DEFAULT = Codec()


def describe(blob: bytes) -> str:
    """What a stored blob's header says, e.g. ``'pickle, signed, DbObj record'`` (only the header is read)."""
    if len(blob) < HEADER_SIZE or blob[:4] != MAGIC:
        return "not kydb data"
    version, flags, serializer = blob[4], blob[5], blob[6]
    if version != VERSION or flags & ~_KNOWN_FLAGS or serializer not in _SERIALIZER_NAMES:
        return f"unsupported kydb envelope (version {version}, flags {flags:#x}, serializer {serializer})"
    signed = "unsigned"
    if flags & FLAG_SIGNED:
        signed = "signed" if flags & FLAG_KEY_BOUND else "signed (legacy: not bound to its key)"
    parts = [_SERIALIZER_NAMES[serializer], signed]
    if flags & FLAG_DBOBJ:
        parts.append("DbObj record")
    return ", ".join(parts)


def encode(value: Any) -> bytes:
    """Encode ``value`` the default way (pickle, unsigned, so bound to no key)."""
    return _DEFAULT.encode(value, "")


def encode_record(record: DbObjRecord) -> bytes:
    """Encode a DbObj record the default way (pickle, unsigned)."""
    return _DEFAULT.encode_record(record)


def decode(blob: bytes, key: str) -> Any:
    """Decode a blob the default way: any serialiser, signatures not checked, pickles unrestricted."""
    return _DEFAULT.decode(blob, key)
