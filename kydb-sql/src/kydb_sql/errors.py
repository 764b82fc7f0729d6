"""kydb-sql's own errors, and how database errors become kydb's.

Only a key that is absent is ever reported as absent: a lost connection, a
lock timeout or a full disk raises :class:`kydb.StoreUnavailable`, access
denied raises ``PermissionError``, each naming the database and the URL with
its password masked (drivers' messages are scrubbed of it too).
"""

from __future__ import annotations

import sqlalchemy as sa

import kydb

__all__ = ["TableLayoutError", "ValueTooLarge", "is_read_timeout", "is_retryable", "translate"]


class TableLayoutError(kydb.KydbError):
    """The table named by the URL is not a kydb table of the layout this version reads."""


class ValueTooLarge(kydb.KydbError, ValueError):
    """A value is larger than the database accepts in one statement; nothing was written."""


# Serialization failures and deadlocks (SQLSTATEs, MySQL's 1213): the database rolled the transaction
# back at once, and running it again may simply succeed.  Not MySQL's lock wait timeout (1205): another
# transaction held the lock for innodb_lock_wait_timeout (50 s by default), and each retry would wait as
# long again; like SQLite's busy timeout, it is StoreUnavailable at once.
_RETRY: set[str | int] = {"40001", "40P01", 1213}
_DENIED: set[str | int] = {"42501", "28000", "28P01", 1044, 1045, 1142, 1143, 1227}
_SQLITE_DENIED = ("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")
_TOO_BIG: set[str | int] = {"54000", "SQLITE_TOOBIG"}  # PostgreSQL's program_limit_exceeded
# PyMySQL reports every server error it does not know as OperationalError; of those (1000-1999,
# 3000+), only these say the server is unreachable, overloaded or timing out.  2000-2999 are the
# client's own connection errors, below 1000 operating-system errors.
_MYSQL_UNAVAILABLE = {1040, 1053, 1159, 1160, 1161, 1205, 1213, 1317, 1927, 3024, 4031}


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


def is_retryable(exc: sa.exc.DBAPIError) -> bool:
    """Whether running the same (idempotent) operation again may succeed at once."""
    return exc.connection_invalidated or _code(exc.orig) in _RETRY


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
    exc: sa.exc.SQLAlchemyError, where: str, masked_url: str, password: str | None, hint: str = ""
) -> BaseException:
    """The exception to raise for ``exc`` (chain it): kydb's, or ``exc`` itself for a programming error.

    ``where`` names the database (``PostgreSQL database 'test' on
    127.0.0.1:5432``); ``password`` is scrubbed from the driver's message;
    ``hint`` says what to check when the store is unavailable.
    """
    reason = _reason(exc, password)
    code = _code(exc.orig) if isinstance(exc, sa.exc.DBAPIError) else None
    if code in _DENIED or (isinstance(code, str) and code.startswith(_SQLITE_DENIED)):
        return PermissionError(f"{where} refused access ({masked_url}): {reason}")
    if code in _TOO_BIG:
        return ValueTooLarge(f"{where} refused a value as too large ({masked_url}): {reason}")
    if _unavailable(exc, code):
        return kydb.StoreUnavailable(f"{where} is unavailable ({masked_url}): {reason}. {hint}".rstrip())
    return exc
