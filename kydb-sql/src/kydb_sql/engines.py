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
* **One engine per database per process.**  Stores get their engine from
  :func:`acquire_store_engine`, a :class:`kydb.pools.SharedPools` keyed by
  the database's URL without kydb's own options (``base``, ``table``) and
  by the engine's settings (timeouts, pool size and wait, driver options):
  a thousand base paths or tables on one server share one pool.  Each
  store releases its engine when it closes (:func:`release_store_engine`);
  the last one disposes of it, closing its connections.  The pool holds at
  most ``?pool_size=`` connections (default 5, no overflow); an operation
  that finds them all in use waits ``?pool_timeout=`` seconds (default 30)
  for one, then the store raises :class:`kydb.StoreUnavailable` saying the
  pool is exhausted.  In-memory SQLite has its one connection and takes
  neither option.
* PostgreSQL statements that read blobs ask psycopg for **binary results**
  (:data:`BINARY_RESULTS`): ``bytea`` arrives as its bytes, not as a hex
  string twice its size that the driver then decodes.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import threading
import weakref
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from kydb.pools import SharedPools
from kydb.url import StoreURL, mask_url, positive_int_option, positive_seconds_option

from .watchdog import Watch, watching

__all__ = [
    "BINARY_RESULTS",
    "KYDB_OPTIONS",
    "StoreEngine",
    "Target",
    "acquire_store_engine",
    "create_store_engine",
    "release_store_engine",
]

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
#: The pool's size and how long an operation waits for a connection when all are in use (seconds).
POOL_SIZE = 5
POOL_TIMEOUT = 30.0
#: The URL options kydb reads (with ``base``) and removes before SQLAlchemy and the driver see the URL.
KYDB_OPTIONS = ("table", *_TIMEOUTS, "pool_size", "pool_timeout")
#: The execution option that makes a PostgreSQL (psycopg) statement return binary results.
BINARY_RESULTS = "kydb_binary_results"
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
# Every store's engine but in-memory SQLite's, one per database URL and settings (see the module docstring).
_shared_engines: SharedPools[StoreEngine] = SharedPools(lambda shared: shared.engine.dispose())
# In-memory SQLite: URL -> its engine, with the lock every use of its one connection holds
_memory_databases: dict[str, StoreEngine] = {}
_memory_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _memory_lock
    # A forked child must never use or close the parent's connections (it
    # opens its own store); dropping them without closing leaves them to the parent.
    for engine in list(_live_engines):
        engine.dispose(close=False)
    # An in-memory database is the child's own copy; only its locks may be stuck.
    _memory_lock = threading.Lock()
    for url, shared in list(_memory_databases.items()):
        _memory_databases[url] = replace(shared, serial=threading.RLock())


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
        sa_url = sa.make_url(url.without_options(*KYDB_OPTIONS))
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
    if backend == "sqlite":
        given = [name for name in _TIMEOUTS if name in url.options]
        if given:
            raise ValueError(
                f"invalid kydb URL {url.masked!r}: SQLite takes no {' or '.join(given)}; "
                "?timeout=SECONDS sets how long to wait for another process's lock"
            )
        return {}
    return {name: positive_seconds_option(url, name, default) or default for name, default in _TIMEOUTS.items()}


def _pool_options(url: StoreURL, target: Target) -> tuple[int | None, float | None]:
    """The URL's ``pool_size`` and ``pool_timeout`` (or their defaults); ``None`` for in-memory SQLite."""
    if target.in_memory:
        given = [name for name in ("pool_size", "pool_timeout") if name in url.options]
        if given:
            raise ValueError(
                f"invalid kydb URL {url.masked!r}: an in-memory SQLite database has one connection, which the "
                f"process's stores take turns to use; it takes no {' or '.join(f'?{name}=' for name in given)}"
            )
        return None, None
    return positive_int_option(url, "pool_size", POOL_SIZE), positive_seconds_option(url, "pool_timeout", POOL_TIMEOUT)


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
    #: the most connections the pool holds (``?pool_size=``); ``None`` for in-memory SQLite (one)
    pool_size: int | None = None
    #: how long an operation waits for a connection when all are in use (``?pool_timeout=``)
    pool_timeout: float | None = None
    #: what :func:`acquire_store_engine` shares it by (``None``: not shared that way)
    key: Hashable | None = field(default=None, compare=False)
    #: the process that made it: a forked child never shares it
    pid: int = field(default_factory=os.getpid, compare=False)
    #: the tables a store on this engine has checked (:func:`kydb_sql.layout.check_layout`), so that
    #: the others need not, and what it learnt of each: MySQL's ``max_allowed_packet``, else ``None``
    checked: dict[str, int | None] = field(default_factory=dict, compare=False)

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


@dataclass(frozen=True)
class _Plan:
    """Everything an engine for a URL is made of, before it is made: what :func:`acquire_store_engine` keys by."""

    url: StoreURL
    sa_url: sa.URL
    target: Target
    connect_args: dict[str, Any]
    options: dict[str, Any]  # create_engine's own keyword arguments
    read_timeout: float | None
    pool_size: int | None
    pool_timeout: float | None

    @property
    def key(self) -> Hashable:
        """The database (its URL with the password, which identifies the login, never shown) and the settings."""
        return (
            self.sa_url.render_as_string(hide_password=False),
            tuple(sorted(self.connect_args.items())),
            self.read_timeout,
            self.pool_size,
            self.pool_timeout,
        )


