"""Faults between kydb and S3, each against moto's real server, and the table of what happened.

HTTP-level faults come from :class:`kydb_s3.testing.LoopbackProxy` (S3's
error answers, response bodies cut short); TCP-level faults from
:class:`kydb.testing.faults.TCPProxy` (connections dropped mid-transfer, a
listener that goes away and comes back, a server that stops answering).
For every scenario: the operation raises ``StoreUnavailable`` (never a
``KeyError``) once the retries are spent, the read cache does not hold a
value S3 never got, retries that succeed are invisible, and every object
acknowledged before the fault reads back intact after it.

moto's server closes every connection after its answer, so each request
is a connection of its own.  A "server restart" is the listener in front of
moto going away (new connections closed at once, as a dead server's port
does) and coming back: moto's objects live in the test process, so, like
S3's disks, they outlive it, and the test checks that kydb finds them all
again.

Each scenario is a row of the fault table printed at the end of the run
(``tests/s3/conftest.py``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import kydb
from kydb.testing.faults import TCPProxy
from kydb_s3.testing import LoopbackProxy

#: A value uploaded in three parts (8 MiB each), and downloaded in one long body.
BIG = 20 * 1024 * 1024
#: Where a dropped connection is cut: well into a part or a body, far past any request's headers.
CUT_AFTER = 256 * 1024
#: botocore's read timeout for the stall scenarios, in seconds.
READ_TIMEOUT = 0.5

Scenario = Any  # conftest.FaultScenario (conftest modules are not importable)


@pytest.fixture
def pair(connect_s3: Callable[..., Any], bucket: str) -> Iterator[Callable[..., tuple[Any, Any]]]:
    """``pair(endpoint, options='')``: a DB straight to moto, and one on the same base path through ``endpoint``.

    The first writes what must survive and cleans up afterwards; the second
    meets the faults, and is closed without touching the network.
    """
    faulty: list[Any] = []

    def make(endpoint: str, options: str = "") -> tuple[Any, Any]:
        direct = connect_s3()
        db = kydb.connect(f"s3://{bucket}{direct.base_path}?endpoint_url={endpoint}{options}")
        faulty.append(db)
        return direct, db

    yield make
    for db in faulty:
        db.close()


def through(proxy: TCPProxy) -> str:
    return f"http://127.0.0.1:{proxy.port}"


def no_uploads_pending(s3: Any, bucket: str, db: Any) -> bool:
    return not s3.list_multipart_uploads(Bucket=bucket, Prefix=db.base_path[1:]).get("Uploads")


def before_first(db: Any, event: str, action: Callable[[], None]) -> None:
    """Run ``action`` once, just before the first request of botocore ``event`` opens its connection."""
    pending = [action]

    def handler(**_: Any) -> None:
        if pending:
            pending.pop()()

    db.store.client.meta.events.register(event, handler)


def heal_on_next_connection(proxy: TCPProxy) -> threading.Thread:
    """Heal ``proxy`` as soon as it sees one more connection (an operation's first, refused, attempt)."""
    seen = proxy.connections

    def watch() -> None:
        deadline = time.monotonic() + 30
        while proxy.connections == seen and time.monotonic() < deadline:
            time.sleep(0.001)
        proxy.heal()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


# ---------------------------------------------------------------------- TCP: a connection dropped mid-transfer


@pytest.mark.parametrize("retried", [True, False], ids=["retried", "no-retry-left"])
def test_connection_dropped_mid_upload(
    retried: bool,
    tcp_proxy: TCPProxy,
    pair: Callable[..., tuple[Any, Any]],
    fault_scenario: Callable[[str, str], Scenario],
    monkeypatch: pytest.MonkeyPatch,
    s3: Any,
    bucket: str,
) -> None:
    if not retried:
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    direct, db = pair(through(tcp_proxy))
    acknowledged: dict[str, object] = {"/kept": "written before the fault", "/big": b"the old value"}
    direct.set_many(acknowledged)
    scenario = fault_scenario(
        f"dropped mid-upload, {'retried' if retried else 'no retry left'}",
        f"TCP cut after {CUT_AFTER >> 10} KiB of a {BIG >> 20} MiB multipart put"
        + ("" if retried else ", AWS_MAX_ATTEMPTS=1"),
    )
    value = os.urandom(BIG)
    # Armed as the first part goes out, so the cut falls on a part's connection, whichever part opens first.
    before_first(db, "before-send.s3.UploadPart", lambda: tcp_proxy.cut_after(CUT_AFTER))
    error = scenario.attempt(lambda: db.set("/big", value))
    assert tcp_proxy.dropped == 1  # the cut struck, mid-part
    if retried:
        assert error is None
        acknowledged["/big"] = value
    else:
        assert isinstance(error, kydb.StoreUnavailable) and "big" in str(error)
        assert db["/big"] == b"the old value"  # not the value S3 never got
    assert no_uploads_pending(s3, bucket, db)  # a failed upload is aborted, parts and all
    assert scenario.check_intact(direct, acknowledged) == 0


@pytest.mark.parametrize("retried", [True, False], ids=["retried", "no-retry-left"])
def test_connection_dropped_mid_download(
    retried: bool,
    tcp_proxy: TCPProxy,
    pair: Callable[..., tuple[Any, Any]],
    fault_scenario: Callable[[str, str], Scenario],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not retried:
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    direct, db = pair(through(tcp_proxy))
    acknowledged = {"/big": os.urandom(BIG)}
    direct.set_many(acknowledged)
    scenario = fault_scenario(
        f"dropped mid-download, {'retried' if retried else 'no retry left'}",
        f"TCP cut after {CUT_AFTER >> 10} KiB of a {BIG >> 20} MiB get" + ("" if retried else ", AWS_MAX_ATTEMPTS=1"),
    )
    tcp_proxy.cut_after(CUT_AFTER)  # the next connection: the get's
    read: list[object] = []
    error = scenario.attempt(lambda: read.append(db.read("/big", reload=True)))
    assert tcp_proxy.dropped == 1
    if retried:
        assert error is None and read == [acknowledged["/big"]]
    else:
        assert isinstance(error, kydb.StoreUnavailable) and not isinstance(error, KeyError)
    assert scenario.check_intact(db, acknowledged) == 0  # the same client reads it whole once the link holds


# ---------------------------------------------------------------------- TCP: a server restart


def test_server_restart_longer_than_the_retries(
    tcp_proxy: TCPProxy,
    pair: Callable[..., tuple[Any, Any]],
    fault_scenario: Callable[[str, str], Scenario],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # each failing operation then takes ~0.5 s of backoff, not ~1.5 s
    _, db = pair(through(tcp_proxy))
    acknowledged = {f"/r/k{i}": f"value {i}" for i in range(10)}
    db.set_many(acknowledged)  # through the proxy, and into the DB's read cache
    scenario = fault_scenario(
        "server restart, down longer than the retries",
        "listener gone: new connections closed at once; AWS_MAX_ATTEMPTS=2",
    )
    tcp_proxy.refuse()
    connections = tcp_proxy.connections
    operations: list[Callable[[], object]] = [
        lambda: db.set("/r/k0", "never stored"),
        lambda: db.set("/r/new", "never stored"),
        lambda: db.read("/r/k1", reload=True),
        lambda: db.exists("/r/k2"),
        lambda: db.ls("/r"),
        lambda: db.delete("/r/k3"),
        lambda: db.stat("/r/k4"),
        lambda: db.recent("/r", allow_scan=True),
    ]
    for operation in operations:
        error = scenario.attempt(operation)
        assert isinstance(error, kydb.StoreUnavailable) and not isinstance(error, KeyError), error
    assert tcp_proxy.connections >= connections + 2 * len(operations)  # every attempt was refused
    tcp_proxy.heal()
    assert db["/r/k0"] == "value 0"  # the cache path: the failed write left no trace
    assert not db.exists("/r/new")
    assert scenario.check_intact(db, acknowledged) == 0
    db["/r/after"] = "written after the restart"
    assert db.read("/r/after", reload=True) == "written after the restart"


def test_server_restart_within_the_retries_is_invisible(
    tcp_proxy: TCPProxy,
    pair: Callable[..., tuple[Any, Any]],
    fault_scenario: Callable[[str, str], Scenario],
) -> None:
    direct, db = pair(through(tcp_proxy))
    acknowledged: dict[str, object] = {"/r/kept": "written before the fault", "/r/k": "old"}
    direct.set_many(acknowledged)
    scenario = fault_scenario(
        "server restart, back within the retries",
        "listener gone, back once an operation's first attempt was refused",
    )
    for operation in (lambda: db.set("/r/k", "new"), lambda: db.read("/r/kept", reload=True)):
        tcp_proxy.refuse()
        refused_before = tcp_proxy.connections
        watcher = heal_on_next_connection(tcp_proxy)
        assert scenario.attempt(operation) is None
        watcher.join()
        assert tcp_proxy.connections >= refused_before + 2  # one refused attempt, then one that went through
    acknowledged["/r/k"] = "new"
    assert scenario.check_intact(direct, acknowledged) == 0


# ---------------------------------------------------------------------- TCP: a server that stops answering


def test_stall_longer_than_the_read_timeout(
    tcp_proxy: TCPProxy,
    pair: Callable[..., tuple[Any, Any]],
    fault_scenario: Callable[[str, str], Scenario],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    _, db = pair(through(tcp_proxy), f"&read_timeout={READ_TIMEOUT}")
    acknowledged = {"/s/k": "old", "/s/kept": "written before the fault"}
    db.set_many(acknowledged)
    scenario = fault_scenario(
        "server stops answering",
        f"connections open, no bytes move; ?read_timeout={READ_TIMEOUT}, AWS_MAX_ATTEMPTS=2",
    )
    tcp_proxy.stall()
    for operation in (lambda: db.set("/s/k", "new"), lambda: db.read("/s/kept", reload=True)):
        started = time.monotonic()
        error = scenario.attempt(operation)
        assert isinstance(error, kydb.StoreUnavailable) and "timeout" in str(error).lower(), error
        assert time.monotonic() - started >= 2 * READ_TIMEOUT  # both attempts waited out the timeout
    # The hung connections go (what they held back never reaches the server), and the server answers again.
    tcp_proxy.cut()
    tcp_proxy.heal()
    assert db["/s/k"] == "old"
    assert scenario.check_intact(db, acknowledged) == 0


def test_stall_shorter_than_the_retries_is_invisible(
    tcp_proxy: TCPProxy,
    pair: Callable[..., tuple[Any, Any]],
    fault_scenario: Callable[[str, str], Scenario],
) -> None:
    direct, db = pair(through(tcp_proxy), f"&read_timeout={READ_TIMEOUT}")
    acknowledged = {"/s/k": "stored"}
    direct.set_many(acknowledged)
    scenario = fault_scenario(
        "server stalls, answers again within the retries",
        f"no bytes move for {1.5 * READ_TIMEOUT} s; ?read_timeout={READ_TIMEOUT}",
    )
    tcp_proxy.stall()
    healer = threading.Timer(1.5 * READ_TIMEOUT, tcp_proxy.heal)  # after the first attempt timed out
    healer.start()
    started = time.monotonic()
    read: list[object] = []
    assert scenario.attempt(lambda: read.append(db.read("/s/k", reload=True))) is None
    healer.join()
    assert read == ["stored"] and time.monotonic() - started >= READ_TIMEOUT  # it did wait out one timeout
    assert scenario.check_intact(db, acknowledged) == 0


def test_nobody_listening_is_store_unavailable(
    pair: Callable[..., tuple[Any, Any]], fault_scenario: Callable[[str, str], Scenario]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on once this socket closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    direct, db = pair(f"http://127.0.0.1:{port}")
    acknowledged = {"/k": "stored"}
    direct.set_many(acknowledged)
    scenario = fault_scenario("endpoint down", "connection refused: nothing listens on the endpoint's port")
    for operation in (lambda: db.read("/k"), lambda: db.set("/k", 1), lambda: db.exists("/k"), lambda: db.ls("/")):
        error = scenario.attempt(operation)
        assert isinstance(error, kydb.StoreUnavailable) and f"127.0.0.1:{port}" in str(error), error
    assert scenario.check_intact(direct, acknowledged) == 0


# ---------------------------------------------------------------------- HTTP: S3's error answers, bodies cut short


def test_503s_within_the_retry_budget_are_retried(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy, fault_scenario: Callable[[str, str], Scenario]
) -> None:
    db = connect_s3(proxy.url)
    acknowledged = {"/kept": "written before the fault"}
    db.set_many(acknowledged)
    retries = db.store.max_attempts - 1
    scenario = fault_scenario("S3 throttles, within the retries", f"{retries} answers of 503 SlowDown per operation")
    for operation, attempt in (
        ("PutObject", lambda: db.set("/k", "v")),
        ("GetObject", lambda: db.read("/k", reload=True)),
        ("ListObjectsV2", lambda: db.ls("/")),
        ("DeleteObjects", lambda: db.delete_many(["/k"])),
    ):
        proxy.clear()
        proxy.fail_next(retries)
        assert scenario.attempt(attempt) is None
        assert proxy.operations() == {operation: retries + 1}
    assert db.ls("/") == ["kept"]
    assert scenario.check_intact(db, acknowledged) == 0


def test_503s_beyond_the_budget_raise_store_unavailable_and_write_nothing(
    connect_s3: Callable[..., Any],
    proxy: LoopbackProxy,
    s3: Any,
    bucket: str,
    fault_scenario: Callable[[str, str], Scenario],
) -> None:
    db = connect_s3(proxy.url)
    acknowledged = {"/k": "old"}
    db.set_many(acknowledged)
    budget = db.store.max_attempts
    scenario = fault_scenario("S3 throttles, beyond the retries", f"503 SlowDown on all {budget} attempts")
    proxy.clear()
    proxy.fail_next(budget)
    error = scenario.attempt(lambda: db.set("/k", "new"))
    assert isinstance(error, kydb.StoreUnavailable) and not isinstance(error, KeyError)
    message = str(error)
    assert bucket in message and f"{db.base_path[1:]}/k" in message and "SlowDown" in message
    assert proxy.operations() == {"PutObject": budget}
    assert db["/k"] == "old"  # the cache does not hold the value S3 never got
    for attempt in (
        lambda: db.set("/new/k", "new"),
        lambda: db.read("/k", reload=True),
        lambda: db.exists("/k"),
        lambda: db.ls("/"),
    ):
        proxy.fail_next(budget)
        assert isinstance(scenario.attempt(attempt), kydb.StoreUnavailable)
    assert not db.exists("/new/k")
    assert scenario.check_intact(db, acknowledged) == 0


@pytest.mark.parametrize("retried", [True, False], ids=["retried", "no-retry-left"])
def test_response_body_cut_short(
    retried: bool,
    connect_s3: Callable[..., Any],
    proxy: LoopbackProxy,
    fault_scenario: Callable[[str, str], Scenario],
) -> None:
    db = connect_s3(proxy.url)
    acknowledged = {"/k": os.urandom(100_000)}
    db.set_many(acknowledged)
    budget = db.store.max_attempts
    cuts = budget - 1 if retried else budget
    scenario = fault_scenario(
        f"body cut short, {'within' if retried else 'beyond'} the retries",
        f"HTTP: half of a 100 kB body sent, then the connection closed, on {cuts} of {budget} attempts",
    )
    proxy.clear()
    proxy.cut_next(cuts)
    read: list[object] = []
    error = scenario.attempt(lambda: read.append(db.read("/k", reload=True)))
    assert proxy.operations() == {"GetObject": budget}
    if retried:
        assert error is None and read == [acknowledged["/k"]]
    else:
        assert isinstance(error, kydb.StoreUnavailable) and not isinstance(error, KeyError)
    assert scenario.check_intact(db, acknowledged) == 0


def test_failed_multipart_upload_leaves_nothing(
    connect_s3: Callable[..., Any],
    proxy: LoopbackProxy,
    s3: Any,
    bucket: str,
    fault_scenario: Callable[[str, str], Scenario],
) -> None:
    db = connect_s3(proxy.url)
    acknowledged = {"/kept": "written before the fault"}
    db.set_many(acknowledged)
    budget = db.store.max_attempts
    scenario = fault_scenario("a part upload fails", f"503 SlowDown on all {budget} attempts of part 2 of 3")
    proxy.fail_next(budget, when=lambda r: r.operation == "UploadPart" and "partNumber=2&" in r.query + "&")
    error = scenario.attempt(lambda: db.set("/big", os.urandom(BIG)))
    assert isinstance(error, kydb.StoreUnavailable)
    assert bucket in str(error) and "big" in str(error)
    assert proxy.operations()["AbortMultipartUpload"] == 1
    assert no_uploads_pending(s3, bucket, db)
    assert not db.exists("/big") and db.ls("/") == ["kept"]
    assert scenario.check_intact(db, acknowledged) == 0
