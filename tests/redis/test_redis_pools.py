"""One connection pool per server per process: many base paths, bounded connections, a clear error when exhausted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import kydb
import kydb_redis
from kydb.testing import unique_name

from .conftest import raw_client, remove_tree, with_base


def connections_named(raw: Any, name: str) -> int:
    """The server's connections whose client name is ``name`` (``CLIENT LIST``)."""
    return len([c for c in raw.client_list() if c["name"] == name])


def settled(count: Callable[[], int], expected: int, timeout: float = 5) -> int:
    """``count()`` once it equals ``expected`` (the server drops closed connections a moment later), or at timeout."""
    deadline = time.monotonic() + timeout
    while (found := count()) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def test_a_thousand_base_paths_share_one_pool(redis_url: str, test_root: str) -> None:
    name = unique_name("pool").replace("-", "_")
    raw = raw_client(redis_url)
    folder = f"{test_root}/{unique_name('thousand')}"
    urls = [with_base(redis_url, f"{folder}/b{i:04d}") + f"?client_name={name}" for i in range(1000)]
    dbs: list[Any] = []
    most = [0]
    lock = threading.Lock()

    def use(url: str) -> None:
        db = kydb.connect(url)
        with lock:
            dbs.append(db)
        db["/obj"] = url
        assert db.read("/obj", reload=True) == url
        assert db.ls("/") == ["obj"]
        if len(dbs) % 100 == 0:
            with lock:
                most[0] = max(most[0], connections_named(raw, name))

    try:
        with ThreadPoolExecutor(16) as threads:  # more threads than connections: they wait for one, briefly
            list(threads.map(use, urls))
        assert len({id(db.store.client) for db in dbs}) == 1, "one redis-py client for every base path"
        held = connections_named(raw, name)
        assert 1 <= held <= 10 and most[0] <= 10, f"{held} connections now, {most[0]} at most: the pool has 10"
        assert kydb_redis.POOLS.users(dbs[0].store.options.pool_key()) == 1000
        for db in dbs:
            db.close()
        assert kydb_redis.POOLS.users(dbs[0].store.options.pool_key()) == 0
        assert settled(lambda: connections_named(raw, name), 0) == 0, "closing every DB closes the connections"
        again = kydb.connect(urls[0])  # used again after closing: a new pool, the data still there
        assert again.read("/obj", reload=True) == urls[0]
        again.close()
    finally:
        for db in dbs:
            db.close()
        remove_tree(raw, folder)
        raw.close()


def test_pools_are_per_server_and_settings_never_per_base_path(redis_url: str, test_root: str) -> None:
    a = kydb.connect(with_base(redis_url, f"{test_root}/{unique_name('a')}"))
    b = kydb.connect(with_base(redis_url, f"{test_root}/{unique_name('b')}"))
    other = kydb.connect(with_base(redis_url, f"{test_root}/{unique_name('c')}") + "?pool_size=3&pool_timeout=1")
    try:
        assert a.store.client is b.store.client
        assert other.store.client is not a.store.client
        pool = other.store.client.connection_pool
        assert (pool.max_connections, pool.timeout) == (3, 1.0)
        assert (a.store.client.connection_pool.max_connections, a.store.client.connection_pool.timeout) == (10, 5.0)
    finally:
        for db in (a, b, other):
            db.close()


@pytest.mark.parametrize(("query", "message"), [("pool_size=0", "whole number >= 1"), ("pool_timeout=-1", "seconds")])
def test_bad_pool_options_are_refused(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kydb.connect(f"redis://127.0.0.1/x?{query}")


def test_an_exhausted_pool_waits_then_says_so(redis_url: str, test_root: str) -> None:
    db = kydb.connect(with_base(redis_url, f"{test_root}/{unique_name('exhausted')}") + "?pool_size=1&pool_timeout=0.3")
    try:
        db["/k"] = 1
        pool = db.store.client.connection_pool
        held = pool.get_connection()  # another thread's long command, holding the only connection
        failure: list[BaseException] = []
        waited: list[float] = []

        def read() -> None:
            start = time.monotonic()
            try:
                db.read("/k", reload=True)
            except BaseException as exc:
                failure.append(exc)
            waited.append(time.monotonic() - start)

        reader = threading.Thread(target=read)
        reader.start()
        reader.join(10)
        assert len(failure) == 1 and isinstance(failure[0], kydb.StoreUnavailable), failure
        message = str(failure[0])
        assert "pool is exhausted" in message and "?pool_size=" in message and "(now 1)" in message
        assert isinstance(failure[0].__cause__, kydb_redis.store.PoolExhausted)
        assert 0.3 <= waited[0] < 3
        pool.release(held)
        assert db.read("/k", reload=True) == 1  # the connection is back: reads work again
    finally:
        db.rm_tree("/")
        db.close()
