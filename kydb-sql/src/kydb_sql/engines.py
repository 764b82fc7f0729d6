"""From a kydb URL to a SQLAlchemy engine: the driver, and each database's settings.

* ``postgresql://`` and ``mysql://``/``mariadb://`` without a ``+driver``
  use psycopg 3 and PyMySQL (the drivers kydb-sql's extras install), where
  SQLAlchemy alone would ask for psycopg2 or mysqlclient.  A driver missing,
  or installed but failing to import, is an ``ImportError`` naming the
  extra (or the package) to install.
* A malformed URL is a ``ValueError`` naming it (masked) and the form
  expected, raised before any connection: a SQLite URL with a host, or with
  options SQLite does not take; a base path written after the SQLite file
  or the database's name, where ``?base=`` takes it; a MySQL URL naming no
  database; an asynchronous driver.
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
from urllib.parse import parse_qsl, urlencode, urlsplit

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from kydb.url import StoreURL, mask_url

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
#: What a URL of each scheme looks like, for messages about one that does not.
_FORMS = {
    "sqlite": "sqlite:///relative/path.db, sqlite:////absolute/path.db, or sqlite:// (in memory)",
    "postgresql": "postgresql://user:password@host:5432/dbname",
    "mysql": "mysql://user:password@host:3306/dbname",
    "mariadb": "mariadb://user:password@host:3306/dbname",
}
#: The options SQLAlchemy's SQLite driver takes; others are SQLite's own, for a ``?uri=true`` URL.
_SQLITE_OPTIONS = ("timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements", "uri")
#: Names of database files: a SQLite path going on after one was meant as a base path.
_DATABASE_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db3")
#: SQLAlchemy's driver names whose package, and module, are named otherwise: driver -> (package, module).
_PACKAGES = {
    "psycopg2": ("psycopg2-binary", "psycopg2"),
    "mysqldb": ("mysqlclient", "MySQLdb"),
    "mariadbconnector": ("mariadb", "mariadb"),
    "mysqlconnector": ("mysql-connector-python", "mysql"),
}

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


def _invalid(url: StoreURL, why: str) -> ValueError:
    """The error for a malformed URL: what is wrong, and what a URL of its scheme looks like."""
    return ValueError(f"invalid kydb URL {url.masked!r}: {why}; expected {_FORMS.get(url.backend, 'scheme://...')}")


def _suggest(url: StoreURL, path: str, base: str) -> str:
    """``url`` (masked) with the URL path ``path`` and the base path ``base`` before its own."""
    parts = urlsplit(url.raw)
    base += url.base_path
    pairs = [("base", base)] if base else []
    pairs += [(n, v) for n, v in parse_qsl(parts.query, keep_blank_values=True) if n != "base"]
    query = urlencode(pairs, safe="/")
    return mask_url(f"{parts.scheme}://{parts.netloc}{path}" + (f"?{query}" if query else ""))


def _missing_driver(url: StoreURL, driver: str, exc: ImportError, default: bool = False) -> ImportError:
    """The error for a driver that cannot be imported: not installed, or installed and broken.

    ``default``: the URL names no driver, and this is the one kydb-sql picked.
    """
    extra = _EXTRA_OF_DRIVER.get(driver)
    package, module = _PACKAGES.get(driver, (driver, driver))
    install = f"pip install 'kydb-sql[{extra}]'" if extra else f"pip install {package}"
    if default:
        install += f" (or name an installed driver: {url.scheme}+DRIVER://...)"
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == module:
        problem = "which is not installed"
    else:  # installed, but something it needs is missing (psycopg without libpq or its binary...)
        problem = f"which is installed but cannot be imported ({' '.join(str(exc).split())})"
    return ImportError(f"{url.masked!r} needs the {driver} driver, {problem}: {install}")


def _sqlalchemy_url(url: StoreURL) -> sa.URL:
    """SQLAlchemy's URL for ``url``: its driver importable, its path and options of the expected form."""
    if url.backend == "sqlite" and url.netloc:
        raise _invalid(
            url,
            f"a SQLite URL has no host, yet {url.netloc!r} stands where one goes (after '//'): write "
            f"sqlite:///{url.netloc}{url.path} for a file relative to the current directory, or "
            "sqlite:////abs/path.db for an absolute one",
        )
    try:
        sa_url = sa.make_url(url.without_options("table", *_TIMEOUTS))
    except sa.exc.ArgumentError as exc:
        raise _invalid(url, str(exc)) from None
    backend, _, driver = sa_url.drivername.partition("+")
    if backend != "sqlite":
        database = sa_url.database or ""
        if backend in ("mysql", "mariadb") and not database:
            raise _invalid(url, "it names no database")
        if "/" in database:  # the database, then a base path, as redis:// and s3:// URLs take one
            name, _, rest = database.partition("/")
            raise ValueError(
                f"invalid kydb URL {url.masked!r}: the URL path names the database ({name!r}), and a base path "
                f"goes in ?base=: {_suggest(url, '/' + name, '/' + rest.strip('/') if rest.strip('/') else '')}"
            )
    try:
        is_async = sa_url.get_dialect().is_async
    except sa.exc.NoSuchModuleError as exc:
        raise _invalid(url, str(exc)) from None
    if is_async:
        raise _invalid(url, f"kydb-sql runs synchronous drivers, and {driver} is asyncio's; leave the driver out")
    if not driver and backend in _DEFAULT_DRIVERS:
        driver = _DEFAULT_DRIVERS[backend][0]
        try:
            importlib.import_module(driver)
        except ImportError as exc:
            raise _missing_driver(url, driver, exc, default=True) from None
        sa_url = sa_url.set(drivername=f"{backend}+{driver}")
    return sa_url


