"""The fault matrix: kydb-sql on PostgreSQL, MariaDB and SQLite when the network, the server or a lock fails.

PostgreSQL and MariaDB are reached through a loopback TCPProxy
(kydb.testing.faults) that cuts, refuses or stalls connections on demand; a
restart uses a private server (tests/sql/private_servers.py) that the test
crashes mid-transaction and starts again.  MariaDB meets a row lock another
transaction holds past its lock wait timeout.  SQLite meets another process
holding its file's write lock, and a writer killed mid-transaction.

Every scenario checks the four promises:

1. an operation the fault defeats raises ``kydb.StoreUnavailable`` — never a
   ``KeyError`` (a missing key), never a hang;
2. the read cache never holds a value the store did not take;
3. a fault that a retry gets past is invisible: the operation returns its
   result as if nothing had happened;
4. after recovery every object acknowledged before (or during) the fault
   reads back intact, and a failed multi-row write left none of its rows
   (or, where the outcome of an abandoned commit is unknowable, all of them).

Each scenario is a row of the fault matrix printed in the terminal summary
(:class:`kydb.testing.faults.FaultScenario`): backend, fault, operations
attempted, what they raised by type, objects lost, partial writes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

import kydb
from kydb.testing import unique_name
from kydb.testing.faults import FaultScenario, TCPProxy
from kydb_sql.layout import ancestors, range_of

from .conftest import Database
from .private_servers import PrivateServer, ServerUnavailable

_T = TypeVar("_T")
Expected = type[Exception] | None  # what an operation must raise; None: it must succeed

BIG_VALUE = os.urandom(4 * 1024 * 1024)  # read through a connection cut after its first megabyte
CUT_AFTER = 1024 * 1024
READ_TIMEOUT = 2  # seconds, for the stall scenarios
NAMES = {"postgresql": "PostgreSQL", "mariadb": "MariaDB", "sqlite": "SQLite"}


def batch(folder: str, count: int = 100, size: int = 20 * 1024) -> dict[str, bytes]:
    """A multi-row write: ``count`` values of ``size`` bytes in four subfolders of ``folder``."""
    return {f"{folder}/d{i % 4}/o{i:03d}": os.urandom(size) for i in range(count)}


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except kydb.NotFound:
        return "absent", None


class Trial:
    """One scenario: a DB, the operations tried on it under a fault and what they met, and the checks after.

    ``raw`` is an engine on the same database that bypasses kydb (and the
    proxy), to count rows after recovery.  Outcomes are recorded in
    ``scenario``, the scenario's row of the fault matrix; :meth:`verify`
    fills in its objects lost and partial writes.
    """

    def __init__(self, db: Any, raw: sa.Engine, scenario: FaultScenario) -> None:
        self.db = db
        self.raw = raw
        self.scenario = scenario
        self.fault = scenario.fault
        self.acked: dict[str, Any] = {}  # key -> the value the store acknowledged last
        self.failed: dict[str, Any] = {}  # key -> a value whose write raised
        self.failed_batches: dict[str, int] = {}  # folder of a failed multi-row write -> the rows it adds
        self.last_error: BaseException | None = None

    # ------------------------------------------------------------------ before the fault

    def acknowledge(self, values: dict[str, Any]) -> None:
        """Write ``values`` while all is well (setup, not counted as an attempt)."""
        self.db.set_many(values)
        self.acked.update(values)

    # ------------------------------------------------------------------ under the fault

    def attempt(self, what: str, call: Callable[[], _T], expect: Expected) -> _T | None:
        """Run one operation and record what it met; it must raise ``expect``, or succeed for ``None``.

        See :meth:`FaultScenario.attempt` (never a ``KeyError``); what it raised is kept as ``last_error``.
        """
        if expect is None:
            return self.scenario.attempt(what, call)
        self.last_error = self.scenario.attempt(what, call, expect=expect)
        return None

    def put(self, values: dict[str, Any], expect: Expected) -> None:
        """``set_many`` (``set`` for one key); give each multi-row write a top-level folder of its own."""
        if len(values) == 1:
            ((key, value),) = values.items()
            self.attempt(f"set {key}", lambda: self.db.set(key, value), expect)
        else:
            self.attempt(f"set_many of {len(values)}", lambda: self.db.set_many(values), expect)
        if expect is None:
            self.acked.update(values)
        else:
            self.failed.update(values)
            if len(values) > 1:
                self.failed_batches[top_folder(next(iter(values)))] = rows_added(values)

    def read(self, key: str, expect: Expected, reload: bool = True) -> None:
        """Read ``key`` from the store (through the cache unless ``reload``); a value read must be the acked one."""
        value = self.attempt(f"read {key}", lambda: self.db.read(key, reload=reload), expect)
        if expect is None:
            assert value == self.acked[key], f"{self.fault}: {key} read back {value!r:.60}"

    def survey(self, expect: Expected) -> None:
        """What a user tries next: a read from the store, a missing key, a listing, an existence check."""
        key = next(iter(self.acked))
        self.read(key, expect)
        missing = self.attempt("get of a missing key", lambda: self.db.get("/never/written", "default"), expect)
        listing = self.attempt("ls /", lambda: self.db.ls("/"), expect)
        found = self.attempt(f"exists {key}", lambda: self.db.exists(key), expect)
        if expect is None:
            assert missing == "default" and found is True
            listed, expected = set(listing or []), {top_folder(k) + "/" for k in self.acked}
            # a multi-row write whose commit outlived the connection may be there too
            assert expected <= listed <= expected | {folder + "/" for folder in self.failed_batches}, listing

    # ------------------------------------------------------------------ after recovery

    def verify(self, unknowable_commit: bool = False) -> None:
        """With the fault healed, check promises 2 and 4, and record objects lost and partial writes.

        A failed write must have left nothing — unless ``unknowable_commit``
        (the client gave up with a COMMIT in flight, which the server may yet
        carry out): then all of it or nothing.
        """
        db = self.db
        # 2. For a key whose write failed, the cache serves what the store holds.
        for key, value in self.failed.items():
            cached, stored = _outcome(lambda: db[key]), _outcome(lambda: db.read(key, reload=True))
            assert cached == stored, (
                f"{self.fault}: the cache serves {cached!r:.60} for {key}, the store {stored!r:.60}"
            )
            if stored == ("ok", value):
                assert unknowable_commit, f"{self.fault}: the failed write of {key} was applied"
                self.acked[key] = value
        # 4. Failed multi-row writes left no partial rows; acknowledged objects are intact.
        partial = 0
        for folder, complete in self.failed_batches.items():
            present = self.rows_under(f"/{folder}/")
            partial += present not in ((0, complete) if unknowable_commit else (0,))
        self.scenario.partial = partial
        self.scenario.check_nothing_lost(db, self.acked)
        assert not partial, f"{self.fault}: {partial} failed multi-row write(s) left rows behind"

    def rows_under(self, folder: str) -> int:
        """Rows (objects and folders) at or below ``folder``, counted without kydb."""
        table = self.db.store.table
        low, high = range_of(self.db.base_path + folder)
        with self.raw.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.path >= low, table.c.path < high)
            ).scalar_one()
        return int(count)


def top_folder(key: str) -> str:
    """``b`` for ``/b/d0/o000``."""
    return key.split("/")[1]


def rows_added(values: dict[str, Any]) -> int:
    """The rows a write of ``values`` adds: objects, and every folder above them."""
    folders = {folder for key in values for folder in ancestors(key)}
    return len(values) + len(folders)


@contextmanager
def on_statement(engine: sa.Engine, event: str, verb: str, action: Callable[[], None]) -> Iterator[None]:
    """Run ``action`` once, at the first ``verb`` statement's ``event`` (``before_cursor_execute``/``after_...``).

    Fails the test if no such statement ran (the fault was never injected).
    """
    ran: list[bool] = []

    def listener(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if not ran and statement.lstrip().upper().startswith(verb):
            ran.append(True)
            action()

    sa.event.listen(engine, event, listener)
    try:
        yield
    finally:
        sa.event.remove(engine, event, listener)
    assert ran, f"no {verb} statement ran: the fault was never injected"


# ---------------------------------------------------------------------------- PostgreSQL and MariaDB through a proxy


@pytest.fixture
def proxy(server_database: Database) -> Iterator[TCPProxy]:
    """A loopback proxy to the database's server."""
    url = sa.make_url(server_database.root)
    with TCPProxy(url.host or "127.0.0.1", url.port or (5432 if server_database.kind == "postgresql" else 3306)) as p:
        yield p


