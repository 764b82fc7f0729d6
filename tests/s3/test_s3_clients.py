"""One boto3 client per configuration per process: shared by every base path and bucket, bounded by its pool.

Against moto's server over HTTP.  Clients are counted by wrapping boto3's
``Session.client``, the one way a client is made; each test uses a
configuration (a timeout or pool size) no other test uses, so the clients it
sees are its own.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

import kydb
from kydb.testing import unique_name
from kydb_s3 import DEFAULT_POOL_SIZE
from kydb_s3.testing import LoopbackProxy


@pytest.fixture
def clients_made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every boto3 client made while the test runs, in order."""
    made: list[Any] = []
    real = boto3.session.Session.client

    def counting(self: boto3.session.Session, *args: Any, **kwargs: Any) -> Any:
        client = real(self, *args, **kwargs)
        made.append(client)
        return client

    monkeypatch.setattr(boto3.session.Session, "client", counting)
    yield made


def test_a_thousand_base_paths_share_one_client_until_the_last_closes(
    bucket: str, new_bucket: Callable[[], str], moto_endpoint: str, clients_made: list[Any]
) -> None:
    options = f"?endpoint_url={moto_endpoint}&read_timeout=17"
    run = unique_name("share")
    dbs = [kydb.connect(f"s3://{bucket}/{run}/n{i}{options}") for i in range(1000)]
    dbs.append(kydb.connect(f"s3://{new_bucket()}/{run}{options}"))  # another bucket: the same client
    assert len(clients_made) == 1
    assert all(db.store.client is clients_made[0] for db in dbs)
    other = kydb.connect(f"s3://{bucket}/{run}/other{options}&pool_size=5")  # another pool: another client
    assert len(clients_made) == 2 and other.store.client is clients_made[1]
    other.close()
    last = dbs.pop()
    last["/k"] = "written through the shared client"
    for db in dbs:
        db.close()
    assert last.read("/k", reload=True) == "written through the shared client"  # still open for the last
    last.rm_tree("/")
    last.close()
    again = kydb.connect(f"s3://{bucket}/{run}/again{options}")  # the last close released it: a new one
    assert len(clients_made) == 3 and again.store.client is clients_made[2]
    again["/k"] = 1
    again.rm_tree("/")
    again.close()


def test_pool_size_is_botocores_max_pool_connections(bucket: str, moto_endpoint: str) -> None:
    url = f"s3://{bucket}/{unique_name('pool')}?endpoint_url={moto_endpoint}&connect_timeout=11"
    for options, size in (("", DEFAULT_POOL_SIZE), ("&pool_size=3", 3)):
        db = kydb.connect(url + options)
        assert db.store.client.meta.config.max_pool_connections == size
        db.close()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("pool_size=0", "?pool_size= takes a positive whole number, got '0'"),
        ("pool_size=many", "?pool_size= takes a positive whole number"),
        ("pool_timeout=-1", "?pool_timeout= takes a positive number of seconds"),
    ],
)
def test_bad_pool_options_are_url_errors(option: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"invalid kydb URL") as info:
        kydb.connect(f"s3://bucket?{option}")
    assert message in str(info.value)


def test_requests_in_flight_never_exceed_the_pool_size(
    bucket: str, moto_endpoint: str, connect_s3: Callable[..., Any]
) -> None:
    direct = connect_s3()
    direct.set_many({f"/g/{i}": i for i in range(24)})
    with LoopbackProxy(moto_endpoint, latency=0.05) as slow:
        db = kydb.connect(f"s3://{bucket}{direct.base_path}?endpoint_url={slow.url}&pool_size=3")
        try:
            assert db.get_many([f"/g/{i}" for i in range(24)]) == {f"/g/{i}": i for i in range(24)}
            assert slow.operations() == {"GetObject": 24}
            assert slow.peak_in_flight == 3
        finally:
            db.close()


def test_a_request_finding_the_pool_exhausted_waits_its_timeout_then_is_store_unavailable(
    bucket: str, moto_endpoint: str, connect_s3: Callable[..., Any]
) -> None:
    direct = connect_s3()
    direct["/k"] = "v"
    with LoopbackProxy(moto_endpoint, latency=1.0) as slow:
        url = f"s3://{bucket}{direct.base_path}?endpoint_url={slow.url}&pool_size=1&pool_timeout=0.2"
        db = kydb.connect(url)
        try:
            holder = threading.Thread(target=lambda: db.read("/k", reload=True))
            holder.start()
            while not slow.requests:  # the holder's request has its connection
                time.sleep(0.005)
            started = time.monotonic()
            with pytest.raises(kydb.StoreUnavailable) as info:
                db.exists("/k")
            waited = time.monotonic() - started
            holder.join()
            message = str(info.value)
            assert "pool of 1 S3 connection(s) is exhausted" in message and "Raise ?pool_size=" in message
            assert "HeadObject" in message and direct.base_path[1:] + "/k" in message
            assert 0.2 <= waited < 0.9  # its own timeout, not the holder's whole request
            assert slow.operations() == {"GetObject": 1}  # the refused request never went out
            assert db.exists("/k")  # once the connection is free again
        finally:
            db.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_forked_child_makes_a_client_of_its_own(connect_s3: Callable[..., Any]) -> None:
    db = connect_s3()
    parents = db.store.client
    db["/k"] = "from the parent"
    pid = os.fork()
    if pid == 0:  # the child: anything but a clean exit 0 fails the test
        ok = False
        try:
            ok = db.read("/k", reload=True) == "from the parent" and db.store.client is not parents
            db["/child"] = "from the child"
        except BaseException:
            ok = False
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert db.read("/child", reload=True) == "from the child"
    assert db.store.client is parents  # the parent's is untouched
