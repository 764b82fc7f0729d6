"""Every error kydb raises.

The hierarchy keeps two promises:

* lookups that the original ``kydb`` answered with ``KeyError`` still raise a
  ``KeyError`` subclass, so existing ``except KeyError`` code keeps working;
* only a key that is genuinely absent raises :class:`NotFound`.  A store that
  is down, slow or refusing access raises :class:`StoreUnavailable` (or
  another non-``KeyError`` error), so callers that treat a missing key as
  "use the default" never silently compute with wrong data.
"""

from __future__ import annotations

__all__ = [
    "BackendConflict",
    "ConditionalWritesNotSupported",
    "Conflict",
    "CorruptValue",
    "DbObjException",
    "FolderNotEmpty",
    "IndexNotSupported",
    "InvalidKey",
    "KydbError",
    "NotFound",
    "ReadOnlyStore",
    "StoreUnavailable",
    "UnknownClass",
    "UnknownScheme",
    "UnstorableValue",
]


class KydbError(Exception):
    """Base class of every error raised by kydb."""

    def __str__(self) -> str:
        # KeyError's own __str__ would repr() the message and wrap it in quotes.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class NotFound(KydbError, KeyError):
    """The key does not exist in the store (and nothing else went wrong)."""


class InvalidKey(KydbError, KeyError, ValueError):
    """A key or folder name breaks the key rules; raised before the store is touched."""


class FolderNotEmpty(KydbError, KeyError):
    """``rmdir`` of a folder that still has children."""


class UnknownScheme(KydbError, ValueError):
    """No installed backend serves the URL's scheme."""


class CorruptValue(KydbError):
    """A stored blob is not valid kydb data (corrupt, truncated or foreign)."""


class DbObjException(KydbError):
    """The DbObj class configuration is missing or malformed."""


class UnknownClass(DbObjException, KeyError):
    """``db.new(class_name, key)`` names a class the DbObj config does not list.

    A ``KeyError`` (a lookup in the config failed) but never :class:`NotFound`:
    the key itself may well be absent, but that is not what went wrong.
    """


class UnstorableValue(KydbError, TypeError):
    """A value the DB's serialiser cannot encode (a lambda, a lock, an open file...); nothing is written.

    Names the key and the value's type; the serialiser's own error is chained
    as ``__cause__``.
    """


class StoreUnavailable(KydbError):
    """The store could not be reached after the backend's retry policy was spent.

    The backend's own exception is chained as ``__cause__``.
    """


class BackendConflict(KydbError, RuntimeError):
    """Two installed distributions claim the same URL scheme or plugin name."""


class IndexNotSupported(KydbError):
    """The store cannot answer an ordered folder query from an index (pass ``allow_scan=True`` to scan)."""


class Conflict(KydbError):
    """A conditional write or delete found another version of the object (or none): nothing was changed.

    Never a ``KeyError``: a conflict is not an absent key.
    """


class ConditionalWritesNotSupported(KydbError):
    """The store keeps no object versions, so it cannot write or delete conditionally.

    Raised before anything is written: kydb never falls back to an unconditional write.
    """


class ReadOnlyStore(KydbError, PermissionError):
    """The store can be read but not written (a published tree over HTTP, for example)."""
