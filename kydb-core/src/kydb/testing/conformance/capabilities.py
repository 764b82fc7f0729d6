"""Capabilities: what the store class declares is what it does, no more and no less.

The behaviour checked here is section 13 of ``docs/contract.md``.
"""

from __future__ import annotations

import time

import pytest

import kydb

from ..plugins import count_calls
from .fixtures import StoreFixtures

__all__ = ["CapabilityTests"]


class CapabilityTests(StoreFixtures):
    """Each declared capability holds; an undeclared one is refused clearly, never half-delivered (contract §13)."""

    def test_the_db_reports_its_store_class_declaration(self, db: kydb.DB) -> None:
        assert db.capabilities == type(db.store).capabilities_for(db.store_url)
        assert isinstance(db.capabilities, kydb.Capabilities)

    def test_times_and_indexes_are_kept_exactly_when_declared(self, db: kydb.DB) -> None:
        before = time.time_ns()
        db.set("/t/x", 1, index={"rank": 7})
        info = db.stat("/t/x")
        if not db.capabilities.keeps_times:
            assert info.mtime_ns is None and info.ctime_ns is None and not info.indexes
            return
        assert type(info.mtime_ns) is int and before <= info.mtime_ns <= time.time_ns()
        assert dict(info.indexes) == {"rank": 7}

    def test_creation_times_survive_overwrites_exactly_when_declared(self, db: kydb.DB) -> None:
        db["/t/x"] = 1
        first = db.stat("/t/x")
        time.sleep(0.002)
        db["/t/x"] = 2
        second = db.stat("/t/x")
        if not db.capabilities.keeps_ctime:
            assert second.ctime_ns is None
            return
        assert second.ctime_ns is not None and second.ctime_ns == first.ctime_ns
        assert second.mtime_ns is not None and second.mtime_ns > second.ctime_ns

    def test_queries_are_native_exactly_when_declared(self, db: kydb.DB) -> None:
        db.set_many({f"/q/{i}": i for i in range(3)})
        query = db.folder("/q").by("mtime")
        if not db.capabilities.native_queries:
            with pytest.raises(kydb.IndexNotSupported, match="allow_scan"):
                list(query)
            return
        with count_calls(db) as calls:
            assert sorted(query) == ["0", "1", "2"]
        assert calls["kydb_query"] == 1 and calls["kydb_stat"] == 0 and calls["kydb_get"] == 0

    def test_versions_exist_exactly_when_conditional_writes_are_declared(self, db: kydb.DB) -> None:
        db["/v"] = 1
        first = db.stat("/v").version
        if not db.capabilities.conditional_writes:
            assert first is None
            return
        assert isinstance(first, str) and first
        db["/v"] = 2
        second = db.stat("/v").version
        assert isinstance(second, str) and second != first
        db.delete("/v")
        db["/v"] = 1  # the first value again, after a delete: a version S3 would give again is fine