@pytest.fixture
def trial(
    server_database: Database, proxy: TCPProxy, fault_scenario: Callable[[str, str], FaultScenario]
) -> Iterator[Callable[[str], Trial]]:
    """``trial(fault)``: a :class:`Trial` under a fresh base path, kydb connected through the proxy.

    Timeouts are short (``connect_timeout=1``, ``read_timeout=2``), so
    stalls end in seconds.
    """
    made: list[Trial] = []
    raw = server_database.engine()

    def make(fault: str) -> Trial:
        url = server_database.url(
            base=f"/{unique_name('t')}",
            root=server_database.via(proxy.port),
            connect_timeout="1",
            read_timeout=str(READ_TIMEOUT),
        )
        made.append(Trial(kydb.connect(url), raw, fault_scenario(NAMES[server_database.kind], fault)))
        return made[-1]

    yield make
    proxy.heal()
    for t in made:
        t.db.rm_tree("/")
        t.db.close()
    raw.dispose()


def test_idle_connections_cut_are_replaced_invisibly(trial: Callable[[str], Trial], proxy: TCPProxy) -> None:
    t = trial("idle connections cut before each operation")
    t.acknowledge({"/a/one": 1, "/a/two": {"v": 2}})
    proxy.cut()
    before = proxy.connections
    t.put(batch("/b"), None)
    assert proxy.connections == before + 1, "the put ran again on a new connection"
    for what, call, expected in [
        ("read /a/one", lambda: t.db.read("/a/one", reload=True), 1),
        ("get of a missing key", lambda: t.db.get("/a/none", "default"), "default"),
        ("ls /a", lambda: t.db.ls("/a"), ["one", "two"]),
        ("exists /a/two", lambda: t.db.exists("/a/two"), True),
    ]:
        proxy.cut()
        before = proxy.connections
        assert t.attempt(what, call, None) == expected
        assert proxy.connections == before + 1, f"{what} ran again on a new connection"
    t.verify()


