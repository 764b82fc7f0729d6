"""Faults between kydb and DynamoDB, each against moto's real server, and the table of what happened.

TCP-level faults come from :class:`kydb.testing.faults.TCPProxy` (connections
cut mid-request or mid-answer, refused, stalled); a server restart is moto's
own server stopped and started again on its port (moto keeps its tables in
the test process, as DynamoDB keeps them on its disks, so the test checks
that kydb finds them all again).  DynamoDB's error answers (throttling,
transaction conflicts, access denied) and cuts after a given number of
requests come from :class:`kydb_dynamodb.testing.DynamoDBProxy`.  moto's
server closes every connection after its answer, so each request is a
connection of its own.

For every scenario: the operation raises ``StoreUnavailable`` (never a
``KeyError``) once the retries are spent, the read cache does not hold a
value DynamoDB never got, retries that succeed are invisible, and every
object acknowledged before the fault reads back intact after it.  Each
scenario is a row of the fault matrix printed at the end of the run.
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
from kydb_dynamodb import INLINE_LIMIT, AccessDenied
from kydb_dynamodb.testing import DynamoDBProxy, MotoServer

#: A value of one item, large enough to be cut in the middle of its request or answer.
LARGE_ITEM = 300 * 1024
#: Where a dropped connection is cut: well into the value, far past any request's headers.
CUT_AFTER = 64 * 1024
#: botocore's read timeout for the stall scenarios, in seconds.
READ_TIMEOUT = 0.5


class FaultRun(NamedTuple):
    """Where a fault test starts: the acknowledged objects stored, and the scenario's row of the table."""

    #: A DB straight to moto: it wrote what must survive, and cleans up.
    direct: Any
    #: The DB on the same base path through the faulty endpoint (its table already checked).
    db: Any
    scenario: FaultScenario
    #: Attempts botocore makes per request (``AWS_MAX_ATTEMPTS``, 4 by default for DynamoDB).
    budget: int


@pytest.fixture
def start_run(
    pair: Callable[..., tuple[Any, Any]], fault_scenario: Callable[[str, str], FaultScenario]
) -> Callable[..., FaultRun]:
    """``start_run(endpoint, name, fault, acknowledged, options='', cached=False)``: a :class:`FaultRun`.

    Stores ``acknowledged`` (straight to moto, or, with ``cached``, through
    the DB under test, so its read cache holds the values too) and adds the
    row ``name: fault`` to the fault matrix.  ``fault`` may say ``{budget}``
    (the attempts per request) and ``{retries}`` (one fewer).
    """

    def start(
        endpoint: str, name: str, fault: str, acknowledged: dict[str, object], options: str = "", cached: bool = False
    ) -> FaultRun:
        direct, db = pair(endpoint, options)
        (db if cached else direct).set_many(acknowledged)
        db.exists("/warm-up")  # the store's DescribeTable, before any fault
        budget = db.store.table.connection.max_attempts
        scenario = fault_scenario("dynamodb", f"{name}: {fault.format(budget=budget, retries=budget - 1)}")
        return FaultRun(direct, db, scenario, budget)

    return start


def through(proxy: TCPProxy) -> str:
    return f"http://127.0.0.1:{proxy.port}"


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


# ---------------------------------------------------------------------- TCP: a connection cut mid-transfer


