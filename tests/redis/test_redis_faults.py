"""The fault matrix on a real Redis: a connection cut mid-operation, a server restart, a stall beyond the timeout.

Each fault is injected twice: once so that redis-py's retries overcome it
(the operation must succeed as if nothing happened) and once so that it
outlasts them (the operation must raise ``kydb.StoreUnavailable``, never a
``KeyError``).  Then, for each: a write that failed left nothing in the read
cache, and after recovery every object acknowledged before the fault reads
back intact.  Cuts and stalls go through :class:`kydb.testing.faults.TCPProxy`
in front of the server under test; restarts use a private ``redis-server``
with an fsync per write.  Timeouts are set short through the URL, so a stall
costs about a second per operation.  Every scenario adds a row to the fault
table printed at the end of the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

import kydb
from kydb.testing import count_calls, unique_name
from kydb.testing.faults import FaultScenario, TCPProxy
from kydb_redis.layout import folder_key

from .conftest import PrivateRedis, keys_under, raw_client, remove_tree

BIG = 256 * 1024  # bytes of a value big enough that a cut after CUT_BIG bytes lands inside its request or reply
CUT_BIG = 64 * 1024
CUT_SMALL = 1024  # past the connection's handshake, inside a listing or query page of 200 names


@pytest.fixture
def proxy(redis_url: str) -> Iterator[TCPProxy]:
    """A fault-injecting proxy in front of the server under test."""
    parts = urlsplit(redis_url)
    with TCPProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as running:
        yield running


def connect_through(proxy: TCPProxy, base: str, **options: object) -> Any:
    query = "&".join(f"{name}={value}" for name, value in options.items())
    return kydb.connect(f"redis://127.0.0.1:{proxy.port}/{base}?{query}")


def big(tag: str) -> bytes:
    return tag.encode() * (BIG // len(tag))


def fill(db: Any) -> dict[str, Any]:
    """Objects acknowledged before any fault: small ones with an index, big ones, 250 in one folder."""
    acknowledged: dict[str, Any] = {f"/ack/many/o{i:03d}": i for i in range(250)}
    acknowledged |= {f"/ack/big{i}": big(f"big{i}") for i in range(4)}
    db.set_many(acknowledged)
    for i in range(5):
        db.set(f"/ack/ranked/r{i}", {"rank": i}, index={"rank": 10 - i})
        acknowledged[f"/ack/ranked/r{i}"] = {"rank": i}
    return acknowledged


def clean_up(db: Any, raw: redis.Redis) -> None:
    db.rm_tree("/")
    assert keys_under(raw, db.base_path + "/") == [folder_key(db.base_path + "/").encode()]  # the base folder stays
    remove_tree(raw, db.base_path)
    db.close()


# ---------------------------------------------------------------------- the connection cut mid-operation


def cut_operations(db: Any, acknowledged: dict[str, Any], tag: str) -> list[tuple[str, int, Callable[[], Any], Any]]:
    """``(what, cut after bytes, operation, expected result)``: each moves more than its cut point."""
    bigs = [f"/ack/big{i}" for i in range(4)]
    many = sorted(k.rsplit("/", 1)[1] for k in acknowledged if k.startswith("/ack/many/"))
    return [
        ("put of a 256 KiB value", CUT_BIG, lambda: db.set(f"/{tag}/put", big(tag)), None),
        ("cold read of a 256 KiB value", CUT_BIG, lambda: db.read("/ack/big0", reload=True), acknowledged["/ack/big0"]),
        ("set_many of 1 MiB", CUT_BIG, lambda: db.set_many({f"/{tag}/m{i}": big(f"{tag}{i}") for i in range(4)}), None),
        (
            "get_many of 1 MiB",
            CUT_BIG,
            lambda: db.get_many(bigs, reload=True),
            {key: acknowledged[key] for key in bigs},
        ),
        ("ls of 250 names", CUT_SMALL, lambda: db.ls("/ack/many"), many),
        ("query page of 200 names", CUT_SMALL, lambda: list(db.folder("/ack/many").limit(200)), many[:200]),
    ]


def test_connection_cut_mid_operation(
    proxy: TCPProxy, redis_url: str, fault_scenario: Callable[[str, str], FaultScenario]
) -> None:
    base = unique_name("faults-cut")
    db = connect_through(proxy, base, retries=2, socket_timeout=2)
    no_retries = connect_through(proxy, base, retries=0, socket_timeout=2)
    raw = raw_client(redis_url)
    try:
        acknowledged = fill(db)

        retried = fault_scenario("redis", "connection cut mid-operation; the retry reconnects (retries=2)")
        for what, cut_at, operation, expected in cut_operations(db, acknowledged, "retried"):
            proxy.cut()  # the pooled connection goes; the next one is cut mid-operation
            proxy.cut_after(cut_at)
            before = proxy.connections
            result = retried.attempt(what, operation)
            if expected is not None:
                assert result == expected, what
            assert proxy.connections - before == 2, f"{what}: expected the cut connection and one retry"
        written = {"/retried/put": big("retried")} | {f"/retried/m{i}": big(f"retried{i}") for i in range(4)}
        acknowledged |= written
        retried.check_nothing_lost(db, acknowledged)

        spent = fault_scenario("redis", "connection cut mid-operation; no retry left (retries=0)")
        for what, cut_at, operation, _ in cut_operations(no_retries, acknowledged, "spent"):
            proxy.cut()
            proxy.cut_after(cut_at)
            spent.attempt(what, operation, expect=kydb.StoreUnavailable)
        proxy.cut()
        proxy.cut_after(CUT_BIG)
        error = spent.attempt(
            "overwrite of an acknowledged object",
            lambda: no_retries.set("/ack/big1", big("new")),
            expect=kydb.StoreUnavailable,
        )
        assert isinstance(error.__cause__, redis.ConnectionError)
        with count_calls(no_retries) as calls:  # the cut write cached nothing: this read asks the store ...
            value = spent.attempt("read of that object", lambda: no_retries["/ack/big1"])
        assert calls["kydb_get"] == 1
        assert value == acknowledged["/ack/big1"]  # ... which never received the whole request
        spent.check_nothing_lost(no_retries, acknowledged)

        down = fault_scenario("redis", "connection cut, then every reconnection refused (retries=2)")
        proxy.refuse()
        for what, _, operation, _ in cut_operations(db, acknowledged, "down"):
            before = proxy.connections
            down.attempt(what, operation, expect=kydb.StoreUnavailable)
            assert proxy.connections - before == 3, f"{what}: the first try and two retries"
        down.attempt(  # not cached: it asks the store
            "read of the object whose write failed", lambda: db["/down/put"], expect=kydb.StoreUnavailable
        )
        proxy.heal()
        assert not db.exists("/down/put")  # refused before a byte of it reached the server
        down.check_nothing_lost(db, acknowledged)
    finally:
        proxy.heal()
        no_retries.close()
        clean_up(db, raw)
        raw.close()


# ---------------------------------------------------------------------- a stall longer than the timeout


def stall_operations(db: Any, tag: str) -> list[tuple[str, Callable[[], Any]]]:
    return [
        ("put of a new object", lambda: db.set(f"/{tag}/new", "new", index={"rank": 1})),
        ("overwrite of an acknowledged object", lambda: db.set("/ack/ranked/r0", "overwritten")),
        ("cold read", lambda: db.read("/ack/many/o001", reload=True)),
        ("get_many", lambda: db.get_many(["/ack/many/o002", "/ack/many/o003"], reload=True)),
        ("exists", lambda: db.exists("/ack/many/o004")),
        ("ls", lambda: db.ls("/ack")),
        ("recent", lambda: db.recent("/ack/ranked", limit=10)),
        ("stat", lambda: db.stat("/ack/ranked/r1")),
        ("delete", lambda: db.delete("/ack/ranked/r2")),
    ]


def test_stall_longer_than_the_socket_timeout(
    proxy: TCPProxy, redis_url: str, fault_scenario: Callable[[str, str], FaultScenario]
) -> None:
    base = unique_name("faults-stall")
    db = connect_through(proxy, base, retries=1, socket_timeout=0.3)
    patient = connect_through(proxy, base, retries=3, socket_timeout=0.5)
    raw = raw_client(redis_url)
    try:
        acknowledged = fill(db)
        ranked = db.recent("/ack/ranked")

        outlasted = fault_scenario("redis", "stall > socket_timeout=0.3 s on every try (retries=1)")
        proxy.stall()
        for what, operation in stall_operations(db, "stalled"):
            error = outlasted.attempt(what, operation, expect=kydb.StoreUnavailable)
            assert isinstance(error.__cause__, redis.TimeoutError), what
        outlasted.attempt(
            "read of the object whose overwrite failed", lambda: db["/ack/ranked/r0"], expect=kydb.StoreUnavailable
        )
        proxy.cut()  # a hung server's connections are reset, so the stalled requests never arrive late
        proxy.heal()
        assert db["/ack/ranked/r0"] == {"rank": 0}  # the overwrite never reached the server; nothing cached
        assert db.recent("/ack/ranked") == ranked and not db.exists("/stalled/new")
        outlasted.check_nothing_lost(db, acknowledged)

        overcome = fault_scenario("redis", "stall > socket_timeout=0.5 s, over before the retries are (retries=3)")
        results = {}
        for what, operation in stall_operations(patient, "overcome"):
            proxy.stall()
            heal = threading.Timer(0.7, proxy.heal)  # the first try times out; a retry gets through
            heal.start()
            before = proxy.connections
            results[what] = overcome.attempt(what, operation)
            heal.join()
            assert proxy.connections > before, f"{what}: no retry happened"
        assert (results["cold read"], results["exists"]) == (1, True)
        assert results["ls"] == ["big0", "big1", "big2", "big3", "many/", "ranked/"]
        assert patient.read("/overcome/new", reload=True) == "new"
        assert list(patient.folder("/overcome").by("rank")) == ["new"]
        del acknowledged["/ack/ranked/r2"]
        acknowledged["/ack/ranked/r0"] = "overwritten"
        assert not patient.exists("/ack/ranked/r2")
        overcome.check_nothing_lost(patient, acknowledged)
    finally:
        proxy.heal()
        patient.close()
        clean_up(db, raw)
        raw.close()


# ---------------------------------------------------------------------- a server restart


class Writer(threading.Thread):
    """Writes objects (with an index) and reads each back, until stopped or an operation fails.

    ``acknowledged`` are the writes that returned; ``outcomes`` counts every
    operation's outcome (``none`` or the error's type); ``failure`` is the key
    and error of the operation that stopped it, if one did.
    """

    def __init__(self, db: Any) -> None:
        super().__init__()
        self.db = db
        self.acknowledged: dict[str, int] = {}
        self.outcomes: Counter[str] = Counter()
        self.failure: tuple[str, BaseException] | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        for i in range(1_000_000):
            key = f"/run/f{i % 5}/k{i}"
            try:
                self.db.set(key, i, index={"i": i})
                self.outcomes["none"] += 1
                self.acknowledged[key] = i
                back = self.db.read(key, reload=True)
                self.outcomes["none"] += 1
            except Exception as exc:
                self.outcomes[type(exc).__name__] += 1
                self.failure = (key, exc)
                return
            if back != i:
                self.failure = (key, AssertionError(f"{key} read back {back!r}"))
                return
            if self.stop.is_set():
                return

    def wait_for(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` writes are acknowledged (or the writer stopped)."""
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count and self.is_alive():
            assert time.monotonic() < deadline, f"timed out waiting for {count} writes"
            time.sleep(0.01)


