"""From a kydb URL to a SQLAlchemy engine: the driver, and each database's settings.

* ``postgresql://`` and ``mysql://``/``mariadb://`` without a ``+driver``
  use psycopg 3 and PyMySQL (the drivers kydb-sql's extras install), where
  SQLAlchemy alone would ask for psycopg2 or mysqlclient.  A missing driver
  is an ``ImportError`` naming the extra to install.
* Every engine runs in autocommit mode: a single-statement operation is one
  round trip (no ``BEGIN``/``COMMIT``), and the store brackets
  multi-statement ones in an explicit transaction that always ends in
  ``COMMIT`` or ``ROLLBACK``.  So nothing else goes over the wire: the pool
  does not ping a connection before lending it, and MySQL connections are
  not sent a ``ROLLBACK`` after each use (``skip_autocommit_rollback``).
  Transactions run at ``READ COMMITTED``: MySQL/MariaDB connections are set
  to it when opened (see :mod:`kydb_sql.store` for why).  A
  connection the server dropped fails its first statement; SQLAlchemy
  discards it (and every connection opened before it), and the store runs
  the operation again on a new one.
* Servers get timeouts, settable in the URL (seconds):
  ``connect_timeout`` (default 10) bounds opening a connection, and
  ``read_timeout`` (default 300) how long an operation waits for the
  server.  PyMySQL applies ``read_timeout`` to each read and write on its
  socket; psycopg has no read timeout, so :mod:`kydb_sql.watchdog` ends a
  PostgreSQL operation still running after ``read_timeout``.  libpq counts
  ``connect_timeout`` in whole seconds, at least 2.
* SQLite files use WAL journaling and a 30 s busy timeout (``?timeout=``
  overrides it), so several processes can read and write one file; the
  path is made absolute, and the store creates its folder and the file with
  its first write (never when reading: see :mod:`kydb_sql.store`).  Every
  SQLite connection, in-memory too, enforces foreign keys (SQLite's
  default is not to), which delete an object's index values with it.
* ``sqlite://`` is one in-memory database per process, shared by every
  store connected to it (whatever their base path or table) like a named
  ``memory://`` store: one connection, used by one operation at a time,
  kept until the process exits.  A forked child starts with a copy of it.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from kydb.url import StoreURL

from .watchdog import Watch, watching

__all__ = ["StoreEngine", "Target", "create_store_engine"]

#: URL scheme -> (driver SQLAlchemy uses when the URL names none, kydb-sql extra that installs it)
_DEFAULT_DRIVERS = {
    "postgresql": ("psycopg", "postgresql"),
    "mysql": ("pymysql", "mysql"),
    "mariadb": ("pymysql", "mysql"),
}
_EXTRA_OF_DRIVER = {driver: extra for driver, extra in _DEFAULT_DRIVERS.values()}
_PRETTY = {"postgresql": "PostgreSQL", "mysql": "MySQL", "mariadb": "MariaDB"}
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
#: The servers' timeout options kydb reads from the URL, and their defaults in seconds.
_TIMEOUTS = {"connect_timeout": 10.0, "read_timeout": 300.0}

_live_engines: weakref.WeakSet[sa.Engine] = weakref.WeakSet()
# In-memory SQLite: URL -> (engine, the lock every use of its one connection holds)
_memory_databases: dict[str, tuple[sa.Engine, threading.RLock]] = {}
_memory_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _memory_lock
    # A forked child must never use or close the parent's connections (it
    # opens its own store); dropping them without closing leaves them to the parent.
    for engine in list(_live_engines):
        engine.dispose(close=False)
    # An in-memory database is the child's own copy; only its locks may be stuck.
    _memory_lock = threading.Lock()
    for url, (engine, _) in list(_memory_databases.items()):
        _memory_databases[url] = (engine, threading.RLock())


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(frozen=True)
class Target:
    """What a store's URL points at, for messages (never holds the password)."""

    #: ``"PostgreSQL database 'test' on 127.0.0.1:5432"``, ``"SQLite file /path/kydb.db"``
    where: str
    #: ``sqlite://``: one private in-memory database, one connection
    in_memory: bool
    #: the SQLite file, or ``None``
    file: str | None
    #: what to check when it is unavailable
    hint: str = "Check that the server is running and reachable."


def _sqlalchemy_url(url: StoreURL) -> sa.URL:
    try:
        sa_url = sa.make_url(url.without_options("table", *_TIMEOUTS))
    except sa.exc.ArgumentError as exc:
        raise ValueError(f"invalid kydb URL {url.masked!r}: {exc}") from None
    backend, _, driver = sa_url.drivername.partition("+")
    if not driver and backend in _DEFAULT_DRIVERS:
        driver, extra = _DEFAULT_DRIVERS[backend]
        try:
            importlib.import_module(driver)
        except ImportError:
            raise ImportError(
                f"{url.masked!r} needs the {driver} driver, which is not installed: "
                f"pip install 'kydb-sql[{extra}]' (or name an installed driver, e.g. {backend}+DRIVER://...)"
            ) from None
        sa_url = sa_url.set(drivername=f"{backend}+{driver}")
    return sa_url


def _target(sa_url: sa.URL) -> Target:
    backend = sa_url.get_backend_name()
    if backend == "sqlite":
        database = sa_url.database or ""
        if database in ("", ":memory:") or sa_url.query.get("mode") == "memory":
            return Target("in-memory SQLite database", True, None, "")
        return Target(
            f"SQLite file {database}",
            False,
            database,
            "Check that the file and its folder are writable, and that no other process holds "
            "the database locked for longer than the busy timeout (?timeout=SECONDS).",
        )
    port = sa_url.port or _DEFAULT_PORTS.get(backend)
    name = _PRETTY.get(backend, backend)
    return Target(f"{name} database {sa_url.database or ''!r} on {sa_url.host or 'localhost'}:{port}", False, None)


