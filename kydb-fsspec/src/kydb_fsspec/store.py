"""``fsspec+PROTOCOL://...``: kydb-files' layout on any fsspec filesystem.

The tree is the one kydb-files writes (:mod:`kydb_files.layout`): folders
are directories (or key prefixes), objects are files holding their blobs,
and each object's metadata is a file in its folder's ``.kydb-meta``.  What a
filesystem can promise differs, and the store declares it per URL
(:meth:`FsspecStore.capabilities_for`):

* ``file`` (local disks): each file is written to a temporary name and
  renamed into place, so readers see old or new; every write holds the
  folder's ``flock`` (as kydb-files does, so both can share a tree), which
  makes conditional writes atomic across processes.  fsspec cannot
  ``fsync``: a crash of the machine may lose recent writes.
* ``memory``: one process's store; a process-wide lock makes each write,
  conditional ones included, atomic.
* any other protocol (``gcs``, ``s3``, ``abfs``, ``sftp``...): each file is
  one ``pipe_file`` — a single PUT on object stores, so readers see old or
  new; a streamed write in place on others (``sftp``, ``ftp``, ``smb``), so
  a reader there can see a partial object.  There is no lock: no
  conditional writes, and two writers updating one object's index values at
  once can lose one's values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import fsspec
import fsspec.core

import kydb
from kydb.keys import folder_of
from kydb_files import layout
from kydb_files.layout import META_DIR, NAME_FILE, RESERVED_PREFIX, SAME_NAME_DIR, Meta
from kydb_files.locks import FolderVanished, folder_lock
from kydb_files.pages import ListingPages

__all__ = ["FOLDER_MARKER", "FsspecStore"]

#: On filesystems whose folders are only key prefixes (object stores), an empty file that keeps a made folder.
FOLDER_MARKER = ".kydb-folder"
_LOCAL = ("file", "local")
_ATTEMPTS = 5
#: One lock for every fsspec memory filesystem of the process: they share one store.
_MEMORY_LOCK = threading.RLock()
#: What fsspec's rm, mv and copy read as a glob pattern.
_GLOB = re.compile(r"[*?\[]")


class _Found(NamedTuple):
    """Where an object's file is, and what fsspec says of it."""

    path: str
    info: Mapping[str, Any]


def _protocol_of(url: kydb.StoreURL) -> str:
    _, plus, protocol = url.scheme.partition("+")
    if not plus or not protocol:
        raise ValueError(
            f"invalid kydb URL {url.masked!r}: name the fsspec protocol after 'fsspec+', e.g. "
            "fsspec+memory://scratch/dir, fsspec+file:///srv/kydb, fsspec+gcs://bucket/dir"
        )
    return protocol.lower()


def _storage_options(url: kydb.StoreURL) -> dict[str, Any]:
    """The filesystem's options: ``?storage_options=`` (a JSON object) and every other option as a string."""
    options: dict[str, Any] = {}
    text = url.options.get("storage_options")
    if text is not None:
        try:
            options = json.loads(text)
        except ValueError:
            options = None  # type: ignore[assignment]
        if not isinstance(options, dict):
            raise ValueError(
                f"invalid kydb URL {url.masked!r}: ?storage_options= takes a JSON object, "
                'e.g. ?storage_options={"anon":true}'
            )
    for name, value in url.options.items():
        if name == "storage_options":
            continue
        if name in options:
            raise ValueError(f"invalid kydb URL {url.masked!r}: option {name!r} given twice")
        options[name] = value
    return options


def _to_ns(value: object) -> int | None:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return int(value.timestamp() * 1_000_000_000)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1_000_000_000)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return _to_ns(datetime.datetime.fromisoformat(value.replace("Z", "+00:00")))
    return None


