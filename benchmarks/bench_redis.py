"""kydb on Redis side by side with bare redis-py, in the same run.

    python -m nox -s bench-redis                      # a private redis-server on a free port
    python benchmarks/bench_redis.py [REDIS_URL]      # or the server at REDIS_URL (no base path)

Compares, for the same pickled payload on the same server:

* ``db[key] = value`` at depth 4 and 8 with ``SET key payload``;
* ``db.read(key, reload=True)`` (a cold read) with ``GET key``;
* ``db.get_many(1000 keys, reload=True)`` with one ``MGET`` of the same keys;
* ``db.recent(folder, limit=10)`` on a folder of 100 objects and on one of
  100,000: round trips and server commands per call (target: one command,
  one ``EVALSHA``) and the time ratio (target: within 2x).

kydb's side includes everything it does (key checks, the envelope, pickling,
the read cache, keeping folder listings).  The raw side is redis-py plus
``pickle.dumps``/``pickle.loads``, what storing Python objects takes without
kydb; a third column shows redis-py on bytes pickled once beforehand.  A
key's depth counts every component in Redis, the DB's base path included.
Throughput is 1 / the median time per call, the sides taking turns call by
call; ratios are kydb / raw (1.0 = as fast as raw redis-py).  Then, per put
of a new object and per overwrite at depth 4 and 8: the requests redis-py
sent (round trips) and the commands the server ran (``INFO commandstats``,
exact on the private server); then ``recent`` against the folder's size.
Asserts nothing.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

import kydb
from kydb.url import parse_store_url

PAYLOAD = {"book": "MYBOOK", "pv": 1.5, "ccy": "USD", "legs": [1, 2, 3]}
KEYS_PER_FOLDER = 1000


@contextmanager
def private_server() -> Iterator[str]:
    """A redis-server of our own on a free loopback port, without persistence."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory]
        process = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            for _ in range(200):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            else:
                sys.exit(f"the private redis-server on port {port} did not answer within 10 s")
            client.close()
            yield f"redis://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait()


@contextmanager
def scratch(url: str, base: str) -> Iterator[kydb.BaseDB]:
    """A DB under ``base`` on the server at ``url``, emptied and closed however the block ends."""
    db = kydb.connect(parse_store_url(url).with_base(base))
    try:
        yield db
    finally:
        db.rm_tree("/")
        db.close()


def compare(count: int, *sides: Callable[[int], object]) -> list[float]:
    """Operations per second of each side: 1 / its median time per call.

    The sides take turns call by call, so a burst of load from other
    processes hits them alike, and the median ignores the calls it slowed.
    """
    samples: list[list[int]] = [[] for _ in sides]
    clock = time.perf_counter_ns
    for i in range(count):
        for side, times in zip(sides, samples, strict=True):
            start = clock()
            side(i)
            times.append(clock() - start)
    return [1e9 / statistics.median(times) for times in samples]


def command_stats(raw: redis.Redis) -> Counter[str]:
    info = raw.info("commandstats")
    return Counter({n.removeprefix("cmdstat_"): int(s["calls"]) for n, s in info.items() if n != "cmdstat_info"})


def per_call(raw: redis.Redis, calls: list[Callable[[], object]]) -> tuple[float, dict[str, float]]:
    """Requests sent and server commands run per call of ``calls``, on average."""
    sent = [0]
    own = "send_packed_command" in vars(redis.Connection)
    original = redis.Connection.send_packed_command

    def counting(self: redis.Connection, *args: Any, **kwargs: Any) -> Any:
        sent[0] += 1  # one call sends one command or one pipeline: one round trip
        return original(self, *args, **kwargs)

    before = command_stats(raw)
    redis.Connection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        for call in calls:
            call()
    finally:
        if own:
            redis.Connection.send_packed_command = original  # type: ignore[method-assign]
        else:
            del redis.Connection.send_packed_command
    delta = command_stats(raw)
    delta.subtract(before)
    return sent[0] / len(calls), {name: n / len(calls) for name, n in sorted(delta.items()) if n}


def shown(commands: dict[str, float]) -> str:
    return ", ".join(f"{calls:g} {name.upper()}" for name, calls in commands.items())


def recent_by_folder_size(url: str, raw: redis.Redis) -> None:
    """``recent(folder, limit=10)`` on a folder of 100 objects and on one of 100,000, side by side."""
    print("\nrecent(folder, limit=10) against the folder's size (target: one command, within 2x):")
    pid = os.getpid()
    with scratch(url, f"/bench-recent-100-{pid}") as small, scratch(url, f"/bench-recent-100000-{pid}") as big:
        for db, size in ((small, 100), (big, 100_000)):
            for start in range(0, size, 10_000):
                db.set_many({f"/reports/r{i:06d}": i for i in range(start, min(size, start + 10_000))})
            db["/reports/newest"] = PAYLOAD
            assert db.recent("/reports", limit=10)[0] == "newest"  # also loads the script
            trips, commands = per_call(raw, [lambda db=db: db.recent("/reports", limit=10)] * 100)
            print(f"  {size:>7,} objects: {trips:g} round trip(s); server commands: {shown(commands)}")
        small_rate, big_rate = compare(
            2000, lambda i: small.recent("/reports", limit=10), lambda i: big.recent("/reports", limit=10)
        )
    ratio = small_rate / big_rate
    print(
        f"  calls/s: {small_rate:,.0f} on 100, {big_rate:,.0f} on 100,000 objects; time ratio {ratio:.2f}x"
        f" (target <= 2x) {'ok' if ratio <= 2 else 'MISSED'}"
    )


