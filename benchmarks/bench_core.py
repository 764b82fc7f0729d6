"""The cost of kydb's front and plugin manager, side by side with the bare operation.

    .venv/bin/nox -s bench

On ``memory://``, each row times kydb next to the least a Python program
would do for the same thing, in the same run, and prints the ratio (targets
in brackets); nothing is asserted:

* a cached ``db[key]`` next to a ``dict`` lookup (target at most 3x);
* a put (``db[key] = value``) next to ``pickle.dumps`` into a ``dict`` (2.5x);
* a cold get (``db.read(key, reload=True)``: key checks, one hook call, the
  envelope, unpickling, the cache fill) next to a ``dict`` lookup plus
  ``pickle.loads`` (2x);
* a put into a folder of 50,000 objects next to one into a folder of 1,000
  (an overwrite, so nothing grows: 1.5x) — a put must not cost more in a
  bigger folder;
* the imports ``import kydb; kydb.connect('memory://x')`` adds to a bare
  interpreter, from ``python -X importtime`` (target 40 ms; best of 5).

Under the table, the *floors* of a put and a cold get: the work each must do
on ``memory://`` (see :func:`floors`) written out in one function, with no
front, hook call or store object, as the same ratio.  kydb cannot be cheaper
than its floor, whatever its layers.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import threading
import time
import timeit
from collections.abc import Callable

import kydb

VALUE = {"book": "MYBOOK", "pv": 1.5, "ccy": "USD", "legs": [1, 2, 3]}
IMPORTS = "import kydb; kydb.connect('memory://x')"


def best_per_call(stmt: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=7)) / number


def import_ms(code: str) -> float:
    """Milliseconds of imports ``code`` adds to a bare interpreter (``-X importtime``, top-level modules)."""

    # Imports are timed as an installed package runs them: from bytecode, which the first run writes.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}

    def top_level(source: str) -> dict[str, int]:
        command = [sys.executable, "-X", "importtime", "-c", source]
        result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        found = {}
        for line in result.stderr.splitlines():
            match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)", line)
            if match and not match.group(2):  # a top-level import: its cumulative time counts its children
                found[match.group(3)] = int(match.group(1))
        return found

    top_level(code)  # writes the bytecode
    best = float("inf")
    for _ in range(5):
        bare, loaded = top_level("pass"), top_level(code)
        best = min(best, sum(us for name, us in loaded.items() if name not in bare) / 1000)
    return best


def floors(value: object) -> tuple[Callable[[], None], Callable[[], object]]:
    """A put and a cold get of ``value`` on one key doing what kydb's must, in one function each.

    The put: the key's check (a cached lookup), the envelope (a header and
    ``pickle.dumps``, the thread marked as pickling for a store), the write's
    time, then under the store's lock a new version, the object's mtime and
    its blob, then under the cache's lock the value.  The cold get: the key's
    check, the cache's token, the blob, its header's check, unpickling, then
    under the cache's lock the value, if the token still holds.
    """
    key, header = "/bench/key", b"KYDB\x01\x00\x00"
    checked = {key: key}  # the key rules' cache
    marker = threading.local()
    store_lock, cache_lock = threading.Lock(), threading.Lock()
    blobs: dict[str, bytes] = {}
    times = {key: [0, 0]}  # mtime, version
    cache: dict[str, object] = {}
    epoch = [0]

    def put() -> None:
        k = checked[key]
        depth = getattr(marker, "depth", 0)
        marker.depth = depth + 1
        try:
            blob = header + pickle.dumps(value, protocol=5)
        finally:
            marker.depth = depth
        now = time.time_ns()
        with store_lock:
            meta = times[k]
            meta[0], meta[1] = now, meta[1] + 1
            blobs[k] = blob
        with cache_lock:
            epoch[0] += 1
            cache[k] = value

    def cold_get() -> object:
        k = checked[key]
        token = epoch[0]
        blob = blobs[k]
        if blob[:7] != header:
            raise ValueError(blob[:7])
        loaded = pickle.loads(blob[7:])
        with cache_lock:
            if epoch[0] == token:
                cache[k] = loaded
        return loaded

    put()
    return put, cold_get


def main() -> None:
    rows: list[tuple[str, float, float, float]] = []

    def row(label: str, kydb_s: float, bare_s: float, target: float) -> None:
        rows.append((label, kydb_s, bare_s, target))

    db = kydb.connect("memory://bench-core")
    db["/bench/key"] = VALUE
    blob = pickle.dumps(VALUE, protocol=5)
    plain: dict[str, object] = {"/bench/key": VALUE}
    pickles = {"/bench/key": blob}
    def put_pickle() -> None:
        pickles["/bench/key"] = pickle.dumps(VALUE, protocol=5)

    row(
        "cached db[key] vs dict[key]",
        best_per_call(lambda: db["/bench/key"], 200_000),
        best_per_call(lambda: plain["/bench/key"], 200_000),
        3.0,
    )
    row("put vs dict + pickle.dumps", best_per_call(lambda: db.set("/bench/key", VALUE), 20_000),
        best_per_call(put_pickle, 20_000), 2.5)  # fmt: skip
    row(
        "cold get vs dict + pickle.loads",
        best_per_call(lambda: db.read("/bench/key", reload=True), 20_000),
        best_per_call(lambda: pickle.loads(pickles["/bench/key"]), 20_000),
        2.0,
    )

    folder_times = {}
    for size in (1_000, 50_000):
        folder = f"/f{size}"
        db.set_many({f"{folder}/o{i:06d}": i for i in range(size)})
        keys = [f"{folder}/o{i:06d}" for i in range(0, size, size // 100)]  # overwrites spread over the folder
        folder_times[size] = best_per_call(lambda keys=keys: [db.set(k, 1) for k in keys], 20) / len(keys)
    row("put in a folder of 50,000 vs of 1,000", folder_times[50_000], folder_times[1_000], 1.5)

    print(f"{'':<40} {'kydb':>10} {'baseline':>10} {'ratio':>7} {'target':>7}")
    for label, kydb_s, bare_s, target in rows:
        print(f"{label:<40} {kydb_s * 1e6:>7.2f} µs {bare_s * 1e6:>7.2f} µs {kydb_s / bare_s:>6.2f}x {target:>6.1f}x")
    print(f"{'imports of ' + IMPORTS:<40} {import_ms(IMPORTS):>7.1f} ms {'':>10} {'':>7} {40:>5} ms")
    floor_put, floor_get = floors(VALUE)
    put_floor = best_per_call(floor_put, 20_000) / best_per_call(put_pickle, 20_000)
    get_floor = best_per_call(floor_get, 20_000) / best_per_call(lambda: pickle.loads(pickles["/bench/key"]), 20_000)
    print(f"floors, the same work in one function: put {put_floor:.2f}x, cold get {get_floor:.2f}x of their baselines")
    db.rm_tree("/")


if __name__ == "__main__":
    main()
