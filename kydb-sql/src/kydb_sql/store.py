"""The kydb hooks over one SQL table (see :mod:`kydb_sql.layout` for the table).

Costs, in statements (the pool adds none).  A statement is one round trip,
and so are the ``BEGIN`` and ``COMMIT`` around the operations that need a
transaction:

* ``put``/``set_many`` — one upsert, run with ``executemany`` over the
  objects and their ancestor folders (the drivers send the rows together:
  psycopg in one pipeline, PyMySQL as multi-row statements of at most 1 MB,
  SQLite in process), in a transaction when there are several rows; with
  ``index=``, one more upsert of the values set and one ``DELETE`` of those
  cleared, in the same transaction.  A conditional put (``expect``) writes
  each conditional object with a statement of its own, in path order among
  the upserts: ``UPDATE ... WHERE path = ? AND version = ?``, or for an
  object that must be absent an ``INSERT`` that inserts nothing over an
  existing row; either touching no row is a :class:`kydb.Conflict`, and the
  transaction (folders included) is rolled back;
* ``get``/``get_many`` — one ``SELECT ... WHERE path IN (...)`` per 500 keys,
  which reads each object's version with its blob (``get_versioned``);
* ``ls`` — one indexed ``SELECT ... WHERE parent = ? [AND name > ?] ORDER BY
  name LIMIT ?`` per page (keyset pagination, never ``OFFSET``);
* ``delete``/``delete_many`` — one ``DELETE ... IN`` per 500 keys, in a
  transaction only when there are more than 500; the objects' index values
  go with them (``ON DELETE CASCADE``), with no statement of their own.  A
  conditional delete deletes each conditional object with ``DELETE ...
  WHERE path = ? AND version = ?`` (no row deleted: a Conflict), in one
  transaction with the rest;
* ``rm_tree`` — a ``SELECT ... FOR UPDATE`` that locks the folder (PostgreSQL)
  or the whole range (MySQL/MariaDB; none on SQLite), then two range
  ``DELETE``s (objects, counted; then folders) in one transaction, whatever
  the size of the tree;
* ``stat`` — one ``SELECT`` of sizes, times and versions, one of index values, per 500 keys;
* ``query`` (``recent``, ``folder(...).by(...)``) — one indexed ``SELECT ...
  ORDER BY value, name LIMIT ?`` per page, keyset-paginated, whatever the
  folder's size;
* ``mkdir`` — the same upsert as ``put``, for the folder and its ancestors;
* ``exists``, ``is_dir``, ``rmdir`` — one statement.

Every write takes its row locks in one order, path order, so concurrent
writers queue for a row instead of deadlocking:

* upserts list their rows in path order (a folder sorts before everything in
  it), and the database locks an existing row even where the upsert leaves
  it alone (a folder row);
* ``delete_many`` deletes its keys in path order, also across statements: on
  PostgreSQL a ``SELECT ... ORDER BY path FOR UPDATE`` inside the ``DELETE``
  locks them first, since its plan may read rows in any order; InnoDB reads a
  primary key ``IN`` list in key order;
* ``rm_tree`` locks the folder's row, then everything below it in path
  order, then deletes; a folder already gone is an empty tree.  On
  PostgreSQL the folder's row is locked by a statement of its own, so the
  next one, which sees the rows committed before it started, sees all there
  is below it: a writer that adds a row below a folder locks the folder first;
* an object's index rows are written, and deleted with it (``ON DELETE
  CASCADE``), only by a transaction that holds the object's row;
* transactions run at ``READ COMMITTED`` (``REPEATABLE READ``, InnoDB's
  default, also locks the gaps between rows, the cascade to index values
  too, and writers of neighbouring keys deadlock on those whatever the
  order of their rows);
* SQLite has one writer at a time (``BEGIN IMMEDIATE``).

**Versions.**  Every write of an object gives it a new version: a random
63-bit write id drawn once per ``put`` call (its retries reuse it), so a
conditional put whose ``COMMIT`` went through but whose answer was lost
finds its own version when it runs again, and succeeds.  Random rather than
counted: a key deleted and written again never comes back to a version it
had before.  The check and the write are one statement on the row, under
its row lock (SQLite: one writer), so no other write lands between them.

**Large values** (over 16 MiB) do not go through extra copies in memory:
SQLite writes them with its incremental blob I/O (the row with a
``zeroblob`` of the value's size, then ``blob.write`` from the caller's
buffer), instead of binding a copy and building a record holding another
(``data`` is the last column, so the zeroblob is never filled in memory; in
a table upgraded from layout 3, where it is not, it is: one copy more);
PostgreSQL reads them in at most eight pieces (``substr``) inside one
``REPEATABLE READ`` snapshot, each in binary, gathered without a copy, and
closes the connection that carried one either way afterwards (libpq keeps
its buffers at the largest size they ever had for as long as the connection
lives).  So a put holds the value and the driver's one copy on its way out;
a get, the pieces and what they fill.

A deadlock or serialization failure the database reports anyway is rolled
back, and the (idempotent) operation runs again after a random backoff:
twelve tries in all; when they run out, :class:`kydb_sql.WriteConflict` (a
:class:`kydb.StoreUnavailable`) says so.  A connection lost mid-operation (a
pooled connection the server dropped, a restart) runs it again on a new
connection: four tries in all.  Failing to open a connection, all of the
pool's connections staying in use for ``pool_timeout``, a server that
does not answer within ``read_timeout``, or a lock held by another
transaction for longer than the database waits for it (MySQL's
``innodb_lock_wait_timeout``: ``WriteConflict``; SQLite's busy timeout:
``StoreUnavailable``) raises at once: trying again would only make the caller
wait longer for the same answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

import kydb
from kydb.url import StoreURL, mask_url

from .engines import BINARY_RESULTS, KYDB_OPTIONS, StoreEngine, acquire_store_engine, release_store_engine
from .errors import TableLayoutError, ValueTooLarge, is_conflict, is_duplicate_key, is_read_timeout, translate
from .layout import (
    KIND_FOLDER,
    KIND_OBJECT,
    KeyText,
    ancestors,
    check_layout,
    index_table,
    make_table,
    range_of,
    upgrade_layout,
)
from .watchdog import Watch

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["SQLStore"]

_T = TypeVar("_T")
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")
_KEYS_PER_STATEMENT = 500
_ATTEMPTS = 4  # tries of an operation whose connection was lost, the first one included
# Tries of an operation the database rolls back for a deadlock or serialization failure, and the backoff
# between them: a random wait up to 5 ms doubled per try, at most 0.5 s (about 3 s in all, at worst).
# Random, so writers that collided spread out instead of colliding again in step.
_CONFLICT_ATTEMPTS = 12
_CONFLICT_BACKOFF = 0.005
_CONFLICT_BACKOFF_MAX = 0.5
_MYSQL = ("mysql", "mariadb")
# Room in a MySQL packet for the statement's text and one row's paths (3 x 1,025 bytes, as text).
_MYSQL_ROW_OVERHEAD = 8 * 1024
# Values over this many bytes move without extra copies: see "Large values" in the module docstring.
_LARGE_VALUE = 16 * 2**20
_PIECES = 8  # at most, for a PostgreSQL read: each piece costs the server a read (and decompression) from the start
# Set in a connection's info by an operation that moved a large value over it: close it afterwards.
_DISCARD = "kydb_discard"

Row = dict[str, Any]
_NOTHING: Mapping[str, str | None] = {}  # no expectations (a shared default, never changed)
#: (table name, dialect) -> the attributes :meth:`SQLStore._build_statements` sets: the table and its statements.
_STATEMENTS: dict[tuple[str, str], dict[str, Any]] = {}


def _version_number(version: str | None) -> int | None:
    """The stored version a version string stands for; ``None`` for ``None`` and for one no object has.

    Versions are written as decimal numbers, without a sign or leading
    zeros, from 0 to a BIGINT's largest: any other string is another version.
    """
    if version is None or not version.isdigit() or str(int(version)) != version or int(version) >= 2**63:
        return None
    return int(version)


class SQLStore(kydb.Store):
    """A kydb store in one table of a SQL database: ``sqlite:///file.db``, ``postgresql://...``, ``mysql://...``.

    ``?table=NAME`` (default ``kydb``) names the table, created with its
    indexes by the first write; ``?base=/a/b`` sets the base path; every
    other query option goes to SQLAlchemy and the driver.  Connecting opens
    no connection: the first operation does, and checks the table's layout
    and names (:func:`kydb_sql.layout.check_layout`) — once per table per
    engine: other stores on it find it checked.  Reads never create
    anything: a missing table or SQLite file is an empty store.  ``engine``
    and ``table`` are the SQLAlchemy objects, for inspection.  Stores on one
    database share its engine (:func:`kydb_sql.engines.acquire_store_engine`):
    each holds it from its creation to :meth:`kydb_close`.
    """

    # The URL path names the database (or the SQLite file), not a base path.
    capabilities = kydb.Capabilities(
        url_path_is_base=False, keeps_times=True, keeps_ctime=True, native_queries=True, conditional_writes=True
    )

    @classmethod
    def capabilities_for(cls, url: StoreURL) -> kydb.Capabilities:
        """``sqlite://`` (no file) is a database in the connecting process: other processes have their own."""
        if url.backend == "sqlite" and (url.path in ("", "/", "/:memory:") or url.options.get("mode") == "memory"):
            return replace(cls.capabilities, shared_between_processes=False)
        return cls.capabilities

    def __init__(self, url: StoreURL) -> None:
        super().__init__(url)
        table = url.options.get("table", "kydb")
        if not _TABLE_NAME.fullmatch(table):
            raise ValueError(
                f"invalid kydb URL {url.masked!r}: ?table= takes a plain SQL name "
                f"(letters, digits and '_', not starting with a digit, at most 48 characters), got {table!r}"
            )
        self.url = url
        self._shared: StoreEngine | None = acquire_store_engine(url)
        self._shared_lock = threading.Lock()
        self.target = self._shared.target
        self._dialect = self._shared.engine.dialect.name
        self._ready_lock = threading.Lock()
        # READ COMMITTED whatever the server's default: each statement sees the rows committed before it
        # (see the module docstring).  MySQL/MariaDB connections are set to it when opened.
        self._begin = {"sqlite": "BEGIN IMMEDIATE", "postgresql": "BEGIN ISOLATION LEVEL READ COMMITTED"}.get(
            self._dialect, "BEGIN"
        )
        # The table and its statements depend on its name and the dialect only: every store of the process
        # shares them (building them, and SQLAlchemy compiling them on first use, cost milliseconds a store).
        shared = _STATEMENTS.get((table, self._dialect))
        if shared is None:
            before = set(vars(self))
            self._build_statements(table)
            shared = _STATEMENTS[table, self._dialect] = {k: v for k, v in vars(self).items() if k not in before}
        else:
            vars(self).update(shared)

    def _build_statements(self, table: str) -> None:
        """The table (:func:`~kydb_sql.layout.make_table`) and every statement the hooks run on it."""
        t = self.table = make_table(table, self._dialect)
        paths: sa.BindParameter[str] = sa.bindparam("paths", expanding=True)
        path: sa.BindParameter[str] = sa.bindparam("path")
        in_range = sa.and_(t.c.path >= sa.bindparam("low"), t.c.path < sa.bindparam("high"))
        # Blobs with their versions.  PostgreSQL leaves a large value out (and says how large it is), to be
        # read in pieces, and returns blobs in binary (see "Large values" in the module docstring).
        blob: sa.ColumnElement[Any] = t.c.data
        size: sa.ColumnElement[Any] = sa.null()
        if self._dialect == "postgresql":
            size = sa.func.octet_length(t.c.data)
            blob = sa.case((size <= _LARGE_VALUE, t.c.data), else_=sa.null())
        blobs = (t.c.path, blob.label("data"), size.label("size"), t.c.version)
        self._select_blobs = sa.select(*blobs).where(t.c.path.in_(paths)).execution_options(**{BINARY_RESULTS: True})
        self._select_blob = sa.select(*blobs).where(t.c.path == path).execution_options(**{BINARY_RESULTS: True})
        self._select_piece = (
            sa.select(sa.func.substr(t.c.data, sa.bindparam("start"), sa.bindparam("count"), type_=sa.LargeBinary()))
            .where(t.c.path == path)
            .execution_options(**{BINARY_RESULTS: True})
        )
        self._select_row = sa.select(sa.literal(1)).where(t.c.path == path)
        self._select_version = sa.select(t.c.version).where(t.c.path == path)
        # A version checked without being written (an expect on a path the call leaves alone): locked meanwhile.
        self._lock_version = self._select_version.with_for_update()
        self._update_if = (
            sa.update(t)
            .where(t.c.path == sa.bindparam("at"), t.c.version == sa.bindparam("expected"))
            .values(data=sa.bindparam("new_data"), mtime=sa.bindparam("new_mtime"), version=sa.bindparam("new_version"))
        )
        self._delete_if = sa.delete(t).where(t.c.path == path, t.c.version == sa.bindparam("expected"))
        self._zeroblob = (
            sa.update(t).where(t.c.path == sa.bindparam("at")).values(data=sa.func.zeroblob(sa.bindparam("size")))
        )
        self._select_rowid: sa.Select[Any] = sa.select(sa.literal_column("rowid")).where(t.c.path == path)
        self._delete_paths = sa.delete(t).where(t.c.path.in_(paths))
        self._delete_path = sa.delete(t).where(t.c.path == path)
        self._delete_objects_in_range = sa.delete(t).where(in_range, t.c.kind == KIND_OBJECT)
        # Row locks in path order, as the upserts take them: see the module docstring.  SQLite has one writer.
        self._lock_folder: sa.Select[Any] | None = None  # rm_tree's first statement, if any
        self._lock_range: sa.Select[Any] | None = None  # rm_tree's next statement, if any
        if self._dialect == "postgresql":
            # PostgreSQL deletes (and so locks) rows in whatever order its plan reads them: a subquery locks
            # them first, sorted (FOR UPDATE locks after ORDER BY).
            def locked(where: sa.ColumnElement[bool]) -> sa.Select[Any]:
                return sa.select(t.c.path).where(where).order_by(t.c.path).with_for_update()

            self._delete_paths = sa.delete(t).where(t.c.path.in_(locked(t.c.path.in_(paths))))
            # rm_tree locks the folder's row first, in a statement of its own: see the module docstring.
            self._lock_folder = sa.select(t.c.path).where(t.c.path == path).with_for_update()
            self._delete_objects_in_range = sa.delete(t).where(t.c.path.in_(locked(in_range)), t.c.kind == KIND_OBJECT)
        elif self._dialect in _MYSQL:
            # InnoDB reads a primary key range, and locks its rows, in key order; a locking read sees the
            # latest committed rows, so once it holds the folder's row it sees all there is below it.
            self._lock_range = sa.select(sa.func.count()).select_from(t).where(in_range).with_for_update()
        self._delete_range = sa.delete(t).where(in_range)
        ix = self.index_table = index_table(t)
        self._upsert, self._upsert_index, self._insert_if_absent = self._make_upserts()
        self._select_infos = sa.select(t.c.path, sa.func.length(t.c.data), t.c.mtime, t.c.ctime, t.c.version).where(
            t.c.path.in_(paths), t.c.kind == KIND_OBJECT
        )
        self._select_index_values = sa.select(ix.c.path, ix.c.index_name, ix.c.value).where(ix.c.path.in_(paths))
        self._delete_index_value = sa.delete(ix).where(
            ix.c.path == sa.bindparam("path"), ix.c.index_name == sa.bindparam("index_name")
        )
        self._list: dict[tuple[bool, bool], sa.Select[Any]] = {}
        for include_dirs in (True, False):
            for after in (True, False):
                query = sa.select(t.c.name).where(t.c.parent == sa.bindparam("folder"))
                if after:
                    query = query.where(t.c.name > sa.bindparam("after"))
                if not include_dirs:
                    query = query.where(t.c.kind == KIND_OBJECT)
                self._list[include_dirs, after] = query.order_by(t.c.name).limit(sa.bindparam("limit"))

    def __repr__(self) -> str:
        return f"<SQLStore {self.url.masked}>"

    @property
    def _engine(self) -> StoreEngine:
        """The engine this store holds; used after :meth:`kydb_close`, the store holds it again."""
        shared = self._shared
        if shared is None:
            with self._shared_lock:
                if self._shared is None:
                    self._shared = acquire_store_engine(self.url)
                shared = self._shared
        return shared

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine, shared with every store of this process on the same database and settings."""
        return self._engine.engine

    @property
    def _ready(self) -> bool:
        """Whether a store on this engine has checked the table (it is there, of this layout)."""
        return self.table.name in self._engine.checked

    @property
    def _max_packet(self) -> int | None:
        """MySQL/MariaDB's ``max_allowed_packet``, read when the table was checked."""
        return self._engine.checked.get(self.table.name)

    # ------------------------------------------------------------------ running statements

    def _prepare(self, conn: sa.Connection, create: bool) -> bool:
        """First use: check the table, and create it if missing and ``create``; whether it is there now.

        Creating runs under a lock no other process holds at the same time;
        checking takes none.  A table found there is recorded on the engine:
        the other stores on it (other base paths) need not check it again.
        A table found missing is not: the next operation looks again.
        """
        try:
            return self._check_or_create(conn, create)
        except TableLayoutError as exc:
            raise TableLayoutError(f"{self.target.where} ({self.url.masked}): {exc}") from None

    def _check_or_create(self, conn: sa.Connection, create: bool) -> bool:
        """:meth:`_prepare`, its errors not yet naming the store."""
        now = time.time_ns()
        upgrade = f"python -m kydb_sql upgrade '{mask_url(self.url.without_options())}'"  # the base path aside
        if not create:
            ready = check_layout(conn, self.table, False, now, upgrade)
        else:
            ready = self._locked(conn, lambda: check_layout(conn, self.table, True, now, upgrade))
        if ready:
            packet = None
            if self._dialect in _MYSQL:
                packet = int(conn.execute(sa.text("SELECT @@max_allowed_packet")).scalar_one())
            self._engine.checked[self.table.name] = packet
        return ready

    def _locked(self, conn: sa.Connection, action: Callable[[], _T]) -> _T:
        """``action()`` under a lock on this table's creation, which no other process holds at the same time.

        A transaction with an advisory lock on PostgreSQL, ``BEGIN
        IMMEDIATE`` on SQLite; MySQL commits DDL at once, so a transaction
        cannot serialise creators there: a named lock (``GET_LOCK``) does.
        """
        lock_name = f"kydb:{self.table.name}"
        if self._dialect not in _MYSQL:
            with self._transaction(conn):
                if self._dialect == "postgresql":
                    digest = hashlib.blake2b(lock_name.encode(), digest_size=8).digest()
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(int.from_bytes(digest, "big", signed=True))))
                return action()
        if conn.execute(sa.select(sa.func.get_lock(lock_name, 60))).scalar() != 1:
            raise kydb.StoreUnavailable(
                f"{self.target.where}: timed out waiting for another process creating or upgrading table "
                f"{self.table.name!r} ({self.url.masked})"
            )
        try:
            return action()
        finally:
            # Closing the connection releases the lock too: never hide the first error behind this one.
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                conn.execute(sa.select(sa.func.release_lock(lock_name)))

    def upgrade(self) -> str:
        """Upgrade this store's table, written by an earlier kydb-sql, to this version's layout; say what was done.

        See :func:`kydb_sql.layout.upgrade_layout` (and ``python -m kydb_sql
        upgrade URL``, which calls this).  Run it once no process uses the
        table with the earlier kydb-sql: those would keep overwriting objects
        without changing their versions.  Raises :class:`TableLayoutError`
        when there is no table to upgrade or it has a layout this kydb-sql
        does not upgrade, :class:`kydb.StoreUnavailable` as any operation.
        """
        if self.target.file and not os.path.exists(self.target.file):
            raise TableLayoutError(f"there is no {self.target.where} ({self.url.masked}): nothing to upgrade")

        def upgrade(conn: sa.Connection) -> str:
            try:
                done = self._locked(conn, lambda: upgrade_layout(conn, self.table, time.time_ns()))
            except TableLayoutError as exc:
                raise TableLayoutError(f"{self.target.where} ({self.url.masked}): {exc}") from None
            self._engine.checked.pop(self.table.name, None)  # checked afresh by the next operation
            return f"{self.target.where} ({self.url.masked}): {done}"

        return self._run(upgrade, prepare=False)

    def _run(
        self,
        operation: Callable[[sa.Connection], _T],
        if_absent: Callable[[], _T] | None = None,
        prepare: bool = True,
    ) -> _T:
        """Run ``operation`` on a pooled connection, retrying transient failures; translate errors.

        With ``if_absent`` the operation only reads (or deletes): while the
        table — or the SQLite file — does not exist, it returns
        ``if_absent()``, an empty store's answer, and creates nothing.
        Without, the operation writes, and the first one creates them.
        ``prepare=False`` skips the table's check on first use.  An
        operation that leaves ``conn.info[_DISCARD]`` set has its connection
        closed afterwards instead of going back to the pool.
        """
        attempt = conflicts = losses = 0
        while True:
            attempt += 1
            watch: Watch | None = None
            connected = False  # failing to connect is neither retried nor a read timeout
            try:
                file = self.target.file
                if file and not self._ready:
                    if if_absent is not None and not os.path.exists(file):
                        return if_absent()  # connecting would create the file; another process may yet
                    if if_absent is None:
                        os.makedirs(os.path.dirname(file), exist_ok=True)
                shared = self._engine
                with shared.serial, shared.engine.connect() as conn:
                    try:
                        with shared.watch(conn) as watch:
                            connected = True
                            if prepare and not self._ready:
                                with self._ready_lock:
                                    ready = self._ready or self._prepare(conn, create=if_absent is None)
                                if not ready and if_absent is not None:
                                    return if_absent()
                            return operation(conn)
                    finally:
                        # Once the watch is over: the watchdog must never shut a socket that was closed (its
                        # number may be another's by then).
                        if not conn.invalidated and conn.info.pop(_DISCARD, False):
                            conn.invalidate()
            except (TypeError, ValueError, LookupError, AttributeError) as exc:
                if connected:
                    raise
                # The driver refused the URL's options as it opened a connection (PyMySQL an unknown one,
                # or ?charset=nonsense); the URL is at fault, not the server.
                raise self._refused(exc) from exc
            except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:  # TimeoutError: no pooled connection came free
                if not connected and isinstance(exc, sa.exc.ProgrammingError):  # psycopg: "invalid connection option"
                    raise self._refused(exc) from exc
                if not connected and isinstance(exc, sa.exc.TimeoutError):
                    raise self._exhausted() from exc
                if (watch is not None and watch.expired) or (connected and is_read_timeout(exc)):
                    # A server that stopped answering will not answer the next try sooner: no retry.
                    raise kydb.StoreUnavailable(
                        f"{self.target.where} did not answer within {self._engine.read_timeout:g} s "
                        f"({self.url.masked}); the operation was abandoned and may or may not have been applied. "
                        f"{self.target.hint} Allow slower answers with ?read_timeout=SECONDS."
                    ) from exc
                if connected and isinstance(exc, sa.exc.DBAPIError):
                    if is_conflict(exc) and conflicts + 1 < _CONFLICT_ATTEMPTS:
                        conflicts += 1
                        time.sleep(random.uniform(0, min(_CONFLICT_BACKOFF_MAX, _CONFLICT_BACKOFF * 2**conflicts)))
                        continue
                    if exc.connection_invalidated and losses + 1 < _ATTEMPTS:
                        losses += 1
                        time.sleep(random.uniform(0, 0.01 * 2**losses))
                        continue
                translated = translate(
                    exc, self.target.where, self.url.masked, self.url.password, self.target.hint, tries=attempt
                )
                if translated is exc:  # a programming error: SQLAlchemy's own exception says it best
                    raise
                raise translated from exc

    def _refused(self, exc: Exception) -> ValueError:
        """The error for a driver that refused the URL's options as it connected."""
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        if self.url.password:
            reason = reason.replace(self.url.password, "***")
        return ValueError(
            f"invalid kydb URL {self.url.masked!r}: the {self.engine.dialect.driver} driver refused its options "
            f"({type(exc).__name__}: {reason}); every option but base, {', '.join(KYDB_OPTIONS)} goes to the driver"
        )

    def _exhausted(self) -> kydb.StoreUnavailable:
        """The error for an operation that waited ``pool_timeout`` for a connection and got none."""
        shared = self._engine
        return kydb.StoreUnavailable(
            f"the connection pool of the {self.target.where} is exhausted ({self.url.masked}): all "
            f"{shared.pool_size} of its connections stayed in use by other operations of this process for "
            f"{shared.pool_timeout:g} s. Nothing was done. Raise ?pool_size= (now {shared.pool_size}) for more "
            "concurrent operations, or ?pool_timeout= to wait longer; every store of this process on this "
            "database and settings shares the pool."
        )

    @contextlib.contextmanager
    def _transaction(self, conn: sa.Connection, needed: bool = True, begin: str | None = None) -> Iterator[None]:
        """Run the block in one transaction (or as it is when not ``needed``); roll back on any error.

        ``begin`` replaces the store's own ``BEGIN`` statement.

        The connection goes back to the pool without a transaction open (MySQL
        connections are not rolled back on return): the transaction commits,
        rolls back, or died with the connection, which the pool then discards.
        """
        if not needed:
            yield
            return
        try:
            conn.exec_driver_sql(begin or self._begin)
            yield
            conn.exec_driver_sql("COMMIT")
        except BaseException:
            if not conn.invalidated:  # a lost connection took its transaction with it (and would reconnect here)
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    conn.exec_driver_sql("ROLLBACK")
            raise

    # ------------------------------------------------------------------ writes

    def _on_conflict_insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        """An ``INSERT`` into ``table`` that takes PostgreSQL's or SQLite's ``ON CONFLICT`` clause."""
        if self._dialect == "postgresql":
            from sqlalchemy.dialects import postgresql  # noqa: PLC0415 - see _make_upserts

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite  # noqa: PLC0415 - see _make_upserts

        return sqlite.insert(table)

    def _make_upserts(self) -> tuple[sa.Executable, sa.Executable, sa.Executable]:
        """The upserts of one row and of one user index value, and the insert of a row that must be new.

        An overwritten object gets the new data, mtime and version; its
        ctime stays.  Both upserts update an existing row in place, never
        delete and insert it (as MySQL's ``REPLACE`` or SQLite's ``INSERT OR
        REPLACE`` would): deleting an object's row deletes its index values
        with it.  The insert inserts nothing over an existing row (rowcount
        0) on PostgreSQL and SQLite, and fails with a duplicate key on MySQL.
        The dialects are imported here, once the engine has loaded its own:
        a SQLite store never loads PostgreSQL's or MySQL's.
        """
        t, ix = self.table, self.index_table
        # Inline, not a bound parameter: PyMySQL's executemany leaves the ON DUPLICATE clause unformatted.
        is_object: sa.ColumnElement[str] = sa.literal_column(f"'{KIND_OBJECT}'")
        # SQLAlchemy reports an INSERT's rowcount only when asked to.
        counted = {"preserve_rowcount": True}
        if self._dialect in _MYSQL:
            from sqlalchemy.dialects import mysql  # noqa: PLC0415

            mine_row, mine_value = mysql.insert(t), mysql.insert(ix)
            new = mine_row.inserted
            return (
                mine_row.on_duplicate_key_update(
                    data=new.data,
                    mtime=sa.case((new.kind == is_object, new.mtime), else_=t.c.mtime),
                    version=sa.case((new.kind == is_object, new.version), else_=t.c.version),
                ),
                mine_value.on_duplicate_key_update(value=mine_value.inserted.value),
                sa.insert(t).execution_options(**counted),
            )
        ins_row, ins_value = self._on_conflict_insert(t), self._on_conflict_insert(ix)
        return (
            ins_row.on_conflict_do_update(
                index_elements=[t.c.path],
                set_={
                    "data": ins_row.excluded.data,
                    "mtime": ins_row.excluded.mtime,
                    "version": ins_row.excluded.version,
                },
                where=ins_row.excluded.kind == is_object,  # existing folder rows stay untouched
            ),
            ins_value.on_conflict_do_update(
                index_elements=[ix.c.path, ix.c.index_name], set_={"value": ins_value.excluded.value}
            ),
            self._on_conflict_insert(t).on_conflict_do_nothing(index_elements=[t.c.path]).execution_options(**counted),
        )

    def _check_packet(self, rows: list[Row]) -> None:
        """Raise :class:`ValueTooLarge`, before anything is sent, for a value over MySQL's ``max_allowed_packet``."""
        packet = self._max_packet
        if not packet:
            return
        for row in rows:
            # MySQL drivers send binary as SQL text: hex (PyMySQL 1.2) or escaped, at most twice its size.
            size = len(row["data"] or b"")
            if 2 * size + _MYSQL_ROW_OVERHEAD > packet:
                raise ValueTooLarge(
                    f"{row['path']}: the value is {size:,} bytes, sent as up to {2 * size + _MYSQL_ROW_OVERHEAD:,} "
                    f"bytes of SQL, over max_allowed_packet = {packet:,} bytes of the {self.target.where} "
                    f"({self.url.masked}); store a smaller value or raise max_allowed_packet on the server. "
                    "Nothing was written."
                )

    def _write(
        self,
        rows: Mapping[str, Row],
        values: Sequence[Row] = (),
        cleared: Sequence[Row] = (),
        expect: Mapping[str, str | None] = _NOTHING,
    ) -> None:
        """Upsert ``rows`` (path -> row), then the index ``values`` of those objects, and delete ``cleared`` ones.

        The index rows come in path order and after their objects' rows,
        which their foreign key needs.  Each path in ``expect`` must have
        that version (``None``: be absent) or nothing is written and
        :class:`kydb.Conflict` says so; those of ``rows`` are written by a
        statement of their own, in path order among the rest.
        """
        order = sorted(rows.keys() | expect.keys())  # one lock order for every writer: see the module docstring
        ordered = [rows[path] for path in order if path in rows]
        # SQLite writes large values through its blob I/O, not as bound parameters (where available: 3.11+).
        blobs = {
            row["path"]: row["data"]
            for row in ordered
            if self._dialect == "sqlite" and row["data"] is not None and len(row["data"]) > _LARGE_VALUE
        }
        large = any(row["data"] is not None and len(row["data"]) > _LARGE_VALUE for row in ordered)

        def write(conn: sa.Connection) -> None:
            if large and self._dialect == "postgresql":
                conn.info[_DISCARD] = True  # libpq's buffer keeps a copy as large for as long as the connection lives
            self._check_packet(ordered)
            writes_blobs = bool(blobs) and hasattr(conn.connection.driver_connection, "blobopen")
            needed = len(order) > 1 or bool(values or cleared) or writes_blobs
            with self._transaction(conn, needed=needed):
                run: list[Row] = []  # unconditional rows, upserted together
                for path in order:
                    row = rows.get(path)
                    if row is not None and writes_blobs and path in blobs:
                        row = {**row, "data": None}  # written below
                    if row is not None and path not in expect:
                        run.append(row)
                        continue
                    if run:
                        conn.execute(self._upsert, run)
                        run = []
                    self._write_if(conn, path, row, expect[path])
                if run:
                    conn.execute(self._upsert, run)
                if writes_blobs:
                    self._write_blobs(conn, blobs)
                if values:
                    conn.execute(self._upsert_index, values)
                if cleared:
                    conn.execute(self._delete_index_value, cleared)

        self._run(write)

    def _write_if(self, conn: sa.Connection, path: str, row: Row | None, expected: str | None) -> None:
        """Write ``row`` at ``path`` if it has version ``expected`` (``None``: if absent); raise Conflict if not.

        Without a ``row``, only check the version, locking the row until the
        transaction ends.  A row already at ``row``'s version was written by
        an earlier try of this very call, whose answer was lost: done.
        """
        number = _version_number(expected)
        if row is None:
            current = conn.execute(self._lock_version, {"path": path}).scalar()
            if current != number or (expected is not None and number is None):
                raise self._conflict(path, expected, current, "written")
            return
        if expected is None:
            try:
                written = conn.execute(self._insert_if_absent, row).rowcount == 1
            except sa.exc.IntegrityError as exc:  # MySQL's answer to a taken key
                if not is_duplicate_key(exc):
                    raise
                written = False
        elif number is None:
            written = False  # no object has such a version
        else:
            update = {"at": path, "expected": number, "new_data": row["data"], "new_mtime": row["mtime"]}
            written = conn.execute(self._update_if, {**update, "new_version": row["version"]}).rowcount == 1
        if not written:
            current = conn.execute(self._select_version, {"path": path}).scalar()
            if current != row["version"]:
                raise self._conflict(path, expected, current, "written")

    def _conflict(self, path: str, expected: str | None, current: int | None, done: str) -> kydb.Conflict:
        """The error for ``path`` found at version ``current`` (``None``: absent) where ``expected`` was wanted."""
        wanted = "absent" if expected is None else f"at version {expected}"
        found = "absent" if current is None else f"at version {current}"
        return kydb.Conflict(
            f"{path}: expected the object {wanted}, but it is {found} in the {self.target.where} "
            f"({self.url.masked}); nothing was {done}"
        )

    def _write_blobs(self, conn: sa.Connection, blobs: Mapping[str, bytes]) -> None:
        """Write each of ``blobs`` (path -> value) into its row's ``data``, in place, with SQLite's blob I/O.

        The row holds a zeroblob of the value's size first: SQLite lays out
        its pages without holding the value, and ``blob.write`` fills them
        from the caller's buffer, where binding it would copy it and build
        a record holding another copy.
        """
        driver = conn.connection.driver_connection
        for path, data in blobs.items():
            conn.execute(self._zeroblob, {"at": path, "size": len(data)})
            rowid = conn.execute(self._select_rowid, {"path": path}).scalar_one()
            with driver.blobopen(self.table.name, "data", rowid) as blob:  # type: ignore[union-attr]
                blob.write(data)

    @staticmethod
    def _add_folders(rows: dict[str, Row], folders: Iterable[str], now: int) -> None:
        for folder in folders:
            if folder not in rows:
                parent, name = folder[:-1].rsplit("/", 1)
                rows[folder] = {
                    "path": folder,
                    "parent": parent + "/",
                    "name": name + "/",
                    "kind": KIND_FOLDER,
                    "data": None,
                    "mtime": now,
                    "ctime": now,
                    "version": 0,
                }

    @kydb.hookimpl
    def kydb_put(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None],
    ) -> None:
        now = mtime_ns
        version = secrets.randbelow(2**63 - 1) + 1  # this call's write id: see "Versions" in the module docstring
        rows: dict[str, Row] = {}
        values: list[Row] = []
        cleared: list[Row] = []
        for path in sorted(items):  # index rows in path order, as _write needs them
            self._add_folders(rows, ancestors(path), now)
            folder, name = path.rsplit("/", 1)
            parent = folder + "/"
            data = items[path]
            rows[path] = {
                "path": path,
                "parent": parent,
                "name": name,
                "kind": KIND_OBJECT,
                "data": data if type(data) is bytes else bytes(data),
                "mtime": now,
                "ctime": now,
                "version": version,
            }
            for index_name, value in sorted(indexes.get(path, {}).items()):
                if value is None:
                    cleared.append({"path": path, "index_name": index_name})
                else:
                    values.append(
                        {"path": path, "index_name": index_name, "parent": parent, "name": name, "value": value}
                    )
        if rows or expect:
            self._write(rows, values, cleared, expect)

    @kydb.hookimpl
    def kydb_mkdir(self, folder: str) -> None:
        rows: dict[str, Row] = {}
        self._add_folders(rows, [*ancestors(folder), folder], time.time_ns())
        self._write(rows)

    @kydb.hookimpl
    def kydb_delete(self, paths: Sequence[str], expect: Mapping[str, str]) -> None:
        if expect:
            self._delete_if_versions(set(paths), expect)
            return
        unique = sorted(set(paths))  # path order, across statements too: see the module docstring
        if not unique:
            return

        def delete(conn: sa.Connection) -> None:
            with self._transaction(conn, needed=len(unique) > _KEYS_PER_STATEMENT):
                self._delete(conn, unique)

        self._run(delete, if_absent=lambda: None)  # nothing to delete in a store never written

    def _delete(self, conn: sa.Connection, paths: Sequence[str]) -> None:
        """Delete ``paths`` (in path order), up to 500 per statement."""
        for start in range(0, len(paths), _KEYS_PER_STATEMENT):
            conn.execute(self._delete_paths, {"paths": paths[start : start + _KEYS_PER_STATEMENT]})

    def _delete_if_versions(self, paths: set[str], expect: Mapping[str, str]) -> None:
        """Delete ``paths`` if each path of ``expect`` has its version; else raise Conflict, deleting nothing."""
        order = sorted(paths | expect.keys())
        tries = 0

        def delete(conn: sa.Connection) -> None:
            nonlocal tries
            tries += 1
            with self._transaction(conn, needed=len(order) > 1):
                run: list[str] = []
                for path in order:
                    if path not in expect:
                        run.append(path)
                        continue
                    if run:
                        self._delete(conn, run)
                        run = []
                    expected = expect[path]
                    if path not in paths:
                        self._write_if(conn, path, None, expected)
                        continue
                    number = _version_number(expected)
                    if (
                        number is None
                        or conn.execute(self._delete_if, {"path": path, "expected": number}).rowcount != 1
                    ):
                        current = conn.execute(self._select_version, {"path": path}).scalar()
                        if current is None and tries > 1:
                            raise kydb.StoreUnavailable(
                                f"{path}: the conditional delete was interrupted ({self.target.where}, "
                                f"{self.url.masked}) and tried again, and the object is gone: deleted by the "
                                "interrupted try or by another writer in between, which cannot be told apart."
                            )
                        raise self._conflict(path, expected, current, "deleted")
                if run:
                    self._delete(conn, run)

        def absent() -> None:  # a store never written: every expected object is absent
            path = min(expect)
            raise self._conflict(path, expect[path], None, "deleted")

        self._run(delete, if_absent=absent)

    @kydb.hookimpl
    def kydb_rmdir(self, folder: str) -> None:
        self._run(lambda conn: conn.execute(self._delete_path, {"path": folder}), if_absent=lambda: None)

    @kydb.hookimpl
    def kydb_delete_tree(self, folder: str) -> int:
        low, high = range_of(folder)
        bounds = {"low": low, "high": high}

        def delete_tree(conn: sa.Connection) -> int:
            with self._transaction(conn):
                # (the root has no row of its own)
                lock_folder = self._lock_folder if folder != "/" else None
                if lock_folder is not None and conn.execute(lock_folder, {"path": folder}).first() is None:
                    return 0  # gone already, and with it everything below it (a folder row comes first)
                if self._lock_range is not None and not conn.execute(self._lock_range, bounds).scalar():
                    return 0  # nothing there, not even the folder
                deleted = conn.execute(self._delete_objects_in_range, bounds).rowcount
                conn.execute(self._delete_range, bounds)  # the folders
            return deleted

        return self._run(delete_tree, if_absent=lambda: 0)

    # ------------------------------------------------------------------ reads

    def _read_blobs(self, conn: sa.Connection, paths: Sequence[str]) -> dict[str, tuple[bytes, int]]:
        """``{path: (blob, version)}`` of each of ``paths`` (unique) that exists; one statement per 500 paths.

        PostgreSQL reads a large value in pieces (:meth:`_read_in_pieces`).
        """
        if len(paths) == 1:
            found = conn.execute(self._select_blob, {"path": paths[0]}).all()
        else:
            found = []
            for start in range(0, len(paths), _KEYS_PER_STATEMENT):
                found.extend(conn.execute(self._select_blobs, {"paths": paths[start : start + _KEYS_PER_STATEMENT]}))
        blobs: dict[str, tuple[bytes, int]] = {}
        for path, data, size, version in found:
            if data is None and size is not None:  # left out for its size
                whole = self._read_in_pieces(conn, path)
                if whole is not None:
                    blobs[path] = whole
            else:
                blobs[path] = (data if type(data) is bytes else bytes(data or b""), version)
        return blobs

    def _read_in_pieces(self, conn: sa.Connection, path: str) -> tuple[bytes, int] | None:
        """``(blob, version)`` of ``path`` read in at most eight pieces in one snapshot; ``None`` if it is gone.

        The pieces are gathered in a ``BytesIO``, whose ``getvalue()`` hands
        over its buffer without copying it.  The connection is closed
        afterwards: libpq keeps its input buffer as large as a piece.
        """
        conn.info[_DISCARD] = True
        with self._transaction(conn, begin="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"):
            row = conn.execute(self._select_blob, {"path": path}).first()
            if row is None:
                return None
            _, data, size, version = row
            if data is not None:  # overwritten with a smaller value since
                return data, version
            piece = max(_LARGE_VALUE, -(-size // _PIECES))
            buffer = io.BytesIO()
            for start in range(0, size, piece):
                buffer.write(
                    conn.execute(self._select_piece, {"path": path, "start": start + 1, "count": piece}).scalar_one()
                )
        return buffer.getvalue(), version

    @kydb.hookimpl
    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        unique = list(dict.fromkeys(paths))

        def get(conn: sa.Connection) -> dict[str, bytes]:
            return {path: blob for path, (blob, _) in self._read_blobs(conn, unique).items()}

        return self._run(get, if_absent=dict) if unique else {}

    @kydb.hookimpl
    def kydb_get_versioned(self, paths: Sequence[str]) -> Mapping[str, kydb.VersionedBlob]:
        unique = list(dict.fromkeys(paths))

        def get(conn: sa.Connection) -> dict[str, kydb.VersionedBlob]:
            found = self._read_blobs(conn, unique)
            return {path: kydb.VersionedBlob(blob, str(version)) for path, (blob, version) in found.items()}

        return self._run(get, if_absent=dict) if unique else {}

    @kydb.hookimpl
    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, kydb.ObjectInfo]:
        unique = list(dict.fromkeys(paths))

        def stat(conn: sa.Connection) -> dict[str, kydb.ObjectInfo]:
            rows: list[Any] = []
            values: dict[str, dict[str, int]] = {}
            for start in range(0, len(unique), _KEYS_PER_STATEMENT):
                chunk = {"paths": unique[start : start + _KEYS_PER_STATEMENT]}
                rows.extend(conn.execute(self._select_infos, chunk))
                for path, index_name, value in conn.execute(self._select_index_values, chunk):
                    values.setdefault(path, {})[index_name] = value
            return {
                path: kydb.ObjectInfo(size or 0, mtime, ctime, values.get(path, {}), str(version))
                for path, size, mtime, ctime, version in rows
            }

        return self._run(stat, if_absent=dict) if unique else {}

    @kydb.hookimpl
    def kydb_query(self, request: kydb.QueryRequest) -> kydb.QueryPage:
        folder, index, since, until, limit = request.folder, request.index, request.since, request.until, request.limit
        ascending, after = request.ascending, request.after()
        t, ix = self.table, self.index_table
        if index in ("mtime", "ctime"):
            value, name = t.c[index], t.c.name
            query = sa.select(t.c.name, t.c.mtime, t.c.ctime, value).where(
                t.c.parent == folder, t.c.kind == KIND_OBJECT
            )
        else:
            value, name = ix.c.value, ix.c.name
            query = (
                sa.select(ix.c.name, t.c.mtime, t.c.ctime, value)
                .select_from(ix.join(t, t.c.path == ix.c.path))
                .where(ix.c.parent == folder, ix.c.index_name == index)
            )
        if since is not None:
            query = query.where(value >= since)
        if until is not None:
            query = query.where(value <= until)
        if after is not None:
            position = sa.tuple_(value, name)
            bound = sa.tuple_(sa.literal(after[0], sa.BigInteger()), sa.literal(after[1], KeyText()))
            query = query.where(position > bound if ascending else position < bound)
        order = (value.asc(), name.asc()) if ascending else (value.desc(), name.desc())
        query = query.order_by(*order).limit(limit + 1)

        def select(conn: sa.Connection) -> list[tuple[str, int, int, int]]:
            return [(row[0], row[1], row[2], row[3]) for row in conn.execute(query)]

        rows: list[tuple[str, int, int, int]] = self._run(select, if_absent=list)
        entries = [kydb.Entry(*row) for row in rows[:limit]]
        return kydb.QueryPage.of(entries, len(rows) > limit)

    @kydb.hookimpl
    def kydb_exists(self, path: str) -> bool:
        return self._run(
            lambda conn: conn.execute(self._select_row, {"path": path}).first() is not None, if_absent=lambda: False
        )

    @kydb.hookimpl
    def kydb_is_dir(self, folder: str) -> bool:
        return folder == "/" or self.kydb_exists(folder)

    @kydb.hookimpl
    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        query = self._list[include_dirs, cursor is not None]
        params: dict[str, Any] = {"folder": folder, "limit": page_size + 1}
        if cursor is not None:
            params["after"] = cursor
        names: list[str] = self._run(lambda conn: list(conn.execute(query, params).scalars()), if_absent=list)
        if len(names) > page_size:
            return kydb.ListPage(names[:page_size], names[page_size - 1])
        return kydb.ListPage(names, None)

    @kydb.hookimpl
    def kydb_close(self) -> None:
        """Give back this store's hold on its shared engine: the last store on it closes its connections."""
        with self._shared_lock:
            shared, self._shared = self._shared, None
        if shared is not None:
            release_store_engine(shared)
