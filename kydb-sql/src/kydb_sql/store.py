"""The kydb hooks over one SQL table (see :mod:`kydb_sql.layout` for the table).

Costs, in statements (the pool adds none).  A statement is one round trip,
and so are the ``BEGIN`` and ``COMMIT`` around the operations that need a
transaction:

* ``put``/``set_many`` — one upsert, run with ``executemany`` over the
  objects and their ancestor folders (the drivers send the rows together:
  psycopg in one pipeline, PyMySQL as multi-row statements of at most 1 MB,
  SQLite in process), in a transaction when there are several rows; with
  ``index=``, one more upsert of the values set and one ``DELETE`` of those
  cleared, in the same transaction;
* ``get``/``get_many`` — one ``SELECT ... WHERE path IN (...)`` per 500 keys;
* ``ls`` — one indexed ``SELECT ... WHERE parent = ? [AND name > ?] ORDER BY
  name LIMIT ?`` per page (keyset pagination, never ``OFFSET``);
* ``delete``/``delete_many`` — one ``DELETE ... IN`` per 500 keys, in a
  transaction only when there are more than 500; the objects' index values
  go with them (``ON DELETE CASCADE``), with no statement of their own;
* ``rm_tree`` — a ``SELECT ... FOR UPDATE`` that locks the folder (PostgreSQL)
  or the whole range (MySQL/MariaDB; none on SQLite), then two range
  ``DELETE``s (objects, counted; then folders) in one transaction, whatever
  the size of the tree;
* ``stat`` — one ``SELECT`` of sizes and times, one of index values, per 500 keys;
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

A deadlock or serialization failure the database reports anyway is rolled
back, and the (idempotent) operation runs again after a random backoff:
twelve tries in all; when they run out, :class:`kydb_sql.WriteConflict` (a
:class:`kydb.StoreUnavailable`) says so.  A connection lost mid-operation (a
pooled connection the server dropped, a restart) runs it again on a new
connection: four tries in all.  Failing to open a connection, a server that
does not answer within ``read_timeout``, or a lock held by another
transaction for longer than the database waits for it (MySQL's
``innodb_lock_wait_timeout``: ``WriteConflict``; SQLite's busy timeout:
``StoreUnavailable``) raises at once: trying again would only make the caller
wait longer for the same answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

import kydb
from kydb.url import StoreURL

from .engines import create_store_engine
from .errors import TableLayoutError, ValueTooLarge, is_conflict, is_read_timeout, translate
from .layout import KIND_FOLDER, KIND_OBJECT, KeyText, ancestors, check_layout, index_table, make_table, range_of
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

Row = dict[str, Any]


class SQLStore(kydb.Store):
    """A kydb store in one table of a SQL database: ``sqlite:///file.db``, ``postgresql://...``, ``mysql://...``.

    ``?table=NAME`` (default ``kydb``) names the table, created with its
    indexes by the first write; ``?base=/a/b`` sets the base path; every
    other query option goes to SQLAlchemy and the driver.  Connecting opens
    no connection: the first operation does, and checks the table's layout
    and names (:func:`kydb_sql.layout.check_layout`).  Reads never create
    anything: a missing table or SQLite file is an empty store.  ``engine``
    and ``table`` are the SQLAlchemy objects, for inspection.
    """

    # The URL path names the database (or the SQLite file), not a base path.
    capabilities = kydb.Capabilities(url_path_is_base=False, keeps_times=True, keeps_ctime=True, native_queries=True)

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
        self._engine = create_store_engine(url)
        self.engine = self._engine.engine
        self.target = self._engine.target
        self._dialect = self.engine.dialect.name
        self.table = make_table(table, self._dialect)
        self._ready = False
        self._ready_lock = threading.Lock()
        self._max_packet: int | None = None  # MySQL/MariaDB's max_allowed_packet, read on first use
        # READ COMMITTED whatever the server's default: each statement sees the rows committed before it
        # (see the module docstring).  MySQL/MariaDB connections are set to it when opened.
        self._begin = {"sqlite": "BEGIN IMMEDIATE", "postgresql": "BEGIN ISOLATION LEVEL READ COMMITTED"}.get(
            self._dialect, "BEGIN"
        )

        t = self.table
        paths: sa.BindParameter[str] = sa.bindparam("paths", expanding=True)
        path: sa.BindParameter[str] = sa.bindparam("path")
        in_range = sa.and_(t.c.path >= sa.bindparam("low"), t.c.path < sa.bindparam("high"))
        self._select_blobs = sa.select(t.c.path, t.c.data).where(t.c.path.in_(paths))
        self._select_blob = sa.select(t.c.path, t.c.data).where(t.c.path == path)  # no IN list to expand
        self._select_row = sa.select(sa.literal(1)).where(t.c.path == path)
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
        self._upsert, self._upsert_index = self._make_upserts()
        self._select_infos = sa.select(t.c.path, sa.func.length(t.c.data), t.c.mtime, t.c.ctime).where(
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

    # ------------------------------------------------------------------ running statements

    def _prepare(self, conn: sa.Connection, create: bool) -> bool:
        """First use: check the table, and create it if missing and ``create``; whether it is there now.

        Creating runs under a lock no other process holds at the same time;
        checking takes none.
        """
        try:
            return self._check_or_create(conn, create)
        except TableLayoutError as exc:
            raise TableLayoutError(f"{self.target.where} ({self.url.masked}): {exc}") from None

    def _check_or_create(self, conn: sa.Connection, create: bool) -> bool:
        """:meth:`_prepare`, its errors not yet naming the store."""
        lock_name = f"kydb:{self.table.name}"
        if not create:
            ready = check_layout(conn, self.table, False, time.time_ns())
        elif self._dialect in _MYSQL:
            # MySQL commits DDL at once, so a transaction cannot serialise creators: a named lock does.
            if conn.execute(sa.select(sa.func.get_lock(lock_name, 60))).scalar() != 1:
                raise kydb.StoreUnavailable(
                    f"{self.target.where}: timed out waiting for another process creating table "
                    f"{self.table.name!r} ({self.url.masked})"
                )
            try:
                ready = check_layout(conn, self.table, True, time.time_ns())
            finally:
                # Closing the connection releases the lock too: never hide the first error behind this one.
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    conn.execute(sa.select(sa.func.release_lock(lock_name)))
        else:
            with self._transaction(conn):
                if self._dialect == "postgresql":
                    digest = hashlib.blake2b(lock_name.encode(), digest_size=8).digest()
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(int.from_bytes(digest, "big", signed=True))))
                ready = check_layout(conn, self.table, True, time.time_ns())
        if ready and self._dialect in _MYSQL:
            self._max_packet = int(conn.execute(sa.text("SELECT @@max_allowed_packet")).scalar_one())
        return ready

    def _run(self, operation: Callable[[sa.Connection], _T], if_absent: Callable[[], _T] | None = None) -> _T:
        """Run ``operation`` on a pooled connection, retrying transient failures; translate errors.

        With ``if_absent`` the operation only reads (or deletes): while the
        table — or the SQLite file — does not exist, it returns
        ``if_absent()``, an empty store's answer, and creates nothing.
        Without, the operation writes, and the first one creates them.
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
                with self._engine.serial, self.engine.connect() as conn, self._engine.watch(conn) as watch:
                    connected = True
                    if not self._ready:
                        with self._ready_lock:
                            if not self._ready:
                                self._ready = self._prepare(conn, create=if_absent is None)
                        if not self._ready and if_absent is not None:
                            return if_absent()
                    return operation(conn)
            except (TypeError, ValueError, LookupError, AttributeError) as exc:
                if connected:
                    raise
                # The driver refused the URL's options as it opened a connection (PyMySQL an unknown one,
                # or ?charset=nonsense); the URL is at fault, not the server.
                raise self._refused(exc) from exc
            except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:  # TimeoutError: no pooled connection came free
                if not connected and isinstance(exc, sa.exc.ProgrammingError):  # psycopg: "invalid connection option"
                    raise self._refused(exc) from exc
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
            f"({type(exc).__name__}: {reason}); every option but base, table, connect_timeout and read_timeout "
            "goes to the driver"
        )

    @contextlib.contextmanager
    def _transaction(self, conn: sa.Connection, needed: bool = True) -> Iterator[None]:
        """Run the block in one transaction (or as it is when not ``needed``); roll back on any error.

        The connection goes back to the pool without a transaction open (MySQL
        connections are not rolled back on return): the transaction commits,
        rolls back, or died with the connection, which the pool then discards.
        """
        if not needed:
            yield
            return
        try:
            conn.exec_driver_sql(self._begin)
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

    def _make_upserts(self) -> tuple[sa.Executable, sa.Executable]:
        """The upserts of one row and of one user index value.

        An overwritten object gets the new data and mtime; its ctime stays.
        Both update an existing row in place, never delete and insert it (as
        MySQL's ``REPLACE`` or SQLite's ``INSERT OR REPLACE`` would): deleting
        an object's row deletes its index values with it.  The dialects are
        imported here, once the engine has loaded its own: a SQLite store
        never loads PostgreSQL's or MySQL's.
        """
        t, ix = self.table, self.index_table
        # Inline, not a bound parameter: PyMySQL's executemany leaves the ON DUPLICATE clause unformatted.
        is_object: sa.ColumnElement[str] = sa.literal_column(f"'{KIND_OBJECT}'")
        if self._dialect in _MYSQL:
            from sqlalchemy.dialects import mysql  # noqa: PLC0415

            mine_row, mine_value = mysql.insert(t), mysql.insert(ix)
            return (
                mine_row.on_duplicate_key_update(
                    data=mine_row.inserted.data,
                    mtime=sa.case((mine_row.inserted.kind == is_object, mine_row.inserted.mtime), else_=t.c.mtime),
                ),
                mine_value.on_duplicate_key_update(value=mine_value.inserted.value),
            )
        ins_row, ins_value = self._on_conflict_insert(t), self._on_conflict_insert(ix)
        return (
            ins_row.on_conflict_do_update(
                index_elements=[t.c.path],
                set_={"data": ins_row.excluded.data, "mtime": ins_row.excluded.mtime},
                where=ins_row.excluded.kind == is_object,  # existing folder rows stay untouched
            ),
            ins_value.on_conflict_do_update(
                index_elements=[ix.c.path, ix.c.index_name], set_={"value": ins_value.excluded.value}
            ),
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

    def _write(self, rows: Mapping[str, Row], values: Sequence[Row] = (), cleared: Sequence[Row] = ()) -> None:
        """Upsert ``rows`` (path -> row), then the index ``values`` of those objects, and delete ``cleared`` ones.

        The index rows come in path order and after their objects' rows,
        which their foreign key needs.
        """
        ordered = [rows[path] for path in sorted(rows)]  # one lock order for every writer: see the module docstring

        def write(conn: sa.Connection) -> None:
            self._check_packet(ordered)
            with self._transaction(conn, needed=len(ordered) > 1 or bool(values or cleared)):
                conn.execute(self._upsert, ordered)
                if values:
                    conn.execute(self._upsert_index, values)
                if cleared:
                    conn.execute(self._delete_index_value, cleared)

        self._run(write)

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
        rows: dict[str, Row] = {}
        values: list[Row] = []
        cleared: list[Row] = []
        for path in sorted(items):  # index rows in path order, as _write needs them
            self._add_folders(rows, ancestors(path), now)
            folder, name = path.rsplit("/", 1)
            parent = folder + "/"
            rows[path] = {
                "path": path,
                "parent": parent,
                "name": name,
                "kind": KIND_OBJECT,
                "data": bytes(items[path]),
                "mtime": now,
                "ctime": now,
            }
            for index_name, value in sorted(indexes.get(path, {}).items()):
                if value is None:
                    cleared.append({"path": path, "index_name": index_name})
                else:
                    values.append(
                        {"path": path, "index_name": index_name, "parent": parent, "name": name, "value": value}
                    )
        if rows:
            self._write(rows, values, cleared)

    @kydb.hookimpl
    def kydb_mkdir(self, folder: str) -> None:
        rows: dict[str, Row] = {}
        self._add_folders(rows, [*ancestors(folder), folder], time.time_ns())
        self._write(rows)

    @kydb.hookimpl
    def kydb_delete(self, paths: Sequence[str], expect: Mapping[str, str]) -> None:
        unique = sorted(set(paths))  # path order, across statements too: see the module docstring
        if not unique:
            return

        def delete(conn: sa.Connection) -> None:
            with self._transaction(conn, needed=len(unique) > _KEYS_PER_STATEMENT):
                for start in range(0, len(unique), _KEYS_PER_STATEMENT):
                    conn.execute(self._delete_paths, {"paths": unique[start : start + _KEYS_PER_STATEMENT]})

        self._run(delete, if_absent=lambda: None)  # nothing to delete in a store never written

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

    @kydb.hookimpl
    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        unique = list(dict.fromkeys(paths))

        def get(conn: sa.Connection) -> dict[str, bytes]:
            if len(unique) == 1:
                found = conn.execute(self._select_blob, {"path": unique[0]}).all()
            else:
                found = []
                for start in range(0, len(unique), _KEYS_PER_STATEMENT):
                    chunk = unique[start : start + _KEYS_PER_STATEMENT]
                    found.extend(conn.execute(self._select_blobs, {"paths": chunk}))
            return {path: data if type(data) is bytes else bytes(data) for path, data in found}

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
                path: kydb.ObjectInfo(size or 0, mtime, ctime, values.get(path, {}))
                for path, size, mtime, ctime in rows
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
        if not self._engine.shared:
            self.engine.dispose()
