"""One engine, and one bounded pool of connections, per database per process.

Stores on one database with the same settings share an engine whatever
their base path or table; the server sees at most ``?pool_size=``
connections from a process, however many stores it opens; closing the last
store closes them; an operation that finds every connection in use waits
``?pool_timeout=`` and then raises :class:`kydb.StoreUnavailable` saying so.
Connections are counted by the server itself: PostgreSQL's
``pg_stat_activity`` by an ``application_name`` no one else uses, MariaDB's
process list by a user made for the test.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

import kydb
from kydb.testing import unique_name
from kydb_sql.engines import POOL_SIZE, POOL_TIMEOUT

from .conftest import Database, table_name


class Probe:
    """A way into the server that only the test's stores use, and the server's count of their connections."""

    def __init__(self, database: Database, root: str, count: Callable[[], int], **options: str) -> None:
        self.database = database
        self.root = root
        self.options = options
        self._count = count

    def url(self, **options: str) -> str:
        """A kydb URL through the probe (``table=`` defaults to the session's table)."""
        return self.database.url(root=self.root, **self.options, **options)

    def connections(self) -> int:
        return self._count()

    def settle(self, expected: int, seconds: float = 10) -> int:
        """The count once it is ``expected`` (the server ends a closed connection's session a moment later)."""
        deadline = time.monotonic() + seconds
        while (found := self._count()) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return found


@pytest.fixture
def probe(server_database: Database) -> Iterator[Probe]:
    raw = server_database.engine()

    def count(query: str, **params: str) -> Callable[[], int]:
        def counted() -> int:
            with raw.connect() as conn:
                return int(conn.execute(sa.text(query), params).scalar_one())

        return counted

    if server_database.kind == "postgresql":
        name = f"kydb-probe-{uuid.uuid4().hex[:12]}"
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
        yield Probe(server_database, server_database.root, count(query, name=name), application_name=name)
    else:
        user = f"kydb_probe_{uuid.uuid4().hex[:12]}"
        database = sa.make_url(server_database.root).database
        with raw.connect() as conn:
            conn.execute(sa.text(f"CREATE USER '{user}'@'127.0.0.1'"))
            conn.execute(sa.text(f"GRANT ALL ON `{database}`.* TO '{user}'@'127.0.0.1'"))
        root = sa.make_url(server_database.root).set(username=user, password=None, host="127.0.0.1")
        query = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = :user"
        try:
            yield Probe(server_database, root.render_as_string(hide_password=False), count(query, user=user))
        finally:
            with raw.connect() as conn:
                conn.execute(sa.text(f"DROP USER '{user}'@'127.0.0.1'"))
    raw.dispose()


def test_a_thousand_base_paths_and_fifty_tables_hold_at_most_the_pools_connections(probe: Probe) -> None:
    tables = [table_name() for _ in range(50)]
    urls = [probe.url(base=f"/b{i}") for i in range(1000)] + [probe.url(table=table) for table in tables]
    dbs = [kydb.connect(url) for url in urls]
    assert len({id(db) for db in dbs}) == len(urls)  # 1,050 stores...
    assert len({id(db.store.engine) for db in dbs}) == 1  # ...on one engine

    def use(i: int) -> tuple[Any, int]:
        db = dbs[i]
        db[f"/k{i}"] = i
        return db.read(f"/k{i}", reload=True), db.store.engine.pool.checkedout()

    with ThreadPoolExecutor(8) as threads:  # more threads than connections: some wait for one
        results = list(threads.map(use, range(len(dbs))))
    assert [value for value, _ in results] == list(range(len(dbs)))  # every operation succeeded
    assert max(out for _, out in results) <= POOL_SIZE
    held = probe.connections()
    assert 1 <= held <= POOL_SIZE, f"{held} server connections for {len(dbs)} stores"
    for db in dbs:
        db.rm_tree("/")
        db.close()
    assert probe.settle(0) == 0, "closing every store left connections open"


def test_stores_share_an_engine_by_database_and_settings_only(
    database: Database, connect: Callable[[str], Any]
) -> None:
    plain = connect(database.url(base="/zero"))
    assert (plain.store.engine.pool.size(), plain.store.engine.pool.timeout()) == (POOL_SIZE, POOL_TIMEOUT)
    assert plain.store.engine.pool._max_overflow == 0  # never more than pool_size
    # Settings no other test uses: an engine only these stores hold.
    first = connect(database.url(base="/one", pool_timeout="29"))
    same = [
        connect(database.url(base="/two", pool_timeout="29")),
        connect(database.url(table=table_name(), base="/three", pool_timeout="29")),
    ]
    assert all(db.store.engine is first.store.engine for db in same)
    assert first.store.engine is not plain.store.engine
    other = connect(database.url(base="/four", pool_size="2", pool_timeout="29"))
    assert other.store.engine is not first.store.engine
    assert (other.store.engine.pool.size(), other.store.engine.pool.timeout()) == (2, 29)
    engine = first.store.engine
    closed: list[Any] = []
    sa.event.listen(engine, "close", lambda dbapi, record: closed.append(dbapi))
    for db in (first, *same):
        db["/k"] = 1
    first.close()  # the others still hold the engine
    assert all(db.read("/k", reload=True) == 1 for db in same)
    assert (engine.pool.checkedin(), closed) == (1, [])
    for db in same:
        db.close()
    assert len(closed) == 1  # the last one closed the pool's connection
    reopened = connect(database.url(base="/two", pool_timeout="29"))
    assert reopened.read("/k", reload=True) == 1  # a new engine, made on first use
    assert reopened.store.engine is not engine


def test_a_table_is_checked_once_per_engine(database: Database, connect: Callable[[str], Any]) -> None:
    """The check on first use (layout, names) is the engine's: the 2nd base path's first put is just a put."""
    table = table_name()
    first = connect(database.url(table=table, base="/one"))
    seen: list[str] = []
    sa.event.listen(first.store.engine, "before_cursor_execute", lambda *args: seen.append(args[2].split()[0]))
    first["/k/v"] = 1
    assert len(seen) > 3  # created the table and checked its names
    seen.clear()
    second = connect(database.url(table=table, base="/two"))
    second["/k/v"] = 2
    assert seen == ["BEGIN", "INSERT", "COMMIT"]
    assert second.read("/k/v", reload=True) == 2 and first.read("/k/v", reload=True) == 1


def test_a_db_used_after_its_last_close_opens_its_pool_again(server_database: Database, probe: Probe) -> None:
    db = kydb.connect(probe.url(base=f"/{unique_name('t')}"))
    db["/k"] = 1
    db.close()
    assert probe.settle(0) == 0
    assert db.read("/k", reload=True) == 1  # opens its connections again
    assert probe.connections() == 1
    db.rm_tree("/")
    db.close()
    assert probe.settle(0) == 0


def slow_statement(database: Database) -> Callable[[Any], None]:
    """What makes an operation hold its connection for two seconds: a statement the server takes that long for."""
    if database.kind == "postgresql":
        return lambda cursor: cursor.execute("SELECT pg_sleep(2)")
    if database.kind == "mariadb":
        return lambda cursor: cursor.execute("SELECT SLEEP(2)")
    return lambda cursor: time.sleep(2)


def test_an_exhausted_pool_is_store_unavailable_after_pool_timeout(
    database: Database, connect: Callable[[str], Any]
) -> None:
    db = connect(database.url(base=f"/{unique_name('t')}", pool_size="1", pool_timeout="0.5"))
    db["/k"] = 1
    sleep = slow_statement(database)
    holding, done = threading.Event(), threading.Event()

    def slow(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if threading.current_thread().name == "slow" and not holding.is_set():
            holding.set()
            sleep(cursor)

    def hold() -> None:
        try:
            assert db.read("/k", reload=True) == 1
        finally:
            done.set()

    sa.event.listen(db.store.engine, "before_cursor_execute", slow)
    holder = threading.Thread(target=hold, name="slow")
    try:
        holder.start()
        assert holding.wait(10)
        start = time.monotonic()
        with pytest.raises(kydb.StoreUnavailable) as info:
            db.read("/k", reload=True)
        waited = time.monotonic() - start
        assert not done.is_set(), "the pool's one connection came free: nothing was exhausted"
    finally:
        holder.join()
        sa.event.remove(db.store.engine, "before_cursor_execute", slow)
    message = str(info.value)
    assert "pool" in message and "exhausted" in message and "?pool_size= (now 1)" in message, message
    assert db.url in message and waited >= 0.5
    assert db.read("/k", reload=True) == 1  # once the connection is back, all is well


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("pool_size=0", r"\?pool_size= takes a positive whole number"),
        ("pool_size=many", r"\?pool_size= takes a positive whole number"),
        ("pool_timeout=-1", r"\?pool_timeout= takes a positive number of seconds"),
    ],
)
def test_bad_pool_options_are_value_errors(options: str, message: str) -> None:
    for root in ("postgresql://u:Secr3t@127.0.0.1/db", "sqlite:///pool.db"):
        with pytest.raises(ValueError, match=message) as info:
            kydb.connect(f"{root}?{options}")
        assert "Secr3t" not in str(info.value)


def test_in_memory_sqlite_takes_no_pool_options() -> None:
    with pytest.raises(ValueError, match="in-memory SQLite database has one connection"):
        kydb.connect("sqlite://?pool_size=3")
