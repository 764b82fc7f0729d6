"""Key and folder validation: the one place the key rules (``docs/contract.md`` section 2) live.

Two canonical forms are used everywhere below the public API:

* an **object key** ``/a/b/c`` — starts with ``/``, never ends with ``/``;
* a **folder** ``/a/b/`` — starts and ends with ``/``; the root is ``/``.

A component must not be empty, ``.`` or ``..``, must not start with ``.``
(reserved for system objects unless ``system`` is true), and must not contain
control characters, lone surrogates (which cannot be stored as UTF-8) or the
non-characters U+FFFE and U+FFFF (which XML cannot carry, so S3's batch
delete could not remove them).  A
full path — base path included, counted with its leading ``/`` — is at most
:data:`MAX_PATH_BYTES` bytes of UTF-8 (S3's key limit, applied everywhere so
data can move between backends).
"""

from __future__ import annotations

import functools
import re

from .errors import InvalidKey

__all__ = [
    "MAX_PATH_BYTES",
    "ancestors",
    "canonical_key",
    "folder_of",
    "normalize_folder",
    "normalize_key",
    "split_path",
]

MAX_PATH_BYTES = 1024

# C0 and C1 control characters, DEL, lone surrogates, and the non-characters U+FFFE and U+FFFF.
_BAD_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _check_components(text: str, parts: list[str], system: bool) -> None:
    for part in parts:
        if not part:
            raise InvalidKey(f"invalid key {text!r}: empty path component (doubled '/')")
        if part in (".", ".."):
            raise InvalidKey(f"invalid key {text!r}: component {part!r} is not allowed")
        if part.startswith(".") and not system:
            raise InvalidKey(
                f"invalid key {text!r}: component {part!r} starts with '.', which is reserved for system objects"
            )
        bad = _BAD_CHAR.search(part)
        if bad:
            raise InvalidKey(
                f"invalid key {text!r}: control character, lone surrogate or non-character {bad.group()!r} "
                "is not allowed"
            )


def normalize_key(key: str, system: bool = False, base_bytes: int = 0) -> str:
    """Return the canonical object key ``/a/b`` for ``key`` (``a/b`` or ``/a/b``).

    Raises :class:`~kydb.InvalidKey` for a non-string, an empty key, a folder
    form (trailing ``/``), a component that breaks the rules, or a key that
    under a base path of ``base_bytes`` bytes would make a full path over
    :data:`MAX_PATH_BYTES`.
    """
    if not isinstance(key, str):
        raise InvalidKey(f"invalid key {key!r}: keys are str, not {type(key).__name__}")
    return canonical_key(key, system, base_bytes)


@functools.lru_cache(maxsize=65536)
def canonical_key(key: str, system: bool, base_bytes: int) -> str:
    """:func:`normalize_key` for a ``key`` already known to be a ``str`` (cached: a hot path calls it)."""
    body = key[1:] if key.startswith("/") else key
    if not body:
        raise InvalidKey(f"invalid key {key!r}: a key must name an object, not the root")
    if body.endswith("/"):
        raise InvalidKey(f"invalid key {key!r}: an object key must not end with '/'")
    _check_components(key, body.split("/"), system)
    _check_length("/" + body, base_bytes)
    return "/" + body


def normalize_folder(folder: str, system: bool = True, base_bytes: int = 0) -> str:
    """Return the canonical folder ``/a/b/`` (the root is ``/``).

    ``''`` and ``'/'`` mean the root; a leading and a trailing ``/`` are both
    optional.  Dot-prefixed components are accepted by default because
    listing system folders is harmless; callers that write pass
    ``system=False``.  Length is checked as for :func:`normalize_key`.
    """
    if not isinstance(folder, str):
        raise InvalidKey(f"invalid folder {folder!r}: folders are str, not {type(folder).__name__}")
    return _normalize_folder(folder, system, base_bytes)


@functools.lru_cache(maxsize=16384)
def _normalize_folder(folder: str, system: bool, base_bytes: int) -> str:
    body = folder[1:] if folder.startswith("/") else folder
    body = body[:-1] if body.endswith("/") else body
    if not body:
        return "/"
    _check_components(folder, body.split("/"), system)
    _check_length("/" + body, base_bytes)
    return "/" + body + "/"


def _check_length(path: str, base_bytes: int) -> None:
    size = base_bytes + len(path.encode("utf-8"))
    if size > MAX_PATH_BYTES:
        raise InvalidKey(
            f"invalid key {path[:60]!r}...: the full path would be {size} bytes of UTF-8 "
            f"({base_bytes} of them the base path), over the {MAX_PATH_BYTES}-byte limit"
        )


def folder_of(path: str) -> str:
    """The folder holding ``path`` (an object key or a folder): ``/a/b/c`` -> ``/a/b/``."""
    trimmed = path[:-1] if path.endswith("/") else path
    return trimmed[: trimmed.rfind("/") + 1]


def split_path(path: str) -> tuple[str, str]:
    """The folder holding ``path`` and its name: ``/a/b/c`` -> ``('/a/b/', 'c')``; ``/a/b/`` -> ``('/a/', 'b/')``."""
    folder = folder_of(path)
    return folder, path[len(folder) :]


def ancestors(path: str) -> list[str]:
    """The folders above ``path`` (an object or a folder), root excluded, outermost first.

    ``/a/b/c`` and ``/a/b/c/`` -> ``['/a/', '/a/b/']``; ``/a`` -> ``[]``.
    """
    found = []
    end = path.find("/", 1)
    while 0 < end < len(path) - 1:
        found.append(path[: end + 1])
        end = path.find("/", end + 1)
    return found
