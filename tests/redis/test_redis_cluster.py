"""What is the cluster's own: one hash slot per folder, one round trip per put, scripts on every node, resharding."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import TryAgainError

import kydb
from kydb.testing import unique_name
from kydb_redis.layout import folder_key, index_hash_key, object_key
from kydb_redis.replies import LARGE_REPLY, PARSER_CLASS

from .conftest import LocalCluster, keys_under, raw_client, round_trips, with_base


@pytest.fixture
def cluster_db(local_cluster: LocalCluster) -> Iterator[Any]:
    db = kydb.connect(with_base(local_cluster.url, unique_name("cluster")))
    yield db
    db.rm_tree("/")
    db.close()


@pytest.fixture
def cluster_raw(local_cluster: LocalCluster) -> Iterator[Any]:
    client = raw_client(local_cluster.url)
    yield client
    client.close()


def test_every_key_of_a_folder_is_in_one_slot(cluster_db: Any, cluster_raw: Any) -> None:
    base = cluster_db.base_path
    names = ["a", "{b}", "c}d{e", "x:y*", "f{}g"]
    for name in names:
        cluster_db.set(f"/dir/{name}", name, index={"rank": len(name)})
    folder = folder_key(base + "/dir/")
    slot = cluster_raw.keyslot(folder)
    for name in names:
        path = f"{base}/dir/{name}"
        assert cluster_raw.keyslot(object_key(path)) == slot and cluster_raw.keyslot(index_hash_key(path)) == slot
    slots = {cluster_raw.keyslot(folder_key(f"{base}/f{i}/")) for i in range(40)}
    assert len(slots) > 30, "folders spread over the cluster's slots"
    assert cluster_db.ls("/dir") == sorted(names)
    assert list(cluster_db.folder("/dir").by("rank")) == ["a", "{b}", "f{}g", "x:y*", "c}d{e"]


def test_a_put_into_an_existing_folder_is_one_round_trip(cluster_db: Any) -> None:
    cluster_db["/f/first"] = 0
    with round_trips() as sent:
        cluster_db["/f/second"] = 1
    assert sent == [1]
    with round_trips() as sent:
        cluster_db["/f/second"] = 2
    assert sent == [1]
    with round_trips() as sent:
        assert cluster_db.read("/f/second", reload=True) == 2
    assert sent == [1]


def test_large_values_read_back_from_every_node(cluster_db: Any) -> None:
    """Large replies come through the cluster's node connections too (see kydb_redis.replies)."""
    client = cluster_db.store._acquire().client
    node = client.get_nodes()[0]
    pool = node.redis_connection.connection_pool
    connection = pool.get_connection()
    try:
        assert type(connection._parser) is PARSER_CLASS
    finally:
        pool.release(connection)
    values = {f"/f{i}/big": os.urandom(2 * LARGE_REPLY + i) for i in range(6)}  # folders in several slots
    values["/f0/small"] = "small"
    cluster_db.set_many(values)
    for key, value in values.items():
        assert cluster_db.read(key, reload=True) == value
    assert cluster_db.get_many(list(values), reload=True) == values


def test_a_folder_redis_cannot_keep_in_one_slot_is_refused(local_cluster: LocalCluster, cluster_db: Any) -> None:
    with pytest.raises(ValueError, match=r"first '\{' is followed directly by '\}'"):
        cluster_db["/a{}b/k"] = 1
    assert cluster_db.ls("/") == []
    with pytest.raises(ValueError, match="base path"):
        kydb.connect(f"{local_cluster.url}/x{{}}y")


def test_scripts_are_reloaded_on_every_node(cluster_db: Any, local_cluster: LocalCluster) -> None:
    cluster_db.set_many({f"/s{i}/k": i for i in range(30)})  # folders on every master
    for node in local_cluster.nodes:
        with local_cluster.client(node) as client:
            client.script_flush()
    cluster_db.set_many({f"/s{i}/k": -i for i in range(30)})
    assert cluster_db.get_many([f"/s{i}/k" for i in range(30)], reload=True) == {f"/s{i}/k": -i for i in range(30)}
    assert cluster_db.recent("/s3") == ["k"]


def test_cluster_urls() -> None:
    db = kydb.connect("redis+cluster://u:pw@127.0.0.1:7000/base?nodes=127.0.0.1:7001,[::1]:7002&pool_size=4")
    assert db.base_path == "/base" and "pw" not in repr(db.store)
    assert db.store.options.nodes == (("127.0.0.1", 7001), ("::1", 7002))
    assert db.store.options.server == "cluster 127.0.0.1:7000"
    db.close()
    for url, message in (
        ("redis+cluster://h/x?db=2", "database 0 only"),
        ("redis://h/x?nodes=h:1", "redis\\+cluster://"),
        ("redis+cluster://h/x?nodes=h", "host:port"),
    ):
        with pytest.raises(ValueError, match=message):
            kydb.connect(url)


