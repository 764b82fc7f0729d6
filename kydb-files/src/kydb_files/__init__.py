"""kydb-files: a directory as a kydb store — ``file:///absolute/dir``, ``file://./relative/dir``.

Folders are directories, objects are files holding their stored blobs, and
kydb's own bookkeeping hides in entries starting with ``.kydb``; the layout
is :mod:`kydb_files.layout` (kydb-fsspec writes and reads the same one).
Writes are atomic (a fsynced temporary file renamed into place) and
conditional writes are checked under a per-folder ``flock``.  See
``kydb-files/README.md``.  Standard library only.
"""

from __future__ import annotations

from .store import FileStore, UnsupportedFilesystem, root_of

__all__ = ["FileStore", "UnsupportedFilesystem", "root_of"]
__version__ = "0.1.0"
