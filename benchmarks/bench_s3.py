"""kydb on S3 side by side with boto3 doing the same work, against moto's S3 server.

    python -m nox -s bench-s3

moto's server (and the latency proxy below) run in a child process on
127.0.0.1; kydb and a plain boto3 client speak HTTP to it.  Prints, in one
run (its targets are printed, never asserted; the one assertion checks that
kydb's and boto3's recency scans found the same objects, so their times
compare like with like):

* put and cold get: ``db[key] = value`` and ``db.read(key, reload=True)``
  against ``put_object``/``get_object`` of the very bytes kydb stores (so the
  boto3 side does no pickling at all); the median of interleaved rounds.
  Target: kydb at 0.8x boto3's speed or better.
* ``db.get_many`` of 200 keys against 200 sequential ``get_object`` calls,
  both through a proxy that adds 20 ms to every request, as real S3 does.
  Target: 4x faster or better.
* the HTTP requests ``rm_tree`` makes for 2,000 objects, counted by a proxy,
  against a listing plus one ``DeleteObject`` per object.  Target: 2
  ``DeleteObjects`` plus the listing pages.
* the requests one put (at depth 4 and 8), get and exists make.
* ``db.recent(folder, limit=10, allow_scan=True)`` over a folder of 500
  objects, through the 20 ms proxy, against boto3 listing the folder and
  reading each object's ``head_object`` in turn (how one finds the newest
  objects by kydb's stored mtime without kydb).  Target: 4x faster or
  better, as for ``get_many`` (both run 16 requests at a time).  And the
  requests of a scan by a user index, and of puts with index values.
* one client per configuration: connecting 1,000 base paths (one boto3
  client between them) against making 50 boto3 clients, one per store, as a
  store with a client of its own would; and connect + first put on a base
  path with 1,000 others of its configuration open against the first of a
  configuration (which makes the client).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3

import kydb
from kydb import envelope
from kydb_s3.testing import LoopbackProxy

PAYLOADS: dict[str, Any] = {
    "small dict": {"book": "MYBOOK", "pv": 1.5, "ccy": "USD", "legs": [1, 2, 3]},
    "100 kB bytes": os.urandom(100_000),
    "5 MB bytes": os.urandom(5_000_000),
}
ROUNDS = {"small dict": 300, "100 kB bytes": 150, "5 MB bytes": 40}
MANY = 200
LATENCY = 0.020
TREE = 2000
SCANNED = 500
INDEXED_EVERY = 5
BASE_PATHS = 1000
SEPARATE_CLIENTS = 50

# moto and the latency proxy in their own process, so neither competes with the client for the GIL.
SERVER = f"""
import logging, sys
from moto.server import ThreadedMotoServer
from kydb_s3.testing import LoopbackProxy
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
endpoint = "http://127.0.0.1:%d" % server.get_host_and_port()[1]
slow = LoopbackProxy(endpoint, latency={LATENCY})
print(endpoint, slow.url, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
slow.close()
server.stop()
"""


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def interleaved_medians(first: Callable[[], object], second: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median time of each call, alternating them so load from elsewhere hits both alike."""
    a, b = [], []
    for _ in range(rounds):
        a.append(timed(first))
        b.append(timed(second))
    return statistics.median(a), statistics.median(b)


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f} ms"


def requests_of(proxy: LoopbackProxy, call: Callable[[], object]) -> Counter[str]:
    proxy.clear()
    call()
    return proxy.operations()


def put_and_get(db: Any, raw: Any, bucket: str) -> None:
    print("\nput and cold get, median of interleaved rounds (moto server in a child process)")
    print(f"{'operation':<10} {'payload':<13} {'kydb':>12} {'boto3':>12} {'kydb speed vs boto3':>21}")
    raw_key = db.base_path[1:] + "/raw/key"
    for label, value in PAYLOADS.items():
        blob = envelope.encode(value)
        rounds = ROUNDS[label]

        def kydb_put(value: Any = value) -> None:
            db["/kydb/key"] = value

        def raw_put(blob: bytes = blob) -> None:
            raw.put_object(Bucket=bucket, Key=raw_key, Body=blob)

        def kydb_get() -> None:
            db.read("/kydb/key", reload=True)

        def raw_get() -> None:
            raw.get_object(Bucket=bucket, Key=raw_key)["Body"].read()

        for name, ours, theirs in (("put", kydb_put, raw_put), ("cold get", kydb_get, raw_get)):
            ours(), theirs()  # warm connections
            k, r = interleaved_medians(ours, theirs, rounds)
            print(f"{name:<10} {label:<13} {fmt(k)} {fmt(r)} {r / k:>19.2f}x")
    print("target: 0.80x or better")


