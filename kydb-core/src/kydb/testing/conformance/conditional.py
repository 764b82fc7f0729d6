"""Conditional writes: versions, compare-and-set, atomic updates — or a clear refusal where there are none.

The behaviour checked here is section 12 of ``docs/contract.md``.
"""

from __future__ import annotations

import multiprocessing
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import kydb

from .. import _child
from ..objects import OBJDB_CONFIG
from ..plugins import count_calls
from .fixtures import Connect, StoreFixtures

__all__ = ["ConditionalWriteTests"]


def _other(connect: Connect, db: kydb.DB) -> Any:
    """Another DB object on the same store (its own read cache): stands for another writer."""
    return connect(db.store_url.raw, legacy_signatures=True)


class ConditionalWriteTests(StoreFixtures):
    """Compare-and-set on every store that declares conditional writes (contract §12)."""

    def refused(self, db: kydb.DB) -> bool:
        """True, having checked the refusal, when ``db`` declares no conditional writes; else False."""
        if db.capabilities.conditional_writes:
            return False
        with pytest.raises(kydb.ConditionalWritesNotSupported, match=re.escape(db.url)):
            db.set("/refused", 1, if_absent=True)
        assert not db.exists("/refused")
        return True

    def test_stores_without_versions_refuse_every_conditional_call(self, db: kydb.DB) -> None:
        if db.capabilities.conditional_writes:
            return  # tested below, for real
        db["/k"] = "kept"
        for attempt in (
            lambda: db.set("/k", "new", if_version="1"),
            lambda: db.set("/new", "new", if_absent=True),
            lambda: db.delete("/k", if_version="1"),
            lambda: db.read_versioned("/k"),
            lambda: db.update("/k", lambda v: v + "!"),
            lambda: db.get_versioned_blobs(["/k"]),
        ):
            with pytest.raises(kydb.ConditionalWritesNotSupported, match=re.escape(db.url)):
                attempt()
        assert db.read("/k", reload=True) == "kept" and not db.exists("/new")

    def test_read_versioned_reads_the_store_with_the_objects_version(self, db: kydb.DB) -> None:
        if self.refused(db):
            return
        db["/k"] = {"v": 1}
        with count_calls(db) as calls:
            value, version = db.read_versioned("/k")
        assert (value, version) == ({"v": 1}, db.stat("/k").version)
        assert calls["kydb_get_versioned"] == 1 and calls["kydb_get"] == 0  # one request, not the cache
        with pytest.raises(kydb.NotFound):
            db.read_versioned("/missing")

    def test_set_if_version_writes_only_over_that_version(self, db: kydb.DB) -> None:
        if self.refused(db):
            return
        db["/k"] = 1
        v1 = db.stat("/k").version
        db.set("/k", 2, if_version=v1)
        assert db.read("/k", reload=True) == 2
        v2 = db.stat("/k").version
        assert v2 != v1
        with pytest.raises(kydb.Conflict, match="/k") as info:
            db.set("/k", 3, if_version=v1)
        assert not isinstance(info.value, KeyError)
        assert db.read("/k", reload=True) == 2 and db.stat("/k").version == v2
        with pytest.raises(kydb.Conflict):
            db.set("/missing", 1, if_version=v2)
        assert not db.exists("/missing")

    def test_set_if_absent_writes_only_where_nothing_is(self, db: kydb.DB) -> None:
        if self.refused(db):
            return
        db.set("/new/k", "first", if_absent=True)
        assert db.read("/new/k", reload=True) == "first" and db.ls("/new") == ["k"]
        with pytest.raises(kydb.Conflict):
            db.set("/new/k", "second", if_absent=True)
        assert db.read("/new/k", reload=True) == "first"
        with pytest.raises(ValueError, match="not both"):
            db.set("/new/k", "x", if_absent=True, if_version=db.stat("/new/k").version)

    def test_a_conflict_changes_neither_the_store_nor_the_cache(self, db: kydb.DB, connect: Connect) -> None:
        if self.refused(db):
            return
        other = _other(connect, db)
        db["/k"] = "mine"
        seen = db.stat("/k").version
        other["/k"] = "theirs"  # another writer, behind db's cache
        with pytest.raises(kydb.Conflict):
            db.set("/k", "lost update", if_version=seen)
        with count_calls(db) as calls:
            assert db["/k"] == "mine"  # the cache is as it was: no entry dropped, none replaced
        assert calls["kydb_get"] == 0
        assert db.read("/k", reload=True) == "theirs"
        with pytest.raises(kydb.Conflict):
            db.delete("/k", if_version=seen)
        assert db["/k"] == "theirs" and other.read("/k", reload=True) == "theirs"

    def test_a_successful_conditional_write_is_cached_like_any_write(self, db: kydb.DB) -> None:
        if self.refused(db):
            return
        db["/k"] = 1
        db.set("/k", 2, if_version=db.stat("/k").version)
        with count_calls(db) as calls:
            assert db["/k"] == 2
        assert calls["kydb_get"] == 0

    def test_delete_if_version(self, db: kydb.DB) -> None:
        if self.refused(db):
            return
        db["/d/k"] = 1
        v1 = db.stat("/d/k").version
        db["/d/k"] = 2
        with pytest.raises(kydb.Conflict):
            db.delete("/d/k", if_version=v1)
        assert db.read("/d/k", reload=True) == 2
        db.delete("/d/k", if_version=db.stat("/d/k").version)
        assert not db.exists("/d/k") and db.ls("/d") == []
        with pytest.raises(kydb.NotFound):
            db["/d/k"]
        with pytest.raises(kydb.Conflict):  # gone: no version matches
            db.delete("/d/k", if_version=v1)

    def test_update_applies_fn_to_the_current_value(self, db: kydb.DB) -> None:
        if self.refused(db):
            return
        assert db.update("/n", lambda n: n + 1, default=0) == 1
        assert db.update("/n", lambda n: n + 1) == 2
        assert db.read("/n", reload=True) == 2
        with pytest.raises(kydb.NotFound):
            db.update("/absent", lambda n: n + 1)
        assert not db.exists("/absent")
        db["/list"] = [1]
        assert db.update("/list", lambda items: [*items, 2]) == [1, 2]

    def test_update_retries_conflicts_then_gives_up(self, db: kydb.DB, connect: Connect) -> None:
        if self.refused(db):
            return
        other = _other(connect, db)
        db["/n"] = 0
        calls = []

        def meddle(n: int) -> int:  # another writer gets in between every read and write
            calls.append(n)
            other["/n"] = other.read("/n", reload=True) + 100
            return n + 1

        with pytest.raises(kydb.Conflict, match="2 retries"):
            db.update("/n", meddle, retries=2)
        assert len(calls) == 3 and db.read("/n", reload=True) == 300
        assert db.update("/n", lambda n: n + 1) == 301

    def test_many_writers_updating_one_key_lose_nothing(self, db: kydb.DB) -> None:
        """4 workers x 250 ``update(n + 1)`` on one key end at exactly 1,000 (processes where the store is shared)."""
        if self.refused(db):
            return
        workers, times = 4, 250
        if db.capabilities.shared_between_processes:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                pool.starmap(_child.count_up, [(db, "/counter", times)] * workers)
        else:
            with ThreadPoolExecutor(workers) as threads:
                list(threads.map(lambda _: _child.count_up(db, "/counter", times), range(workers)))
        assert db.read("/counter", reload=True) == workers * times

    def test_racing_creators_get_exactly_one_winner_per_key(self, db: kydb.DB) -> None:
        if self.refused(db):
            return
        keys = [f"/race/k{i:03d}" for i in range(100)]
        workers = 4
        if db.capabilities.shared_between_processes:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                won = pool.starmap(_child.claim, [(db, keys, worker) for worker in range(workers)])
        else:
            barrier = threading.Barrier(workers)

            def claim(worker: int) -> list[str]:
                barrier.wait()
                return _child.claim(db, keys, worker)

            with ThreadPoolExecutor(workers) as threads:
                won = list(threads.map(claim, range(workers)))
        winners = [key for keys_won in won for key in keys_won]
        assert sorted(winners) == keys  # every key won, none twice
        stored = db.get_many(keys, reload=True)
        assert all(stored[key] == worker for worker, keys_won in enumerate(won) for key in keys_won)

    def test_unions_write_conditionally_to_the_front_layer(
        self, db: kydb.DB, new_url: Callable[[], str], connect: Connect
    ) -> None:
        if self.refused(db):
            return
        front_url, back_url = db.store_url.raw, new_url()
        back = connect(back_url)
        back["/u"] = "back"
        union = connect(f"{front_url};{back_url}")
        assert union.capabilities.conditional_writes
        with pytest.raises(kydb.NotFound):
            union.read_versioned("/u")  # the front layer has no such object
        union.set("/u", "front", if_absent=True)
        assert db.read("/u", reload=True) == "front" and back.read("/u", reload=True) == "back"
        value, version = union.read_versioned("/u")
        assert (value, version) == ("front", db.stat("/u").version)
        union.delete("/u", if_version=version)
        assert not db.exists("/u") and union["/u"] == "back"

    def test_cache_dbs_write_the_persistent_store_first(
        self, db: kydb.DB, new_url: Callable[[], str], connect: Connect
    ) -> None:
        if self.refused(db):
            return
        cache_url = new_url()
        cache_db = connect(f"{cache_url}|{db.store_url.raw}")
        cache_store = connect(cache_url)
        cache_db["/c"] = 1
        version = db.stat("/c").version
        assert cache_db.read_versioned("/c") == (1, version)
        cache_db.set("/c", 2, if_version=version)
        assert db.read("/c", reload=True) == 2 and cache_store.read("/c", reload=True) == 2
        with pytest.raises(kydb.Conflict):
            cache_db.set("/c", 3, if_version=version)
        assert db.read("/c", reload=True) == 2 and cache_store.read("/c", reload=True) == 2
        cache_db.delete("/c", if_version=db.stat("/c").version)
        assert not db.exists("/c") and not cache_store.exists("/c")

    def test_dbobj_writes_only_if_unchanged(self, db: kydb.DB, connect: Connect) -> None:
        if self.refused(db):
            return
        other = _other(connect, db)
        db.upload_objdb_config(OBJDB_CONFIG)
        greeter = db.new("Greeter", "/g", name="Ann")
        greeter.write(if_unchanged=True)  # new: written only because nothing was there
        again = db.new("Greeter", "/g", name="Bob")
        with pytest.raises(kydb.Conflict):
            again.write(if_unchanged=True)
        greeter.name.setvalue("Ann2")
        greeter.write(if_unchanged=True)  # unchanged since this object wrote it
        loaded = other.read("/g", reload=True)
        loaded.name.setvalue("Cy")
        loaded.write(if_unchanged=True)  # unchanged since it was read
        greeter.name.setvalue("Ann3")
        with pytest.raises(kydb.Conflict):
            greeter.write(if_unchanged=True)  # someone else wrote it since
        assert db.read("/g", reload=True).name() == "Cy"
