"""Batches: get_many, set_many and delete_many use one bulk call.

The behaviour checked here is section 9 of ``docs/contract.md``.
"""

from __future__ import annotations

import pytest

import kydb

from ..plugins import count_calls
from .fixtures import StoreFixtures

__all__ = ["BatchTests"]


class BatchTests(StoreFixtures):
    """Batch operations: one bulk call each (contract §9)."""

    def test_get_many_returns_present_keys_in_one_call(self, db: kydb.DB) -> None:
        db.set_many({f"/b/k{i}": i for i in range(50)})
        db.refresh()
        with count_calls(db) as calls:
            got = db.get_many([f"b/k{i}" for i in range(60)])
        assert got == {f"b/k{i}": i for i in range(50)}
        assert calls["kydb_get"] == 1

    def test_set_many_writes_in_one_call(self, db: kydb.DB) -> None:
        with count_calls(db) as calls:
            db.set_many({f"/m/{i}/k": i for i in range(30)})
        assert calls["kydb_put"] == 1
        assert db.ls("/m") == sorted(f"{i}/" for i in range(30))
        assert db.read("/m/7/k", reload=True) == 7

    def test_delete_many_ignores_missing_and_uses_one_call(self, db: kydb.DB) -> None:
        db.set_many({f"/dm/{i}": i for i in range(10)})
        with count_calls(db) as calls:
            db.delete_many([f"/dm/{i}" for i in range(0, 20, 2)])
        assert calls["kydb_delete"] == 1
        assert db.ls("/dm") == sorted(str(i) for i in range(1, 10, 2))
        with pytest.raises(KeyError):
            db["/dm/0"]
