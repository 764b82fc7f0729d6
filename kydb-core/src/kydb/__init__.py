"""kydb: one Pythonic, dict-like, hierarchical object store over many storage backends.

::

    import kydb
    db = kydb.connect('memory://scratch')
    db['/books/MYBOOK'] = {'pv': 123}
    db.ls('/books')                      # ['MYBOOK']

Backends are separate distributions (``kydb-memory``, ``kydb-redis``,
``kydb-s3``, ``kydb-sql`` or a third party's) found through the
``kydb.schemes`` entry point group; see :mod:`kydb.hookspecs` for the
storage contract they implement and :class:`kydb.Store` for the base class
of a backend.
"""

from __future__ import annotations

from .compose import CacheDB, UnionDB
from .connect import connect
from .db import DB
from .dbobj import DbObj, StoredValue, stored
from .errors import (
    BackendConflict,
    ConditionalWritesNotSupported,
    Conflict,
    CorruptValue,
    DbObjException,
    FolderNotEmpty,
    IndexNotSupported,
    InvalidKey,
    KydbError,
    NotFound,
    ReadOnlyStore,
    StoreUnavailable,
    UnknownClass,
    UnknownScheme,
    UnstorableValue,
)
from .front import BaseDB, Versioned
from .hookspecs import Entry, ListPage, ObjectInfo, QueryPage, QueryRequest, VersionedBlob, hookimpl
from .query import FolderQuery
from .registry import BackendInfo, backends, default_url, register_backend, unregister_backend
from .store import Capabilities, Store
from .url import StoreURL

__version__ = "0.1.0"

__all__ = [
    "DB",
    "BackendConflict",
    "BackendInfo",
    "BaseDB",
    "CacheDB",
    "Capabilities",
    "ConditionalWritesNotSupported",
    "Conflict",
    "CorruptValue",
    "DbObj",
    "DbObjException",
    "Entry",
    "FolderNotEmpty",
    "FolderQuery",
    "IndexNotSupported",
    "InvalidKey",
    "KydbError",
    "ListPage",
    "NotFound",
    "ObjectInfo",
    "QueryPage",
    "QueryRequest",
    "ReadOnlyStore",
    "Store",
    "StoreURL",
    "StoreUnavailable",
    "StoredValue",
    "UnionDB",
    "UnknownClass",
    "UnknownScheme",
    "UnstorableValue",
    "Versioned",
    "VersionedBlob",
    "__version__",
    "backends",
    "connect",
    "default_url",
    "hookimpl",
    "register_backend",
    "stored",
    "unregister_backend",
]
