"""kydb on DynamoDB side by side with boto3 doing the same work, against moto's DynamoDB server.

    python -m nox -s bench-dynamodb

moto's server runs in a child process on 127.0.0.1 (so it does not compete
with the client for the GIL); kydb and a plain boto3 client speak HTTP to
it, on the same table (kydb's layout: partition key ``p``, sort key ``n``).
Prints, for each operation, kydb's median time over boto3's (the ratio)
and the HTTP requests each side made per operation, counted by botocore
``before-send`` hooks on both clients (retries would count too):

* put of a small dict: ``db[key] = value`` against ``put_item`` of the very
  bytes kydb stores (so boto3 does no pickling); and, for scale, a bare
  ``transact_write_items`` of the items kydb's put writes (head, data item,
  folder entry) against the same ``put_item``: what moto charges for a
  transaction;
* cold get: ``db.read(key, reload=True)`` against ``get_item``;
* ``db.get_many`` of 100 keys against one ``batch_get_item`` of them;
* ``ls`` of a folder of 10 objects in a table of 10,000 against one
  ``Query`` of that partition;
* ``rm_tree`` of a folder of 1,000 objects against a ``Query`` of the
  partition and ``batch_write_item`` deletes, 25 a request.

moto's timings are not DynamoDB's: moto answers each request in time that
grows with the table (every ``Query`` sorts the whole table, every
``TransactWriteItems`` copies it), where DynamoDB's cost per request does
not depend on the table's size.  So put and get are measured in a small
table, and the ratios say more about moto than about DynamoDB; the request
counts are what carries over.  The 10,000 objects are written in kydb's
layout with ``batch_write_item`` (``kydb_dynamodb.layout.object_items``),
25 items a request: writing them with ``set_many`` is 1 transaction per
up to 100 actions, which moto makes slow by copying the table each time.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3

import kydb
from kydb import envelope
from kydb_dynamodb import layout

SMALL = {"book": "MYBOOK", "pv": 1.5, "ccy": "USD", "legs": [1, 2, 3]}
ROUNDS = {"put": 200, "get": 200, "get_many": 30, "ls": 30, "rm_tree": 3}
MANY = 100
FILLER = 10_000
LISTED = 10
TREE = 1_000

SERVER = """
from kydb_dynamodb.testing import MotoServer
import sys
server = MotoServer().start()
print(server.port, flush=True)
sys.stdin.read()  # until the parent closes our stdin
"""


def start_moto() -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    port = int(child.stdout.readline())
    return child, f"http://127.0.0.1:{port}"


class Requests:
    """HTTP requests a boto3 client sends, by operation (a ``before-send`` hook: retries count too)."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-send.dynamodb", self._count)

    def _count(self, event_name: str, **_: Any) -> None:
        self.counts[event_name.rsplit(".", 1)[1]] += 1

    def during(self, work: Callable[[], object]) -> Counter[str]:
        before = Counter(self.counts)
        work()
        return self.counts - before


