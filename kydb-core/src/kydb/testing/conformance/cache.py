"""The in-process read cache: hits, reloads, refreshes, cache contexts, threads, and writes racing deletes.

The behaviour checked here is section 4 of ``docs/contract.md``.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import kydb
from kydb import envelope

from ..plugins import count_calls
from .fixtures import StoreFixtures

__all__ = ["CacheTests"]


class CacheTests(StoreFixtures):
    """The in-process read cache (contract §4)."""

    def test_reads_are_served_from_cache(self, db: kydb.DB) -> None:
        db["/c"] = 123
        with count_calls(db) as calls:
            assert db["/c"] == 123
            assert db.read("/c") == 123
        assert calls["kydb_get"] == 0

    def test_reload_bypasses_and_refreshes_the_cache(self, db: kydb.DB) -> None:
        db["/c"] = "old"
        self.raw_put(db, self.full_path(db, "/c"), envelope.encode("new"))
        assert db["/c"] == "old"
        with count_calls(db) as calls:
            assert db.read("/c", reload=True) == "new"
            assert db["/c"] == "new"
        assert calls["kydb_get"] == 1

    def test_refresh_one_and_all(self, db: kydb.DB) -> None:
        db["/r1"] = 1
        db["/r2"] = 2
        db.refresh("/r1")
        with count_calls(db) as calls:
            db["/r1"], db["/r2"]
        assert calls["kydb_get"] == 1
        for drop_all in (db.refresh, db.clear_cache):
            drop_all()
            with count_calls(db) as calls:
                db["/r1"], db["/r2"]
            assert calls["kydb_get"] == 2

    def test_cache_context_drops_only_entries_added_inside(self, db: kydb.DB) -> None:
        db.set_many({"/before": 1, "/inside": 2, "/inner": 3})
        db.refresh()
        db["/before"]
        with db.cache_context() as same:
            assert same is db
            db["/inside"]
            with db.cache_context():
                db["/inner"]
                with count_calls(db) as calls:
                    db["/before"], db["/inside"], db["/inner"]
                assert calls["kydb_get"] == 0
            with count_calls(db) as calls:
                db["/before"], db["/inside"]
                assert calls["kydb_get"] == 0
                db["/inner"]
                assert calls["kydb_get"] == 1
        with count_calls(db) as calls:
            db["/before"]
            assert calls["kydb_get"] == 0
            db["/inside"], db["/inner"]
            assert calls["kydb_get"] == 2

    def test_write_inside_cache_context_keeps_store_and_cache_consistent(self, db: kydb.DB) -> None:
        db["/k"] = "before"
        with db.cache_context():
            db["/k"] = "inside"
        assert db["/k"] == "inside"
        assert db.read("/k", reload=True) == "inside"

    @pytest.mark.parametrize("meanwhile", ["delete", "rm_tree", "newer set"])
    def test_a_slow_write_never_brings_back_what_landed_after_it(self, db: kydb.DB, meanwhile: str) -> None:
        """A write whose store call finished before a delete/rm_tree/newer write must not fill the cache after it."""
        pause = _PauseAfterFirstPut()
        db.plugins.register(pause)
        try:
            slow = threading.Thread(target=db.set, args=("/f/k", "slow"))
            slow.start()
            assert pause.written.wait(10), "the slow write never reached the store"
            if meanwhile == "delete":
                db.delete("/f/k")
            elif meanwhile == "rm_tree":
                db.rm_tree("/f")
            else:
                db["/f/k"] = "new"
            pause.release.set()
            slow.join(10)
        finally:
            pause.release.set()
            db.plugins.unregister(pause)
        if meanwhile == "newer set":
            assert db["/f/k"] == "new"
        else:
            assert not db.exists("/f/k")
            with pytest.raises(kydb.NotFound):
                db["/f/k"]

    def test_eight_threads_mixed_reads_and_writes(self, db: kydb.DB) -> None:
        """8 threads x about 500 operations (write, cached and fresh reads, ls, refresh, contexts, deletes)."""
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                for i in range(100):
                    key = f"/mix/t{worker}/k{i % 7}"
                    db[key] = (worker, i)
                    assert db[key][0] == worker
                    assert db.read(key, reload=True)[0] == worker
                    db.ls(f"/mix/t{worker}")
                    if i % 5 == 0:
                        db.refresh(key)
                    if i % 11 == 0:
                        with db.cache_context():
                            db.get(f"/mix/t{(worker + 1) % 8}/k0")
                    if i % 13 == 0:
                        db.delete(key)
                        db[key] = (worker, i)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for worker in range(8):
            assert db.ls(f"/mix/t{worker}") == [f"k{i}" for i in range(7)]
            last = {i % 7: i for i in range(100)}
            for slot, i in last.items():
                assert db[f"/mix/t{worker}/k{slot}"] == (worker, i)
                assert db.read(f"/mix/t{worker}/k{slot}", reload=True) == (worker, i)


class _PauseAfterFirstPut:
    """Middleware that holds the first ``kydb_put`` after the store has written, until released."""

    def __init__(self) -> None:
        self.written = threading.Event()
        self.release = threading.Event()

    @kydb.hookimpl(wrapper=True)
    def kydb_put(self) -> Any:
        result = yield
        if not self.written.is_set():
            self.written.set()
            self.release.wait(10)
        return result