def _check_sqlite(url: StoreURL, sa_url: sa.URL) -> None:
    """Raise ``ValueError`` for options SQLite does not take, or a path that goes on after a database file.

    ``sqlite:////srv/w/src.db/data`` (a base path after the file, as
    ``redis://`` and ``s3://`` URLs take one) would open, or create, a file
    ``data`` in a folder ``src.db``: refused when ``src.db`` is a file, or
    does not exist and is named like a database file.  An existing folder
    of that name is a folder.
    """
    query = sa_url.query
    if str(query.get("uri", "")).lower() not in ("true", "1"):
        unknown = sorted(set(query) - set(_SQLITE_OPTIONS))
        if unknown:
            raise _invalid(
                url,
                f"SQLite takes no {', '.join(f'?{name}=' for name in unknown)} (it takes "
                f"{', '.join(f'?{name}=' for name in _SQLITE_OPTIONS[:-1])}; SQLite's own URI options need ?uri=true)",
            )
    database = sa_url.database or ""
    if database in ("", ":memory:") or query.get("mode") == "memory":
        return
    parts = database.split("/")
    for end in range(1, len(parts)):
        folder = "/".join(parts[:end])
        if folder in ("", ".", "..") or os.path.isdir(folder):
            continue
        if os.path.exists(folder):
            what = "is a file"
        elif parts[end - 1].lower().endswith(_DATABASE_SUFFIXES):
            what = "is named like a database file"
        else:
            continue
        rest = "/".join(parts[end:]).strip("/")
        raise ValueError(
            f"invalid kydb URL {url.masked!r}: {folder!r} {what}, yet the path goes on after it ({rest!r}); a "
            f"SQLite URL's path is the database file, and a base path goes in ?base=: "
            f"{_suggest(url, '/' + folder, '/' + rest if rest else '')}"
        )


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


def _create_engine(url: StoreURL, sa_url: sa.URL, **kwargs: Any) -> sa.Engine:
    """``sa.create_engine(sa_url, **kwargs)``, its errors naming ``url`` (masked) and what to do."""
    try:
        return sa.create_engine(sa_url, **kwargs)
    except (sa.exc.ArgumentError, ValueError, TypeError) as exc:  # the dialect refused the URL or an option's value
        reason = " ".join(str(exc).split())
        raise _invalid(url, f"the {sa_url.get_driver_name()} driver refused it ({reason})") from None
    except ImportError as exc:
        raise _missing_driver(url, sa_url.get_driver_name(), exc) from exc


def create_store_engine(url: StoreURL) -> StoreEngine:
    """An engine for ``url`` (its ``table``/``base`` options removed), and what it points at.

    Connects to nothing.  Raises ``ValueError`` naming the (masked) URL and
    the form expected for one that is malformed: one SQLAlchemy cannot read,
    an unknown or asynchronous driver, a SQLite URL with a host part or an
    option SQLite does not take, a base path after the database's name or
    the SQLite file (see :func:`_check_sqlite`), a MySQL URL naming no
    database.  Raises ``ImportError`` naming what to install (kydb-sql's
    extra for its drivers) for a driver that is missing or cannot be imported.
    """
    sa_url = _sqlalchemy_url(url)
    backend = sa_url.get_backend_name()
    timeouts = _timeouts(url, backend)
    if backend == "sqlite":
        _check_sqlite(url, sa_url)
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
                engine = _create_engine(url, sa_url, connect_args=connect_args, poolclass=StaticPool, **kwargs)
                sa.event.listen(engine, "connect", _enforce_foreign_keys)
                _memory_databases[key] = (engine, threading.RLock())
            engine, lock = _memory_databases[key]
        return StoreEngine(engine, target, lock)
    engine = _create_engine(url, sa_url, connect_args=connect_args, **kwargs)
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _enforce_foreign_keys)
        sa.event.listen(engine, "connect", _use_wal)
    elif backend in ("mysql", "mariadb"):
        sa.event.listen(engine, "connect", _read_committed)
    _live_engines.add(engine)
    read_timeout = timeouts.get("read_timeout")
    return StoreEngine(engine, target, contextlib.nullcontext(), read_timeout, watched=backend == "postgresql")
