"""A master killed mid-write: what was acknowledged and what was lost, with and without ``WAIT``.

A local cluster of three masters with a replica each; a writer puts objects
into 20 folders while the master holding the folder it writes is killed
(SIGKILL).  Its replica takes over within a few seconds and the writer goes
on.  Replication is asynchronous: without ``?wait_replicas=``, a write the
master acknowledged may not have reached the replica, and is then lost —
the fault table reports how many.  With ``?wait_replicas=1`` every put
returns only once a replica has it (``WAIT``), so nothing acknowledged is
lost.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import kydb
import kydb_redis
from kydb.testing import count_calls, unique_name
from kydb.testing.faults import FaultScenario
from kydb_redis.layout import object_key

from .conftest import LocalCluster, PrivateRedis, with_base


@pytest.fixture(scope="module")
def replicated_cluster(
    redis_server_binary: str, redis_cli_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    cluster = LocalCluster(redis_server_binary, tmp_path_factory.mktemp("redis-replicated"), masters=3, replicas=1)
    yield cluster
    cluster.stop()


class Writer(threading.Thread):
    """Puts objects until stopped, recording what was acknowledged and every outcome (it goes on after errors)."""

    def __init__(self, db: Any) -> None:
        super().__init__()
        self.db = db
        self.acknowledged: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.outcomes: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            key = f"/run/f{i % 20}/k{i}"
            try:
                self.db.set(key, i)
            except Exception as exc:
                self.outcomes[type(exc).__name__] += 1
                self.errors.append(exc)
                self.failed[key] = i
                time.sleep(0.05)
            else:
                self.outcomes["none"] += 1
                self.acknowledged[key] = i
            i += 1

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count:
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} of {count} writes acknowledged"
            time.sleep(0.01)


def master_of(cluster: LocalCluster, key: str) -> PrivateRedis:
    """The running node that serves ``key``'s slot as a master."""
    for node in cluster.nodes:
        if node.process is None or node.process.poll() is not None:
            continue
        with cluster.client(node) as client:
            if client.info("replication")["role"] != "master":
                continue
            owned = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            if int(client.execute_command("CLUSTER", "COUNTKEYSINSLOT", owned)) > 0:
                return node
    raise AssertionError(f"no running master holds the slot of {key!r}")


def fail_over(cluster: LocalCluster, url: str, scenario: FaultScenario) -> tuple[Writer, Any]:
    """Write, kill the master of the folder being written, write on after the failover; the writer and its DB."""
    db = kydb.connect(url)
    writer = Writer(db)
    writer.start()
    try:
        writer.wait_for(300)
        last = max(writer.acknowledged, key=writer.acknowledged.__getitem__)
        victim = master_of(cluster, object_key(db.base_path + last))
        victim.kill()
        killed_at = len(writer.acknowledged)
        cluster.wait_until_ok()  # its replica took over
        victim.start()  # it comes back as a replica of the master that replaced it
        cluster.wait_until_ok()
        writer.wait_for(killed_at + 300)  # and the writer goes on
    finally:
        writer.stop.set()
        writer.join(60)
    scenario.outcomes.update(writer.outcomes)
    for error in writer.errors:
        assert isinstance(error, (kydb.StoreUnavailable, kydb.KydbError)) and not isinstance(error, KeyError)
    return writer, db


def lost(db: Any, writer: Writer) -> list[str]:
    """Acknowledged objects that do not read back with their value (a failed write's value counts too)."""
    got = db.get_many(list(writer.acknowledged), reload=True)
    return sorted(key for key, value in writer.acknowledged.items() if got.get(key) != value)


def test_a_master_killed_mid_write_without_wait(
    replicated_cluster: LocalCluster, fault_scenario: Callable[[str, str], FaultScenario]
) -> None:
    scenario = fault_scenario(
        "redis+cluster", "master killed (SIGKILL) mid-write; replica promoted; no WAIT (retries=10)"
    )
    url = with_base(replicated_cluster.url, unique_name("failover")) + "?retries=10&socket_timeout=2"
    writer, db = fail_over(replicated_cluster, url, scenario)
    missing = lost(db, writer)
    scenario.lost = len(missing)  # asynchronous replication: reported, not promised away
    assert len(missing) <= len(writer.acknowledged)
    listed = {f"/run/f{f}/{name}" for f in range(20) for name in db.ls(f"/run/f{f}")}
    assert set(writer.acknowledged) - set(missing) <= listed  # what survived is listed
    replicated_cluster.wait_until_ok()
    db.rm_tree("/")
    db.close()


def test_a_master_killed_mid_write_with_wait(
    replicated_cluster: LocalCluster, fault_scenario: Callable[[str, str], FaultScenario]
) -> None:
    scenario = fault_scenario(
        "redis+cluster", "master killed (SIGKILL) mid-write; replica promoted; ?wait_replicas=1 (retries=10)"
    )
    url = (
        with_base(replicated_cluster.url, unique_name("failover-wait")) + "?retries=10&socket_timeout=2&wait_replicas=1"
    )
    writer, db = fail_over(replicated_cluster, url, scenario)
    scenario.check_nothing_lost(db, writer.acknowledged, writer.failed)
    listed = {f"/run/f{f}/{name}" for f in range(20) for name in db.ls(f"/run/f{f}")}
    assert set(writer.acknowledged) <= listed
    db.rm_tree("/")
    db.close()


def test_wait_replicas_on_a_single_server(private_redis: Callable[..., PrivateRedis]) -> None:
    master = private_redis()
    plain = kydb.connect(f"{master.url}/alone")
    plain["/k"] = 0
    alone = kydb.connect(f"{master.url}/alone?wait_replicas=1&wait_timeout=0.2")
    assert alone["/k"] == 0
    with pytest.raises(kydb_redis.NotReplicated, match=r"acknowledged by 0 of the 1 replicas") as info:
        alone["/k"] = 1  # no replica: applied on the master, but not acknowledged
    assert not isinstance(info.value, KeyError)
    with count_calls(alone) as calls:
        assert alone.read("/k", reload=True) == 1
        assert alone["/k"] == 1
    assert calls["kydb_get"] == 1  # nothing was cached by the write that raised
    replica = private_redis("--replicaof", "127.0.0.1", str(master.port))
    deadline = time.monotonic() + 30
    while redis.Redis(port=replica.port).info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not sync"
        time.sleep(0.05)
    db = kydb.connect(f"{master.url}/replicated?wait_replicas=1")
    db.set_many({f"/f/k{i}": i for i in range(100)})
    db["/g/one"] = "one"
    db.mkdir("/h/i")
    db.delete("/f/k0")
    on_replica = kydb.connect(f"redis://127.0.0.1:{replica.port}/replicated")
    assert on_replica.get_many([f"/f/k{i}" for i in range(100)], reload=True) == {f"/f/k{i}": i for i in range(1, 100)}
    assert on_replica.read("/g/one", reload=True) == "one" and on_replica.is_dir(
        "/h/i"
    )  # there when the write returned
    for closing in (plain, alone, db, on_replica):
        closing.close()