def folder_at(depth: int) -> str:
    """A folder below the DB's base path whose objects have ``depth`` components in all."""
    return "".join(f"/d{i}" for i in range(1, depth - 1))


def run(url: str) -> None:
    raw = redis.Redis.from_url(url)
    raw_keys: set[str] = set()
    try:
        with scratch(url, f"/bench-{os.getpid()}") as db:
            side_by_side(db, raw, raw_keys)
    finally:
        if raw_keys:
            raw.delete(*raw_keys)
    recent_by_folder_size(url, raw)
    raw.close()


def side_by_side(db: kydb.BaseDB, raw: redis.Redis, raw_keys: set[str]) -> None:
    """Puts, gets and get_many through ``db`` and through ``raw``, noting in ``raw_keys`` the keys it writes."""
    raw_base = f"/bench-raw-{os.getpid()}"  # raw writes plain pickles: keep them apart from kydb's objects
    blob = pickle.dumps(PAYLOAD, protocol=5)
    dumps, loads = pickle.dumps, pickle.loads
    print(f"kydb {db!r} vs redis-py {redis.__version__} on Redis {raw.info('server')['redis_version']}")
    print(f"payload {PAYLOAD!r}, {len(blob)} bytes pickled; ops/s = 1 / median time per call, sides taking turns")
    print("raw = redis-py + pickle.dumps/loads; bytes only = redis-py on bytes pickled beforehand\n")
    rows = []
    n = KEYS_PER_FOLDER
    for depth in (4, 8):
        keys = [f"{folder_at(depth)}/k{i}" for i in range(n)]
        full = [raw_base + k for k in keys]
        raw_keys.update(full)
        rates = compare(
            10_000,
            lambda i, keys=keys: db.set(keys[i % n], PAYLOAD),
            lambda i, full=full: raw.set(full[i % n], dumps(PAYLOAD, protocol=5)),
            lambda i, full=full: raw.set(full[i % n], blob),
        )
        rows.append((f"put, depth {depth}", "SET", 0.8, rates))
    keys = [f"{folder_at(4)}/k{i}" for i in range(n)]
    full = [raw_base + k for k in keys]
    rates = compare(
        10_000,
        lambda i: db.read(keys[i % n], reload=True),
        lambda i: loads(raw.get(full[i % n])),
        lambda i: raw.get(full[i % n]),
    )
    rows.append(("cold get (reload=True)", "GET", 0.85, rates))
    rates = compare(
        200,
        lambda i: db.get_many(keys, reload=True),
        lambda i: [loads(b) for b in raw.mget(full)],
        lambda i: raw.mget(full),
    )
    rows.append((f"get_many({n}), calls/s", f"MGET {n}", 1 / 1.5, rates))

    print(f"{'operation':<26} {'kydb/s':>9} {'raw':<9} {'raw/s':>9} {'ratio':>6} {'target':>7}  {'bytes only/s':>12}")
    for label, raw_label, target, (kydb_rate, raw_rate, bytes_rate) in rows:
        ratio = kydb_rate / raw_rate
        print(
            f"{label:<26} {kydb_rate:>9,.0f} {raw_label:<9} {raw_rate:>9,.0f} {ratio:>5.2f}x {target:>6.2f}x"
            f" {'ok' if ratio >= target else 'MISSED':<6} {bytes_rate:>9,.0f}"
        )

    print("\nper put into a new folder, then 199 more into it, then per overwrite of those 200")
    print("(INFO commandstats counts commands run by scripts too):")
    for depth in (4, 8):
        keys = [f"/new{depth}{folder_at(depth - 1)}/k{i}" for i in range(200)]
        for what in ("new", "overwrite"):
            trips, commands = per_call(raw, [lambda key=key: db.set(key, PAYLOAD) for key in keys])
            print(f"  depth {depth}, {what:<9}: {trips:g} round trip(s); server commands: {shown(commands)}")


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KYDB_BENCH_REDIS_URL")
    if url is not None:
        run(url)
    elif shutil.which("redis-server") is None:
        sys.exit("no redis-server on PATH: pass the URL of a Redis server")
    else:
        with private_server() as private:
            run(private)


if __name__ == "__main__":
    main()