def median_time(work: Callable[[], object], rounds: int, setup: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(rounds):
        if setup is not None:
            setup()
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def described(counts: Counter[str]) -> str:
    return ", ".join(f"{count} {operation}" for operation, count in sorted(counts.items())) or "none"


def put_items(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    """Write items 25 a ``batch_write_item`` (what the setups use, on both sides)."""
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        while requests:
            answer = client.batch_write_item(RequestItems={table: requests})
            requests = answer.get("UnprocessedItems", {}).get(table, [])


def kydb_objects(base: str, keys: list[str], value: object) -> list[dict[str, Any]]:
    """The items of kydb objects at ``keys`` (under ``base``), folder entries once each."""
    blob = envelope.encode(value)
    now = time.time_ns()
    items: dict[tuple[str, str], dict[str, Any]] = {}
    for key in keys:
        for item in layout.object_items(base + key, blob, now):
            items[(item["p"]["S"], item["n"]["S"])] = item
    return list(items.values())


def main() -> None:
    home = tempfile.mkdtemp(prefix="kydb-bench-aws-")
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=f"{home}/config", AWS_SHARED_CREDENTIALS_FILE=f"{home}/credentials",
        AWS_EC2_METADATA_DISABLED="true",
    )  # fmt: skip
    child, endpoint = start_moto()
    try:
        run(endpoint)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


def run(endpoint: str) -> None:
    raw = boto3.client("dynamodb", endpoint_url=endpoint)
    raw_requests = Requests(raw)
    rows: list[tuple[str, float, Counter[str], Counter[str]]] = []

    # ---------------------------------------------------------------- put, cold get, get_many: a small table
    small = kydb.connect(f"dynamodb://bench-small/kydb?endpoint_url={endpoint}")
    small["/warm"] = 1  # creates the table, and checks it once
    kydb_requests = Requests(small.store.table.client)
    blob = envelope.encode(SMALL)
    counter = iter(range(10**9))

    def kydb_put() -> None:
        small[f"/put/k{next(counter) % 50}"] = SMALL

    def raw_put() -> None:
        item = {"p": {"S": "/raw/put/"}, "n": {"S": f"k{next(counter) % 50}"}, "d": {"B": blob}}
        raw.put_item(TableName="bench-small", Item=item)

    kydb_put()  # warm both paths
    raw_put()
    raw_put_time = median_time(raw_put, ROUNDS["put"])
    rows.append(
        (
            "put of a small dict",
            median_time(kydb_put, ROUNDS["put"]) / raw_put_time,
            kydb_requests.during(kydb_put),
            raw_requests.during(raw_put),
        )
    )

    # moto's own price of a transaction: the items one kydb put writes, as a bare transact_write_items.
    def raw_transaction() -> None:
        items = layout.object_items(f"/raw/tx/k{next(counter) % 50}", blob, time.time_ns())
        raw.transact_write_items(TransactItems=[{"Put": {"TableName": "bench-small", "Item": i}} for i in items])

    moto_transaction = median_time(raw_transaction, ROUNDS["put"]) / raw_put_time

    def kydb_get() -> object:
        return small.read("/put/k1", reload=True)

    def raw_get() -> object:
        key = {"p": {"S": "/raw/put/"}, "n": {"S": "k1"}}
        return raw.get_item(TableName="bench-small", Key=key, ConsistentRead=True)

    rows.append(
        (
            "cold get",
            median_time(kydb_get, ROUNDS["get"]) / median_time(raw_get, ROUNDS["get"]),
            kydb_requests.during(kydb_get),
            raw_requests.during(raw_get),
        )
    )

    keys = [f"/many/k{i:03d}" for i in range(MANY)]
    small.set_many(dict.fromkeys(keys, SMALL))
    put_items(raw, "bench-small", [{"p": {"S": "/raw/many/"}, "n": {"S": k}, "d": {"B": blob}} for k in keys])

    def kydb_many() -> object:
        found = small.get_many(keys, reload=True)
        assert len(found) == MANY
        return found

    def raw_many() -> object:
        request = {"Keys": [{"p": {"S": "/raw/many/"}, "n": {"S": k}} for k in keys], "ConsistentRead": True}
        answer = raw.batch_get_item(RequestItems={"bench-small": request})
        assert len(answer["Responses"]["bench-small"]) == MANY and not answer.get("UnprocessedKeys")
        return answer

    rows.append(
        (
            f"get_many({MANY})",
            median_time(kydb_many, ROUNDS["get_many"]) / median_time(raw_many, ROUNDS["get_many"]),
            kydb_requests.during(kydb_many),
            raw_requests.during(raw_many),
        )
    )

    # ---------------------------------------------------------------- ls of 10 in 10,000
    large = kydb.connect(f"dynamodb://bench-large/kydb?endpoint_url={endpoint}")
    large["/listed/k0"] = SMALL  # creates the table
    assert large.store.table.client is small.store.table.client  # one client per configuration, whatever the table
    started = time.perf_counter()
    filler = [f"/fill/f{i % 100:02d}/k{i:05d}" for i in range(FILLER - LISTED)]
    listed = [f"/listed/k{i}" for i in range(LISTED)]
    put_items(raw, "bench-large", kydb_objects(large.base_path, filler + listed, SMALL))
    setup = time.perf_counter() - started
    assert large.ls("/listed") == sorted(f"k{i}" for i in range(LISTED)) and len(large.ls("/fill/f07")) == 100

    def kydb_ls() -> object:
        return large.ls("/listed")

    def raw_ls() -> object:
        answer = raw.query(
            TableName="bench-large",
            KeyConditionExpression="p = :p AND n >= :names",
            ExpressionAttributeValues={":p": {"S": f"{large.base_path}/listed/"}, ":names": {"S": " "}},
            ProjectionExpression="n",
            ConsistentRead=True,
        )
        assert len(answer["Items"]) == LISTED
        return answer

    rows.append(
        (
            f"ls of {LISTED} in {FILLER:,}",
            median_time(kydb_ls, ROUNDS["ls"]) / median_time(raw_ls, ROUNDS["ls"]),
            kydb_requests.during(kydb_ls),
            raw_requests.during(raw_ls),
        )
    )

    # ---------------------------------------------------------------- rm_tree of 1,000: a table of its own
    tree = kydb.connect(f"dynamodb://bench-tree/kydb?endpoint_url={endpoint}")
    tree["/warm"] = 1
    tree_keys = [f"/tree/d{i % 10}/k{i:04d}" for i in range(TREE)]

    def tree_setup() -> None:
        put_items(raw, "bench-tree", kydb_objects(tree.base_path, tree_keys, SMALL))

    def kydb_rm_tree() -> None:
        assert tree.rm_tree("/tree") == TREE

    raw_keys = [{"p": {"S": f"/raw/d{i % 10}/"}, "n": {"S": f"k{i:04d}"}} for i in range(TREE)]

    def raw_setup() -> None:
        put_items(raw, "bench-tree", [{**key, "d": {"B": blob}} for key in raw_keys])

    def raw_rm_tree() -> None:
        found = []
        for folder in sorted({key["p"]["S"] for key in raw_keys}):
            pages = raw.get_paginator("query").paginate(
                TableName="bench-tree",
                KeyConditionExpression="p = :p",
                ExpressionAttributeValues={":p": {"S": folder}},
                ProjectionExpression="p, n",
                ConsistentRead=True,
            )
            found += [item for page in pages for item in page["Items"]]
        for start in range(0, len(found), 25):
            requests = [{"DeleteRequest": {"Key": key}} for key in found[start : start + 25]]
            while requests:
                answer = raw.batch_write_item(RequestItems={"bench-tree": requests})
                requests = answer.get("UnprocessedItems", {}).get("bench-tree", [])
        assert len(found) == TREE

    assert tree.store.table.client is small.store.table.client
    kydb_time = median_time(kydb_rm_tree, ROUNDS["rm_tree"], tree_setup)
    raw_time = median_time(raw_rm_tree, ROUNDS["rm_tree"], raw_setup)
    tree_setup()
    kydb_counts = kydb_requests.during(kydb_rm_tree)
    raw_setup()
    raw_counts = raw_requests.during(raw_rm_tree)
    rows.append((f"rm_tree of {TREE:,} (10 folders)", kydb_time / raw_time, kydb_counts, raw_counts))

    print(f"kydb on DynamoDB vs boto3, against moto's server at {endpoint} (moto's timings are not DynamoDB's;")
    print("the request counts are what carries over).  Ratio: kydb's median time / boto3's.")
    print(f"(setup: {FILLER:,} objects in kydb's layout with batch_write_item in {setup:.1f} s)")
    width = max(len(row[0]) for row in rows)
    for what, ratio, kydb_counts, raw_counts in rows:
        print(f"  {what:<{width}}  {ratio:6.2f}x   kydb: {described(kydb_counts)}   boto3: {described(raw_counts)}")
    print(
        f"moto's price of a transaction: boto3's own transact_write_items of the items one kydb put writes takes "
        f"{moto_transaction:.2f}x its put_item (moto copies the table for each transaction; DynamoDB does not)."
    )
    for db in (small, large, tree):
        db.close()


if __name__ == "__main__":
    main()