def _plan(url: StoreURL) -> _Plan:
    """What the engine for ``url`` is made of; raises as :func:`create_store_engine` documents."""
    sa_url = _sqlalchemy_url(url)
    backend = sa_url.get_backend_name()
    timeouts = _timeouts(url, backend)
    if backend == "sqlite":
        _check_sqlite(url, sa_url)
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}  # and no pre-ping: see the module's docstring
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
        options["skip_autocommit_rollback"] = True
        # PyMySQL takes fractions of a second; other drivers whole seconds.
        exact = sa_url.get_driver_name() == "pymysql"
        for name, seconds in (*timeouts.items(), ("write_timeout", timeouts["read_timeout"])):
            if name not in sa_url.query:  # an explicit ?write_timeout= goes to the driver as it is
                connect_args[name] = seconds if exact else math.ceil(seconds)
    target = _target(sa_url)
    pool_size, pool_timeout = _pool_options(url, target)
    if target.in_memory:
        options["poolclass"] = StaticPool
    else:
        # At most pool_size connections, ever: a thread that finds them all in use waits for one.
        options.update(pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout)
    return _Plan(url, sa_url, target, connect_args, options, timeouts.get("read_timeout"), pool_size, pool_timeout)


def _binary_results(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    """Run a statement marked with :data:`BINARY_RESULTS` asking psycopg for binary results; others as usual."""
    if context is not None and context.execution_options.get(BINARY_RESULTS):
        cursor.execute(statement, parameters, binary=True)
        return True  # executed
    return False


def _build(plan: _Plan, key: Hashable | None = None) -> StoreEngine:
    """A new engine made to ``plan`` (the process's one for an in-memory database)."""
    url, sa_url, target = plan.url, plan.sa_url, plan.target
    if target.in_memory:
        name = sa_url.render_as_string(hide_password=False)
        with _memory_lock:
            if name not in _memory_databases:
                engine = _create_engine(url, sa_url, connect_args=plan.connect_args, **plan.options)
                sa.event.listen(engine, "connect", _enforce_foreign_keys)
                _memory_databases[name] = StoreEngine(engine, target, threading.RLock())
            return _memory_databases[name]
    engine = _create_engine(url, sa_url, connect_args=plan.connect_args, **plan.options)
    backend = sa_url.get_backend_name()
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _enforce_foreign_keys)
        sa.event.listen(engine, "connect", _use_wal)
    elif backend in ("mysql", "mariadb"):
        sa.event.listen(engine, "connect", _read_committed)
    elif sa_url.get_driver_name() == "psycopg":
        sa.event.listen(engine, "do_execute", _binary_results)
    _live_engines.add(engine)
    return StoreEngine(
        engine,
        target,
        contextlib.nullcontext(),
        plan.read_timeout,
        watched=backend == "postgresql",
        pool_size=plan.pool_size,
        pool_timeout=plan.pool_timeout,
        key=key,
    )


def create_store_engine(url: StoreURL) -> StoreEngine:
    """A new engine for ``url`` (its kydb options removed), and what it points at; stores share theirs instead.

    For looking at a database behind the stores' back (tests, benchmarks):
    its pool is its own; ``engine.dispose()`` it when done.  In-memory
    SQLite has one database per process, so its engine is that database's.
    Connects to nothing.  Raises ``ValueError`` naming the (masked) URL and
    the form expected for one that is malformed: one SQLAlchemy cannot read,
    an unknown or asynchronous driver, a SQLite URL with a host part or an
    option SQLite does not take, a base path after the database's name or
    the SQLite file (see :func:`_check_sqlite`), a MySQL URL naming no
    database, an option of kydb's with a bad value.  Raises ``ImportError``
    naming what to install (kydb-sql's extra for its drivers) for a driver
    that is missing or cannot be imported.
    """
    return _build(_plan(url))


def acquire_store_engine(url: StoreURL) -> StoreEngine:
    """The process's engine for ``url``'s database and settings, with one more user on it.

    Stores on the same database with the same settings — whatever their base
    path or table — get the same engine, made on first use.  Give it back
    with :func:`release_store_engine`.  Raises as :func:`create_store_engine`.
    """
    plan = _plan(url)
    if plan.target.in_memory:
        return _build(plan)
    key = plan.key
    return _shared_engines.acquire(key, lambda: _build(plan, key))


def release_store_engine(shared: StoreEngine) -> None:
    """Give back one use of an engine from :func:`acquire_store_engine`; the last one disposes of it.

    In a forked child, which never shares its parent's engines, the engine
    is disposed of at once: that closes only the child's own connections.
    """
    if shared.shared or shared.key is None:
        return
    if shared.pid != os.getpid():
        shared.engine.dispose()  # a forked child's copy, not shared here: close what this process opened
        return
    _shared_engines.release(shared.key)
