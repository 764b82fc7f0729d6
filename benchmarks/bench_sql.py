"""kydb-sql side by side with bare SQLAlchemy Core, and against the size of its table.

    python -m nox -s bench-sql

On SQLite (a file in a temporary folder), PostgreSQL
(``$KYDB_TEST_POSTGRESQL_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``)
and MariaDB (``$KYDB_TEST_MYSQL_URL``, default ``mysql+pymysql://root@127.0.0.1:3306/test``):

* put and cold get — ``db[key] = blob`` and ``db.read(key, reload=True)``
  next to a bare Core ``INSERT`` (in ``engine.begin()``) and ``SELECT`` of the
  same blob in a table of the same shape (same columns, types and index), on
  a default engine;
* round trips per put and per cold get on the servers, kydb next to bare
  Core, counted on the wire by a loopback proxy (a round trip: the client
  sends after the server did);
* ``ls`` of a 10-entry folder with 1,000 and with 100,000 other rows in the
  table (target: within 1.5x — the listing does not depend on the table's size);
* ``rm_tree`` of 100 and of 10,000 rows: SQL statements issued (target: the
  same number, O(1)) and time;
* ``recent(folder, limit=10)`` on a folder of 100 and of 100,000 objects:
  statements issued (target: one indexed query) and time (target: within 2x);
* ``kydb.connect`` and the first put on a new base path of a server: in a new
  process (its modules imported, its table there), for the first base path,
  then for the 2nd to the 1,000th while the first stays open (each closed
  after its put) — the mean of the last 100 next to the first, best of
  three processes.  Stores on one server share its engine and pool, so the
  Nth opens no connection.

Each timing is the best of 5 rounds' mean.  Prints ratios; asserts nothing.
Every table it creates is dropped at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

import kydb
from kydb.testing.faults import TCPProxy
from kydb_sql.engines import create_store_engine
from kydb_sql.layout import make_table

POSTGRESQL_URL = os.environ.get("KYDB_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("KYDB_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
BLOB = os.urandom(10 * 1024)
ROUNDS = 5


def best_mean(operation: Callable[[int], object], count: int) -> float:
    """Seconds per call of ``operation(i)``: the best of ``ROUNDS`` rounds of ``count`` calls."""
    best = float("inf")
    offset = 0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for i in range(offset, offset + count):
            operation(i)
        best = min(best, (time.perf_counter() - start) / count)
        offset += count
    return best


@contextmanager
def recorded(engine: sa.Engine) -> Iterator[list[str]]:
    """The SQL statements ``engine`` issues inside the block."""
    issued: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        issued.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield issued
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def fill(db: Any, folder: str, count: int) -> None:
    for start in range(0, count, 5000):
        db.set_many({f"{folder}/f{i % 100}/o{i}": i for i in range(start, min(count, start + 5000))})


class BareCore:
    """The same put and get with bare SQLAlchemy Core: a default engine, a table of kydb's shape."""

    def __init__(self, url: sa.URL, table: str) -> None:
        self.engine = sa.create_engine(url)  # a default engine, as a bare Core user would make
        self.table = make_table(table, url.get_backend_name())
        self.table.create(self.engine)
        self.select = sa.select(self.table.c.data).where(self.table.c.path == sa.bindparam("path"))

    def put(self, i: int) -> None:
        with self.engine.begin() as conn:
            now = time.time_ns()
            row = {"path": f"/bench/k{i}", "parent": "/bench/", "name": f"k{i}", "kind": "o", "data": BLOB}
            conn.execute(self.table.insert(), {**row, "mtime": now, "ctime": now})

    def get(self, i: int) -> bytes:
        with self.engine.connect() as conn:
            return conn.execute(self.select, {"path": f"/bench/k{i}"}).scalar_one()  # type: ignore[no-any-return]


