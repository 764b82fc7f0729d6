"""From a kydb URL to a SQLAlchemy engine: the driver, and each database's settings.

* ``postgresql://`` and ``mysql://``/``mariadb://`` without a ``+driver``
  use psycopg 3 and PyMySQL (the drivers kydb-sql's extras install), where
  SQLAlchemy alone would ask for psycopg2 or mysqlclient.  A missing driver
  is an ``ImportError`` naming the extra to install.
* Every engine runs in autocommit mode with ``pool_pre_ping``: a
  single-statement operation is one round trip (no ``BEGIN``/``COMMIT``),
  the store brackets multi-statement ones in an explicit transaction, and a
  connection the server dropped while idle is replaced before use.
* SQLite files use WAL journaling and a 30 s busy timeout (``?timeout=``
  overrides it), so several processes can read and write one file; the
  path is made absolute, and its folder is created on first use.
* ``sqlite://`` is one in-memory database per process, shared by every
  store connected to it (whatever their base path or table) like a named
  ``memory://`` store: one connection, used by one operation at a time,
  kept until the process exits.  A forked child starts with a copy of it.
* PostgreSQL gets a 10 s ``connect_timeout`` unless the URL sets one.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from kydb.url import StoreURL

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
        sa_url = sa.make_url(url.without_options("table"))
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


def _use_wal(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA journal_mode=WAL")


@dataclass(frozen=True)
class StoreEngine:
    """A store's engine, what it points at, and what to hold while using it."""

    engine: sa.Engine
    target: Target
    #: held around every use of the engine: the in-memory database's lock, else nothing
    serial: contextlib.AbstractContextManager[Any]

    @property
    def shared(self) -> bool:
        """Whether the engine outlives the store (an in-memory database): never dispose of it."""
        return self.target.in_memory


def create_store_engine(url: StoreURL) -> StoreEngine:
    """An engine for ``url`` (its ``table``/``base`` options removed), and what it points at.

    Connects to nothing.  Raises ``ValueError`` for a URL SQLAlchemy cannot
    read (an unknown dialect or driver) and ``ImportError`` naming the
    package to install when the driver is missing.
    """
    sa_url = _sqlalchemy_url(url)
    backend = sa_url.get_backend_name()
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "isolation_level": "AUTOCOMMIT"}
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        if sa_url.database and sa_url.database != ":memory:" and sa_url.query.get("mode") != "memory":
            sa_url = sa_url.set(database=os.path.abspath(sa_url.database))
        connect_args["check_same_thread"] = False
        if "timeout" not in sa_url.query:
            connect_args["timeout"] = 30.0
    elif backend == "postgresql" and "connect_timeout" not in sa_url.query:
        connect_args["connect_timeout"] = 10
    target = _target(sa_url)
    if target.in_memory:
        key = sa_url.render_as_string(hide_password=False)
        with _memory_lock:
            if key not in _memory_databases:
                engine = sa.create_engine(sa_url, connect_args=connect_args, poolclass=StaticPool, **kwargs)
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
        sa.event.listen(engine, "connect", _use_wal)
    _live_engines.add(engine)
    return StoreEngine(engine, target, contextlib.nullcontext())
