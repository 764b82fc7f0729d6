"""Objects: values round-trip, falsy values, missing keys, unpicklable values, corrupt blobs, atomic writes.

The behaviour checked here is section 3 of ``docs/contract.md``.
"""

from __future__ import annotations

import datetime
import os
import pickle
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, ClassVar

import pytest

import kydb
from kydb import envelope

from ..plugins import count_calls
from .fixtures import StoreFixtures

__all__ = ["ObjectTests"]


class ObjectTests(StoreFixtures):
    """Objects (contract §3)."""

    VALUES: ClassVar[list[Any]] = [
        123,
        -1.5,
        "hello",
        datetime.datetime(2026, 9, 5, 12, 30, 1, 123456),
        datetime.date(2026, 9, 5),
        Decimal("1.10"),
        {"nested": [1, (2, 3), {"x": {4, 5}}], "none": None},
        None,
        0,
        "",
        False,
        b"",
        [],
        {},
        b"\x00\xff" * 3,
    ]

    @pytest.mark.parametrize("value", VALUES, ids=[f"{type(v).__name__}-{i}" for i, v in enumerate(VALUES)])
    def test_values_round_trip_equal(self, db: kydb.DB, value: Any) -> None:
        db["/v"] = value
        back = db.read("/v", reload=True)
        assert back == value and type(back) is type(value)

    def test_large_bytes_round_trip(self, db: kydb.DB) -> None:
        value = os.urandom(5 * 1024 * 1024)
        db["/big"] = value
        assert db.read("/big", reload=True) == value

    def test_numpy_arrays_round_trip(self, db: kydb.DB) -> None:
        np = pytest.importorskip("numpy")
        value = np.arange(10_000, dtype="float64").reshape(100, 100)
        db["/array"] = value
        back = db.read("/array", reload=True)
        assert back.dtype == value.dtype and np.array_equal(back, value)

    @pytest.mark.parametrize("value", [0, "", False, None, b"", [], {}], ids=repr)
    def test_falsy_values_are_cached(self, db: kydb.DB, value: Any) -> None:
        db["/falsy"] = value
        db.refresh()
        with count_calls(db) as calls:
            assert db["/falsy"] == value
            assert db["/falsy"] == value
        assert calls["kydb_get"] == 1

    def test_missing_key_is_not_found(self, db: kydb.DB) -> None:
        with pytest.raises(kydb.NotFound) as info:
            db["/missing"]
        assert isinstance(info.value, KeyError) and "/missing" in str(info.value)
        with pytest.raises(KeyError):
            db.read("/missing", reload=True)
        assert db.get("/missing", "default") == "default"
        with pytest.raises(KeyError):
            db.delete("/missing")
        with pytest.raises(KeyError):
            del db["/missing"]

    def test_exists_is_for_objects_only(self, db: kydb.DB) -> None:
        db["/dir/obj"] = 1
        db.mkdir("/empty")
        assert db.exists("/dir/obj") and "/dir/obj" in db
        assert not db.exists("/dir")
        assert not db.exists("/empty")
        assert not db.exists("/nothing")

    def test_delete_removes_object_and_listing(self, db: kydb.DB) -> None:
        db["/d/x"] = 1
        db["/d/y"] = 2
        db.delete("/d/x")
        assert not db.exists("/d/x")
        assert db.ls("/d") == ["y"]
        with pytest.raises(KeyError):
            db["/d/x"]
        del db["/d/y"]
        assert db.ls("/d") == []
        assert self.raw_get(db, self.full_path(db, "/d/y")) is None

    @pytest.mark.parametrize(
        "make",
        [threading.Lock, lambda: lambda: 1, lambda: {"gen": (i for i in range(3))}],
        ids=["lock", "lambda", "generator"],
    )
    def test_unpicklable_values_leave_no_trace(self, db: kydb.DB, make: Callable[[], Any]) -> None:
        db["/keep"] = "kept"
        before = self.snapshot(db)
        with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
            db["/newfolder/bad"] = make()
        with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
            db.set_many({"/newfolder/good": 1, "/newfolder/bad": make()})
        assert self.snapshot(db) == before
        assert not db.is_dir("/newfolder")
        assert self.raw_get(db, self.full_path(db, "/newfolder/bad")) is None
        assert self.raw_get(db, self.full_path(db, "/newfolder/good")) is None
        with pytest.raises(KeyError):
            db["/newfolder/bad"]

    @pytest.mark.parametrize(
        "blob",
        [
            b"",
            b"not kydb data at all",
            pickle.dumps({"plain": "pickle"}),
            b"KYDB\x09\x00\x00" + pickle.dumps(1),
            b"KYDB\x01\x00\x00garbage",
            envelope.encode({"a": list(range(100))})[:40],
        ],
        ids=["empty", "foreign", "bare-pickle", "future-version", "garbage-payload", "truncated"],
    )
    def test_corrupt_blobs_raise_corrupt_value(self, db: kydb.DB, blob: bytes) -> None:
        self.raw_put(db, self.full_path(db, "/corrupt/it"), blob)
        with pytest.raises(kydb.CorruptValue) as info:
            db.read("/corrupt/it", reload=True)
        assert "/corrupt/it" in str(info.value)
        assert not isinstance(info.value, KeyError)
        with pytest.raises(kydb.CorruptValue):
            db["/corrupt/it"]

    def test_raw_blob_written_by_kydb_is_an_envelope(self, db: kydb.DB) -> None:
        db["/env"] = {"x": 1}
        blob = self.raw_get(db, self.full_path(db, "/env"))
        assert blob is not None and blob.startswith(envelope.MAGIC)
        assert envelope.decode(blob, "/env") == {"x": 1}

    def test_stat_reports_the_stored_size_and_any_times(self, db: kydb.DB) -> None:
        before = time.time_ns()
        db["/s/obj"] = "x" * 1000
        info = db.stat("/s/obj")
        assert info.size == len(self.raw_get(db, self.full_path(db, "/s/obj")) or b"")
        for stamp in (info.mtime_ns, info.ctime_ns):
            assert stamp is None or before - 5_000_000_000 <= stamp <= time.time_ns() + 5_000_000_000
        for missing in ("/s", "/s/nothing"):
            with pytest.raises(kydb.NotFound):
                db.stat(missing)

    def test_object_and_folder_may_share_a_name(self, db: kydb.DB) -> None:
        db["/a"] = "object"
        db["/a/b"] = "child"
        assert db.ls("/") == ["a", "a/"]
        assert db.read("/a", reload=True) == "object"
        assert db.read("/a/b", reload=True) == "child"
        assert db.is_dir("/a") and db.exists("/a")
        db.delete("/a")
        assert db.ls("/") == ["a/"]
        assert db.read("/a/b", reload=True) == "child"

    def test_overwrite_replaces_value(self, db: kydb.DB) -> None:
        db["/o"] = "one"
        db["/o"] = "two"
        assert db.read("/o", reload=True) == "two"
        assert db.ls("/") == ["o"]

    def test_concurrent_writers_to_one_folder_lose_nothing(self, db: kydb.DB) -> None:
        def write(worker: int) -> None:
            for i in range(40):
                db[f"/crowd/w{worker}-{i:02d}"] = (worker, i)
                db[f"/crowd/sub{worker}/x{i:02d}"] = i

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(write, range(8)))
        expected_objects = sorted(f"w{w}-{i:02d}" for w in range(8) for i in range(40))
        assert db.ls("/crowd", include_dir=False) == expected_objects
        assert [n for n in db.ls("/crowd") if n.endswith("/")] == [f"sub{w}/" for w in range(8)]
        db.refresh()
        values = db.get_many(f"/crowd/w{w}-{i:02d}" for w in range(8) for i in range(40))
        assert values == {f"/crowd/w{w}-{i:02d}": (w, i) for w in range(8) for i in range(40)}
