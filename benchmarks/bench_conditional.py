"""Conditional writes on every backend: what a compare-and-set costs, and how update() fares under contention.

    .venv/bin/nox -s bench-conditional
    .venv/bin/nox -s bench-conditional -- memory redis         # some backends only

Per backend, in one run (ratios printed, nothing asserted):

* a conditional put (``set(key, value, if_version=v)``) next to a plain put
  of the same value: time per call and the ratio, and for the network
  stores the round trips each makes, counted by a TCP proxy in front of the
  server (``kydb.testing.faults.TCPProxy``);
* ``update(key, n + 1)`` on one key from 4 workers at once (processes where
  the store is shared between processes, threads for ``memory://``):
  updates per second, conflicts met per update, and the counter's final
  value next to the number of updates (they must agree).

S3 and DynamoDB run against moto's server, one request at a time
(``kydb_dynamodb.testing.MotoServer``, as the tests do, since moto's
conditional writes are not atomic otherwise): their times are moto's, not
AWS's; the round trips are what carries over.  PostgreSQL, MariaDB and
Redis are the servers at ``KYDB_TEST_POSTGRESQL_URL``, ``KYDB_TEST_MYSQL_URL``
and ``KYDB_TEST_REDIS_URL`` (the defaults the tests use).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import urlsplit

import kydb
from kydb.testing import _child
from kydb.testing.faults import TCPProxy

POSTGRESQL = os.environ.get("KYDB_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL = os.environ.get("KYDB_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REDIS = os.environ.get("KYDB_TEST_REDIS_URL", "redis://127.0.0.1:6379")
BACKENDS = ["memory", "sqlite", "postgresql", "mariadb", "redis", "s3", "dynamodb", "files"]
PUTS = 300
WORKERS, UPDATES = 4, 100
VALUE = {"book": "MYBOOK", "pv": 1.5, "legs": [1, 2, 3]}


def _proxied(url: str, default_port: int) -> tuple[str, TCPProxy]:
    """``url`` with its host and port replaced by a counting proxy's."""
    parts = urlsplit(url)
    proxy = TCPProxy(parts.hostname or "127.0.0.1", parts.port or default_port)
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}" if parts.port else f"{parts.hostname}",
                                  f"127.0.0.1:{proxy.port}")  # fmt: skip
    return parts._replace(netloc=netloc).geturl(), proxy


@contextmanager
def _store(backend: str, tmp: str) -> Iterator[tuple[str, TCPProxy | None]]:
    """A URL to a fresh namespace on ``backend``, and the proxy counting its round trips (None: in-process)."""
    name = f"bench-cond-{uuid.uuid4().hex[:8]}"
    if backend == "memory":
        yield f"memory://{name}", None
    elif backend == "files":
        yield f"file://{tmp}/{name}", None
    elif backend == "sqlite":
        yield f"sqlite:///{tmp}/{name}.db", None
    elif backend in ("postgresql", "mariadb"):
        database = POSTGRESQL if backend == "postgresql" else MYSQL
        url, proxy = _proxied(database, 5432 if backend == "postgresql" else 3306)
        yield f"{url}?table={name.replace('-', '_')}", proxy
        _drop_table(database, name.replace("-", "_"))
        proxy.close()
    elif backend == "redis":
        url, proxy = _proxied(REDIS, 6379)
        yield f"{url.rstrip('/')}/{name}", proxy
        proxy.close()
    else:
        from kydb_dynamodb.testing import MotoServer  # noqa: PLC0415 - only the moto rows need it

        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
        server = MotoServer().start()
        url, proxy = _proxied(server.url, 80)
        if backend == "s3":
            import boto3  # noqa: PLC0415

            boto3.client("s3", endpoint_url=server.url).create_bucket(Bucket=name)
            yield f"s3://{name}/base?endpoint_url={url}", proxy
        else:
            yield f"dynamodb://{name}/base?endpoint_url={url}", proxy
        proxy.close()
        server.stop()


def _drop_table(url: str, table: str) -> None:
    import sqlalchemy as sa  # noqa: PLC0415 - only the SQL rows need it

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name in (f"{table}_idx", table):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    engine.dispose()


def _timed(
    write: Callable[[], object], proxy: TCPProxy | None, prepare: Callable[[], object] = lambda: None
) -> tuple[float, float | None]:
    """Median seconds per ``write()`` and its round trips per call; ``prepare()`` runs before each, untimed."""
    times = []
    trips = 0
    for _ in range(PUTS):
        prepare()
        before = proxy.round_trips if proxy else 0
        started = time.perf_counter()
        write()
        times.append(time.perf_counter() - started)
        trips += (proxy.round_trips - before) if proxy else 0
    return statistics.median(times), (trips / PUTS if proxy else None)


def _contention(db: kydb.BaseDB) -> tuple[float, float, int]:
    """Updates per second and conflicts per update of WORKERS x UPDATES ``update(n + 1)``; the final count."""
    db["/counter"] = 0
    if db.capabilities.shared_between_processes:
        with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
            pool.starmap(_child.count_up, [(db, "/warm-up", 1)] * WORKERS, chunksize=1)  # imports and connections
            db["/counter"] = 0
            started = time.perf_counter()
            conflicts = sum(pool.starmap(_child.count_up, [(db, "/counter", UPDATES)] * WORKERS, chunksize=1))
            elapsed = time.perf_counter() - started
    else:
        started = time.perf_counter()
        with ThreadPoolExecutor(WORKERS) as threads:
            conflicts = sum(threads.map(lambda _: _child.count_up(db, "/counter", UPDATES), range(WORKERS)))
        elapsed = time.perf_counter() - started
    total = WORKERS * UPDATES
    return total / elapsed, conflicts / total, db.read("/counter", reload=True)


def measure(backend: str) -> str:
    with tempfile.TemporaryDirectory() as tmp, _store(backend, tmp) as (url, proxy):
        db = kydb.connect(url)
        if not db.capabilities.conditional_writes:
            return f"{backend:<11} declares no conditional writes"
        db["/k"] = VALUE
        plain, plain_trips = _timed(lambda: db.set("/k", VALUE), proxy)
        version: list[str | None] = [None]

        def read_version() -> None:  # untimed: the version a caller would have from its read
            version[0] = db.stat("/k").version

        cond, cond_trips = _timed(lambda: db.set("/k", VALUE, if_version=version[0]), proxy, read_version)
        rate, conflicts, final = _contention(db)
        db.rm_tree("/")
        db.close()
    trips = "          -     -" if plain_trips is None else f"      {plain_trips:5.1f} {cond_trips:5.1f}"
    return (
        f"{backend:<11} {plain * 1e6:8.0f} µs {cond * 1e6:8.0f} µs {cond / plain:6.2f}x{trips}"
        f" {rate:9.0f}/s {conflicts:9.2f} {final:>6}/{WORKERS * UPDATES}"
    )


def main(backends: list[str]) -> None:
    print(f"{'':<11} {'plain put':>11} {'if_version':>11} {'ratio':>7} {'trips: plain  cond':>18}"
          f" {'updates':>11} {'conflicts':>9} {'counter':>11}")  # fmt: skip
    print(f"{'':<11} {'':>11} {'':>11} {'':>7} {'':>18} {f'({WORKERS} workers)':>11} {'/update':>9}")
    for backend in backends:
        try:
            print(measure(backend))
        except Exception as exc:  # a server that is not there: say so and go on with the others
            print(f"{backend:<11} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:] or BACKENDS)