def test_the_server_ending_an_idle_connection_is_invisible(
    trial: Callable[[str], Trial], server_database: Database
) -> None:
    t = trial("server ends the idle connection (pg_terminate_backend/KILL)")
    t.acknowledge({"/a/one": 1})
    postgresql = server_database.kind == "postgresql"
    engine = t.db.store.engine
    server_id = sa.text("SELECT pg_backend_pid()" if postgresql else "SELECT CONNECTION_ID()")
    assert engine.pool.checkedin() == 1  # kydb's one idle connection, lent next
    with engine.connect() as conn:
        idle = conn.connection.dbapi_connection
        killed = conn.execute(server_id).scalar()
    with t.raw.connect() as conn:
        conn.execute(sa.text(f"SELECT pg_terminate_backend({killed})" if postgresql else f"KILL {killed}"))
    lent: list[Any] = []  # the DBAPI connection each checkout lends
    opened: list[Any] = []  # the DBAPI connections opened
    sa.event.listen(engine, "checkout", lambda dbapi, record, proxy: lent.append(dbapi))
    sa.event.listen(engine, "connect", lambda dbapi, record: opened.append(dbapi))
    t.read("/a/one", None)  # the first operation after the kill: it succeeds...
    # ...having met the killed connection first, then run again on a new one
    assert lent[0] is idle, "the operation was not lent the connection the server ended"
    assert len(opened) == 1 and lent[1:] == opened, f"lent {len(lent)}, opened {len(opened)}"
    with engine.connect() as conn:
        assert conn.connection.dbapi_connection is opened[0] and conn.execute(server_id).scalar() != killed
    t.survey(None)
    t.verify()