def get_many_with_latency(slow_endpoint: str, bucket: str) -> None:
    db: Any = kydb.connect(f"s3://{bucket}/{unique_name('bench-many')}?endpoint_url={slow_endpoint}")
    raw = boto3.client("s3", endpoint_url=slow_endpoint)
    keys = [f"/many/k{i:03d}" for i in range(MANY)]
    db.set_many({key: {"i": i, "pad": "x" * 100} for i, key in enumerate(keys)})
    raw_keys = [db.base_path[1:] + key for key in keys]
    kydb_times = [timed(lambda: db.get_many(keys, reload=True)) for _ in range(3)]
    sequential = timed(lambda: [raw.get_object(Bucket=bucket, Key=k)["Body"].read() for k in raw_keys])
    ours = statistics.median(kydb_times)
    print(f"\nget of {MANY} keys through a proxy adding {LATENCY * 1e3:.0f} ms per request")
    print(f"  kydb get_many({MANY})               {ours:8.3f} s  (median of 3)")
    print(f"  {MANY} sequential boto3 get_object     {sequential:8.3f} s")
    print(f"  kydb is {sequential / ours:.1f}x faster (target: 4x or better)")
    db.rm_tree("/")
    db.close()


def rm_tree_requests(endpoint: str, bucket: str) -> None:
    base = unique_name("bench-tree")
    direct: Any = kydb.connect(f"s3://{bucket}/{base}?endpoint_url={endpoint}")
    with LoopbackProxy(endpoint) as counting:
        db: Any = kydb.connect(f"s3://{bucket}/{base}?endpoint_url={counting.url}")
        raw = boto3.client("s3", endpoint_url=counting.url)
        tree = {f"/tree/f{i % 20}/o{i}": i for i in range(TREE)}

        direct.set_many(tree)
        start = time.perf_counter()
        ours = requests_of(counting, lambda: db.rm_tree("/tree"))
        ours_time = time.perf_counter() - start

        def one_by_one() -> None:
            for page in raw.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{base}/tree/"):
                for item in page.get("Contents", []):
                    raw.delete_object(Bucket=bucket, Key=item["Key"])

        direct.set_many(tree)
        start = time.perf_counter()
        theirs = requests_of(counting, one_by_one)
        theirs_time = time.perf_counter() - start

        def show(ops: Counter[str]) -> str:
            return f"{sum(ops.values()):5d} requests ({', '.join(f'{n} {op}' for op, n in sorted(ops.items()))})"

        print(f"\nrm_tree of {TREE:,} objects, HTTP requests counted by a proxy")
        print(f"  kydb rm_tree                         {show(ours)} in {ours_time:.2f} s")
        print(f"  list + one delete_object per object  {show(theirs)} in {theirs_time:.2f} s")
        print("  target: 2 DeleteObjects plus the listing pages")

        print("\nrequests per operation (kydb 1.1.0 made 9 per put at depth 4, 17 at depth 8, 2 per get)")
        for label, call in (
            ("put at depth 4", lambda: db.set("/a/b/c/d", 1)),
            ("put at depth 8", lambda: db.set("/a/b/c/d/e/f/g/h", 1)),
            ("get (cold)", lambda: db.read("/a/b/c/d", reload=True)),
            ("exists", lambda: db.exists("/a/b/c/d")),
        ):
            ops = requests_of(counting, call)
            print(f"  {label:<16} {sum(ops.values())} ({', '.join(f'{n} {op}' for op, n in ops.items())})")
        db.rm_tree("/")
        db.close()
    direct.close()


def query_scans(endpoint: str, slow_endpoint: str, bucket: str) -> None:
    base = unique_name("bench-scan")
    direct: Any = kydb.connect(f"s3://{bucket}/{base}?endpoint_url={endpoint}")
    direct.set_many({f"/scan/o{i:03d}": i for i in range(SCANNED)})
    for i in range(0, SCANNED, INDEXED_EVERY):
        direct.set(f"/scan/o{i:03d}", i, index={"rank": i % 7})
    db: Any = kydb.connect(f"s3://{bucket}/{base}?endpoint_url={slow_endpoint}")
    raw = boto3.client("s3", endpoint_url=slow_endpoint)

    def newest_by_head() -> list[str]:
        prefix = f"{base}/scan/"
        pages = raw.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        keys = [c["Key"] for page in pages for c in page.get("Contents", [])]
        stamps = {k: int(raw.head_object(Bucket=bucket, Key=k)["Metadata"]["kydb-mtime"]) for k in keys}
        return [k[len(prefix) :] for k in sorted(keys, key=lambda k: (stamps[k], k), reverse=True)[:10]]

    ours: list[str] = []
    kydb_time = timed(lambda: ours.extend(db.recent("/scan", limit=10, allow_scan=True)))
    theirs: list[str] = []
    boto_time = timed(lambda: theirs.extend(newest_by_head()))
    assert ours == theirs, (ours, theirs)
    latency = f"{LATENCY * 1e3:.0f} ms"
    print(f"\nrecent(limit=10) of a folder of {SCANNED} objects, through a proxy adding {latency} to every request")
    print(f"  kydb recent(allow_scan=True)              {kydb_time:8.3f} s")
    print(f"  boto3 list + {SCANNED} sequential head_object  {boto_time:8.3f} s")
    print(f"  kydb is {boto_time / kydb_time:.1f}x faster (target: 4x or better)")

    with LoopbackProxy(endpoint) as counting:
        counted: Any = kydb.connect(f"s3://{bucket}/{base}?endpoint_url={counting.url}")
        indexed = SCANNED // INDEXED_EVERY
        print(f"\nrequests of scans and indexed puts (a folder of {SCANNED} objects, {indexed} with index values)")
        for label, call in (
            ("recent(limit=10)", lambda: counted.recent("/scan", limit=10, allow_scan=True)),
            ("by('rank').limit(10)", lambda: list(counted.folder("/scan", allow_scan=True).by("rank").limit(10))),
            ("every object by mtime", lambda: list(counted.folder("/scan", allow_scan=True))),
            ("put, no index", lambda: counted.set("/scan/o000", 0)),
            ("put, new index value", lambda: counted.set("/scan/o000", 0, index={"rank": 99})),
            ("put, same index value", lambda: counted.set("/scan/o000", 0, index={"rank": 99})),
            ("put, index cleared", lambda: counted.set("/scan/o000", 0, index={"rank": None})),
        ):
            ops = requests_of(counting, call)
            print(f"  {label:<22} {sum(ops.values()):4d} ({', '.join(f'{n} {op}' for op, n in sorted(ops.items()))})")
        counted.close()
    direct.rm_tree("/")
    for opened in (direct, db):
        opened.close()


