"""kydb-fsspec: kydb-files' directory layout on any fsspec filesystem, and read-only over HTTP.

* ``fsspec+PROTOCOL://...`` (``fsspec+memory://scratch/dir``,
  ``fsspec+file:///srv/kydb``, ``fsspec+gcs://bucket/dir``...) — a store on
  that filesystem (:class:`kydb_fsspec.store.FsspecStore`);
* ``http://host/path``, ``https://...`` — a tree kydb-files wrote, published
  by any static web server, read-only (:class:`kydb_fsspec.http.HTTPStore`,
  standard library only: fsspec is imported for ``fsspec+`` URLs only).

See ``kydb-fsspec/README.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .http import HTTPStore

if TYPE_CHECKING:
    from .store import FsspecStore

__all__ = ["FsspecStore", "HTTPStore"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "FsspecStore":  # imported on first use: http:// needs no fsspec
        return importlib.import_module(".store", __name__).FsspecStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