@contextmanager
def applied_then_cut(engine: sa.Engine, verb: str, proxy: TCPProxy) -> Iterator[list[str]]:
    """The first ``verb`` statement reaches the server and is applied, then the connection is cut before its answer.

    The statement runs on the driver's cursor directly, then the proxy cuts
    every connection: the statement kydb then sends fails as if the
    answer to an applied statement had been lost.  Yields the statements
    so treated (fails the test if none was).
    """
    done: list[str] = []

    def listener(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if not done and statement.lstrip().upper().startswith(verb):
            done.append(statement)
            cursor.execute(statement, parameters) if parameters else cursor.execute(statement)
            proxy.cut()

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield done
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    assert done, f"no {verb} statement ran: the fault was never injected"


def test_a_conditional_put_whose_commit_answer_was_lost_finds_its_own_version(
    trial: Callable[[str], Trial], proxy: TCPProxy
) -> None:
    t = trial("COMMIT of a conditional put applied, its answer lost")
    t.acknowledge({"/a/one": 1})
    version = t.db.stat("/a/one").version
    with applied_then_cut(t.db.store.engine, "COMMIT", proxy):
        t.attempt("set /a/one if_version", lambda: t.db.set("/a/one", 2, if_version=version), None)
    t.acked["/a/one"] = 2
    assert t.db.read("/a/one", reload=True) == 2 and t.db.stat("/a/one").version != version
    t.verify()


def test_a_conditional_delete_whose_answer_was_lost_is_store_unavailable(
    trial: Callable[[str], Trial], proxy: TCPProxy
) -> None:
    t = trial("conditional DELETE applied, its answer lost")
    t.acknowledge({"/a/one": 1, "/a/two": 2})
    version = t.db.stat("/a/one").version
    with applied_then_cut(t.db.store.engine, "DELETE", proxy):
        t.attempt("delete /a/one if_version", lambda: t.db.delete("/a/one", if_version=version), kydb.StoreUnavailable)
    message = str(t.last_error)
    # Gone, but whether this call or another writer deleted it cannot be known: never a Conflict ("not deleted")
    assert "/a/one" in message and "cannot be told apart" in message, message
    assert not isinstance(t.last_error, kydb.Conflict)
    del t.acked["/a/one"]
    assert not t.db.exists("/a/one")
    t.verify()


def test_a_connection_cut_mid_transaction_once_is_retried_invisibly(
    trial: Callable[[str], Trial], proxy: TCPProxy
) -> None:
    t = trial("connection cut mid-transaction of a 2 MB put, once")
    t.acknowledge({"/a/one": 1})
    t.db.store.engine.dispose()  # the put opens the connection the proxy cuts after its first megabyte
    proxy.cut_after(CUT_AFTER)
    before = proxy.connections
    t.put(batch("/b"), None)
    assert proxy.connections == before + 2, "the cut connection, then the one the put was retried on"
    t.survey(None)
    t.verify()


def test_a_connection_lost_mid_transaction_with_the_server_gone(trial: Callable[[str], Trial], proxy: TCPProxy) -> None:
    t = trial("connection lost mid-transaction, server unreachable")
    t.acknowledge({"/a/one": 1, "/a/two": 2})
    with on_statement(t.db.store.engine, "after_cursor_execute", "INSERT", proxy.refuse):
        t.put(batch("/b"), kydb.StoreUnavailable)  # the rows went in; the COMMIT never reached the server
    t.read("/b/d0/o000", kydb.StoreUnavailable, reload=False)  # not served from the cache
    t.put({"/a/two": "new"}, kydb.StoreUnavailable)
    t.read("/a/two", kydb.StoreUnavailable, reload=False)  # the failed write dropped the cached old value
    t.survey(kydb.StoreUnavailable)
    proxy.heal()
    t.survey(None)
    t.verify()


def test_a_connection_cut_mid_read_once_is_retried_invisibly(trial: Callable[[str], Trial], proxy: TCPProxy) -> None:
    t = trial("connection cut mid-read of a 4 MB value, once")
    t.acknowledge({"/a/big": BIG_VALUE, "/a/small": 1})
    t.db.store.engine.dispose()
    proxy.cut_after(CUT_AFTER)
    before = proxy.connections
    t.read("/a/big", None)
    assert proxy.connections == before + 2, "the cut connection, then the one the read was retried on"
    t.verify()


def test_a_connection_cut_mid_read_with_the_server_gone(trial: Callable[[str], Trial], proxy: TCPProxy) -> None:
    t = trial("connection cut mid-read of a 4 MB value, server unreachable")
    t.acknowledge({"/a/big": BIG_VALUE, "/a/small": 1})
    t.db.store.engine.dispose()
    proxy.cut_after(CUT_AFTER)
    engine = t.db.store.engine

    def gone(context: Any) -> None:
        proxy.refuse()

    sa.event.listen(engine, "handle_error", gone)  # the cut is the last the client hears of the server
    t.read("/a/big", kydb.StoreUnavailable)
    sa.event.remove(engine, "handle_error", gone)
    t.read("/a/big", None, reload=False)  # the cache still serves what the store acknowledged
    t.survey(kydb.StoreUnavailable)
    proxy.heal()
    t.read("/a/big", None)
    t.verify()


def test_an_unreachable_server_is_store_unavailable_naming_host_and_database(
    trial: Callable[[str], Trial], proxy: TCPProxy, server_database: Database
) -> None:
    t = trial("server unreachable (connections refused)")
    t.acknowledge({"/a/one": 1, "/a/two": 2})
    proxy.refuse()
    t.put(batch("/b", count=10), kydb.StoreUnavailable)
    t.put({"/c/one": 1}, kydb.StoreUnavailable)
    t.survey(kydb.StoreUnavailable)
    t.attempt("delete /a/two", lambda: t.db.delete("/a/two"), kydb.StoreUnavailable)
    t.attempt("rm_tree /a", lambda: t.db.rm_tree("/a"), kydb.StoreUnavailable)
    message = str(t.last_error)
    assert f"127.0.0.1:{proxy.port}" in message and repr(sa.make_url(server_database.root).database) in message
    assert t.db["/a/one"] == 1  # what the cache holds was written: it is still served
    proxy.heal()
    t.survey(None)
    t.verify()


def test_a_stall_longer_than_read_timeout_is_store_unavailable(trial: Callable[[str], Trial], proxy: TCPProxy) -> None:
    t = trial(f"server stalls, longer than read_timeout={READ_TIMEOUT}")
    t.acknowledge({"/a/one": 1})
    engine = t.db.store.engine
    # mid-transaction: the rows went in, then nothing comes back for the COMMIT
    with on_statement(engine, "after_cursor_execute", "INSERT", proxy.stall):
        t.put(batch("/b"), kydb.StoreUnavailable)
    assert f"did not answer within {READ_TIMEOUT} s" in str(t.last_error) and "?read_timeout=" in str(t.last_error)
    proxy.heal()
    t.read("/a/one", None)
    # mid-read, on a connection from the pool; then new connections stall too (connect_timeout)
    with on_statement(engine, "before_cursor_execute", "SELECT", proxy.stall):
        t.read("/a/one", kydb.StoreUnavailable)
    assert f"did not answer within {READ_TIMEOUT} s" in str(t.last_error)
    t.attempt("get of a missing key", lambda: t.db.get("/never/written"), kydb.StoreUnavailable)
    t.attempt("ls /", lambda: t.db.ls("/"), kydb.StoreUnavailable)
    proxy.heal()
    # The proxy now delivers the COMMIT it held: the server commits what the client gave up on (as a
    # network that recovers may).  Wait for it, so the checks below see one state.
    complete = t.failed_batches["b"]
    deadline = time.monotonic() + 30
    while t.rows_under("/b/") != complete:
        assert time.monotonic() < deadline, f"the held COMMIT never arrived: {t.rows_under('/b/')} of {complete} rows"
        time.sleep(0.05)
    t.survey(None)
    t.verify(unknowable_commit=True)


def test_a_stall_shorter_than_read_timeout_is_only_slow(trial: Callable[[str], Trial], proxy: TCPProxy) -> None:
    t = trial(f"server stalls for 0.5 s, within read_timeout={READ_TIMEOUT}")
    t.acknowledge({"/a/one": 1})

    def stall_briefly() -> None:
        proxy.stall()
        threading.Timer(0.5, proxy.heal).start()

    with on_statement(t.db.store.engine, "after_cursor_execute", "INSERT", stall_briefly):
        t.put(batch("/b"), None)
    with on_statement(t.db.store.engine, "before_cursor_execute", "SELECT", stall_briefly):
        t.read("/a/one", None)
    t.verify()


# ---------------------------------------------------------------------------- a row lock held by another transaction


def test_mariadb_lock_wait_timeout_is_not_retried(
    mariadb_database: Database, fault_scenario: Callable[[str, str], FaultScenario]
) -> None:
    """A row lock held past ``innodb_lock_wait_timeout`` (1205): one wait, then StoreUnavailable, never four waits."""
    url = mariadb_database.url(base=f"/{unique_name('t')}", init_command="SET SESSION innodb_lock_wait_timeout = 1")
    raw = mariadb_database.engine()
    fault = "another transaction holds a row lock > innodb_lock_wait_timeout (1 s)"
    t = Trial(kydb.connect(url), raw, fault_scenario(NAMES["mariadb"], fault))
    inserts: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.startswith("INSERT"):
            inserts.append(statement)

    try:
        t.acknowledge({"/a/one": 1, "/a/two": 2})
        table = t.db.store.table
        with raw.connect() as holder:
            holder.exec_driver_sql("BEGIN")
            try:
                locked = sa.select(table.c.path).where(table.c.path == t.db.base_path + "/a/one").with_for_update()
                assert holder.execute(locked).all()
                sa.event.listen(t.db.store.engine, "before_cursor_execute", count)
                start = time.monotonic()
                t.put({"/a/one": "new"}, kydb.StoreUnavailable)
                waited = time.monotonic() - start
                sa.event.remove(t.db.store.engine, "before_cursor_execute", count)
                assert "Lock wait timeout" in str(t.last_error)
                assert len(inserts) == 1 and waited < 3, f"{len(inserts)} tries in {waited:.1f} s"
                t.attempt("delete /a/one", lambda: t.db.delete("/a/one"), kydb.StoreUnavailable)
                t.survey(None)  # reads take no row locks
            finally:
                holder.exec_driver_sql("ROLLBACK")  # the pool does not roll back a returned connection
        t.put({"/a/one": "after"}, None)
        t.verify()
    finally:
        t.db.rm_tree("/")
        t.db.close()
        raw.dispose()


# ---------------------------------------------------------------------------- a server restart (a private server)


@pytest.fixture(params=["postgresql", "mariadb"])
def restartable(
    request: pytest.FixtureRequest, skip_or_fail_missing_service: Callable[[str, str], None]
) -> Iterator[PrivateServer]:
    """A private server the test may crash and start again."""
    try:
        server = PrivateServer(request.param)
    except ServerUnavailable as exc:
        skip_or_fail_missing_service(f"a private {NAMES[request.param]} server", str(exc))
        raise
    try:
        yield server
    finally:
        server.close()


def test_a_server_crash_and_restart(
    restartable: PrivateServer, fault_scenario: Callable[[str, str], FaultScenario]
) -> None:
    server = restartable
    url = f"{server.url}?table=kydb&base=/{unique_name('t')}&connect_timeout=1&read_timeout={READ_TIMEOUT}"
    raw = sa.create_engine(server.url, poolclass=sa.pool.NullPool)
    fault = "server crashes mid-transaction, restarts; again idle"
    t = Trial(kydb.connect(url), raw, fault_scenario(NAMES[server.kind], fault))
    t.acknowledge({"/a/one": 1, "/a/two": {"two": 2}})
    with on_statement(t.db.store.engine, "after_cursor_execute", "INSERT", server.crash):
        t.put(batch("/b"), kydb.StoreUnavailable)
    t.put({"/a/two": "new"}, kydb.StoreUnavailable)
    t.survey(kydb.StoreUnavailable)
    server.start()
    t.survey(None)
    t.put(batch("/c"), None)
    server.crash()  # between operations: the pool's connection dies with the server
    server.start()
    t.survey(None)
    t.verify()
    t.db.close()
    raw.dispose()


# ---------------------------------------------------------------------------- SQLite


@contextmanager
def write_lock_held(path: str) -> Iterator[Callable[[], None]]:
    """Another process holds ``path``'s write lock (``BEGIN IMMEDIATE``); yields a function that releases it."""
    holder = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "conn.execute('ROLLBACK')\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdin is not None
    assert process.stdout.readline().strip() == "locked"
    release = process.stdin.close
    try:
        yield release
    finally:
        release()
        process.wait(timeout=60)


@pytest.fixture
def sqlite_trial(
    sqlite_database: Database, fault_scenario: Callable[[str, str], FaultScenario]
) -> Iterator[Callable[[str, float], Trial]]:
    """``sqlite_trial(fault, busy_timeout)``: a :class:`Trial` on the session's SQLite file, under a fresh base path."""
    made: list[Trial] = []
    raw = sqlite_database.engine()

    def make(fault: str, busy_timeout: float) -> Trial:
        url = sqlite_database.url(base=f"/{unique_name('t')}", timeout=str(busy_timeout))
        made.append(Trial(kydb.connect(url), raw, fault_scenario(NAMES["sqlite"], fault)))
        return made[-1]

    yield make
    for t in made:
        t.db.rm_tree("/")
        t.db.close()
    raw.dispose()


def sqlite_file(t: Trial) -> str:
    file = t.db.store.target.file
    assert file
    return str(file)


def test_sqlite_locked_longer_than_the_busy_timeout(sqlite_trial: Callable[[str, float], Trial]) -> None:
    t = sqlite_trial("another process holds the write lock > busy timeout (0.5 s)", 0.5)
    t.acknowledge({"/a/one": 1, "/a/two": 2})
    with write_lock_held(sqlite_file(t)):
        t.put(batch("/b", count=20), kydb.StoreUnavailable)
        assert f"SQLite file {sqlite_file(t)}" in str(t.last_error) and "?timeout=" in str(t.last_error)
        t.put({"/a/two": "new"}, kydb.StoreUnavailable)
        t.attempt("delete /a/one", lambda: t.db.delete("/a/one"), kydb.StoreUnavailable)
        t.attempt("mkdir /m", lambda: t.db.mkdir("/m"), kydb.StoreUnavailable)
        t.survey(None)  # WAL: readers do not wait for a writer
    t.put(batch("/c", count=20), None)
    t.verify()


def test_sqlite_locked_shorter_than_the_busy_timeout(sqlite_trial: Callable[[str, float], Trial]) -> None:
    t = sqlite_trial("another process holds the write lock 0.5 s < busy timeout", 10)
    t.acknowledge({"/a/one": 1})
    with write_lock_held(sqlite_file(t)) as release:
        threading.Timer(0.5, release).start()
        t.put(batch("/b", count=20), None)  # waits for the lock, then writes
    t.verify()


def test_sqlite_writer_killed_mid_transaction(sqlite_trial: Callable[[str, float], Trial]) -> None:
    t = sqlite_trial("a writing process killed mid-transaction", 10)
    t.acknowledge({"/a/one": 1, "/a/two": [2]})
    writer = (
        "import os, signal, sys, kydb, sqlalchemy as sa\n"
        "db = kydb.connect(sys.argv[1])\n"
        "def die(conn, cursor, statement, *rest):\n"
        "    if statement.startswith('INSERT'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)  # the rows are in, the COMMIT never comes\n"
        "sa.event.listen(db.store.engine, 'after_cursor_execute', die)\n"
        "db.set_many({f'/b/d{i % 4}/o{i:03d}': i for i in range(100)})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", writer, t.db.url], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    t.scenario.outcomes["writer killed"] += 1
    t.failed_batches["b"] = rows_added({f"/b/d{i % 4}/o{i:03d}": i for i in range(100)})
    t.survey(None)
    t.put(batch("/c", count=20), None)  # the dead writer's lock is gone
    t.verify()
