"""Errors: the hierarchy, and failures that must never look like a missing key or leave the cache wrong.

The behaviour checked here is section 8 of ``docs/contract.md``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

import kydb

from ..plugins import count_calls, failing
from .fixtures import StoreFixtures

__all__ = ["ErrorTests"]


class ErrorTests(StoreFixtures):
    """Errors: a broken store never looks like a missing key (contract §8)."""

    def test_error_classes(self) -> None:
        for cls in (
            kydb.NotFound,
            kydb.InvalidKey,
            kydb.FolderNotEmpty,
            kydb.UnknownScheme,
            kydb.CorruptValue,
            kydb.DbObjException,
            kydb.StoreUnavailable,
        ):
            assert issubclass(cls, kydb.KydbError)
        for cls in (kydb.NotFound, kydb.InvalidKey, kydb.FolderNotEmpty):
            assert issubclass(cls, KeyError)
        for cls in (kydb.StoreUnavailable, kydb.CorruptValue, kydb.DbObjException):
            assert not issubclass(cls, KeyError)

    def test_unavailable_store_is_never_not_found(self, db: kydb.DB) -> None:
        db["/k"] = 1
        db.refresh()
        with failing(db, "kydb_get", "kydb_exists", "kydb_list", "kydb_is_dir"):
            for attempt in (
                lambda: db["/k"],
                lambda: db.read("/missing", reload=True),
                lambda: db.get("/missing"),
                lambda: db.exists("/k"),
                lambda: db.ls("/"),
                lambda: db.get_many(["/k"]),
                lambda: db.is_dir("/x"),
            ):
                with pytest.raises(kydb.StoreUnavailable):
                    attempt()
        assert db["/k"] == 1

    def test_failed_write_does_not_leave_the_value_in_cache(self, db: kydb.DB) -> None:
        db["/k"] = "stored"
        with failing(db, "kydb_put"):
            with pytest.raises(kydb.StoreUnavailable):
                db["/k"] = "never stored"
            with pytest.raises(kydb.StoreUnavailable):
                db.set_many({"/k": "never stored", "/k2": "never"})
        assert db["/k"] == "stored"
        assert not db.exists("/k2")

    def test_a_write_whose_outcome_is_unknown_leaves_no_value_in_the_cache(self, db: kydb.DB) -> None:
        """The store wrote, then the connection failed before saying so: the cache must not keep either value."""
        db["/k"] = "before"
        db.plugins.register(_FailAfterPut(), name="fail-after-put")
        try:
            with pytest.raises(kydb.StoreUnavailable):
                db["/k"] = "written, unacknowledged"
        finally:
            db.plugins.unregister(name="fail-after-put")
        with count_calls(db) as calls:
            assert db["/k"] == "written, unacknowledged"  # read from the store: the cache had dropped the key
        assert calls["kydb_get"] == 1

    def test_failed_delete_still_drops_the_cache_entry(self, db: kydb.DB) -> None:
        db["/k"] = "stored"
        with failing(db, "kydb_delete"), pytest.raises(kydb.StoreUnavailable):
            db.delete("/k")
        assert db["/k"] == "stored"  # read again from the store, which still has it


class _FailAfterPut:
    """Middleware: the store's put runs, then the call fails as a dropped connection would."""

    @kydb.hookimpl(wrapper=True)
    def kydb_put(self) -> Generator[None, Any, Any]:
        yield
        raise kydb.StoreUnavailable("injected: the connection dropped after the store wrote")