def _enforce_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys=ON")


def _use_wal(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA journal_mode=WAL")


def _read_committed(dbapi_connection: Any, _record: Any) -> None:
    # InnoDB's default, REPEATABLE READ, also locks the gaps between rows (and the cascade from an object
    # to its index values does): writers of neighbouring keys then deadlock however they order their rows.
    with contextlib.closing(dbapi_connection.cursor()) as cursor:
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")


def _timeouts(url: StoreURL, backend: str) -> dict[str, float]:
    """The URL's ``connect_timeout`` and ``read_timeout`` (or their defaults) for a server; none for SQLite."""
    given = {name: url.options[name] for name in _TIMEOUTS if name in url.options}
    if backend == "sqlite":
        if given:
            raise ValueError(
                f"invalid kydb URL {url.masked!r}: SQLite takes no {' or '.join(given)}; "
                "?timeout=SECONDS sets how long to wait for another process's lock"
            )
        return {}
    timeouts = dict(_TIMEOUTS)
    for name, text in given.items():
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
        if not (0 < seconds < math.inf):
            raise ValueError(
                f"invalid kydb URL {url.masked!r}: ?{name}= takes a positive number of seconds, got {text!r}"
            )
        timeouts[name] = seconds
    return timeouts


@dataclass(frozen=True)
class StoreEngine:
    """A store's engine, what it points at, and what to hold while using it."""

    engine: sa.Engine
    target: Target
    #: held around every use of the engine: the in-memory database's lock, else nothing
    serial: contextlib.AbstractContextManager[Any]
    #: how long an operation waits for the server (``?read_timeout=``); ``None`` for SQLite
    read_timeout: float | None = None
    #: whether kydb enforces ``read_timeout`` itself, because the driver cannot (psycopg)
    watched: bool = False

    @property
    def shared(self) -> bool:
        """Whether the engine outlives the store (an in-memory database): never dispose of it."""
        return self.target.in_memory

    def watch(self, conn: sa.Connection) -> contextlib.AbstractContextManager[Watch | None]:
        """Around one operation on ``conn``: end it if it is still running after ``read_timeout``.

        The context's value tells whether that happened (``watch.expired``);
        it is ``None`` where the driver enforces the timeout itself.
        """
        fileno = getattr(conn.connection.dbapi_connection, "fileno", None)
        if not self.watched or self.read_timeout is None or fileno is None:
            return contextlib.nullcontext()
        return watching(fileno(), self.read_timeout)


def create_store_engine(url: StoreURL) -> StoreEngine:
    """An engine for ``url`` (its ``table``/``base`` options removed), and what it points at.

    Connects to nothing.  Raises ``ValueError`` for a URL SQLAlchemy cannot
    read (an unknown dialect or driver) and ``ImportError`` naming the
    package to install when the driver is missing.
    """
    sa_url = _sqlalchemy_url(url)
    backend = sa_url.get_backend_name()
    timeouts = _timeouts(url, backend)
    kwargs: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}  # and no pre-ping: see the module's docstring
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        if sa_url.database and sa_url.database != ":memory:" and sa_url.query.get("mode") != "memory":
            sa_url = sa_url.set(database=os.path.abspath(sa_url.database))
        connect_args["check_same_thread"] = False
        if "timeout" not in sa_url.query:
            connect_args["timeout"] = 30.0
    elif backend == "postgresql":
        connect_args["connect_timeout"] = math.ceil(timeouts["connect_timeout"])  # libpq: whole seconds
    elif backend in ("mysql", "mariadb"):
        # SQLAlchemy rolls back after every use of a connection, and MySQL drivers send that ROLLBACK
        # even in autocommit mode, where nothing is open: one wasted round trip per operation.
        kwargs["skip_autocommit_rollback"] = True
        # PyMySQL takes fractions of a second; other drivers whole seconds.
        exact = sa_url.get_driver_name() == "pymysql"
        for name, seconds in (*timeouts.items(), ("write_timeout", timeouts["read_timeout"])):
            if name not in sa_url.query:  # an explicit ?write_timeout= goes to the driver as it is
                connect_args[name] = seconds if exact else math.ceil(seconds)
    target = _target(sa_url)
    if target.in_memory:
        key = sa_url.render_as_string(hide_password=False)
        with _memory_lock:
            if key not in _memory_databases:
                engine = sa.create_engine(sa_url, connect_args=connect_args, poolclass=StaticPool, **kwargs)
                sa.event.listen(engine, "connect", _enforce_foreign_keys)
                _memory_databases[key] = (engine, threading.RLock())
            engine, lock = _memory_databases[key]
        return StoreEngine(engine, target, lock)
    try:
        engine = sa.create_engine(sa_url, connect_args=connect_args, **kwargs)
    except sa.exc.NoSuchModuleError as exc:
        raise ValueError(f"invalid kydb URL {url.masked!r}: {exc}") from None
    except ImportError as exc:
        driver = sa_url.get_driver_name()
        extra = _EXTRA_OF_DRIVER.get(driver)
        hint = f"pip install 'kydb-sql[{extra}]'" if extra else f"install the {driver} package"
        raise ImportError(f"{url.masked!r} needs the {driver} driver, which failed to import ({exc}): {hint}") from exc
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _enforce_foreign_keys)
        sa.event.listen(engine, "connect", _use_wal)
    elif backend in ("mysql", "mariadb"):
        sa.event.listen(engine, "connect", _read_committed)
    _live_engines.add(engine)
    read_timeout = timeouts.get("read_timeout")
    return StoreEngine(engine, target, contextlib.nullcontext(), read_timeout, watched=backend == "postgresql")
