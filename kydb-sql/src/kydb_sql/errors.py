"""kydb-sql's own errors, and how database errors become kydb's.

Only a key that is absent is ever reported as absent: a lost connection, a
busy timeout or a full disk raises :class:`kydb.StoreUnavailable`, a write
that kept meeting concurrent writers (deadlocks, a row lock held too long)
:class:`WriteConflict`, access denied ``PermissionError``, each naming the
database and the URL with its password masked (drivers' messages are
scrubbed of it too).
"""

from __future__ import annotations

import sqlalchemy as sa

import kydb

__all__ = [
    "TableLayoutError",
    "ValueTooLarge",
    "WriteConflict",
    "is_conflict",
    "is_duplicate_key",
    "is_read_timeout",
    "translate",
]


class TableLayoutError(kydb.KydbError):
    """The table named by the URL is not a kydb table of the layout this version reads, or its names are taken."""


class ValueTooLarge(kydb.KydbError, ValueError):
    """A value is larger than the database accepts in one statement; nothing was written."""


class WriteConflict(kydb.StoreUnavailable):
    """A write kept meeting concurrent writers (deadlocks, serialization failures, a lock held too long).

    The database rolled the write back: nothing of it was applied.  The
    server is up; trying again later may succeed.  A
    :class:`kydb.StoreUnavailable`, so code that retries a store that could
    not serve retries this too.
    """


# Deadlocks and serialization failures (PostgreSQL's SQLSTATEs; MySQL's 1213 deadlock, and 1020 "record
# has changed since last read" of MariaDB's snapshot isolation): the database rolled the transaction back
# at once, and running it again usually succeeds.
_CONFLICT: dict[str | int, str] = {
    "40001": "serialization failure",
    "40P01": "deadlock",
    1213: "deadlock",
    1020: "serialization failure",
}
# MySQL's lock wait timeout: another transaction held a row lock for innodb_lock_wait_timeout (50 s by
# default).  Not retried: each try would wait as long again (like SQLite's busy timeout).
_LOCK_WAIT_TIMEOUT = 1205
_DUPLICATE_KEY = 1062  # MySQL's ER_DUP_ENTRY
_DENIED: set[str | int] = {"42501", "28000", "28P01", 1044, 1045, 1142, 1143, 1227}
_SQLITE_DENIED = ("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")
_TOO_BIG: set[str | int] = {"54000", "SQLITE_TOOBIG"}  # PostgreSQL's program_limit_exceeded
# PyMySQL reports every server error it does not know as OperationalError; of those (1000-1999,
# 3000+), only these say the server is unreachable, overloaded or timing out.  2000-2999 are the
# client's own connection errors, below 1000 operating-system errors.
_MYSQL_UNAVAILABLE = {1040, 1053, 1159, 1160, 1161, 1317, 1927, 3024, 4031}


def _code(orig: BaseException | None) -> str | int | None:
    """The database's error code: a MySQL error number, a SQLSTATE or a SQLite error name."""
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # MySQL drivers: (errno, message), even when they set sqlstate too
        return args[0]
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate:
        return str(sqlstate)
    name = getattr(orig, "sqlite_errorname", None)
    return str(name) if name else None


def is_conflict(exc: sa.exc.DBAPIError) -> bool:
    """Whether the database rolled the operation back for a deadlock or serialization failure.

    Running the same (idempotent) operation again usually succeeds.
    """
    return _code(exc.orig) in _CONFLICT


def is_duplicate_key(exc: sa.exc.DBAPIError) -> bool:
    """Whether the database refused an insert because its primary key is taken (MySQL's 1062)."""
    return _code(exc.orig) == _DUPLICATE_KEY


def is_read_timeout(exc: sa.exc.SQLAlchemyError) -> bool:
    """Whether the driver gave up waiting for the server's answer (PyMySQL's read or write timeout).

    Opening a connection that timed out is not one: that is an ordinary
    connection failure.
    """
    orig = getattr(exc, "orig", None)
    return isinstance(getattr(orig, "__context__", None), TimeoutError) and _code(orig) in (2006, 2013)


def _reason(exc: BaseException, password: str | None) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    text = lines[0] if lines else type(orig).__name__
    return text.replace(password, "***") if password else text


def _unavailable(exc: sa.exc.SQLAlchemyError, code: str | int | None) -> bool:
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)):
        return False
    if isinstance(code, int) and code >= 1000 and not 2000 <= code < 3000:
        return code in _MYSQL_UNAVAILABLE
    return True


def translate(
    exc: sa.exc.SQLAlchemyError, where: str, masked_url: str, password: str | None, hint: str = "", tries: int = 1
) -> BaseException:
    """The exception to raise for ``exc`` (chain it): kydb's, or ``exc`` itself for a programming error.

    ``where`` names the database (``PostgreSQL database 'test' on
    127.0.0.1:5432``); ``password`` is scrubbed from the driver's message;
    ``hint`` says what to check when the store is unavailable; ``tries`` is
    how many times the operation ran (each deadlock is a try).
    """
    reason = _reason(exc, password)
    code = _code(exc.orig) if isinstance(exc, sa.exc.DBAPIError) else None
    if code in _DENIED or (isinstance(code, str) and code.startswith(_SQLITE_DENIED)):
        return PermissionError(f"{where} refused access ({masked_url}): {reason}")
    if code in _TOO_BIG:
        return ValueTooLarge(f"{where} refused a value as too large ({masked_url}): {reason}")
    if code in _CONFLICT:
        return WriteConflict(
            f"{where} ({masked_url}) rolled the operation back for a {_CONFLICT[code]} with concurrent writers "
            f"in each of {tries} tries ({reason}); nothing of it was applied. The server is up: try again, and if "
            "this keeps happening, fewer concurrent writers to the same keys will help."
        )
    if code == _LOCK_WAIT_TIMEOUT:
        return WriteConflict(
            f"{where} ({masked_url}): another transaction held a row lock this operation needed for longer than "
            f"innodb_lock_wait_timeout ({reason}); it was rolled back and not retried (each try would wait as "
            "long again). The server is up: find the long-running transaction, or raise innodb_lock_wait_timeout."
        )
    if _unavailable(exc, code):
        return kydb.StoreUnavailable(f"{where} is unavailable ({masked_url}): {reason}. {hint}".rstrip())
    return exc
