"""Functions run in child processes by the conformance suite (must be importable)."""

from __future__ import annotations

import random
import time
from typing import Any

import kydb


def read_in_child(db: kydb.BaseDB, key: str) -> tuple[str, Any]:
    """What a child process sees through a DB it received pickled."""
    return repr(db), db.get(key)


def write_in_child(db: kydb.BaseDB, folder: str, worker: int, count: int) -> None:
    """Write ``count`` objects into ``folder`` from a child process."""
    for i in range(count):
        db[f"{folder}/w{worker}-{i}"] = (worker, i)


def _add_one(n: int) -> int:
    return n + 1


def count_up(db: kydb.BaseDB, key: str, times: int) -> int:
    """``db.update(key, n + 1)`` ``times`` times (from 0 when absent); returns the conflicts met."""
    conflicts = 0
    for _ in range(times):
        while True:
            try:
                db.update(key, _add_one, default=0, retries=0)
                break
            except kydb.Conflict:
                conflicts += 1
                time.sleep(random.uniform(0, 0.002))  # a little backoff, as update() itself does
    return conflicts


def claim(db: kydb.BaseDB, keys: list[str], worker: int) -> list[str]:
    """``set(key, worker, if_absent=True)`` on every key; returns the keys this worker won."""
    won = []
    for key in keys:
        try:
            db.set(key, worker, if_absent=True)
        except kydb.Conflict:
            continue
        won.append(key)
    return won