class Bench:
    def __init__(self, label: str, root: str, count: int) -> None:
        self.label = label
        self.root = root
        self.count = count  # calls per round for put/get
        self.tables: list[str] = []
        self.engine = create_store_engine(kydb.url.parse_store_url(root, path_is_base=False)).engine

    def url(self, tag: str, root: str | None = None) -> str:
        """A kydb URL to a new table on this database (reached at ``root`` if given)."""
        name = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
        self.tables.append(name)
        return f"{root or self.root}?table={name}"

    def sides(self, url: sa.URL) -> tuple[Any, BareCore]:
        """kydb and bare Core on this database reached at ``url``, each in a new table, one object written."""
        db: Any = kydb.connect(self.url("kydb", root=url.render_as_string(hide_password=False)))
        db["/bench/warm"] = BLOB
        bare = BareCore(url, f"bench_bare_{uuid.uuid4().hex[:8]}")
        self.tables.append(bare.table.name)
        return db, bare

    def put_and_get(self) -> list[tuple[str, float, float]]:
        db, bare = self.sides(self.engine.url)
        put = (best_mean(lambda i: db.set(f"/bench/k{i}", BLOB), self.count), best_mean(bare.put, self.count))
        get = (best_mean(lambda i: db.read(f"/bench/k{i}", reload=True), self.count), best_mean(bare.get, self.count))
        bare.engine.dispose()
        db.close()
        return [("put 10 kB", *put), ("cold get 10 kB", *get)]

    def round_trips(self) -> list[float]:
        """Round trips per put and per cold get of a 10 kB blob, kydb then bare Core, once each pool is warm."""
        url = self.engine.url
        counter = TCPProxy(url.host or "127.0.0.1", url.port or (5432 if self.label == "PostgreSQL" else 3306))
        db, bare = self.sides(url.set(host="127.0.0.1", port=counter.port))
        bare.put(-1)
        trips = []
        for operation in (
            lambda i: db.set(f"/bench/k{i}", BLOB),
            bare.put,
            lambda i: db.read(f"/bench/k{i}", reload=True),
            bare.get,
        ):
            before = counter.round_trips
            for i in range(100):
                operation(i)
            trips.append((counter.round_trips - before) / 100)
        bare.engine.dispose()
        db.close()
        counter.close()
        return trips

    def ls_by_table_size(self) -> tuple[float, float]:
        times = []
        for others in (1_000, 100_000):
            db: Any = kydb.connect(self.url("ls"))
            fill(db, "/bulk", others)
            db.set_many({f"/target/o{i}": i for i in range(10)})
            assert db.ls("/target") == sorted(f"o{i}" for i in range(10))
            times.append(best_mean(lambda _, db=db: db.ls("/target"), 200))
            db.close()
        return times[0], times[1]

    def rm_tree(self) -> list[tuple[int, int, float]]:
        db: Any = kydb.connect(self.url("rm"))
        results = []
        for size in (100, 10_000):
            fill(db, f"/tree{size}", size)
            with recorded(db.store.engine) as issued:
                start = time.perf_counter()
                db.rm_tree(f"/tree{size}")
                elapsed = time.perf_counter() - start
            assert not db.is_dir(f"/tree{size}")
            results.append((size, len(issued), elapsed))
        db.close()
        return results

    def recent_by_folder_size(self) -> list[tuple[int, int, float]]:
        results = []
        for size in (100, 100_000):
            db: Any = kydb.connect(self.url("recent"))
            for start in range(0, size, 5000):
                db.set_many({f"/reports/r{i:06d}": i for i in range(start, min(size, start + 5000))})
            db["/reports/newest"] = "last"
            with recorded(db.store.engine) as issued:
                assert db.recent("/reports", limit=10)[0] == "newest"
            elapsed = best_mean(lambda _, db=db: db.recent("/reports", limit=10), 200)
            results.append((size, len(issued), elapsed))
            db.close()
        return results

    def first_use(self) -> tuple[float, float]:
        """Seconds for connect + first put on the first base path of a new process, and on the Nth (mean)."""
        table = self.url("first")
        db: Any = kydb.connect(table)
        db["/warm"] = 0  # the table exists: its creation is not measured
        db.close()
        runs = []
        for _ in range(3):  # the best of three new processes
            result = subprocess.run(
                [sys.executable, __file__, "--first-use", table], capture_output=True, text=True, check=True
            )
            runs.append(json.loads(result.stdout))
        return min(first for first, _ in runs), min(nth for _, nth in runs)

    def drop_tables(self) -> None:
        with self.engine.begin() as conn:
            for name in self.tables:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}_idx"))
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
        self.engine.dispose()


