"""The ``file://`` store: a directory on this machine, in the layout of :mod:`kydb_files.layout`.

**Writes.**  Each object is written to a temporary file in its folder's
directory, flushed, given kydb's modification time, fsynced, and renamed over
the old file; the directories are fsynced once per batch.  A reader sees the
old file or the new one, never a mix, and a writer killed at any point leaves
the old object (plus a hidden temporary file, removed later by the next
writer or lister that finds it while no write is in progress).  Every write
holds its folder's lock (:mod:`kydb_files.locks`), so a conditional write's
check and its write are one step for every kydb writer on the machine, and
index values and creation times are read and rewritten without losing a
concurrent writer's.

**Metadata.**  An object's file carries its modification time (the file's
own ``mtime``, set to kydb's).  A metadata file (``.kydb-meta/NAME``) is
written first, then the object's file, when the file cannot say everything:
the object has index values, a creation time other than its modification
time (it was overwritten), a name too long for a directory entry, or the
filesystem keeps coarser times than kydb's nanoseconds.  It records the
inode of the file it was written for; a reader that finds metadata for
another inode (a write between its two reads) reads both again under the
folder's shared lock.  So a first write costs one fsynced file, an overwrite
two.

**Reads** take no lock: an object is one ``open`` and one ``read``, ``stat``
an ``os.stat`` and (where there is one) the metadata file, ``ls`` one
``os.scandir`` for the first page and one ``os.stat`` of the directory for
each page after it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import stat
import threading
import time
import unicodedata
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import NamedTuple, cast

import kydb
from kydb.keys import folder_of

from . import layout
from .layout import LOCK_NAME, META_DIR, NAME_FILE, RESERVED_PREFIX, SAME_NAME_DIR, Meta
from .locks import FolderVanished, folder_lock, locks_available, try_lock_fd
from .pages import ListingPages

__all__ = ["FileStore", "UnsupportedFilesystem", "root_of"]

_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO someone left there must not hang a read
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC
#: How often a write looks for what interrupted writes left in its folder (a scan of the folder).
SWEEP_CHANCE = 1 / 64
#: How long a directory must have been unchanged for its time to show every later change.
_SETTLED_NS = 1_000_000_000
#: How many times a write starts again when its folder is removed under it (by a concurrent rm_tree).
_ATTEMPTS = 5


#: What a listing snapshot checks: (inode, mtime, ctime) of a folder's directory and of its .kydb-same-name.
_Signature = tuple[tuple[int, int, int] | None, ...]


class UnsupportedFilesystem(kydb.KydbError, OSError):
    """The directory is on a filesystem kydb-files cannot keep its promises on (case-insensitive names)."""


class _Current(NamedTuple):
    """An object as a writer finds it, holding its folder's lock: its own metadata (if any), what it reports."""

    own: Meta | None
    info: kydb.ObjectInfo | None


def root_of(url: kydb.StoreURL) -> str:
    """The absolute directory a ``file://`` URL names; ``ValueError`` naming the URL for anything else.

    ``file:///abs/dir`` and ``file://localhost/abs/dir`` name an absolute
    directory; ``file://./rel/dir`` (and ``file://../rel``) one relative to
    the current directory when the store is connected.
    """
    example = "file:///absolute/directory or file://./relative/directory"
    if url.netloc in ("", "localhost"):
        if not url.path.startswith("/"):
            raise ValueError(f"invalid kydb URL {url.masked!r}: expected {example}")
        root = os.path.normpath(url.path)
    elif url.netloc in (".", ".."):
        root = os.path.abspath(url.netloc + url.path)
    else:
        raise ValueError(
            f"invalid kydb URL {url.masked!r}: a file URL names a directory on this machine, not on host "
            f"{url.netloc!r}; expected {example}"
        )
    if root == os.path.dirname(root):
        raise ValueError(
            f"invalid kydb URL {url.masked!r}: refusing the filesystem's root as a store; name a directory"
        )
    return root


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _fsync_dir(path: str) -> None:
    fd = os.open(path, _DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot fsync a directory; their entries are as durable as they get
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int, size: int) -> bytes:
    """The file's bytes; ``size`` (from ``fstat``) is how much to expect — kydb's files never change in place."""
    first = os.read(fd, size) if size else b""
    if len(first) == size and size:
        return first
    parts = [first]
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def _kind(entry: os.DirEntry[str]) -> str | None:
    """``"dir"``, ``"file"`` or ``None`` (anything else, or a dangling link) for a directory entry."""
    try:
        if entry.is_dir():
            return "dir"
        if entry.is_file():
            return "file"
    except OSError:
        pass
    return None