def shared_clients(endpoint: str, bucket: str) -> None:
    run = unique_name("bench-share")

    def options(config: int) -> str:  # read timeouts nothing else in this run uses: configurations of their own
        return f"?endpoint_url={endpoint}&read_timeout={40 + config}"

    def connect_and_put(url: str) -> tuple[float, Any]:
        start = time.perf_counter()
        db: Any = kydb.connect(url)
        db["/k"] = 1
        return time.perf_counter() - start, db

    # The first base path of a configuration makes its client; five configurations, the median.
    firsts = [connect_and_put(f"s3://{bucket}/{run}/first{config}{options(config)}") for config in range(1, 6)]
    start = time.perf_counter()
    dbs: list[Any] = [kydb.connect(f"s3://{bucket}/{run}/n{i}{options(0)}") for i in range(BASE_PATHS)]
    connecting = time.perf_counter() - start
    assert len({id(db.store.client) for db in dbs}) == 1  # what the measurement is about
    # The next base paths of that configuration, with 1,000 open: they share its client.
    nths = [connect_and_put(f"s3://{bucket}/{run}/next{i}{options(0)}") for i in range(5)]
    session = boto3.session.Session()
    session.client("s3", endpoint_url=endpoint).close()  # the session's models loaded, as kydb's are
    start = time.perf_counter()
    separate = [session.client("s3", endpoint_url=endpoint) for _ in range(SEPARATE_CLIENTS)]
    making = time.perf_counter() - start
    for client in separate:
        client.close()
    first_time = statistics.median(t for t, _ in firsts)
    nth_time = statistics.median(t for t, _ in nths)
    print(f"\none client per configuration: {BASE_PATHS:,} base paths on one endpoint")
    print(
        f"  kydb.connect of {BASE_PATHS:,} base paths (1 client)   {connecting:8.3f} s  "
        f"({connecting / BASE_PATHS * 1e3:.2f} ms each)"
    )
    print(
        f"  {SEPARATE_CLIENTS} boto3 clients, one per store          {making:8.3f} s  "
        f"({making / SEPARATE_CLIENTS * 1e3:.2f} ms each)"
    )
    print(
        f"  {BASE_PATHS:,} connects take {connecting / making:.2f}x the time of {SEPARATE_CLIENTS} separate clients "
        f"({making / SEPARATE_CLIENTS / (connecting / BASE_PATHS):.1f}x less per store)"
    )
    print(f"  connect + first put, a configuration's first base path (makes the client)  {fmt(first_time)}")
    print(f"  connect + first put, base path {BASE_PATHS + 1:,} of one (shares its client)       {fmt(nth_time)}")
    print(f"  base path {BASE_PATHS + 1:,} costs {nth_time / first_time:.2f}x the first (medians of 5)")
    for _, db in [*firsts, *nths]:
        db.rm_tree("/")
    for db in [*(db for _, db in [*firsts, *nths]), *dbs]:
        db.close()


def main() -> None:
    # Dummy credentials: everything below talks to the local server only.
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        endpoint, slow_endpoint = server.stdout.readline().split()
        raw = boto3.client("s3", endpoint_url=endpoint)
        bucket = unique_name("kydb-bench")
        raw.create_bucket(Bucket=bucket)
        db: Any = kydb.connect(f"s3://{bucket}/{unique_name('bench')}?endpoint_url={endpoint}")
        print(f"kydb-s3 against boto3 {boto3.__version__}, moto's S3 server at {endpoint}")
        put_and_get(db, raw, bucket)
        get_many_with_latency(slow_endpoint, bucket)
        rm_tree_requests(endpoint, bucket)
        query_scans(endpoint, slow_endpoint, bucket)
        shared_clients(endpoint, bucket)
        db.rm_tree("/")
        for page in raw.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                raw.delete_object(Bucket=bucket, Key=item["Key"])
        raw.delete_bucket(Bucket=bucket)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
