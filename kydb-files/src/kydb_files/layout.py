"""The on-disk layout of a kydb directory store: the one place its names, paths and metadata are defined.

kydb-files writes it with the operating system's calls, kydb-fsspec writes it
through any fsspec filesystem and reads it back over HTTP, so a tree written
by one is read by the others.  A store is a directory, *ROOT*:

* the folder ``/a/b/`` is the directory ``ROOT/a/b``;
* the object ``/a/b/c`` is the file ``ROOT/a/b/c``, holding exactly the
  stored blob (kydb's envelope: a short header, then the pickle);
* everything kydb keeps for itself starts with ``.kydb`` (one dot, then
  ``kydb``); a folder directory may hold:

  ``.kydb-meta/NAME``
      the metadata of the object ``NAME`` (JSON, see :class:`Meta`);
  ``.kydb-same-name/NAME``
      an object whose name is also a folder's (kydb allows ``/a`` and
      ``/a/b`` together; a directory cannot hold a file and a directory of
      one name);
  ``.kydb-lock``
      the folder's lock file (writers ``flock`` it);
  ``.kydb-tmp-PID-RANDOM``
      a write in progress (or a directory being deleted);
  ``.kydb-long-HASH``
      an object or folder whose name does not fit in a directory entry;
  ``.kydb-name``
      inside a ``.kydb-long-HASH`` directory: the folder's real name.

**Names.**  A name's directory entry is the name itself (``entry_name``),
except that:

* a name made of one or more dots followed by ``kydb`` gets one more dot in
  front (``.kydb-x`` is stored as ``..kydb-x``), so no kydb name can take an
  entry kydb keeps for itself — system objects such as ``/.configs/objdb``
  are plain ``.configs/objdb``;
* a name whose entry would be longer than :data:`MAX_ENTRY_BYTES` bytes of
  UTF-8 is stored as ``.kydb-long-`` followed by 40 hex digits of its
  SHA-256, and its real name is kept in its metadata (an object) or in its
  ``.kydb-name`` file (a folder).

Any other name is stored as it is, byte for byte (UTF-8), so the tree reads
naturally in a file browser.  The filesystem must be case-sensitive and keep
names as given (Linux's filesystems do; a default macOS or Windows volume
does not, and kydb-files refuses to write there).

**Metadata.**  An object's metadata file records its modification time,
creation time, user index values, version (a random write id), size and,
where the writer knows it, the inode of the file it describes.  Metadata
that does not describe the file found (another size, another inode) is
ignored — it is left over from an interrupted write, or the file was
replaced by another tool — and the object then reports its file's
modification time as both times, no index values, and a version made of the
file's identity (:func:`file_version`).  kydb-files writes no metadata file
for an object whose file already says everything (see its README), so a file
copied in by another tool is an ordinary object.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import kydb

__all__ = [
    "LAYOUT_VERSION",
    "LOCK_NAME",
    "LONG_PREFIX",
    "MAX_ENTRY_BYTES",
    "META_DIR",
    "NAME_FILE",
    "RESERVED_PREFIX",
    "SAME_NAME_DIR",
    "TEMP_PREFIX",
    "Meta",
    "component_of",
    "describe",
    "entry_name",
    "file_version",
    "folder_entries",
    "holds_object",
    "is_long",
    "is_temp",
    "kydb_name",
    "new_write_id",
    "object_entries",
    "temp_name",
]

#: The layout described here; a metadata file carries it as ``"kydb"``.
LAYOUT_VERSION = 1
#: Every entry kydb keeps for itself starts with this (one dot).
RESERVED_PREFIX = ".kydb"
TEMP_PREFIX = ".kydb-tmp-"
LOCK_NAME = ".kydb-lock"
META_DIR = ".kydb-meta"
SAME_NAME_DIR = ".kydb-same-name"
LONG_PREFIX = ".kydb-long-"
NAME_FILE = ".kydb-name"
#: The longest directory entry written, in bytes of UTF-8: ext4, XFS, Btrfs, APFS and NTFS all allow 255.
MAX_ENTRY_BYTES = 255

_DOTS_THEN_KYDB = re.compile(r"\.+kydb")
_STUFFED = re.compile(r"\.\.+kydb")
_HASH_DIGITS = 40


def entry_name(component: str) -> str:
    """The directory entry holding the name ``component`` (one path component, valid for kydb).

    The name itself, with one more leading dot if it is dots followed by
    ``kydb``, or ``.kydb-long-HASH`` if that would be over
    :data:`MAX_ENTRY_BYTES` bytes.  Costs a hash only for long names.
    """
    entry = "." + component if _DOTS_THEN_KYDB.match(component) else component
    if len(entry) * 4 > MAX_ENTRY_BYTES and len(entry.encode("utf-8")) > MAX_ENTRY_BYTES:
        digest = hashlib.sha256(component.encode("utf-8")).hexdigest()
        return LONG_PREFIX + digest[:_HASH_DIGITS]
    return entry


def component_of(entry: str) -> str | None:
    """The kydb name a directory entry holds, or ``None`` for an entry kydb keeps for itself.

    Long names (:func:`is_long`) are kydb's own entries here too: their real
    name is recorded elsewhere (an object's :class:`Meta`, a folder's
    ``.kydb-name``).  Names that are not valid UTF-8 (undecodable bytes,
    which Python gives as lone surrogates) cannot be kydb names: ``None``.
    """
    if entry.startswith("."):
        if entry.startswith(RESERVED_PREFIX):
            return None
        if _STUFFED.match(entry):
            entry = entry[1:]
    if not entry.isascii():
        try:
            entry.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return entry


def holds_object(relative: str) -> bool:
    """Whether the file at ``relative`` (``/``-separated, below a folder's directory) is an object.

    It is when every entry on its way names a folder, and its own entry an
    object — directly, or in a ``.kydb-same-name`` directory.
    """
    entries = relative.split("/")
    if len(entries) > 1 and entries[-2] == SAME_NAME_DIR:
        del entries[-2]
    return all(component_of(entry) is not None or is_long(entry) for entry in entries)


def is_long(entry: str) -> bool:
    """Whether ``entry`` stands for a name too long for a directory entry."""
    return entry.startswith(LONG_PREFIX) and len(entry) == len(LONG_PREFIX) + _HASH_DIGITS


def is_temp(entry: str) -> bool:
    """Whether ``entry`` is a write in progress, or left behind by one that was interrupted."""
    return entry.startswith(TEMP_PREFIX)


def temp_name() -> str:
    """A fresh temporary entry name, naming this process."""
    return f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"


def kydb_name(component: str, is_dir: bool) -> str:
    """The name a listing shows: ``name`` for an object, ``name/`` for a folder."""
    return component + "/" if is_dir else component


def folder_entries(folder: str) -> list[str]:
    """The directory entries from the root down to ``folder`` (``/a/b/`` -> entries of ``a`` and ``b``)."""
    return [entry_name(part) for part in folder.strip("/").split("/") if part]


def object_entries(path: str) -> tuple[list[str], str]:
    """The directory entries of the folders holding the object ``path``, and the object's own entry."""
    folder, _, name = path.rpartition("/")
    return folder_entries(folder), entry_name(name)


def new_write_id() -> str:
    """A version no other write will have: 96 random bits."""
    return secrets.token_hex(12)


def file_version(size: int, mtime_ns: int, ino: int | None = None) -> str:
    """The version of an object without (matching) metadata, made of its file's identity.

    Writing an object replaces its file by a new one (a new inode, created
    while the old one still exists), so the identity changes with every write.
    """
    ident = f"{ino:x}." if ino is not None else ""
    return f"f{ident}{mtime_ns:x}.{size:x}"


@dataclass(frozen=True)
class Meta:
    """An object's metadata file: what its blob file cannot say itself.

    ``write_id`` is the object's version; ``size`` and ``ino`` identify the
    blob file the metadata was written for (``ino`` is ``None`` where the
    writer cannot know it); ``name`` is the object's real name when its entry
    is a long-name hash.  ``previous`` is the metadata it replaces (without
    its own ``previous``): a metadata file lands before its object's file,
    so until the file lands — for good, if its writer dies in between — the
    object is still the previous one, and :meth:`for_file` finds what it had.
    """

    write_id: str
    size: int
    mtime_ns: int
    ctime_ns: int
    indexes: Mapping[str, int] = field(default_factory=dict)
    ino: int | None = None
    name: str | None = None
    previous: Meta | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(self.as_record(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def as_record(self) -> dict[str, object]:
        """The JSON object a metadata file holds."""
        record: dict[str, object] = {
            "kydb": LAYOUT_VERSION,
            "id": self.write_id,
            "size": self.size,
            "mtime": self.mtime_ns,
            "ctime": self.ctime_ns,
            "index": dict(self.indexes),
        }
        if self.ino is not None:
            record["ino"] = self.ino
        if self.name is not None:
            record["name"] = self.name
        if self.previous is not None:
            record["previous"] = self.previous.as_record()
        return record

    @classmethod
    def from_bytes(cls, data: bytes) -> Meta | None:
        """The metadata ``data`` holds, or ``None`` if it is not a metadata file of this layout (torn, foreign)."""
        try:
            record = json.loads(data)
            if not isinstance(record, dict) or record.get("kydb") != LAYOUT_VERSION:
                return None
            return cls._from_record(record)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    @classmethod
    def _from_record(cls, record: dict[str, object]) -> Meta:
        indexes = record.get("index", {})
        if not isinstance(indexes, dict):
            raise TypeError("index values are not a mapping")
        ino, name, previous = record.get("ino"), record.get("name"), record.get("previous")
        return cls(
            write_id=str(record["id"]),
            size=_int(record["size"]),
            mtime_ns=_int(record["mtime"]),
            ctime_ns=_int(record["ctime"]),
            indexes={str(k): _int(v) for k, v in indexes.items()},
            ino=None if ino is None else _int(ino),
            name=None if name is None else str(name),
            previous=cls._from_record(previous) if isinstance(previous, dict) else None,
        )

    def after(self) -> Meta:
        """This metadata as the ``previous`` of the next write's (it keeps no ``previous`` of its own)."""
        return replace(self, previous=None)

    def for_file(self, size: int, ino: int | None = None) -> Meta | None:
        """The metadata of the object file found (``size`` bytes, inode ``ino``): this, or the ``previous``.

        ``None`` if neither was written for that file (a copy, a file another
        tool replaced, or a write whose metadata landed long ago for a file
        that did not).
        """
        if self.describes(size, ino):
            return self
        if self.previous is not None and self.previous.describes(size, ino):
            return self.previous
        return None

    def describes(self, size: int, ino: int | None = None) -> bool:
        """Whether this metadata was written for a file of ``size`` bytes (and inode ``ino``, when both know it)."""
        if self.size != size:
            return False
        return self.ino is None or ino is None or self.ino == ino


def describe(meta: Meta | None, size: int, mtime_ns: int | None, ino: int | None = None) -> kydb.ObjectInfo:
    """What every store of this layout reports for an object file of ``size`` bytes and its metadata file.

    ``mtime_ns`` and ``ino`` are the file's, where the store can know them.
    The metadata written for this file (or, while a write is landing, for
    the file before it) gives the times, index values and version.  A copy
    that kept the file's time (``cp -a``, ``rsync -a``: another inode) keeps
    them too, with a version naming the new inode.  Otherwise the file says
    what it can: its time is both times, no index values, and a version made
    of its identity.
    """
    if meta is not None:
        own = meta.for_file(size, ino)
        if own is not None:
            return kydb.ObjectInfo(size, own.mtime_ns, own.ctime_ns, dict(own.indexes), own.write_id)
        if ino is not None and meta.size == size and meta.mtime_ns == mtime_ns:
            return kydb.ObjectInfo(size, meta.mtime_ns, meta.ctime_ns, dict(meta.indexes), f"{meta.write_id}.{ino:x}")
    return kydb.ObjectInfo(size, mtime_ns, mtime_ns, {}, file_version(size, mtime_ns or 0, ino))


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an int, got {value!r}")
    return value