def node_ids(local_cluster: LocalCluster) -> list[str]:
    ids = []
    for node in local_cluster.nodes:
        with local_cluster.client(node) as client:
            ids.append(client.execute_command("CLUSTER", "MYID").decode())
    return ids


def reshard(local_cluster: LocalCluster, source: str, target: str, slots: int) -> None:
    subprocess.run(
        [local_cluster.cli, "--cluster", "reshard", f"127.0.0.1:{local_cluster.nodes[0].port}",
         "--cluster-from", source, "--cluster-to", target, "--cluster-slots", str(slots), "--cluster-yes",
         "--cluster-pipeline", "5"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip


def test_writes_during_resharding_are_all_kept(local_cluster: LocalCluster, cluster_raw: Any) -> None:
    db = kydb.connect(with_base(local_cluster.url, unique_name("reshard")) + "?retries=10")
    acknowledged: dict[str, int] = {}
    errors: list[BaseException] = []
    during: list[int] = []
    resharding = threading.Event()

    def write() -> None:
        try:
            for i in range(2000):
                key = f"/w/f{i % 50}/k{i}"
                db.set(key, i, index={"i": i})
                acknowledged[key] = i
                if resharding.is_set():
                    during.append(i)
                time.sleep(0.001)
        except BaseException as exc:
            errors.append(exc)

    ids = node_ids(local_cluster)
    writer = threading.Thread(target=write)
    writer.start()
    try:
        resharding.set()
        reshard(local_cluster, ids[0], ids[1], 1500)  # slots move, with their keys, while the writer writes
        reshard(local_cluster, ids[1], ids[2], 1500)
        resharding.clear()
    finally:
        writer.join(120)
    assert not errors, errors
    assert len(acknowledged) == 2000 and len(during) > 100, f"only {len(during)} writes overlapped the resharding"
    local_cluster.wait_until_ok()
    assert db.get_many(list(acknowledged), reload=True) == acknowledged
    assert sorted(db.ls("/w")) == sorted(f"f{f}/" for f in range(50))
    assert sum(len(db.ls(f"/w/f{f}")) for f in range(50)) == 2000
    assert list(db.folder("/w/f7").by("i").items()) == [
        (f"k{i}", i) for i in sorted(i for i in range(2000) if i % 50 == 7)
    ]
    db.rm_tree("/")
    assert keys_under(cluster_raw, db.base_path + "/") == [folder_key(db.base_path + "/").encode()]
    db.close()
    assert isinstance(cluster_raw, redis.RedisCluster)


def test_a_put_the_cluster_client_takes_over_finds_its_connection_free(
    local_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one connection per node, a put answered ``TRYAGAIN`` is sent again by the cluster client.

    The put's first try gives its connection back before the cluster client
    retries: held, the client would wait for it until ``pool_timeout`` and
    the put would fail with an exhausted pool.
    """
    db = kydb.connect(with_base(local_cluster.url, unique_name("tryagain")) + "?pool_size=1&pool_timeout=0.5")
    try:
        db["/f/x"] = 1
        read = redis.Connection.read_response
        refused: list[object] = []

        def once_try_again(self: redis.Connection, *args: Any, **kwargs: Any) -> Any:
            reply = read(self, *args, **kwargs)
            if not refused:  # the put's reply, read, then answered as if its slot were migrating
                refused.append(reply)
                raise TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot")
            return reply

        monkeypatch.setattr(redis.Connection, "read_response", once_try_again)
        db["/f/x"] = 2
        monkeypatch.undo()
        assert refused, "the put's first reply should have been answered TRYAGAIN"
        assert db.read("/f/x", reload=True) == 2
    finally:
        monkeypatch.undo()
        db.rm_tree("/")
        db.close()


def test_an_exhausted_pool_on_a_cluster_says_so(local_cluster: LocalCluster) -> None:
    db = kydb.connect(with_base(local_cluster.url, unique_name("exhausted")) + "?pool_size=1&pool_timeout=0.3")
    try:
        db["/f/k"] = 1
        client = db.store.client
        node = client.get_node_from_key(object_key(db.base_path + "/f/k"))
        pool = client.get_redis_connection(node).connection_pool
        held = pool.get_connection()  # another thread's long command on that master
        try:
            with pytest.raises(kydb.StoreUnavailable, match=r"pool is exhausted.*\?pool_size=") as info:
                db.read("/f/k", reload=True)
            assert not isinstance(info.value, KeyError)
        finally:
            pool.release(held)
        assert db.read("/f/k", reload=True) == 1
    finally:
        db.rm_tree("/")
        db.close()
