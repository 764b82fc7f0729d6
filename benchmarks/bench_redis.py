"""kydb on Redis side by side with bare redis-py, in the same run, on one server and on a cluster.

    python -m nox -s bench-redis                      # private redis-servers (one, and a cluster of 3 masters)
    python benchmarks/bench_redis.py [REDIS_URL]      # or the server at REDIS_URL (no base path), no cluster part

For the same pickled payload on the same server:

* ``db[key] = value`` at depth 4 and 8 (overwriting objects of an existing
  folder) next to ``SET key payload``: puts per second, and the server's
  CPU per put (``INFO CPU``: user + system seconds, deltas over blocks of
  puts, the sides taking turns block by block), with the ratios kydb/raw;
* the commands per put (``INFO commandstats``, which counts the commands a
  script runs too, and the script call itself) and round trips, for a new
  object in an existing folder and for an overwrite;
* ``db.read(key, reload=True)`` (a cold read) next to ``GET key``;
  ``db.get_many(1000 keys, reload=True)`` next to one ``MGET``;
* the same puts on a local Redis Cluster of three masters, next to
  ``RedisCluster.set`` (CPU summed over the masters);
* ``db.recent(folder, limit=10)`` on a folder of 100 objects and on one of
  100,000;
* connect + first put on the Nth base path of a server already in use
  (its pool open) next to the first (a new pool: a new connection).

kydb's side includes everything it does (key checks, the envelope, pickling,
the read cache, versions, keeping folder listings and time indexes).  The
raw side is redis-py plus ``pickle.dumps``/``pickle.loads``, what storing
Python objects takes without kydb; a third column shows redis-py on bytes
pickled once beforehand.  Throughput is 1 / the median time per call, the
sides taking turns call by call.  Asserts nothing: the targets are printed
next to the measurements.
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
from contextlib import ExitStack, contextmanager
from typing import Any

import redis

import kydb
from kydb.url import parse_store_url
from kydb_redis.layout import HEADER_BYTES, PUT_ONE, folder_key, header, new_version, sortable

PAYLOAD = {"book": "MYBOOK", "pv": 1.5, "ccy": "USD", "legs": [1, 2, 3]}
KEYS_PER_FOLDER = 1000
PUT_TARGET, CPU_TARGET, GET_TARGET, MANY_TARGET = 0.85, 1.3, 0.85, 1 / 1.5


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < 55536:  # a cluster node's bus listens 10,000 ports higher
            return port


@contextmanager
def private_servers(count: int, *extra: str) -> Iterator[list[int]]:
    """``count`` redis-servers of our own on free loopback ports, without persistence: their ports."""
    with tempfile.TemporaryDirectory() as directory:
        processes, ports = [], []
        try:
            for i in range(count):
                port = free_port()
                node_dir = os.path.join(directory, str(i))
                os.mkdir(node_dir)
                args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                        "--dir", node_dir, *extra]  # fmt: skip
                processes.append(subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL))
                ports.append(port)
            for port in ports:
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
            yield ports
        finally:
            for process in processes:
                process.terminate()
                process.wait()


@contextmanager
def private_cluster() -> Iterator[tuple[str, list[int]]]:
    """A Redis Cluster of three masters: its ``redis+cluster://`` URL and the masters' ports."""
    with private_servers(3, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000") as ports:
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-yes"],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
        for _ in range(300):
            states = [redis.Redis(port=p).cluster("info")["cluster_state"] for p in ports]
            if states == ["ok"] * 3:
                break
            time.sleep(0.1)
        yield f"redis+cluster://127.0.0.1:{ports[0]}", ports


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
    """Operations per second of each side: 1 / its median time per call, the sides taking turns call by call."""
    samples: list[list[int]] = [[] for _ in sides]
    clock = time.perf_counter_ns
    for i in range(count):
        for side, times in zip(sides, samples, strict=True):
            start = clock()
            side(i)
            times.append(clock() - start)
    return [1e9 / statistics.median(times) for times in samples]


class Servers:
    """The servers (one, or a cluster's masters) whose counters a measurement reads."""

    def __init__(self, ports: list[int], host: str = "127.0.0.1", **options: Any) -> None:
        self.clients = [redis.Redis(host=host, port=port, **options) for port in ports]

    def cpu(self) -> float:
        """Seconds of CPU (user + system) the servers have used."""
        return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in (c.info("cpu") for c in self.clients))

    def commands(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for client in self.clients:
            for name, stats in client.info("commandstats").items():
                if name not in ("cmdstat_info", "cmdstat_cluster"):
                    found[name.removeprefix("cmdstat_")] += int(stats["calls"])
        return found

    def close(self) -> None:
        for client in self.clients:
            client.close()


def cpu_per_call(servers: Servers, rounds: int, block: int, *sides: Callable[[int], object]) -> list[float]:
    """Server CPU microseconds per call of each side: blocks of ``block`` calls, the sides taking turns."""
    spent = [0.0] * len(sides)
    for round_ in range(rounds):
        for n, side in enumerate(sides):
            before = servers.cpu()
            for i in range(block):
                side(round_ * block + i)
            spent[n] += servers.cpu() - before
    return [1e6 * s / (rounds * block) for s in spent]


def per_call(servers: Servers, calls: list[Callable[[], object]]) -> tuple[float, dict[str, float]]:
    """Requests sent and server commands run per call of ``calls``, on average."""
    sent = [0]
    own = "send_packed_command" in vars(redis.Connection)
    original = redis.Connection.send_packed_command

    def counting(self: redis.Connection, *args: Any, **kwargs: Any) -> Any:
        sent[0] += 1  # one call sends one command or one pipeline: one round trip
        return original(self, *args, **kwargs)

    before = servers.commands()
    redis.Connection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        for call in calls:
            call()
    finally:
        if own:
            redis.Connection.send_packed_command = original  # type: ignore[method-assign]
        else:
            del redis.Connection.send_packed_command
    delta = servers.commands()
    delta.subtract(before)
    return sent[0] / len(calls), {name: n / len(calls) for name, n in sorted(delta.items()) if n}


def shown(commands: dict[str, float]) -> str:
    return ", ".join(f"{calls:g} {name.upper()}" for name, calls in commands.items())


def folder_at(depth: int) -> str:
    """A folder below the DB's base path whose objects have ``depth`` components in all."""
    return "".join(f"/d{i}" for i in range(1, depth - 1))


def verdict(ratio: float, target: float, higher_is_better: bool = True) -> str:
    return "ok" if (ratio >= target if higher_is_better else ratio <= target) else "MISSED"


def puts(db: kydb.BaseDB, raw: Any, servers: Servers, raw_keys: set[str], label: str) -> None:
    """Puts per second and server CPU per put, kydb next to raw SET, then commands per put."""
    raw_base = f"/bench-raw-{os.getpid()}"  # raw writes plain pickles: keep them apart from kydb's objects
    blob = pickle.dumps(PAYLOAD, protocol=5)
    dumps = pickle.dumps
    n = KEYS_PER_FOLDER
    print(f"\n{label}: puts of {len(blob)} pickled bytes, overwriting {n} objects of one folder")
    print(f"{'':<16} {'kydb/s':>9} {'SET/s':>9} {'ratio':>6} {'target':>7}  {'bytes only/s':>12}   "
          f"{'kydb CPU/put':>12} {'SET CPU/put':>11} {'ratio':>6} {'target':>7}")  # fmt: skip
    full_keys: list[str] = []
    for depth in (4, 8):
        keys = [f"{folder_at(depth)}/k{i}" for i in range(n)]
        full = [raw_base + k for k in keys]
        full_keys += full
        raw_keys.update(full)
        db.set_many(dict.fromkeys(keys, PAYLOAD))  # the folder and its objects exist: every put overwrites

        def kydb_put(i: int, keys: list[str] = keys) -> None:
            db.set(keys[i % n], PAYLOAD)

        def raw_put(i: int, full: list[str] = full) -> None:
            raw.set(full[i % n], dumps(PAYLOAD, protocol=5))

        def bytes_put(i: int, full: list[str] = full) -> None:
            raw.set(full[i % n], blob)

        kydb_rate, raw_rate, bytes_rate = compare(10_000, kydb_put, raw_put, bytes_put)
        kydb_cpu, raw_cpu = cpu_per_call(servers, 5, 4000, kydb_put, raw_put)
        ratio, cpu_ratio = kydb_rate / raw_rate, kydb_cpu / raw_cpu
        print(
            f"put, depth {depth:<5} {kydb_rate:>9,.0f} {raw_rate:>9,.0f} {ratio:>5.2f}x {PUT_TARGET:>6.2f}x"
            f" {verdict(ratio, PUT_TARGET):<6} {bytes_rate:>9,.0f}   {kydb_cpu:>9.1f} us {raw_cpu:>8.1f} us"
            f" {cpu_ratio:>5.2f}x {CPU_TARGET:>6.2f}x {verdict(cpu_ratio, CPU_TARGET, False)}"
        )
    if not isinstance(raw, redis.RedisCluster):
        script_floors(db, raw, servers, full_keys[:n])
    print("commands per put (INFO commandstats: the script call and the commands it runs) and requests")
    print("(round trips; on a cluster a pipeline counts one request per master it reaches):")
    for depth in (4, 8):
        folder = f"/new{depth}{folder_at(depth - 1)}"
        db.mkdir(folder)
        keys = [f"{folder}/k{i}" for i in range(200)]
        for what in ("new object in an existing folder", "overwrite"):
            trips, commands = per_call(servers, [lambda key=key: db.set(key, PAYLOAD) for key in keys])
            total = sum(commands.values())
            print(f"  depth {depth}, {what:<33}: {total:g} commands ({shown(commands)}), {trips:g} request(s)")
    keys = [f"/chain{i}/a/b/c/obj" for i in range(50)]
    trips, commands = per_call(servers, [lambda key=key: db.set(key, PAYLOAD) for key in keys])
    print(f"  a first put into a new chain of 4 folders: {trips:g} requests, {sum(commands.values()):g} commands")


def script_floors(db: kydb.BaseDB, raw: redis.Redis, servers: Servers, raw_keys: list[str]) -> None:
    """What a put costs with no kydb code on the client: kydb's put script, and an empty one, from bare redis-py."""
    n = len(raw_keys)
    db.set_many(dict.fromkeys((f"/floor/k{i}" for i in range(n)), PAYLOAD))
    folder = folder_key(db.base_path + "/floor/").encode()
    objects = [folder + b"k%d" % i for i in range(n)]
    stored = raw.get(objects[0])[HEADER_BYTES:]  # a blob kydb wrote: the objects stay readable
    put_sha, empty_sha = raw.script_load(PUT_ONE.body), raw.script_load("return 0")
    dumps = pickle.dumps

    def script_put(i: int) -> None:  # what kydb sends for an overwrite, built here
        raw.evalsha(put_sha, 2, folder, objects[i % n], header(sortable(time.time_ns()), new_version()) + stored)

    def empty(i: int) -> None:
        raw.evalsha(empty_sha, 2, folder, objects[i % n], stored)

    def raw_put(i: int) -> None:
        raw.set(raw_keys[i % n], dumps(PAYLOAD, protocol=5))

    rates = compare(10_000, script_put, empty, raw_put)
    cpus = cpu_per_call(servers, 5, 4000, script_put, empty, raw_put)
    print("floors, no kydb code on the client (bare redis-py; vs SET + pickle.dumps):")
    for label, rate, cpu in zip(("kydb's put script", "an empty script"), rates[:2], cpus[:2], strict=True):
        print(
            f"  EVALSHA of {label:<18} {rate:>9,.0f} puts/s {rate / rates[2]:>5.2f}x"
            f"   {cpu:>6.1f} us server CPU {cpu / cpus[2]:>5.2f}x"
        )


def reads(db: kydb.BaseDB, raw: redis.Redis, raw_keys: set[str]) -> None:
    raw_base = f"/bench-raw-{os.getpid()}"
    n = KEYS_PER_FOLDER
    loads = pickle.loads
    keys = [f"{folder_at(4)}/k{i}" for i in range(n)]
    full = [raw_base + k for k in keys]
    for key in full:
        raw.set(key, pickle.dumps(PAYLOAD, protocol=5))
    raw_keys.update(full)
    print(f"\n{'read':<26} {'kydb/s':>9} {'raw':<9} {'raw/s':>9} {'ratio':>6} {'target':>7}  {'bytes only/s':>12}")
    rows = [
        ("cold get (reload=True)", "GET", GET_TARGET, compare(
            10_000,
            lambda i: db.read(keys[i % n], reload=True),
            lambda i: loads(raw.get(full[i % n])),
            lambda i: raw.get(full[i % n]),
        )),
        (f"get_many({n}), calls/s", f"MGET {n}", MANY_TARGET, compare(
            200,
            lambda i: db.get_many(keys, reload=True),
            lambda i: [loads(b) for b in raw.mget(full)],
            lambda i: raw.mget(full),
        )),
    ]  # fmt: skip
    for label, raw_label, target, (kydb_rate, raw_rate, bytes_rate) in rows:
        ratio = kydb_rate / raw_rate
        print(
            f"{label:<26} {kydb_rate:>9,.0f} {raw_label:<9} {raw_rate:>9,.0f} {ratio:>5.2f}x {target:>6.2f}x"
            f" {verdict(ratio, target):<6} {bytes_rate:>9,.0f}"
        )


def recent_by_folder_size(url: str, servers: Servers) -> None:
    """``recent(folder, limit=10)`` on a folder of 100 objects and on one of 100,000, side by side."""
    print("\nrecent(folder, limit=10) against the folder's size (target: one request, within 2x):")
    pid = os.getpid()
    with scratch(url, f"/bench-recent-100-{pid}") as small, scratch(url, f"/bench-recent-100000-{pid}") as big:
        for db, size in ((small, 100), (big, 100_000)):
            for start in range(0, size, 10_000):
                db.set_many({f"/reports/r{i:06d}": i for i in range(start, min(size, start + 10_000))})
            db["/reports/newest"] = PAYLOAD
            assert db.recent("/reports", limit=10)[0] == "newest"  # also loads the script
            trips, commands = per_call(servers, [lambda db=db: db.recent("/reports", limit=10)] * 100)
            print(f"  {size:>7,} objects: {trips:g} round trip(s); server commands: {shown(commands)}")
        small_rate, big_rate = compare(
            2000, lambda i: small.recent("/reports", limit=10), lambda i: big.recent("/reports", limit=10)
        )
    ratio = small_rate / big_rate
    print(
        f"  calls/s: {small_rate:,.0f} on 100, {big_rate:,.0f} on 100,000 objects; time ratio {ratio:.2f}x"
        f" (target <= 2x) {verdict(ratio, 2, False)}"
    )


def connects(url: str) -> None:
    """Connect + first put on a new base path: on a server already in use (the Nth) and on a fresh one (the first)."""
    pid = os.getpid()
    base = parse_store_url(url)
    first: list[float] = []
    nth: list[float] = []
    opened: list[kydb.BaseDB] = []

    def connect_and_put(i: int) -> float:
        start = time.perf_counter()
        db = kydb.connect(base.with_base(f"/bench-connect-{pid}/b{i:05d}"))
        db["/obj"] = i
        elapsed = time.perf_counter() - start
        opened.append(db)
        return elapsed

    try:
        for i in range(50):  # nothing else open: a new pool and connection each time
            first.append(connect_and_put(i))
            opened.pop().close()
        for i in range(50, 1050):  # 1,000 base paths open on the server
            connect_and_put(i)
        for i in range(1050, 1100):
            nth.append(connect_and_put(i))
    finally:
        for db in opened:
            db.close()
        with scratch(url, f"/bench-connect-{pid}") as db:
            db.rm_tree("/")
        root = kydb.connect(url)
        root.rmdir(f"/bench-connect-{pid}")
        root.close()
    one, many = statistics.median(first), statistics.median(nth)
    print(
        f"\nconnect + first put on a new base path: {one * 1e6:,.0f} us for the first on the server (a new pool), "
        f"{many * 1e6:,.0f} us for the 1,001st ({len(opened)} base paths were open, one pool): "
        f"the Nth costs {many / one:.2f}x the first"
    )


def run(url: str, ports: list[int], cluster: tuple[str, list[int]] | None) -> None:
    parsed = parse_store_url(url)
    raw = redis.Redis(host=parsed.host or "127.0.0.1", port=parsed.port or 6379)
    servers = Servers(ports, host=parsed.host or "127.0.0.1")
    raw_keys: set[str] = set()
    print(f"kydb-redis vs redis-py {redis.__version__} on Redis {raw.info('server')['redis_version']}")
    print(f"payload {PAYLOAD!r}; ops/s = 1 / median time per call; raw = redis-py + pickle.dumps/loads")
    try:
        with scratch(url, f"/bench-{os.getpid()}") as db:
            puts(db, raw, servers, raw_keys, f"one server ({url})")
            reads(db, raw, raw_keys)
    finally:
        for start in range(0, len(raw_keys), 1000):
            raw.delete(*list(raw_keys)[start : start + 1000])
    if cluster is not None:
        cluster_url, cluster_ports = cluster
        raw_cluster = redis.RedisCluster(host="127.0.0.1", port=cluster_ports[0])
        masters = Servers(cluster_ports)
        with scratch(cluster_url, f"/bench-{os.getpid()}") as db:
            puts(db, raw_cluster, masters, set(), f"a Redis Cluster of 3 masters ({cluster_url})")
        raw_cluster.close()
        masters.close()
    recent_by_folder_size(url, servers)
    connects(url)
    servers.close()
    raw.close()


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KYDB_BENCH_REDIS_URL")
    if url is not None:
        parsed = parse_store_url(url)
        run(url, [parsed.port or 6379], None)
        return
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        sys.exit("no redis-server and redis-cli on PATH: pass the URL of a Redis server")
    with ExitStack() as stack:
        (port,) = stack.enter_context(private_servers(1))
        cluster = stack.enter_context(private_cluster())
        run(f"redis://127.0.0.1:{port}", [port], cluster)


if __name__ == "__main__":
    main()
