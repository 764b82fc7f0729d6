"""The cost of kydb's front and plugin manager, side by side with the bare operation.

    python -m nox -s bench

Compares one ``db.read(key, reload=True)`` on ``memory://`` — key validation,
one hook call (straight to the store, as no middleware is registered), the
envelope check, unpickling, the cache fill — with a bare ``dict`` lookup plus
``pickle.loads`` of the same pickle.  Prints ratios; asserts nothing.
"""

from __future__ import annotations

import pickle
import timeit
from collections.abc import Callable

import kydb

PAYLOADS = {
    "small dict": {"book": "MYBOOK", "pv": 1.5, "ccy": "USD", "legs": [1, 2, 3]},
    "10 kB list": list(range(2500)),
}


def best_per_call(stmt: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=7)) / number


def main() -> None:
    db = kydb.connect("memory://bench-core")
    rows = []
    for label, value in PAYLOADS.items():
        db["/bench/key"] = value
        store = {"/bench/key": pickle.dumps(value, protocol=5)}
        kydb_read = best_per_call(lambda: db.read("/bench/key", reload=True), 20_000)
        cached = best_per_call(lambda: db["/bench/key"], 200_000)
        bare = best_per_call(lambda store=store: pickle.loads(store["/bench/key"]), 20_000)
        rows.append((label, kydb_read, cached, bare))
    print(f"{'payload':<12} {'read(reload=True)':>18} {'dict+pickle.loads':>18} {'ratio':>7} {'cached db[key]':>15}")
    for label, kydb_read, cached, bare in rows:
        print(
            f"{label:<12} {kydb_read * 1e6:>15.2f} µs {bare * 1e6:>15.2f} µs {kydb_read / bare:>6.1f}x"
            f" {cached * 1e6:>12.2f} µs"
        )
    db.rm_tree("/")


if __name__ == "__main__":
    main()
