"""Functions run in child processes by the conformance suite (must be importable)."""

from __future__ import annotations

from typing import Any

import kydb


def read_in_child(db: kydb.BaseDB, key: str) -> tuple[str, Any]:
    """What a child process sees through a DB it received pickled."""
    return repr(db), db.get(key)


def write_in_child(db: kydb.BaseDB, folder: str, worker: int, count: int) -> None:
    """Write ``count`` objects into ``folder`` from a child process."""
    for i in range(count):
        db[f"{folder}/w{worker}-{i}"] = (worker, i)