def reachable(root: str) -> str | None:
    engine = create_store_engine(kydb.url.parse_store_url(root, path_is_base=False)).engine
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        return str(exc.orig).strip().splitlines()[0]
    finally:
        engine.dispose()
    return None


def micro(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def milli(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def line(operation: str, database: str, *cells: str) -> None:
    print(f"{operation:<16} {database:<11}" + "".join(f" {cell:>11}" for cell in cells))


def first_use(url: str, count: int = 1000) -> None:
    """In a new process: print ``[first, nth]``, seconds of connect + put on base path 1, and on 2..count (last 100)."""
    create_store_engine(kydb.url.parse_store_url(url, path_is_base=False)).engine.dispose()  # the driver's imports
    times = []
    held: list[Any] = []
    for i in range(count):
        start = time.perf_counter()
        db: Any = kydb.connect(f"{url}&base=/first-use-{i}")
        db["/k"] = BLOB
        times.append(time.perf_counter() - start)
        db.rm_tree("/")
        if i == 0:
            held.append(db)  # the server is in use from now on
        else:
            db.close()
    held[0].close()
    print(json.dumps([times[0], sum(times[-100:]) / 100]))


def main() -> None:
    folder = tempfile.mkdtemp(prefix="kydb-bench-")
    targets = [
        ("SQLite", f"sqlite:///{folder}/bench.db", 200),
        ("PostgreSQL", POSTGRESQL_URL, 500),
        ("MariaDB", MYSQL_URL, 500),
    ]
    print(
        f"kydb-sql benchmark — best of {ROUNDS} rounds; SQLite file in {folder}; "
        f"PostgreSQL {POSTGRESQL_URL}; MariaDB {MYSQL_URL}"
    )
    print()
    line("operation", "database", "kydb", "bare Core", "ratio")
    benches = []
    try:
        for label, root, count in targets:
            problem = reachable(root)
            if problem:
                line("-", label, f"skipped: {problem}")
                continue
            bench = Bench(label, root, count)
            benches.append(bench)
            for name, kydb_time, bare_time in bench.put_and_get():
                line(name, label, micro(kydb_time), micro(bare_time), f"{kydb_time / bare_time:.2f}x")
        print()
        line("round trips", "database", "kydb put", "Core put", "kydb get", "Core get")
        for bench in benches:
            if bench.label != "SQLite":
                line("", bench.label, *(f"{trips:g}" for trips in bench.round_trips()))
        print()
        line("ls, 10 entries", "database", "1k rows", "100k rows", "ratio", "(target: <= 1.5x)")
        for bench in benches:
            small, large = bench.ls_by_table_size()
            line("", bench.label, micro(small), micro(large), f"{large / small:.2f}x")
        print()
        line("rm_tree", "database", "rows", "statements", "time", "(target: O(1) statements)")
        for bench in benches:
            for size, statements, elapsed in bench.rm_tree():
                line("", bench.label, f"{size:,}", str(statements), f"{elapsed * 1e3:.1f} ms")
        print()
        line("recent, limit 10", "database", "objects", "statements", "time", "ratio", "(target: 1 query, <= 2x)")
        for bench in benches:
            (_, _, small), *_ = rows = bench.recent_by_folder_size()
            for size, statements, elapsed in rows:
                line("", bench.label, f"{size:,}", str(statements), micro(elapsed), f"{elapsed / small:.2f}x")
        print()
        line("connect+put", "database", "1st base", "1000th base", "ratio", "(connect + first put of a new base path)")
        for bench in benches:
            first, nth = bench.first_use()
            line("", bench.label, milli(first), milli(nth), f"{first / nth:.1f}x")
    finally:
        for bench in benches:
            bench.drop_tables()
    sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--first-use"]:
        first_use(sys.argv[2])
    else:
        main()