def _file_mtime(info: Mapping[str, Any]) -> int | None:
    """A file's modification time from what fsspec says of it (each filesystem names it its own way)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified", "created", "time"):
        if key in info:
            found = _to_ns(info[key])
            if found is not None:
                return found
    return None


class FsspecStore(kydb.Store):
    """kydb's hooks over a directory of an fsspec filesystem, in kydb-files' layout."""

    capabilities = kydb.Capabilities(url_path_is_base=False, keeps_times=True, keeps_ctime=True)

    @classmethod
    def capabilities_for(cls, url: kydb.StoreURL) -> kydb.Capabilities:
        """Conditional writes where writes can be locked (local disks, memory); memory is one process's."""
        protocol = url.scheme.partition("+")[2].lower()
        if protocol in _LOCAL:
            return dataclasses.replace(cls.capabilities, conditional_writes=True)
        if protocol == "memory":
            return dataclasses.replace(cls.capabilities, conditional_writes=True, shared_between_processes=False)
        return cls.capabilities

    def __init__(self, url: kydb.StoreURL) -> None:
        super().__init__(url)
        protocol = _protocol_of(url)
        if protocol in ("http", "https"):
            raise ValueError(
                f"invalid kydb URL {url.masked!r}: read HTTP with {protocol}://... (kydb-fsspec's read-only "
                "store, which reads kydb-files' layout from any static web server), not through fsspec"
            )
        options = _storage_options(url)
        auth = ""
        if url.username is not None:
            auth = url.username + (f":{url.password}" if url.password is not None else "") + "@"
        target = f"{protocol}://{auth}{url.netloc}{url.path}"
        try:
            self.fs, root = fsspec.core.url_to_fs(target, **options)
        except ImportError as exc:
            raise ImportError(
                f"kydb URL {url.masked!r}: fsspec's {protocol!r} filesystem needs its package: {exc} "
                "(pip install kydb-fsspec and that package)"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise ValueError(f"invalid kydb URL {url.masked!r}: {exc}") from exc
        self.protocol = protocol
        self.root: str = str(root).rstrip("/")
        self._local = protocol in _LOCAL
        self._memory = protocol == "memory"
        self._versions = self.capabilities_for(url).conditional_writes  # a store without them reports none
        self._pages = ListingPages()

    # ------------------------------------------------------------------ places and locks

    def _join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _dir(self, folder: str) -> str:
        return self._join(*layout.folder_entries(folder))

    def _locate(self, path: str) -> tuple[str, str]:
        folders, entry = layout.object_entries(path)
        return self._join(*folders), entry

    @contextlib.contextmanager
    def _locked(self, dirs: Sequence[str], *, shared: bool = False) -> Iterator[list[str]]:
        """Hold the locks of the folders ``dirs`` (where this filesystem has locks); yields the ones that exist.

        A local folder that does not exist (yet) is left out, as there is
        nothing in it to guard; the caller decides what that means.
        """
        if self._memory:
            with _MEMORY_LOCK:
                yield list(dirs)
            return
        if not self._local:
            yield list(dirs)
            return
        with contextlib.ExitStack() as held:
            present = []
            for d in sorted(dirs):  # one order for everyone: no deadlocks
                try:
                    held.enter_context(folder_lock(d, shared=shared, create=not shared))
                except FolderVanished:
                    continue
                present.append(d)
            yield present

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except kydb.KydbError:
            raise
        except PermissionError as exc:
            raise PermissionError(f"{what}: permission denied ({self.url.masked}): {exc}") from exc
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise kydb.StoreUnavailable(
                f"{what} ({self.url.masked}): {exc!r}; another writer may have removed the folder meanwhile"
            ) from exc
        except OSError as exc:
            raise kydb.StoreUnavailable(f"{what} failed ({self.url.masked}): {exc!r}") from exc

    # ------------------------------------------------------------------ reading

    def _info(self, path: str) -> Mapping[str, Any] | None:
        try:
            info = self.fs.info(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if info.get("type") == "file":
            return dict(info)
        if info.get("islink") and self.fs.isfile(path):  # a link to a file (local)
            return dict(info)
        return None

    def _find(self, d: str, entry: str) -> _Found | None:
        for path in (f"{d}/{entry}", f"{d}/{SAME_NAME_DIR}/{entry}"):
            info = self._info(path)
            if info is not None:
                return _Found(path, info)
        return None

    def _read(self, path: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(path))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def _read_object(self, d: str, entry: str) -> bytes | None:
        for path in (f"{d}/{entry}", f"{d}/{SAME_NAME_DIR}/{entry}"):
            blob = self._read(path)
            if blob is not None:
                return blob
        return None

    def _read_meta(self, d: str, entry: str) -> Meta | None:
        data = self._read(f"{d}/{META_DIR}/{entry}")
        return None if data is None else Meta.from_bytes(data)

    def _ino(self, info: Mapping[str, Any]) -> int | None:
        ino = info.get("ino")
        return ino if self._local and isinstance(ino, int) else None

    def _describe(self, meta: Meta | None, size: int, info: Mapping[str, Any]) -> kydb.ObjectInfo:
        """What the store reports for an object of ``size`` bytes, its file's ``info`` and its metadata."""
        mtime = _file_mtime(info)
        if self._local:  # the exact time, as kydb-files reports it (fsspec gives float seconds)
            with contextlib.suppress(OSError):
                mtime = os.stat(info["name"]).st_mtime_ns
        described = layout.describe(meta, size, mtime, self._ino(info))
        return described if self._versions else described._replace(version=None)

    def _current(self, d: str, entry: str) -> tuple[_Found | None, Meta | None, kydb.ObjectInfo | None]:
        """Where the object is, its own metadata (if any) and what it reports."""
        found = self._find(d, entry)
        if found is None:
            return None, None, None
        meta = self._read_meta(d, entry)
        size = int(found.info.get("size", 0))
        own = None if meta is None else meta.for_file(size, self._ino(found.info))
        return found, own, self._describe(meta, size, found.info)

    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        found: dict[str, bytes] = {}
        with self._errors("reading"):
            for path in paths:
                blob = self._read_object(*self._locate(path))
                if blob is not None:
                    found[path] = blob
        return found

    def kydb_get_versioned(self, paths: Sequence[str]) -> Mapping[str, kydb.VersionedBlob]:
        found: dict[str, kydb.VersionedBlob] = {}
        with self._errors("reading with versions"):
            for path in paths:
                d, entry = self._locate(path)
                with self._locked([d], shared=True):
                    where = self._find(d, entry)
                    blob = None if where is None else self._read(where.path)
                    if where is None or blob is None:
                        continue
                    info = self._describe(self._read_meta(d, entry), len(blob), where.info)
                if info.version is not None:
                    found[path] = kydb.VersionedBlob(blob, info.version)
        return found

    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, kydb.ObjectInfo]:
        found: dict[str, kydb.ObjectInfo] = {}
        with self._errors("reading metadata"):
            for path in paths:
                d, entry = self._locate(path)
                with self._locked([d], shared=True):
                    info = self._current(d, entry)[2]
                if info is not None:
                    found[path] = info
        return found

    def kydb_exists(self, path: str) -> bool:
        with self._errors(f"looking for {path}"):
            return self._find(*self._locate(path)) is not None

    # ------------------------------------------------------------------ writing

    def _rename(self, source: str, target: str) -> None:
        """Move a file (or, locally, a directory) to ``target``, replacing a file there.

        fsspec's ``mv`` reads its source as a glob pattern (a kydb name may
        hold ``*``, ``?`` or ``[``) and moves into a directory found at the
        target, so: a local ``os.replace`` (one atomic rename), elsewhere a
        read, a write and a delete (hold the folder's lock).
        """
        if self._local:
            os.replace(source, target)
            return
        self.fs.pipe_file(target, bytes(self.fs.cat_file(source)))
        self.fs.rm_file(source)

    def _remove_tree(self, d: str) -> None:
        """Delete the directory ``d`` and everything below it (nothing if it is gone)."""
        if not _GLOB.search(d):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(d, recursive=True)  # the filesystem's bulk delete
            return
        # fsspec's rm reads a path as a glob pattern: a name holding *, ? or [ is deleted entry by entry.
        try:
            found = self.fs.find(d, withdirs=True, detail=True)
        except FileNotFoundError:
            return
        for path in sorted(found, key=lambda p: p.count("/"), reverse=True):
            with contextlib.suppress(FileNotFoundError, OSError):
                if found[path].get("type") == "directory":
                    self.fs.rmdir(path)
                else:
                    self.fs.rm_file(path)
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.rmdir(d)

    def _write_file(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path`` as atomically as the filesystem allows (locally: a temporary file renamed)."""
        if not self._local:
            self.fs.pipe_file(path, data)
            return
        temp = f"{path.rpartition('/')[0]}/{layout.temp_name()}"
        self.fs.pipe_file(temp, data)
        try:
            self._rename(temp, path)  # readers see the old file or the new one
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.rm_file(temp)
            raise

    def _make_folder_here(self, path: str) -> None:
        """Make the directory ``path`` (its parent exists), so that it stays even while empty."""
        self.fs.makedirs(path, exist_ok=True)
        if not self.fs.isdir(path):  # folders are key prefixes here: a marker keeps an empty one
            self.fs.pipe_file(f"{path}/{FOLDER_MARKER}", b"")

    def _ensure_folder(self, folder: str, made: list[str]) -> str:
        """The folder's directory, made (with its ancestors) if missing; the folders made go to ``made``."""
        d = self._dir(folder)
        if self.fs.isdir(d):
            return d
        if not self.fs.isdir(self.root):
            self.fs.makedirs(self.root, exist_ok=True)
        current, walked = self.root, "/"
        for part in folder.strip("/").split("/"):
            if part:
                entry = layout.entry_name(part)
                walked += part + "/"
                if not self.fs.isdir(f"{current}/{entry}") and self._make_subfolder(current, entry, part):
                    made.append(walked)
                current = f"{current}/{entry}"
        return current

    def _make_subfolder(self, parent: str, entry: str, name: str) -> bool:
        with self._locked([parent]) as present:
            if self._local and parent not in present:
                raise FolderVanished(parent)
            path = f"{parent}/{entry}"
            if self.fs.isdir(path):
                return False
            if self._info(path) is not None:  # an object of that name: it moves beside the folder
                self.fs.makedirs(f"{parent}/{SAME_NAME_DIR}", exist_ok=True)
                self._rename(path, f"{parent}/{SAME_NAME_DIR}/{entry}")
            if layout.is_long(entry) and self._local:  # made whole, with its name inside, before anyone sees it
                building = f"{parent}/{layout.temp_name()}"
                self.fs.makedirs(building)
                self.fs.pipe_file(f"{building}/{NAME_FILE}", name.encode("utf-8"))
                self._rename(building, path)
            elif layout.is_long(entry):
                self.fs.pipe_file(f"{path}/{NAME_FILE}", name.encode("utf-8"))
            else:
                self._make_folder_here(path)
        return True

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
        what = f"writing {next(iter(items))}" if len(items) == 1 else f"writing {len(items)} objects"
        with self._errors(what):
            for attempt in range(_ATTEMPTS):
                try:
                    self._put(items, mtime_ns, indexes, expect)
                    return
                except FolderVanished:
                    if attempt == _ATTEMPTS - 1:
                        raise

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
        with self._locked(list(by_dir)) as present:
            if self._local and len(present) != len(by_dir):
                raise FolderVanished(sorted(set(by_dir) - set(present))[0])
            current = {path: self._current(d, entry) for d, entries in by_dir.items() for path, entry in entries}
            for path, wanted in expect.items():
                info = current[path][2]
                _check_version(path, wanted, None if info is None else info.version)
            for d, entries in by_dir.items():
                for path, entry in entries:
                    found, own, info = current[path]
                    values = {} if info is None else dict(info.indexes)
                    for name, value in indexes.get(path, {}).items():
                        if value is None:
                            values.pop(name, None)
                        else:
                            values[name] = value
                    ctime = mtime_ns if info is None or info.ctime_ns is None else info.ctime_ns
                    previous = None if own is None else own.after()
                    self._write_object(d, entry, path, items[path], mtime_ns, ctime, values, found, previous)

    def _write_object(
        self,
        d: str,
        entry: str,
        path: str,
        blob: bytes,
        mtime_ns: int,
        ctime_ns: int,
        values: Mapping[str, int],
        found: _Found | None,
        previous: Meta | None,
    ) -> None:
        """Metadata first, then the object's file (beside a folder of its name, if there is one)."""
        primary, beside = f"{d}/{entry}", f"{d}/{SAME_NAME_DIR}/{entry}"
        target = beside if self.fs.isdir(primary) else primary
        name = path.rpartition("/")[2] if layout.is_long(entry) else None
        meta_path = f"{d}/{META_DIR}/{entry}"
        if self._local:  # the metadata names the new file's inode: write the file, then both renames
            temp = f"{d}/{layout.temp_name()}"
            self.fs.pipe_file(temp, blob)
            try:
                ino = self._ino(self.fs.info(temp))
                meta = Meta(layout.new_write_id(), len(blob), mtime_ns, ctime_ns, values, ino, name, previous)
                self.fs.makedirs(f"{d}/{META_DIR}", exist_ok=True)
                self._write_file(meta_path, meta.to_bytes())
                if target == beside:
                    self.fs.makedirs(f"{d}/{SAME_NAME_DIR}", exist_ok=True)
                self._rename(temp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    self.fs.rm_file(temp)
                raise
        else:
            meta = Meta(layout.new_write_id(), len(blob), mtime_ns, ctime_ns, values, None, name, previous)
            self.fs.pipe_file(meta_path, meta.to_bytes())
            try:
                self.fs.pipe_file(target, blob)
            except BaseException:
                # Without inodes, metadata is matched to its file by size alone: put the old one back.
                with contextlib.suppress(Exception):
                    if previous is None:
                        self.fs.rm_file(meta_path)
                    else:
                        self.fs.pipe_file(meta_path, previous.to_bytes())
                raise
        if found is not None and found.path != target:  # it was beside a folder that has since gone
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(found.path)

    def kydb_delete(self, paths: Sequence[str], expect: Mapping[str, str]) -> None:
        by_dir: dict[str, list[tuple[str, str]]] = {}
        for path in paths:
            d, entry = self._locate(path)
            by_dir.setdefault(d, []).append((path, entry))
        with self._errors(f"deleting {len(paths)} objects"), self._locked(list(by_dir)) as present:
            if self._local:
                by_dir = {d: entries for d, entries in by_dir.items() if d in present}
            for path, wanted in expect.items():
                d, entry = self._locate(path)
                info = self._current(d, entry)[2] if d in by_dir else None
                _check_version(path, wanted, None if info is None else info.version)
            for d, entries in by_dir.items():
                for _, entry in entries:
                    found = self._find(d, entry)
                    if found is not None:
                        self.fs.rm_file(found.path)
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm_file(f"{d}/{META_DIR}/{entry}")

    # ------------------------------------------------------------------ folders

    def _entries(self, d: str) -> list[tuple[str, str | None, str]]:
        """``(entry name, "dir"/"file"/None, full path)`` of each entry of directory ``d``; ``[]`` if it is none."""
        try:
            listed = self.fs.ls(d, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        prefix = d.rstrip("/") + "/"
        for info in listed:
            full = str(info["name"]).rstrip("/")
            if not full.startswith(prefix):
                continue
            kind = {"directory": "dir", "file": "file"}.get(info.get("type", ""))
            if kind is None and info.get("islink"):
                kind = "dir" if self.fs.isdir(full) else "file" if self.fs.isfile(full) else None
            found.append((full[len(prefix) :], kind, full))
        return found

    def _names(self, d: str) -> list[str]:
        names = []
        for entry, kind, full in self._entries(d):
            if kind is None:
                continue
            if entry.startswith(RESERVED_PREFIX):
                if layout.is_long(entry):
                    component = self._long_name(d, entry, kind, full)
                    if component is not None:
                        names.append(layout.kydb_name(component, kind == "dir"))
                elif entry == SAME_NAME_DIR and kind == "dir":
                    for inner, inner_kind, inner_full in self._entries(full):
                        if inner_kind != "file" or layout.is_temp(inner):
                            continue
                        if layout.is_long(inner):
                            component = self._long_name(d, inner, "file", inner_full)
                        else:
                            component = layout.component_of(inner)
                        if component is not None:
                            names.append(component)
                continue
            component = layout.component_of(entry)
            if component is not None:
                names.append(layout.kydb_name(component, kind == "dir"))
        return names

    def _long_name(self, d: str, entry: str, kind: str, full: str) -> str | None:
        if kind == "dir":
            data = self._read(f"{full}/{NAME_FILE}")
            try:
                return None if data is None else data.decode("utf-8")
            except UnicodeDecodeError:
                return None
        meta = self._read_meta(d, entry)
        return None if meta is None else meta.name

    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        d = self._dir(folder)

        def present(name: str) -> bool:
            if not (self._local or self._memory):
                return True  # a request per name: later pages trust the first page's listing
            if name.endswith("/"):
                return bool(self.fs.isdir(f"{d}/{layout.entry_name(name[:-1])}"))
            return self._find(d, layout.entry_name(name)) is not None

        with self._errors(f"listing {folder}"):
            return self._pages.page(d, cursor, page_size, include_dirs, lambda: self._names(d), None, present)

    def kydb_mkdir(self, folder: str) -> None:
        with self._errors(f"making folder {folder}"):
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
            return bool(self.fs.isdir(self._dir(folder)))

    def kydb_rmdir(self, folder: str) -> None:
        d = self._dir(folder)
        with self._errors(f"removing folder {folder}"), self._locked([d]) as present:
            if self._local and d not in present:
                return
            if self._names(d):
                return  # a write got in since kydb found the folder empty: it stays
            self._remove_tree(d)

    def kydb_delete_tree(self, folder: str) -> int:
        with self._errors(f"removing {folder} and everything below it"):
            if folder == "/":
                return self._empty_root()
            d = self._dir(folder)
            if self._local:  # out of every listing at once, then counted and deleted
                parent = d.rpartition("/")[0]
                trash = f"{parent}/{layout.temp_name()}"
                with self._locked([parent]):
                    try:
                        self._rename(d, trash)
                    except (FileNotFoundError, NotADirectoryError):
                        return 0
                d = trash
            count = self._count(d)
            self._remove_tree(d)
            return count

    def _empty_root(self) -> int:
        count = self._count(self.root)
        with self._locked([self.root]):
            for entry, _, full in self._entries(self.root):
                if entry == layout.LOCK_NAME:
                    continue
                if self.fs.isdir(full):
                    self._remove_tree(full)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm_file(full)
        return count

    def _count(self, d: str) -> int:
        """How many objects the directory ``d`` holds, below it included."""
        prefix = d.rstrip("/") + "/"
        try:
            files = self.fs.find(d)
        except FileNotFoundError:
            return 0
        return sum(1 for path in files if path.startswith(prefix) and layout.holds_object(path[len(prefix) :]))


def _check_version(path: str, wanted: str | None, actual: str | None) -> None:
    if actual != wanted:
        now = "absent" if actual is None else f"at version {actual}"
        expected = "absent" if wanted is None else f"at version {wanted}"
        raise kydb.Conflict(f"{path}: expected the object {expected}, but it is {now}; nothing was written")