@pytest.fixture
def persistent_redis(private_redis: Callable[..., PrivateRedis]) -> PrivateRedis:
    """A private server that writes every acknowledged write to its append-only file before answering."""
    return private_redis("--requirepass", "kill-test-pw", persistent=True)


def test_server_killed_mid_write_and_down_until_restarted(
    persistent_redis: PrivateRedis, fault_scenario: Callable[[str, str], FaultScenario], caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    server = persistent_redis
    db = kydb.connect(f"redis://:kill-test-pw@127.0.0.1:{server.port}/fault?retries=2&socket_timeout=2")
    raw = raw_client(f"redis://:kill-test-pw@127.0.0.1:{server.port}")
    scenario = fault_scenario("redis", "server killed (SIGKILL) mid-write, down until restarted (retries=2)")
    db.mkdir("/run/empty")
    writer = Writer(db)
    writer.start()
    writer.wait_for(300)
    server.kill()
    writer.join(timeout=60)
    assert not writer.is_alive() and len(writer.acknowledged) >= 300 and writer.failure is not None
    scenario.outcomes.update(writer.outcomes)
    failed_key, error = writer.failure
    assert isinstance(error, kydb.StoreUnavailable) and not isinstance(error, KeyError)
    assert f"127.0.0.1:{server.port}" in str(error) and "redis://:***@" in str(error)
    assert isinstance(error.__cause__, redis.ConnectionError)
    for what, operation in (
        ("cold read", lambda: db.read("/run/f0/k0", reload=True)),
        ("ls", lambda: db.ls("/run")),
        ("exists", lambda: db.exists("/run/f0/k0")),
        ("get_many", lambda: db.get_many(["/a", "/b"], reload=True)),
        ("recent", lambda: db.recent("/run/f0", limit=10)),
        ("put", lambda: db.set("/run/while-down", 1)),
        ("read of the object whose put failed", lambda: db["/run/while-down"]),  # not cached: it asks the store
        ("rm_tree", lambda: db.rm_tree("/run")),
    ):
        scenario.attempt(what, operation, expect=kydb.StoreUnavailable)

    server.start()
    acknowledged = writer.acknowledged
    scenario.check_nothing_lost(db, acknowledged)
    listed = {f"/run/f{f}/{name}" for f in range(5) for name in db.ls(f"/run/f{f}")}
    assert set(acknowledged) <= listed <= set(acknowledged) | {failed_key}
    assert db.ls("/run") == ["empty/", "f0/", "f1/", "f2/", "f3/", "f4/"]
    indexed = {f"/run/f{f}/{e.key}": e.index_value for f in range(5) for e in db.folder(f"/run/f{f}").by("i").entries()}
    assert acknowledged.items() <= indexed.items()  # index values survived with their objects
    with count_calls(db) as calls:
        assert db.get("/run/while-down") is None  # refused before it was sent ...
    assert calls["kydb_get"] == 1  # ... and not cached: the read asked the store
    assert "kill-test-pw" not in caplog.text and "kill-test-pw" not in repr(error.__cause__)
    clean_up(db, raw)
    raw.close()


def test_server_restarted_within_the_retry_budget(
    persistent_redis: PrivateRedis, fault_scenario: Callable[[str, str], FaultScenario]
) -> None:
    server = persistent_redis
    db = kydb.connect(f"redis://:kill-test-pw@127.0.0.1:{server.port}/fault?retries=8&socket_timeout=2")
    raw = raw_client(f"redis://:kill-test-pw@127.0.0.1:{server.port}")
    scenario = fault_scenario("redis", "server killed (SIGKILL) and restarted mid-write (retries=8)")
    first_run = raw.info("server")["run_id"]
    writer = Writer(db)
    writer.start()
    try:
        writer.wait_for(300)
        server.kill()
        at_kill = len(writer.acknowledged)
        server.start()
        writer.wait_for(at_kill + 300)
    finally:
        writer.stop.set()
        writer.join(timeout=60)
    scenario.outcomes.update(writer.outcomes)
    assert writer.failure is None, f"a retried restart should be invisible, got {writer.failure!r}"
    assert raw.info("server")["run_id"] != first_run  # the server really restarted under the writer
    scenario.check_nothing_lost(db, writer.acknowledged)
    assert sum(len(db.ls(f"/run/f{f}")) for f in range(5)) == len(writer.acknowledged)
    clean_up(db, raw)
    raw.close()
