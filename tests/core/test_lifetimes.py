"""Lifetimes: every connect is a hold, the last close releases the store's connections; shared pools."""

from __future__ import annotations

import os
import threading

import pytest

import kydb
from kydb import opened
from kydb.pools import SharedPools
from kydb.testing import unique_name
from kydb_memory import MemoryStore


class ClosingStore(MemoryStore):
    """memory:// that counts how often its connections are released."""

    closed = 0

    def kydb_close(self) -> None:
        type(self).closed += 1


@pytest.fixture
def closing() -> str:
    kydb.register_backend("closingmem", ClosingStore)
    ClosingStore.closed = 0
    yield "closingmem"
    kydb.unregister_backend("closingmem")


def test_one_holder_closing_never_closes_the_db_under_another(closing: str) -> None:
    url = f"{closing}://{unique_name('held')}"
    first = kydb.connect(url)
    second = kydb.connect(url)
    assert first is second and opened.holds(url, first.codec) == 2
    first.close()
    assert ClosingStore.closed == 0
    second["/k"] = "still open"
    assert second.read("/k", reload=True) == "still open"
    second.close()
    assert ClosingStore.closed == 1 and opened.holds(url, first.codec) == 0


def test_close_is_idempotent(closing: str) -> None:
    db = kydb.connect(f"{closing}://{unique_name('twice')}")
    db.close()
    db.close()
    db.close()
    assert ClosingStore.closed == 1


def test_a_db_used_after_its_last_close_reopens_and_is_the_db_for_its_url_again(closing: str) -> None:
    url = f"{closing}://{unique_name('reopen')}"
    db = kydb.connect(url)
    db["/k"] = 1
    db.close()
    assert db.read("/k", reload=True) == 1  # reopened on use (a memory store keeps its data)
    assert kydb.connect(url) is db
    db.close()
    assert ClosingStore.closed == 2


def test_leaving_with_gives_back_one_hold(closing: str) -> None:
    url = f"{closing}://{unique_name('with')}"
    outer = kydb.connect(url)
    with kydb.connect(url) as inner:
        inner["/k"] = 1
    assert ClosingStore.closed == 0 and outer["/k"] == 1
    outer.close()
    assert ClosingStore.closed == 1


def test_composites_hold_their_layers_and_give_them_back(closing: str) -> None:
    front, back = f"{closing}://{unique_name('front')}", f"{closing}://{unique_name('back')}"
    union = kydb.connect(f"{front};{back}")
    front_db = kydb.connect(front)
    union.close()
    assert ClosingStore.closed == 1  # the back layer; the front one is still held by front_db
    front_db["/k"] = 1
    front_db.close()
    assert ClosingStore.closed == 2


def test_shared_pools_are_counted_and_closed_by_the_last_user() -> None:
    closed: list[str] = []
    pools: SharedPools[str] = SharedPools(closed.append)
    made: list[int] = []

    def create() -> str:
        made.append(1)
        return f"pool-{len(made)}"

    assert pools.acquire(("host", 1), create) == "pool-1"
    assert pools.acquire(("host", 1), create) == "pool-1"  # shared, not made again
    assert pools.acquire(("host", 2), create) == "pool-2"
    assert pools.users(("host", 1)) == 2 and len(pools) == 2
    pools.release(("host", 1))
    assert closed == []
    pools.release(("host", 1))
    pools.release(("host", 1))  # one release too many: nothing to close twice
    assert closed == ["pool-1"] and pools.users(("host", 1)) == 0


def test_shared_pools_are_thread_safe() -> None:
    pools: SharedPools[object] = SharedPools(lambda pool: None)
    made: list[object] = []
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        for _ in range(200):
            pools.acquire("k", lambda: made.append(object()) or made[-1])
            pools.release("k")

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pools.users("k") == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() does not exist on this platform")
def test_a_forked_child_never_uses_or_closes_its_parents_pools() -> None:
    closed: list[str] = []
    pools: SharedPools[str] = SharedPools(closed.append)
    assert pools.acquire("server", lambda: "parent's") == "parent's"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            pool = pools.acquire("server", lambda: "child's")
            pools.release("server")
            os.write(write, f"{pool},{','.join(closed)}".encode())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 100).decode() == "child's,child's"  # its own pool, closed by its own last user
    assert closed == [] and pools.users("server") == 1
