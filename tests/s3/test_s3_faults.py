"""Faults between kydb and S3, each against moto's real server, and the table of what happened.

HTTP-level faults come from :class:`kydb_s3.testing.LoopbackProxy` (S3's
error answers); TCP-level faults from :class:`kydb.testing.faults.TCPProxy`
(connections dropped mid-transfer, response bodies cut short among them, a
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

Each scenario is a row of the fault matrix printed at the end of the run
(:class:`kydb.testing.faults.FaultScenario`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

import kydb
from kydb.testing.faults import FaultScenario, TCPProxy
from kydb_s3.testing import LoopbackProxy

#: A value uploaded in three parts (8 MiB each), and downloaded in one long body.
BIG = 20 * 1024 * 1024
#: Where a dropped connection is cut: well into a part or a body, far past any request's headers.
CUT_AFTER = 256 * 1024
#: botocore's read timeout for the stall scenarios, in seconds.
READ_TIMEOUT = 0.5


class FaultRun(NamedTuple):
    """Where a fault test starts: the acknowledged objects stored, and the scenario's row of the table."""

    #: A DB straight to moto: it wrote what must survive, and cleans up.
    direct: Any
    #: The DB on the same base path through the faulty endpoint.
    db: Any
    scenario: FaultScenario
    #: Attempts botocore makes per request (``AWS_MAX_ATTEMPTS``, 3 by default).
    budget: int


@pytest.fixture
def start_run(
    pair: Callable[..., tuple[Any, Any]], fault_scenario: Callable[[str, str], FaultScenario]
) -> Callable[..., FaultRun]:
    """``start_run(endpoint, name, fault, acknowledged, options='', cached=False)``: a :class:`FaultRun`.

    Stores ``acknowledged`` (straight to moto, or, with ``cached``, through
    the DB under test, so its read cache holds the values too) and adds the
    row ``name: fault`` to the fault matrix.  ``fault`` may say ``{budget}`` (the
    attempts per request) and ``{retries}`` (one fewer).
    """

    def start(
        endpoint: str, name: str, fault: str, acknowledged: dict[str, object], options: str = "", cached: bool = False
    ) -> FaultRun:
        direct, db = pair(endpoint, options)
        (db if cached else direct).set_many(acknowledged)
        budget = db.store.max_attempts
        scenario = fault_scenario("s3", f"{name}: {fault.format(budget=budget, retries=budget - 1)}")
        return FaultRun(direct, db, scenario, budget)

    return start


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
    start_run: Callable[..., FaultRun],
    monkeypatch: pytest.MonkeyPatch,
    s3: Any,
    bucket: str,
) -> None:
    if not retried:
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    acknowledged: dict[str, object] = {"/kept": "written before the fault", "/big": b"the old value"}
    direct, db, scenario, _ = start_run(
        through(tcp_proxy),
        f"dropped mid-upload, {'retried' if retried else 'no retry left'}",
        f"TCP cut after {CUT_AFTER >> 10} KiB of a {BIG >> 20} MiB multipart put"
        + ("" if retried else ", AWS_MAX_ATTEMPTS=1"),
        acknowledged,
    )
    value = os.urandom(BIG)
    # Armed as the first part goes out, so the cut falls on a part's connection, whichever part opens first.
    before_first(db, "before-send.s3.UploadPart", lambda: tcp_proxy.cut_after(CUT_AFTER))
    error = scenario.attempt(
        f"put of a {BIG >> 20} MiB value",
        lambda: db.set("/big", value),
        expect=None if retried else kydb.StoreUnavailable,
    )
    assert tcp_proxy.dropped == 1  # the cut struck, mid-part
    if retried:
        acknowledged["/big"] = value
    else:
        assert "big" in str(error)
        assert db["/big"] == b"the old value"  # not the value S3 never got
    assert no_uploads_pending(s3, bucket, db)  # a failed upload is aborted, parts and all
    scenario.check_nothing_lost(direct, acknowledged)


