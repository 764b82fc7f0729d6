"""An example kydb backend: a directory tree, one file per object (``dir:///root/path``)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping, Sequence

import kydb

__all__ = ["DirStore"]

_OBJECT, _FOLDER = ".o", ".d"


class DirStore(kydb.Store):
    """kydb hooks over a directory: folder ``/a/`` is ``ROOT/a.d/``, object ``/a/x`` is ``ROOT/a.d/x.o``."""

    # The URL path names the root directory, so the base path comes from ?base=.  Files keep no
    # creation time across atomic replaces and no index values: no times, so no folder queries.
    capabilities = kydb.Capabilities(url_path_is_base=False)

    def __init__(self, url: kydb.StoreURL) -> None:
        super().__init__(url)
        if url.netloc or not url.path.startswith("/"):
            raise ValueError(f"invalid kydb URL {url.masked!r}: expected dir:///absolute/path")
        if url.options:
            raise ValueError(f"invalid kydb URL {url.masked!r}: unknown options {sorted(url.options)}")
        self.root = url.path

    def _dir(self, folder: str) -> str:
        parts = [p + _FOLDER for p in folder.strip("/").split("/") if p]
        return os.path.join(self.root, *parts)

    def _file(self, path: str) -> str:
        folder, _, name = path.rpartition("/")
        return os.path.join(self._dir(folder), name + _OBJECT)

    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        found = {}
        for path in paths:
            try:
                with open(self._file(path), "rb") as f:
                    found[path] = f.read()
            except FileNotFoundError:
                pass
        return found

    def kydb_put(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None],
    ) -> None:
        # Keeps no times or indexes, and declares no conditional writes (kydb never sends ``expect``).
        for path, blob in items.items():
            target = self._file(path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                os.replace(tmp, target)  # atomic: readers see the old file or the new one
            except BaseException:
                os.unlink(tmp)
                raise

    def kydb_delete(self, paths: Sequence[str], expect: Mapping[str, str]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file(path))

    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        try:
            entries = os.listdir(self._dir(folder))
        except FileNotFoundError:
            return kydb.ListPage([], None)
        names = sorted(
            e[: -len(_OBJECT)] if e.endswith(_OBJECT) else e[: -len(_FOLDER)] + "/"
            for e in entries
            if e.endswith(_OBJECT) or (include_dirs and e.endswith(_FOLDER))
        )
        if cursor is not None:
            names = [n for n in names if n > cursor]
        page = names[:page_size]
        return kydb.ListPage(page, page[-1] if len(names) > page_size else None)

    def kydb_mkdir(self, folder: str) -> None:
        os.makedirs(self._dir(folder), exist_ok=True)

    def kydb_rmdir(self, folder: str) -> None:
        os.rmdir(self._dir(folder))

    def kydb_is_dir(self, folder: str) -> bool:
        return os.path.isdir(self._dir(folder))