def _unlink_if_file(path: str) -> bool:
    """Remove ``path`` if it is a file (not a directory); whether it did."""
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            return False
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


class FileStore(kydb.Store):
    """kydb's hooks over one directory (see the module docstring and ``kydb-files/README.md``)."""

    capabilities = kydb.Capabilities(
        url_path_is_base=False, keeps_times=True, keeps_ctime=True, conditional_writes=True
    )

    def __init__(self, url: kydb.StoreURL) -> None:
        super().__init__(url)
        if url.options:
            raise ValueError(
                f"invalid kydb URL {url.masked!r}: file URLs take no query options but base (got {sorted(url.options)})"
            )
        if not locks_available():
            raise ValueError(f"kydb URL {url.masked!r}: kydb-files needs POSIX file locks (fcntl.flock)")
        self.root = root_of(url)
        self._pages = ListingPages()
        self._state = threading.Lock()
        self._ready = False  # the root exists and its filesystem passed the checks

    # ------------------------------------------------------------------ places

    def _dir(self, folder: str) -> str:
        return os.path.join(self.root, *layout.folder_entries(folder))

    def _locate(self, path: str) -> tuple[str, str]:
        folders, entry = layout.object_entries(path)
        return os.path.join(self.root, *folders), entry

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn the operating system's errors into kydb's, naming what failed and the URL."""
        try:
            yield
        except kydb.KydbError:
            raise
        except PermissionError as exc:
            raise PermissionError(
                exc.errno, f"{what}: permission denied on {exc.filename} ({self.url.masked})"
            ) from exc
        except OSError as exc:
            where = f" on {exc.filename}" if exc.filename else ""
            raise kydb.StoreUnavailable(
                f"{what} failed{where} ({self.url.masked}): {exc.strerror or exc}; "
                "check the disk, its free space and the directory"
            ) from exc

    # ------------------------------------------------------------------ reading objects

    def _open_object(self, d: str, entry: str) -> tuple[int, os.stat_result] | None:
        """An open descriptor on the object's file and its ``fstat``, or ``None`` if there is no such object."""
        for path in (os.path.join(d, entry), os.path.join(d, SAME_NAME_DIR, entry)):
            try:
                fd = os.open(path, _READ)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                found = os.fstat(fd)
            except BaseException:
                os.close(fd)
                raise
            if stat.S_ISREG(found.st_mode):
                return fd, found
            os.close(fd)  # a folder of that name: the object, if any, lives beside it
        return None

    def _stat_object(self, d: str, entry: str) -> os.stat_result | None:
        for path in (os.path.join(d, entry), os.path.join(d, SAME_NAME_DIR, entry)):
            try:
                found = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISREG(found.st_mode):
                return found
        return None

    def _read_meta(self, d: str, entry: str) -> Meta | None:
        try:
            fd = os.open(os.path.join(d, META_DIR, entry), _READ)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            found = os.fstat(fd)
            data = _read_all(fd, found.st_size) if stat.S_ISREG(found.st_mode) else b""
        finally:
            os.close(fd)
        return Meta.from_bytes(data)

    @staticmethod
    def _describe(meta: Meta | None, found: os.stat_result) -> kydb.ObjectInfo:
        """What the store reports for an object's file ``found`` and its metadata (one rule, readers and writers)."""
        return layout.describe(meta, found.st_size, found.st_mtime_ns, found.st_ino)

    def _examine(self, d: str, entry: str, want_blob: bool) -> tuple[bytes | None, kydb.ObjectInfo] | None:
        """The object's blob (when wanted) and what it reports, consistent with each other; ``None`` if absent.

        Lock-free unless the metadata found was written for another file (a
        write landed between the two reads): then both are read again under
        the folder's shared lock, which no write holds halfway.
        """
        for locked in (False, True):
            with folder_lock(d, shared=True, create=False) if locked else contextlib.nullcontext():
                blob = None
                if want_blob:
                    opened = self._open_object(d, entry)
                    if opened is None:
                        return None
                    fd, found = opened
                    try:
                        blob = _read_all(fd, found.st_size)
                    finally:
                        os.close(fd)
                else:
                    at = self._stat_object(d, entry)
                    if at is None:
                        return None
                    found = at
                meta = self._read_meta(d, entry)
                if locked or meta is None or meta.for_file(found.st_size, found.st_ino) is not None:
                    return blob, self._describe(meta, found)
        raise AssertionError("unreachable")  # pragma: no cover

    def _current(self, d: str, entry: str) -> _Current:
        """The object at ``entry`` of ``d`` as it is now (hold the folder's lock)."""
        found = self._stat_object(d, entry)
        if found is None:
            return _Current(None, None)
        meta = self._read_meta(d, entry)
        own = None if meta is None else meta.for_file(found.st_size, found.st_ino)
        return _Current(own, self._describe(meta, found))

    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        found: dict[str, bytes] = {}
        with self._errors(_what("reading", paths)):
            for path in paths:
                opened = self._open_object(*self._locate(path))
                if opened is not None:
                    fd, info = opened
                    try:
                        found[path] = _read_all(fd, info.st_size)
                    finally:
                        os.close(fd)
        return found

    def kydb_get_versioned(self, paths: Sequence[str]) -> Mapping[str, kydb.VersionedBlob]:
        found: dict[str, kydb.VersionedBlob] = {}
        with self._errors("reading with versions"):
            for path in paths:
                seen = self._examine(*self._locate(path), want_blob=True)
                if seen is not None and seen[0] is not None and seen[1].version is not None:
                    found[path] = kydb.VersionedBlob(seen[0], seen[1].version)
        return found

    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, kydb.ObjectInfo]:
        found: dict[str, kydb.ObjectInfo] = {}
        with self._errors("reading metadata"):
            for path in paths:
                seen = self._examine(*self._locate(path), want_blob=False)
                if seen is not None:
                    found[path] = seen[1]
        return found

    def kydb_exists(self, path: str) -> bool:
        with self._errors(f"looking for {path}"):
            return self._stat_object(*self._locate(path)) is not None

    # ------------------------------------------------------------------ writing objects

    def _ready_to_write(self) -> None:
        """Make the root directory (the first write does) and check once that its filesystem keeps names apart."""
        with self._state:
            if self._ready:
                return
            self._make_dirs(self.root)
            name = layout.temp_name() + "-Kydb-\u00c5"
            probe = os.path.join(self.root, name)
            os.close(os.open(probe, _CREATE, 0o666))
            try:
                variants = (name.lower(), unicodedata.normalize("NFD", name))
                if any(os.path.lexists(os.path.join(self.root, variant)) for variant in variants):
                    raise UnsupportedFilesystem(
                        errno.EINVAL,
                        f"{self.root} is on a filesystem that does not keep names apart by case or Unicode "
                        f"normalisation ({self.url.masked}); kydb names 'a' and 'A' are two objects. Use a "
                        "case-sensitive volume (Linux filesystems are), or another kydb store such as sqlite:///",
                    )
            finally:
                os.unlink(probe)
            self._ready = True

    @staticmethod
    def _make_dirs(path: str) -> None:
        """``os.makedirs`` that also fsyncs each new directory's parent, so the new entries survive a crash."""
        missing = []
        while not _is_dir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory)
            _fsync_dir(os.path.dirname(directory))

    def _ensure_folder(self, folder: str, made: list[str]) -> str:
        """The folder's directory, made (with its ancestors) if missing; returns its path.

        The folders it makes are appended to ``made``.
        """
        d = self._dir(folder)
        if _is_dir(d):
            return d
        current, walked = self.root, "/"
        for part in folder.strip("/").split("/"):
            if part:
                entry = layout.entry_name(part)
                walked += part + "/"
                if not _is_dir(os.path.join(current, entry)) and self._make_subfolder(current, entry, part):
                    made.append(walked)
                current = os.path.join(current, entry)
        return current

    def _make_subfolder(self, parent: str, entry: str, name: str) -> bool:
        """Make the folder ``name`` in ``parent``, moving an object of that name beside it (under the parent's lock)."""
        with folder_lock(parent):
            path = os.path.join(parent, entry)
            try:
                found: os.stat_result | None = os.stat(path)
            except FileNotFoundError:
                found = None
            if found is not None and stat.S_ISDIR(found.st_mode):
                return False
            touched = {parent}
            if found is not None:  # an object of that name: it moves to .kydb-same-name, where readers look next
                same = os.path.join(parent, SAME_NAME_DIR)
                os.makedirs(same, exist_ok=True)
                os.replace(path, os.path.join(same, entry))
                touched.add(same)
            if layout.is_long(entry):  # made whole (with its name inside) before anyone can see it
                building = os.path.join(parent, layout.temp_name())
                os.mkdir(building)
                self._replace_file(building, os.path.join(building, NAME_FILE), name.encode("utf-8"))
                os.rename(building, path)
            else:
                os.mkdir(path)
            for directory in touched:
                _fsync_dir(directory)
        return True

    @staticmethod
    def _replace_file(d: str, target: str, data: bytes) -> None:
        """Write ``data`` to a temporary file in ``d``, fsync it and rename it to ``target``."""
        temp = os.path.join(d, layout.temp_name())
        fd = os.open(temp, _CREATE, 0o666)
        try:
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _write_object(
        self,
        d: str,
        entry: str,
        path: str,
        blob: bytes,
        mtime_ns: int,
        index_changes: Mapping[str, int | None],
        current: _Current,
        touched: set[str],
    ) -> None:
        """Write one object (holding its folder's lock): metadata first when needed, then the file."""
        info = current.info
        ctime = mtime_ns if info is None or info.ctime_ns is None else info.ctime_ns
        values = {} if info is None else dict(info.indexes)
        for name, value in index_changes.items():
            if value is None:
                values.pop(name, None)
            else:
                values[name] = value
        temp = os.path.join(d, layout.temp_name())
        try:
            fd = os.open(temp, _CREATE, 0o666)
        except (FileNotFoundError, NotADirectoryError):
            raise FolderVanished(d) from None
        try:
            try:
                _write_all(fd, blob)
                os.utime(fd, ns=(mtime_ns, mtime_ns))
                os.fsync(fd)
                written = os.fstat(fd)
            finally:
                os.close(fd)
            meta_dir = os.path.join(d, META_DIR)
            meta_path = os.path.join(meta_dir, entry)
            long_name = layout.is_long(entry)
            # The file cannot say it all: index values, a creation time, a long name, times it rounds, or a
            # write at its object's own time (a version made of the file's identity could then come back).
            stale_meta = not (
                values
                or ctime != mtime_ns
                or long_name
                or written.st_mtime_ns != mtime_ns
                or (info is not None and info.mtime_ns == mtime_ns)
            )
            if not stale_meta:
                meta = Meta(
                    layout.new_write_id(),
                    len(blob),
                    mtime_ns,
                    ctime,
                    values,
                    written.st_ino,
                    path.rpartition("/")[2] if long_name else None,
                    current.own.after() if current.own is not None else None,
                )
                os.makedirs(meta_dir, exist_ok=True)
                self._replace_file(meta_dir, meta_path, meta.to_bytes())
                touched.add(meta_dir)
            same = os.path.join(d, SAME_NAME_DIR)
            try:
                os.replace(temp, os.path.join(d, entry))
                if _unlink_if_file(os.path.join(same, entry)):  # it was beside a folder that has since gone
                    touched.add(same)
            except IsADirectoryError:  # a folder has this name: the object lives beside it
                os.makedirs(same, exist_ok=True)
                os.replace(temp, os.path.join(same, entry))
                touched.add(same)
            touched.add(d)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        if stale_meta:  # the file now says everything: metadata left from before would only mislead
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.unlink(meta_path)
                touched.add(meta_dir)

    def kydb_put(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None],
    ) -> None:
        stray = set(expect) - set(items)
        if stray:
            raise ValueError(f"expected versions for paths that are not written: {sorted(stray)[:3]}")
        with self._errors(_what("writing", list(items))):
            self._ready_to_write()
            for attempt in range(_ATTEMPTS):
                try:
                    self._put(items, mtime_ns, indexes, expect)
                    return
                except FolderVanished:
                    if attempt == _ATTEMPTS - 1:
                        raise
            raise AssertionError("unreachable")  # pragma: no cover

    def _put(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None],
    ) -> None:
        by_dir: dict[str, list[tuple[str, str]]] = {}
        folders: dict[str, str] = {}
        made: list[str] = []  # folders this write made: a conflict takes them away again
        try:
            self._put_in(items, mtime_ns, indexes, expect, by_dir, folders, made)
        except kydb.Conflict:
            for folder in reversed(made):
                with contextlib.suppress(kydb.KydbError, OSError):
                    self.kydb_rmdir(folder)  # only if still empty: a concurrent writer may have used it
            raise

    def _put_in(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None],
        by_dir: dict[str, list[tuple[str, str]]],
        folders: dict[str, str],
        made: list[str],
    ) -> None:
        for path in items:
            folder = folder_of(path)
            if folder not in folders:
                folders[folder] = self._ensure_folder(folder, made)
            by_dir.setdefault(folders[folder], []).append((path, layout.object_entries(path)[1]))
        with contextlib.ExitStack() as held:
            for d in sorted(by_dir):  # one order for everyone: no deadlocks
                held.enter_context(folder_lock(d))
            current = {path: self._current(d, entry) for d, entries in by_dir.items() for path, entry in entries}
            for path, wanted in expect.items():
                info = current[path].info
                _check_version(path, wanted, None if info is None else info.version)
            for d, entries in by_dir.items():
                if random.random() < SWEEP_CHANCE:
                    self._sweep(d)
                touched: set[str] = set()
                for path, entry in entries:
                    self._write_object(
                        d, entry, path, items[path], mtime_ns, indexes.get(path, {}), current[path], touched
                    )
                for directory in touched:
                    _fsync_dir(directory)

    def kydb_delete(self, paths: Sequence[str], expect: Mapping[str, str]) -> None:
        by_dir: dict[str, list[tuple[str, str]]] = {}
        for path in paths:
            d, entry = self._locate(path)
            by_dir.setdefault(d, []).append((path, entry))
        with self._errors(_what("deleting", paths)), contextlib.ExitStack() as held:
            present = []
            for d in sorted(by_dir):
                try:
                    held.enter_context(folder_lock(d))
                except FolderVanished:
                    continue  # no such folder: nothing in it to delete
                present.append(d)
            for path, wanted in expect.items():
                d, entry = self._locate(path)
                info = self._current(d, entry).info if d in present else None
                _check_version(path, wanted, None if info is None else info.version)
            for d in present:
                touched = set()
                for _, entry in by_dir[d]:
                    for where in (d, os.path.join(d, SAME_NAME_DIR)):
                        if _unlink_if_file(os.path.join(where, entry)):
                            touched.add(where)
                    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                        os.unlink(os.path.join(d, META_DIR, entry))
                        touched.add(os.path.join(d, META_DIR))
                for directory in touched:
                    _fsync_dir(directory)

    # ------------------------------------------------------------------ folders

    def _names(self, d: str) -> tuple[list[str], bool]:
        """The kydb names in directory ``d`` (``name``, ``name/``), and whether it holds temporary entries."""
        names: list[str] = []
        long_entries: list[tuple[str, str | None]] = []
        same_name = saw_temp = False
        try:
            listing = os.scandir(d)
        except (FileNotFoundError, NotADirectoryError):
            return [], False
        with listing:
            for entry in listing:
                name = entry.name
                if name.startswith(RESERVED_PREFIX):
                    if layout.is_long(name):
                        long_entries.append((name, _kind(entry)))
                    elif name == SAME_NAME_DIR:
                        same_name = True
                    elif layout.is_temp(name):
                        saw_temp = True
                    continue
                component = layout.component_of(name)
                kind = _kind(entry) if component is not None else None
                if component is not None and kind is not None:
                    names.append(layout.kydb_name(component, kind == "dir"))
        for name, kind in long_entries:
            component = self._long_name(d, name, kind)
            if component is not None and kind is not None:
                names.append(layout.kydb_name(component, kind == "dir"))
        if same_name:
            with (
                contextlib.suppress(FileNotFoundError, NotADirectoryError),
                os.scandir(os.path.join(d, SAME_NAME_DIR)) as beside,
            ):
                for entry in beside:
                    if _kind(entry) != "file":
                        continue
                    found = (
                        self._long_name(d, entry.name, "file")
                        if layout.is_long(entry.name)
                        else layout.component_of(entry.name)
                    )
                    if found is not None:
                        names.append(found)
        return names, saw_temp

    def _long_name(self, d: str, entry: str, kind: str | None) -> str | None:
        """The real name behind a long-name entry: a folder's ``.kydb-name``, an object's metadata."""
        if kind == "dir":
            try:
                with open(os.path.join(d, entry, NAME_FILE), "rb") as file:
                    return file.read().decode("utf-8")
            except (OSError, UnicodeDecodeError):
                return None
        meta = self._read_meta(d, entry)
        return None if meta is None else meta.name

    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        d = self._dir(folder)

        def read() -> list[str]:
            names, saw_temp = self._names(d)
            if saw_temp:
                self._sweep_if_idle(d)
            return names

        def signature() -> _Signature:
            # The directory and the one beside-folder objects live in: either changes with every write there.
            found: list[tuple[int, int, int] | None] = []
            for directory in (d, os.path.join(d, SAME_NAME_DIR)):
                try:
                    at = os.stat(directory)
                except (FileNotFoundError, NotADirectoryError):
                    found.append(None)
                else:
                    found.append((at.st_ino, at.st_mtime_ns, at.st_ctime_ns))
            return tuple(found)

        def settled(mark: Hashable) -> bool:
            # Unchanged for a second: any later change gets a later time, even from a coarse clock.
            stamps = [stamp for seen in cast(_Signature, mark) if seen for stamp in seen[1:]]
            return bool(stamps) and time.time_ns() - max(stamps) > _SETTLED_NS

        def present(name: str) -> bool:
            if name.endswith("/"):
                return _is_dir(os.path.join(d, layout.entry_name(name[:-1])))
            return self._stat_object(d, layout.entry_name(name)) is not None

        with self._errors(f"listing {folder}"):
            return self._pages.page(d, cursor, page_size, include_dirs, read, signature, present, settled)

    def kydb_mkdir(self, folder: str) -> None:
        with self._errors(f"making folder {folder}"):
            self._ready_to_write()
            for attempt in range(_ATTEMPTS):
                try:
                    self._ensure_folder(folder, [])
                    return
                except FolderVanished:
                    if attempt == _ATTEMPTS - 1:
                        raise

    def kydb_is_dir(self, folder: str) -> bool:
        if folder == "/":
            return True
        with self._errors(f"looking for folder {folder}"):
            return _is_dir(self._dir(folder))

    def kydb_rmdir(self, folder: str) -> None:
        d = self._dir(folder)
        with self._errors(f"removing folder {folder}"):
            try:
                with folder_lock(d):
                    names, _ = self._names(d)
                    if names:
                        return  # a write got in since kydb found the folder empty: it stays
                    with os.scandir(d) as entries:
                        leftovers = [entry for entry in entries if entry.name != LOCK_NAME]
                    for entry in leftovers:  # kydb's own entries: metadata and temporary files left behind
                        if layout.is_temp(entry.name) and entry.is_dir(follow_symlinks=False):
                            self._discard(entry.path)  # a tree being deleted (unless its deleter died)
                        elif entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path)
                        else:
                            os.unlink(entry.path)
                    os.unlink(os.path.join(d, LOCK_NAME))  # while holding it: a waiting writer then starts again
                    try:
                        os.rmdir(d)
                    except OSError as exc:  # a writer that started again got in: the folder stays
                        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                            raise
            except FolderVanished:
                return
            _fsync_dir(os.path.dirname(d))

    def kydb_delete_tree(self, folder: str) -> int:
        with self._errors(f"removing {folder} and everything below it"):
            if folder == "/":
                return self._empty_root()
            d = self._dir(folder)
            parent = os.path.dirname(d)
            trash = os.path.join(parent, layout.temp_name())
            try:
                with folder_lock(parent):
                    os.rename(d, trash)  # gone from every listing at once; the deleting can take its time
            except (FolderVanished, FileNotFoundError, NotADirectoryError):
                return 0
            _fsync_dir(parent)
            return self._discard(trash)

    def _empty_root(self) -> int:
        if not _is_dir(self.root):
            return 0
        trash = os.path.join(self.root, layout.temp_name())
        with folder_lock(self.root):
            os.mkdir(trash)
            with os.scandir(self.root) as entries:
                moving = [
                    entry
                    for entry in entries
                    if entry.path != trash
                    and entry.name != LOCK_NAME
                    and not (layout.is_temp(entry.name) and entry.is_dir(follow_symlinks=False))
                ]
            for entry in moving:
                os.rename(entry.path, os.path.join(trash, entry.name))
        _fsync_dir(self.root)
        return self._discard(trash)

    def _discard(self, trash: str) -> int:
        """Count the objects in a directory taken out of the tree, then delete it; the count.

        The directory stays locked (``flock``) while it is deleted, so no
        sweep mistakes it for one left behind.
        """
        fd = os.open(trash, _DIRECTORY)
        try:
            if not try_lock_fd(fd):
                return 0  # someone else is deleting it
            count = _count_objects(trash)
            shutil.rmtree(trash, ignore_errors=True)  # what cannot go now, a later sweep removes
        finally:
            os.close(fd)
        return count

    # ------------------------------------------------------------------ leftovers of interrupted writes

    def _sweep(self, d: str) -> None:
        """Remove what interrupted writes left in ``d`` (hold its lock: no write there is in progress)."""
        for where in (d, os.path.join(d, META_DIR)):
            try:
                entries = [entry for entry in os.scandir(where) if layout.is_temp(entry.name)]
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_dir(follow_symlinks=False):
                        self._discard(entry.path)  # a tree being deleted, unless its deleter died
                    else:
                        os.unlink(entry.path)

    def _sweep_if_idle(self, d: str) -> None:
        """Sweep ``d`` if no write holds its lock now (never waits; a read never fails for this)."""
        path = os.path.join(d, LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            if try_lock_fd(fd) and os.fstat(fd).st_ino == os.stat(path).st_ino:
                self._sweep(d)
        except OSError:
            pass
        finally:
            os.close(fd)


def _what(verb: str, paths: Sequence[str]) -> str:
    return f"{verb} {paths[0]}" if len(paths) == 1 else f"{verb} {len(paths)} objects"


def _check_version(path: str, wanted: str | None, actual: str | None) -> None:
    if actual != wanted:
        now = "absent" if actual is None else f"at version {actual}"
        expected = "absent" if wanted is None else f"at version {wanted}"
        raise kydb.Conflict(f"{path}: expected the object {expected}, but it is {now}; nothing was written")


def _count_objects(d: str) -> int:
    """How many objects the directory ``d`` holds, below it included (symbolic links to folders not followed)."""
    count = 0
    with os.scandir(d) as entries:
        for entry in entries:
            name = entry.name
            if name == SAME_NAME_DIR:
                with os.scandir(entry.path) as beside:
                    count += sum(1 for item in beside if not layout.is_temp(item.name) and _kind(item) == "file")
                continue
            if layout.component_of(name) is None and not layout.is_long(name):
                continue
            if entry.is_dir(follow_symlinks=False):
                count += _count_objects(entry.path)
            elif _kind(entry) == "file":
                count += 1
    return count