@pytest.mark.parametrize("retried", [True, False], ids=["retried", "no-retry-left"])
def test_connection_dropped_mid_download(
    retried: bool, tcp_proxy: TCPProxy, start_run: Callable[..., FaultRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore retries requests, not the reading of their bodies: the store asks again, within the budget.
    if not retried:
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    acknowledged = {"/big": os.urandom(BIG)}
    _, db, scenario, _ = start_run(
        through(tcp_proxy),
        f"dropped mid-download, {'retried' if retried else 'no retry left'}",
        f"TCP cut after {CUT_AFTER >> 10} KiB of a {BIG >> 20} MiB get" + ("" if retried else ", AWS_MAX_ATTEMPTS=1"),
        acknowledged,
    )
    connections = tcp_proxy.connections
    tcp_proxy.cut_after(CUT_AFTER)  # the next connection: the get's
    read: list[object] = []
    scenario.attempt(
        f"cold read of a {BIG >> 20} MiB value",
        lambda: read.append(db.read("/big", reload=True)),
        expect=None if retried else kydb.StoreUnavailable,
    )
    assert tcp_proxy.dropped == 1
    if retried:
        assert read == [acknowledged["/big"]]
    # One GetObject per connection: the cut one, and one more only if the budget allows it.
    assert tcp_proxy.connections == connections + (2 if retried else 1)
    scenario.check_nothing_lost(db, acknowledged)  # the same client reads it whole once the link holds


# ---------------------------------------------------------------------- TCP: a server restart


def test_server_restart_longer_than_the_retries(
    tcp_proxy: TCPProxy, start_run: Callable[..., FaultRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # each failing operation then takes ~0.5 s of backoff, not ~1.5 s
    acknowledged = {f"/r/k{i}": f"value {i}" for i in range(10)}
    _, db, scenario, _ = start_run(
        through(tcp_proxy),
        "server restart, down longer than the retries",
        "listener gone: new connections closed at once; AWS_MAX_ATTEMPTS={budget}",
        acknowledged,
        cached=True,  # through the proxy, and into the DB's read cache
    )
    tcp_proxy.refuse()
    connections = tcp_proxy.connections
    operations: list[tuple[str, Callable[[], object]]] = [
        ("overwrite", lambda: db.set("/r/k0", "never stored")),
        ("put of a new object", lambda: db.set("/r/new", "never stored")),
        ("cold read", lambda: db.read("/r/k1", reload=True)),
        ("exists", lambda: db.exists("/r/k2")),
        ("ls", lambda: db.ls("/r")),
        ("delete", lambda: db.delete("/r/k3")),
        ("stat", lambda: db.stat("/r/k4")),
        ("recent", lambda: db.recent("/r", allow_scan=True)),
    ]
    for what, operation in operations:
        scenario.attempt(what, operation, expect=kydb.StoreUnavailable)
    assert tcp_proxy.connections >= connections + 2 * len(operations)  # every attempt was refused
    tcp_proxy.heal()
    assert db["/r/k0"] == "value 0"  # the cache path: the failed write left no trace
    assert not db.exists("/r/new")
    scenario.check_nothing_lost(db, acknowledged)
    db["/r/after"] = "written after the restart"
    assert db.read("/r/after", reload=True) == "written after the restart"


def test_server_restart_within_the_retries_is_invisible(
    tcp_proxy: TCPProxy, start_run: Callable[..., FaultRun]
) -> None:
    acknowledged: dict[str, object] = {"/r/kept": "written before the fault", "/r/k": "old"}
    direct, db, scenario, _ = start_run(
        through(tcp_proxy),
        "server restart, back within the retries",
        "listener gone, back once an operation's first attempt was refused",
        acknowledged,
    )
    for what, operation in (
        ("overwrite", lambda: db.set("/r/k", "new")),
        ("cold read", lambda: db.read("/r/kept", reload=True)),
    ):
        tcp_proxy.refuse()
        refused_before = tcp_proxy.connections
        watcher = heal_on_next_connection(tcp_proxy)
        scenario.attempt(what, operation, expect=None)
        watcher.join()
        assert tcp_proxy.connections >= refused_before + 2  # one refused attempt, then one that went through
    acknowledged["/r/k"] = "new"
    scenario.check_nothing_lost(direct, acknowledged)


# ---------------------------------------------------------------------- TCP: a server that stops answering


def test_stall_longer_than_the_read_timeout(
    tcp_proxy: TCPProxy, start_run: Callable[..., FaultRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    acknowledged = {"/s/k": "old", "/s/kept": "written before the fault"}
    _, db, scenario, _ = start_run(
        through(tcp_proxy),
        "server stops answering",
        f"connections open, no bytes move; ?read_timeout={READ_TIMEOUT}, AWS_MAX_ATTEMPTS={{budget}}",
        acknowledged,
        options=f"&read_timeout={READ_TIMEOUT}",
        cached=True,
    )
    tcp_proxy.stall()
    for what, operation in (
        ("overwrite", lambda: db.set("/s/k", "new")),
        ("cold read", lambda: db.read("/s/kept", reload=True)),
    ):
        started = time.monotonic()
        error = scenario.attempt(what, operation, expect=kydb.StoreUnavailable)
        assert "timeout" in str(error).lower(), error
        assert time.monotonic() - started >= 2 * READ_TIMEOUT  # both attempts waited out the timeout
    # The hung connections go (what they held back never reaches the server), and the server answers again.
    tcp_proxy.cut()
    tcp_proxy.heal()
    assert db["/s/k"] == "old"
    scenario.check_nothing_lost(db, acknowledged)


def test_stall_shorter_than_the_retries_is_invisible(tcp_proxy: TCPProxy, start_run: Callable[..., FaultRun]) -> None:
    acknowledged = {"/s/k": "stored"}
    _, db, scenario, _ = start_run(
        through(tcp_proxy),
        "server stalls, answers again within the retries",
        f"no bytes move for {1.5 * READ_TIMEOUT} s; ?read_timeout={READ_TIMEOUT}",
        acknowledged,
        options=f"&read_timeout={READ_TIMEOUT}",
    )
    tcp_proxy.stall()
    healer = threading.Timer(1.5 * READ_TIMEOUT, tcp_proxy.heal)  # after the first attempt timed out
    healer.start()
    started = time.monotonic()
    read: list[object] = []
    scenario.attempt("cold read", lambda: read.append(db.read("/s/k", reload=True)), expect=None)
    healer.join()
    assert read == ["stored"] and time.monotonic() - started >= READ_TIMEOUT  # it did wait out one timeout
    scenario.check_nothing_lost(db, acknowledged)


def test_nobody_listening_is_store_unavailable(start_run: Callable[..., FaultRun]) -> None:
    with socket.socket() as sock:  # a port nobody listens on once this socket closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    acknowledged = {"/k": "stored"}
    direct, db, scenario, _ = start_run(
        f"http://127.0.0.1:{port}",
        "endpoint down",
        "connection refused: nothing listens on the endpoint's port",
        acknowledged,
    )
    for what, operation in (
        ("read", lambda: db.read("/k")),
        ("put", lambda: db.set("/k", 1)),
        ("exists", lambda: db.exists("/k")),
        ("ls", lambda: db.ls("/")),
    ):
        error = scenario.attempt(what, operation, expect=kydb.StoreUnavailable)
        assert f"127.0.0.1:{port}" in str(error) and "check the endpoint URL" in str(error), error
    scenario.check_nothing_lost(direct, acknowledged)


# ---------------------------------------------------------------------- HTTP: S3's error answers


def test_503s_within_the_retry_budget_are_retried(proxy: LoopbackProxy, start_run: Callable[..., FaultRun]) -> None:
    acknowledged = {"/kept": "written before the fault"}
    _, db, scenario, budget = start_run(
        proxy.url, "S3 throttles, within the retries", "{retries} answers of 503 SlowDown per operation", acknowledged
    )
    retries = budget - 1
    for operation, attempt in (
        ("PutObject", lambda: db.set("/k", "v")),
        ("GetObject", lambda: db.read("/k", reload=True)),
        ("ListObjectsV2", lambda: db.ls("/")),
        ("DeleteObjects", lambda: db.delete_many(["/k"])),
    ):
        proxy.clear()
        proxy.fail_next(retries)
        scenario.attempt(operation, attempt, expect=None)
        assert proxy.operations() == {operation: retries + 1}
    assert db.ls("/") == ["kept"]
    scenario.check_nothing_lost(db, acknowledged)


def test_503s_beyond_the_budget_raise_store_unavailable_and_write_nothing(
    proxy: LoopbackProxy, start_run: Callable[..., FaultRun], bucket: str
) -> None:
    acknowledged = {"/k": "old"}
    _, db, scenario, budget = start_run(
        proxy.url,
        "S3 throttles, beyond the retries",
        "503 SlowDown on all {budget} attempts",
        acknowledged,
        cached=True,  # so the DB's read cache holds the old value when the new one fails
    )
    proxy.clear()
    proxy.fail_next(budget)
    error = scenario.attempt("overwrite", lambda: db.set("/k", "new"), expect=kydb.StoreUnavailable)
    message = str(error)
    assert bucket in message and f"{db.base_path[1:]}/k" in message and "SlowDown" in message
    assert proxy.operations() == {"PutObject": budget}
    assert db["/k"] == "old"  # the cache does not hold the value S3 never got
    for what, attempt in (
        ("put of a new object", lambda: db.set("/new/k", "new")),
        ("cold read", lambda: db.read("/k", reload=True)),
        ("exists", lambda: db.exists("/k")),
        ("ls", lambda: db.ls("/")),
    ):
        proxy.fail_next(budget)
        scenario.attempt(what, attempt, expect=kydb.StoreUnavailable)
    assert not db.exists("/new/k")
    scenario.check_nothing_lost(db, acknowledged)


def test_failed_multipart_upload_leaves_nothing(
    proxy: LoopbackProxy, start_run: Callable[..., FaultRun], s3: Any, bucket: str
) -> None:
    acknowledged = {"/kept": "written before the fault"}
    _, db, scenario, budget = start_run(
        proxy.url, "a part upload fails", "503 SlowDown on all {budget} attempts of part 2 of 3", acknowledged
    )
    proxy.fail_next(budget, when=lambda r: r.operation == "UploadPart" and "partNumber=2&" in r.query + "&")
    error = scenario.attempt(
        f"put of a {BIG >> 20} MiB value", lambda: db.set("/big", os.urandom(BIG)), expect=kydb.StoreUnavailable
    )
    assert bucket in str(error) and "big" in str(error)
    assert proxy.operations()["AbortMultipartUpload"] == 1
    assert no_uploads_pending(s3, bucket, db)
    assert not db.exists("/big") and db.ls("/") == ["kept"]
    scenario.check_nothing_lost(db, acknowledged)
