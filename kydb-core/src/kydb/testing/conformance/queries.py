"""Recency and index queries, natively or by scanning, as the store declares.

The behaviour checked here is section 10 of ``docs/contract.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

import kydb
from kydb.query import FolderQuery

from ..objects import OBJDB_CONFIG
from ..plugins import count_calls
from .fixtures import Connect, StoreFixtures

__all__ = ["QueryTests"]


_REFUSED = object()


class QueryTests(StoreFixtures):
    """Recency and index queries, natively or by scanning, as the store declares (contract §10)."""

    def answer(self, db: kydb.BaseDB, run: Callable[[bool], Any]) -> Any:
        """``run(allow_scan)`` as ``db``'s capabilities say it answers; where it must refuse, check that it does."""
        if db.capabilities.native_queries:
            return run(False)
        with pytest.raises(kydb.IndexNotSupported):
            run(False)
        if not db.capabilities.keeps_times:
            with pytest.raises(kydb.IndexNotSupported):
                run(True)
            return _REFUSED
        return run(True)

    def write_in_order(self, db: kydb.DB, folder: str, names: list[str], **index: int) -> None:
        for name in names:
            db.set(f"{folder}/{name}", name, index=index or None)
            time.sleep(0.002)  # distinct modification times whatever the clock's resolution

    def test_recent_is_newest_first(self, db: kydb.DB) -> None:
        self.write_in_order(db, "/r", ["a", "c", "b"])
        db["/r/sub/ignored"] = 1
        newest = self.answer(db, lambda scan: db.recent("/r", allow_scan=scan))
        if newest is _REFUSED:
            return
        assert newest == ["b", "c", "a"]
        assert self.answer(db, lambda scan: db.recent("/r", limit=2, allow_scan=scan)) == ["b", "c"]
        assert self.answer(db, lambda scan: db.recent("/empty", allow_scan=scan)) == []

    def test_overwrites_move_objects_to_the_front_of_recent(self, db: kydb.DB) -> None:
        """Overwrites, index changes and deletes, one after another, each leave the time order right."""
        self.write_in_order(db, "/o", ["a", "b", "c"])
        self.write_in_order(db, "/o", ["a", "a"])  # an object overwritten twice before anything reads the order
        if self.answer(db, lambda scan: db.recent("/o", allow_scan=scan)) is _REFUSED:
            return
        self.write_in_order(db, "/o", ["b"], rank=1)  # an overwrite that also sets an index
        assert self.answer(db, lambda scan: db.recent("/o", allow_scan=scan)) == ["b", "a", "c"]
        self.write_in_order(db, "/o", ["c", "a"])
        db.delete("/o/a")  # just overwritten: it leaves the order from its new place
        assert self.answer(db, lambda scan: db.recent("/o", allow_scan=scan)) == ["c", "b"]
        self.write_in_order(db, "/o", ["b", "d"])
        assert self.answer(db, lambda scan: db.recent("/o", allow_scan=scan)) == ["d", "b", "c"]
        assert self.answer(db, lambda scan: db.recent("/o", limit=1, allow_scan=scan)) == ["d"]

    def test_times_are_kept_by_every_write(self, db: kydb.DB) -> None:
        before = time.time_ns()
        db["/t/x"] = 1
        time.sleep(0.002)
        db["/t/x"] = 2  # an overwrite moves mtime, keeps ctime
        entries = self.answer(db, lambda scan: list(db.folder("/t", allow_scan=scan).entries()))
        if entries is _REFUSED:
            return
        (entry,) = entries
        assert entry.key == "x" and type(entry.mtime) is int and entry.index_value == entry.mtime
        info = db.stat("/t/x")
        assert (info.mtime_ns, info.ctime_ns) == (entry.mtime, entry.ctime)
        if not db.capabilities.keeps_ctime:
            assert entry.ctime is None and before <= entry.mtime <= time.time_ns()
            with pytest.raises(kydb.IndexNotSupported, match="creation"):
                list(db.folder("/t", allow_scan=True).by("ctime"))
            return
        assert type(entry.ctime) is int
        assert before <= entry.ctime < entry.mtime <= time.time_ns()
        by_ctime = self.answer(db, lambda scan: list(db.folder("/t", allow_scan=scan).by("ctime").entries()))
        assert by_ctime[0].index_value == entry.ctime

    def test_an_overwrite_within_one_clock_tick_stays_listed_once(self, db: kydb.DB) -> None:
        """A coarse clock gives an overwrite the time its object already has: it stays in the time indexes, once."""
        tick = 1_780_000_000_123_456_789
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(time, "time_ns", lambda: tick)
            db["/tick/x"] = 1
            db["/tick/x"] = 2
            db["/tick/y"] = 3
        newest = self.answer(db, lambda scan: db.recent("/tick", allow_scan=scan))
        if newest is _REFUSED:
            return
        assert sorted(newest) == ["x", "y"]
        assert db.read("/tick/x", reload=True) == 2
        assert db.stat("/tick/x").mtime_ns == tick
        if db.capabilities.keeps_ctime:
            by_ctime = self.answer(db, lambda scan: list(db.folder("/tick", allow_scan=scan).by("ctime")))
            assert sorted(by_ctime) == ["x", "y"]

    def test_user_index_orders_and_bounds(self, db: kydb.DB) -> None:
        dates = {"b1": 20260905, "b2": 20260101, "b3": 20261231, "b4": 20260905}
        for name, date in dates.items():
            db.set(f"/books/{name}", {"name": name}, index={"class_date": date})
        db["/books/no-date"] = "not in the index"
        query = db.folder("/books").by("class_date")
        names = self.answer(db, lambda scan: list(replace(query, allow_scan=scan)))
        if names is _REFUSED:
            return
        assert names == ["b2", "b1", "b4", "b3"]  # ties ordered by name

        def run(q: FolderQuery) -> list[str]:
            return list(self.answer(db, lambda scan: list(replace(q, allow_scan=scan))))

        assert run(query.desc()) == ["b3", "b4", "b1", "b2"]
        assert run(query.since(20260905)) == ["b1", "b4", "b3"]
        assert run(query.until(20260905)) == ["b2", "b1", "b4"]
        assert run(query.since(20260905).until(20260905)) == ["b1", "b4"]
        assert run(query.since(20270000).until(20260000)) == []  # inverted: nothing, no error
        assert run(query.desc().limit(2)) == ["b3", "b4"]
        assert run(query.limit(0)) == []
        items = self.answer(db, lambda scan: list(replace(query, allow_scan=scan).since(20261231).items()))
        assert items == [("b3", {"name": "b3"})]
        entries = self.answer(db, lambda scan: list(replace(query, allow_scan=scan).entries()))
        assert [e.index_value for e in entries] == [20260101, 20260905, 20260905, 20261231]
        assert db.stat("/books/b1").indexes == {"class_date": 20260905}

    def test_rewrites_keep_or_clear_index_values(self, db: kydb.DB) -> None:
        db.set("/k/a", 1, index={"rank": 5, "other": 1})
        db.set("/k/b", 2, index={"rank": 3})
        db["/k/a"] = 10  # no index mentioned: both kept
        db.set("/k/b", 20, index={"rank": None})  # cleared
        ranked = self.answer(db, lambda scan: list(db.folder("/k", allow_scan=scan).by("rank")))
        if ranked is _REFUSED:
            return
        assert ranked == ["a"]
        assert db.stat("/k/a").indexes == {"rank": 5, "other": 1}
        db.delete("/k/a")
        assert self.answer(db, lambda scan: list(db.folder("/k", allow_scan=scan).by("rank"))) == []

    @pytest.mark.parametrize("remove", ["delete", "delete_many", "rm_tree"])
    def test_index_values_go_with_their_object(self, db: kydb.DB, remove: str) -> None:
        db.set("/k/sub/a", 1, index={"rank": 5})
        db.set("/k/b", 2, index={"rank": 7})
        if remove == "rm_tree":
            db.rm_tree("/k/sub")
        else:
            getattr(db, remove)(*(["/k/sub/a"] if remove == "delete" else [["/k/sub/a"]]))
        db["/k/sub/a"] = 3  # created again, with no index values
        ranked = self.answer(db, lambda scan: list(db.folder("/k/sub", allow_scan=scan).by("rank")))
        if ranked is _REFUSED:
            return
        assert ranked == []
        assert db.stat("/k/sub/a").indexes == {}
        assert db.stat("/k/b").indexes == {"rank": 7}

    def test_index_names_are_case_sensitive(self, db: kydb.DB) -> None:
        db.set("/k/a", 1, index={"rank": 1, "Rank": 2})
        db.set("/k/b", 2, index={"RANK": 9})
        ranked = self.answer(db, lambda scan: list(db.folder("/k", allow_scan=scan).by("rank").entries()))
        if ranked is _REFUSED:
            return
        assert [(e.key, e.index_value) for e in ranked] == [("a", 1)]
        assert self.answer(db, lambda scan: list(db.folder("/k", allow_scan=scan).by("RANK"))) == ["b"]
        assert db.stat("/k/a").indexes == {"rank": 1, "Rank": 2}
        assert db.stat("/k/b").indexes == {"RANK": 9}

    def test_index_names_of_64_characters_work_everywhere(self, db: kydb.DB) -> None:
        longest = "n" * 64
        db.set("/k/a", 1, index={longest: 3})
        assert self.answer(db, lambda scan: list(db.folder("/k", allow_scan=scan).by(longest))) in (["a"], _REFUSED)
        with pytest.raises(ValueError, match="65 characters long; the limit is 64"):
            db.set("/k/b", 1, index={longest + "n": 3})
        assert not db.exists("/k/b")

    @pytest.mark.parametrize(
        ("index", "error"),
        [
            ({"mtime": 1}, ValueError),
            ({"9lives": 1}, ValueError),
            ({"has space": 1}, ValueError),
            ({"flag": True}, TypeError),
            ({"price": 1.5}, TypeError),
            ({"big": 2**63}, ValueError),
            ({"path": 1}, ValueError),
            (["rank"], TypeError),
        ],
    )
    def test_bad_indexes_are_refused_before_writing(self, db: kydb.DB, index: Any, error: type) -> None:
        with pytest.raises(error):
            db.set("/bad/key", 1, index=index)
        assert not db.exists("/bad/key") and not db.is_dir("/bad")

    def test_queries_page_lazily_and_completely(self, db: kydb.DB) -> None:
        for i in range(450):
            db.set(f"/many/o{i:03d}", i, index={"n": (i * 7) % 450})
        expected = [f"o{i:03d}" for i in sorted(range(450), key=lambda i: (i * 7) % 450)]
        everything = self.answer(db, lambda scan: list(db.folder("/many", allow_scan=scan).by("n")))
        if everything is _REFUSED:
            return
        assert everything == expected
        assert self.answer(db, lambda scan: list(db.folder("/many", allow_scan=scan).by("n").desc())) == expected[::-1]
        with count_calls(db) as calls:
            first = self.answer(db, lambda scan: list(db.folder("/many", allow_scan=scan).by("n").limit(3)))
        assert first == expected[:3]
        assert calls["kydb_query"] == (1 if db.capabilities.native_queries else 2)  # the refused attempt counts too

    def test_query_builders_are_immutable(self, db: kydb.DB) -> None:
        base = db.folder("/x")
        newest = base.desc().limit(1)
        assert (base.index, base.ascending, base.limit_n) == ("mtime", True, None)
        assert (newest.ascending, newest.limit_n) == (False, 1)
        assert base.by("ctime").index == "ctime" and base.index == "mtime"
        with pytest.raises(ValueError):
            base.by("no such name!")
        with pytest.raises(ValueError):
            base.limit(-1)

    def test_dbobj_writes_take_indexes(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        db.new("Greeter", "/people/tony", name="Tony").write(index={"age": 40})
        db.new("Greeter", "/people/jane", name="Jane").write(index={"age": 30})
        youngest = self.answer(db, lambda scan: list(db.folder("/people", allow_scan=scan).by("age").items()))
        if youngest is _REFUSED:
            return
        assert [(name, g.name()) for name, g in youngest] == [("jane", "Jane"), ("tony", "Tony")]

    def test_union_queries_merge_with_the_front_winning(self, new_url: Callable[[], str], connect: Connect) -> None:
        front_url, back_url = new_url(), new_url()
        front, back = connect(front_url), connect(back_url)
        union = connect(f"{front_url};{back_url}")
        back.set("/u/shared", "back", index={"n": 1})
        back.set("/u/only-back", "back", index={"n": 2})
        front.set("/u/shared", "front", index={"n": 3})
        front.set("/u/only-front", "front", index={"n": 0})
        merged = self.answer(union, lambda scan: list(union.folder("/u", allow_scan=scan).by("n").entries()))
        if merged is _REFUSED:
            return
        assert [(e.key, e.index_value) for e in merged] == [("only-front", 0), ("only-back", 2), ("shared", 3)]
        cache_db = connect(f"{front_url}|{back_url}")
        from_persist = self.answer(cache_db, lambda scan: list(cache_db.folder("/u", allow_scan=scan).by("n")))
        assert from_persist == ["shared", "only-back"]