@pytest.mark.parametrize("retried", [True, False], ids=["retried", "no-retry-left"])
def test_connection_cut_mid_request(
    retried: bool, tcp_proxy: TCPProxy, start_run: Callable[..., FaultRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not retried:
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    acknowledged: dict[str, object] = {"/kept": "written before the fault", "/v": b"the old value"}
    _, db, scenario, _ = start_run(
        through(tcp_proxy),
        f"cut mid-request, {'retried' if retried else 'no retry left'}",
        f"TCP cut after {CUT_AFTER >> 10} KiB of a {LARGE_ITEM >> 10} KiB put" + ("" if retried else ", 1 attempt"),
        acknowledged,
        cached=True,
    )
    value = os.urandom(LARGE_ITEM)
    tcp_proxy.cut_after(CUT_AFTER)  # the next connection: the put's transaction
    error = scenario.attempt("put", lambda: db.set("/v", value), expect=None if retried else kydb.StoreUnavailable)
    assert tcp_proxy.dropped == 1  # the cut struck, mid-request
    if retried:
        acknowledged["/v"] = value
    else:
        assert "TransactWriteItems" in str(error) and db.store.table.name in str(error)
        assert db["/v"] == b"the old value"  # the cache does not hold the value DynamoDB never got
    scenario.check_nothing_lost(db, acknowledged)


@pytest.mark.parametrize("retried", [True, False], ids=["retried", "no-retry-left"])
def test_connection_cut_mid_answer(
    retried: bool, tcp_proxy: TCPProxy, start_run: Callable[..., FaultRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not retried:
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    acknowledged = {"/v": os.urandom(LARGE_ITEM)}
    _, db, scenario, _ = start_run(
        through(tcp_proxy),
        f"cut mid-answer, {'retried' if retried else 'no retry left'}",
        f"TCP cut after {CUT_AFTER >> 10} KiB of a {LARGE_ITEM >> 10} KiB get" + ("" if retried else ", 1 attempt"),
        acknowledged,
    )
    connections = tcp_proxy.connections
    tcp_proxy.cut_after(CUT_AFTER)
    read: list[object] = []
    scenario.attempt(
        "cold read",
        lambda: read.append(db.read("/v", reload=True)),
        expect=None if retried else kydb.StoreUnavailable,
    )
    assert tcp_proxy.dropped == 1
    assert read == ([acknowledged["/v"]] if retried else [])
    assert tcp_proxy.connections == connections + (2 if retried else 1)  # the cut attempt, then one more if allowed
    scenario.check_nothing_lost(db, acknowledged)


# ---------------------------------------------------------------------- TCP: a server restart


def test_server_restart_longer_than_the_retries(
    table: str, fault_scenario: Callable[[str, str], FaultScenario], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    server = MotoServer().start()  # a server of its own, to stop and start again on its port
    port, running = server.port, True
    db = kydb.connect(f"dynamodb://{table}/restart-{os.getpid()}-{port}?endpoint_url={server.url}")
    scenario = fault_scenario("dynamodb", "server restart: moto's server stopped, then started on its port")
    try:
        acknowledged = {f"/r/k{i}": f"value {i}" for i in range(10)}
        db.set_many(acknowledged)
        db["/r/big"] = acknowledged["/r/big"] = os.urandom(INLINE_LIMIT * 2)
        server.stop()
        running = False
        for what, operation in (
            ("overwrite", lambda: db.set("/r/k0", "never stored")),
            ("put of a new object", lambda: db.set("/r/new", "never stored")),
            ("large put", lambda: db.set("/r/big", os.urandom(INLINE_LIMIT * 2))),
            ("cold read", lambda: db.read("/r/k1", reload=True)),
            ("exists", lambda: db.exists("/r/k2")),
            ("ls", lambda: db.ls("/r")),
            ("delete", lambda: db.delete("/r/k3")),
            ("recent", lambda: db.recent("/r")),
            ("rm_tree", lambda: db.rm_tree("/r")),
        ):
            error = scenario.attempt(what, operation, expect=kydb.StoreUnavailable)
            assert f"127.0.0.1:{port}" in str(error), error
        server, running = MotoServer(port).start(), True
        assert db["/r/k0"] == "value 0"  # the cache path: the failed write left no trace
        assert not db.exists("/r/new")
        scenario.check_nothing_lost(db, acknowledged)
        db["/r/after"] = "written after the restart"
        assert db.read("/r/after", reload=True) == "written after the restart"
    finally:
        if not running:
            server = MotoServer(port).start()
        db.rm_tree("/")
        db.close()
        server.stop()


def test_server_back_within_the_retries_is_invisible(tcp_proxy: TCPProxy, start_run: Callable[..., FaultRun]) -> None:
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
        ("ls", lambda: db.ls("/r")),
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
        ("ls", lambda: db.ls("/s")),
    ):
        started = time.monotonic()
        error = scenario.attempt(what, operation, expect=kydb.StoreUnavailable)
        assert "timeout" in str(error).lower() and db.store.table.name in str(error), error
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


def test_nobody_listening_is_store_unavailable(
    connect_dynamodb: Callable[..., Any], table: str, fault_scenario: Callable[[str, str], FaultScenario]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on once this socket closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    direct = connect_dynamodb()
    acknowledged = {"/k": "stored"}
    direct.set_many(acknowledged)
    db = kydb.connect(f"dynamodb://{table}{direct.base_path}?endpoint_url=http://127.0.0.1:{port}")
    scenario = fault_scenario("dynamodb", "endpoint down: connection refused, nothing listens on the port")
    try:
        for what, operation in (
            ("read", lambda: db.read("/k")),
            ("put", lambda: db.set("/k", 1)),
            ("exists", lambda: db.exists("/k")),
            ("ls", lambda: db.ls("/")),
        ):
            error = scenario.attempt(what, operation, expect=kydb.StoreUnavailable)
            message = str(error)
            assert f"127.0.0.1:{port}" in message and table in message and "check the endpoint" in message
    finally:
        db.close()
    scenario.check_nothing_lost(direct, acknowledged)


# ---------------------------------------------------------------------- DynamoDB's error answers


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_throttling_within_the_retries_is_invisible(
    code: str, proxy: DynamoDBProxy, start_run: Callable[..., FaultRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")  # throttling backs off for up to seconds a retry
    acknowledged = {"/kept": "written before the fault"}
    _, db, scenario, budget = start_run(
        proxy.url, f"throttled ({code}), within the retries", "{retries} throttling answers per operation", acknowledged
    )
    for operation, attempt in (
        ("TransactWriteItems", lambda: db.set("/k", "v")),
        ("GetItem", lambda: db.read("/k", reload=True)),
        ("Query", lambda: db.ls("/")),
    ):
        proxy.clear()
        proxy.fail_next(budget - 1, code)
        scenario.attempt(operation, attempt, expect=None)
        assert proxy.operations() == {operation: budget}
    assert db.ls("/") == ["k", "kept"]
    scenario.check_nothing_lost(db, {**acknowledged, "/k": "v"})


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_throttling_beyond_the_retries_raises_store_unavailable_and_writes_nothing(
    code: str, proxy: DynamoDBProxy, start_run: Callable[..., FaultRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    acknowledged = {"/k": "old"}
    _, db, scenario, budget = start_run(
        proxy.url, f"throttled ({code}), beyond the retries", "throttled on all {budget} attempts", acknowledged,
        cached=True,
    )  # fmt: skip
    for what, attempt in (
        ("overwrite", lambda: db.set("/k", "new")),
        ("put of a new object", lambda: db.set("/new/k", "new")),
        ("cold read", lambda: db.read("/k", reload=True)),
        ("exists", lambda: db.exists("/k")),
        ("ls", lambda: db.ls("/")),
        ("delete", lambda: db.delete_many(["/k"])),
    ):
        proxy.fail_next(budget, code)
        error = scenario.attempt(what, attempt, expect=kydb.StoreUnavailable)
        assert code in str(error) and db.store.table.name in str(error) and db.store.url.masked in str(error)
    assert db["/k"] == "old"  # the cache does not hold the value DynamoDB never got
    assert not db.exists("/new/k")
    scenario.check_nothing_lost(db, acknowledged)


def test_transaction_conflicts_are_retried(proxy: DynamoDBProxy, start_run: Callable[..., FaultRun]) -> None:
    acknowledged = {"/kept": "written before the fault"}
    _, db, scenario, _ = start_run(
        proxy.url, "transactions cancelled by others", "3 TransactionConflict cancellations per write", acknowledged
    )
    reasons = [{"Code": "TransactionConflict", "Message": "another transaction"}]
    for what, attempt in (("put", lambda: db.set("/k", "v")), ("delete", lambda: db.delete("/kept"))):
        transactions: Callable[[Any], bool] = lambda r: r.operation == "TransactWriteItems"  # noqa: E731
        proxy.fail_next(3, "TransactionCanceledException", when=transactions, CancellationReasons=reasons)
        scenario.attempt(what, attempt, expect=None)
    assert db.ls("/") == ["k"]
    scenario.check_nothing_lost(db, {"/k": "v"})


def test_access_denied_is_permission_error_never_not_found(
    proxy: DynamoDBProxy, start_run: Callable[..., FaultRun]
) -> None:
    acknowledged = {"/k": "kept"}
    _, db, scenario, _ = start_run(proxy.url, "access denied", "AccessDeniedException answers", acknowledged)
    for what, attempt in (
        ("cold read", lambda: db.read("/k", reload=True)),
        ("put", lambda: db.set("/k", "new")),
        ("ls", lambda: db.ls("/")),
    ):
        proxy.fail_next(1, "AccessDeniedException")
        error = scenario.attempt(what, attempt, expect=AccessDenied)
        assert isinstance(error, PermissionError)
    scenario.check_nothing_lost(db, acknowledged)


# ---------------------------------------------------------------------- a large put interrupted at each step

#: The requests of a 3-part put over a 2-part value: the head, the pending marker (and folder entries),
#: the parts, the switch, the old parts, their marker, the query for leftovers.
STEPS = (
    "GetItem",
    "BatchWriteItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "BatchWriteItem",
    "BatchWriteItem",
    "Query",
)
SWITCH = STEPS.index("TransactWriteItems")


@pytest.mark.parametrize("answered", [False, True], ids=["request-lost", "answer-lost"])
def test_a_large_put_interrupted_at_each_step_leaves_a_whole_value(
    answered: bool,
    proxy: DynamoDBProxy,
    start_run: Callable[..., FaultRun],
    monkeypatch: pytest.MonkeyPatch,
    dynamodb: Any,
    table: str,
) -> None:
    """Cut every request from the n-th on, for each n: the old value stays (or the new one, once switched).

    Then the object is deleted with no grace for pending parts, and nothing
    of it may be left in the table: what the interrupted write left behind
    is cleaned up by the next write or delete of that name.
    """
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    old, new = os.urandom(INLINE_LIMIT + 1000), os.urandom(2 * INLINE_LIMIT + 1000)  # 2 parts, then 3
    keys = [f"/mp/k{step}" for step in range(len(STEPS) + 1)]
    acknowledged: dict[str, object] = {key: old for key in keys}
    direct, db, scenario, _ = start_run(
        proxy.url,
        f"large put cut at each step ({'answers lost' if answered else 'requests lost'})",
        f"every request cut from the n-th of the {len(STEPS)} of a 3-part put over a 2-part value, n = 1..8",
        acknowledged,
    )
    attempted: dict[str, object] = {}
    for step, key in enumerate(keys):
        proxy.clear()
        proxy.cut_from(step, reach_server=answered)
        fails = step <= SWITCH
        expected = kydb.StoreUnavailable if fails else None
        scenario.attempt(f"put cut from request {step + 1}", lambda: db.set(key, new), expect=expected)
        proxy.heal()
        assert [r.operation for r in proxy.requests][: min(step, len(STEPS))] == list(STEPS[:step])
        if fails and not (answered and step == SWITCH):
            assert direct.read(key, reload=True) == old  # the write never switched: the old value, whole
        elif fails:
            attempted[key] = new  # the switch reached the server and its answer was lost: either is whole
            assert direct.read(key, reload=True) in (old, new)
        else:
            acknowledged[key] = new
            assert direct.read(key, reload=True) == new
    scenario.check_nothing_lost(direct, acknowledged, attempted)
    monkeypatch.setattr("kydb_dynamodb.store.ORPHAN_GRACE_S", 0)
    direct.delete_many(keys)
    left = [
        item["n"]["S"]
        for item in dynamodb.query(
            TableName=table,
            KeyConditionExpression="p = :p",
            ExpressionAttributeValues={":p": {"S": f"{direct.base_path}/mp/"}},
            ConsistentRead=True,
        )["Items"]
    ]
    assert left == [], f"{len(left)} items left behind, e.g. {[repr(k[:40]) for k in left[:5]]}"
