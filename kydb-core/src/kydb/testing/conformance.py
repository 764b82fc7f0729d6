"""The conformance suite: SPEC §1–§8 checked through the public API of one backend.

Every backend in the kydb repository runs all of it, and so can a third
party's.  Subclass :class:`StoreConformance` in a test module, give it a
``new_url`` fixture (a factory of URLs to fresh, empty namespaces — a unique
base path, bucket, table or store name per call) and raw access to the
stored blobs, and pytest collects every test below::

    import uuid, pytest
    from kydb.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def new_url(self):
            return lambda: f"mystore://localhost/test-{uuid.uuid4().hex}"

        def raw_get(self, db, path):
            ...  # the bytes stored at absolute path ``path`` (base path included), or None

        def raw_put(self, db, path, blob):
            ...  # store ``blob`` at ``path`` behind kydb's back

Capabilities a backend lacks are declared as class attributes (see
``shared_between_processes``); the tests for them then check what the
backend promises instead.
"""

from __future__ import annotations

import datetime
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from typing import Any, ClassVar

import pytest

import kydb
from kydb import envelope
from kydb.keys import MAX_PATH_BYTES
from kydb.query import FolderQuery

from . import _child
from .objects import OBJDB_CONFIG
from .plugins import count_calls, failing

__all__ = ["StoreConformance", "unique_name"]

Connect = Callable[..., Any]

# Names that must survive every backend's escaping: SQL LIKE wildcards, glob
# characters, URL-special characters, quotes, non-ASCII, combining marks.
ODD_NAMES = [
    "with space",
    "100%",
    "a_b",
    "st*r",
    "q?",
    "#hash",
    "quo'te",
    'dq"',
    "back\\slash",
    "[x]",
    "a+b",
    "semi;colon",
    "pipe|bar",
    "amp&eq=",
    "tilde~",
    "é",
    "e\u0301",
    "日本語",
    "🙂",
    "a%b",
    "trailing ",
]


def _key_of_bytes(size: int, char: str = "x") -> str:
    """An object key (leading ``/`` included) of exactly ``size`` bytes of UTF-8."""
    width = len(char.encode())
    parts = []
    remaining = size
    while remaining > 0:
        remaining -= 1  # the '/'
        take = min(remaining, 100)
        if remaining - take == 1:
            take -= 1  # leave room for a non-empty last component
        count, extra = divmod(take, width)
        parts.append(char * count + "y" * extra)
        remaining -= take
    key = "/" + "/".join(parts)
    assert len(key.encode()) == size and all(parts), (size, key)
    return key


class _Fixtures:
    #: Other processes connecting to the same URL see the same data
    #: (False for in-process stores such as ``memory://``).
    shared_between_processes: ClassVar[bool] = True
    #: The store records each object's modification and creation times and
    #: user index values (``kydb_stat`` reports them), so queries can at least scan.
    keeps_times: ClassVar[bool] = True
    #: The store keeps each object's creation time across overwrites
    #: (``False``: ``ctime`` is ``None`` and ordering by it is refused).
    keeps_ctime: ClassVar[bool] = True
    #: The store answers folder queries from an ordered index (``kydb_query``),
    #: without ``allow_scan``.
    native_queries: ClassVar[bool] = False

    @pytest.fixture
    def new_url(self) -> Callable[[], str]:
        """Override: return a factory of URLs, each naming a fresh, empty namespace."""
        raise NotImplementedError("a StoreConformance subclass must define the new_url fixture")

    def raw_get(self, db: kydb.DB, path: str) -> bytes | None:
        """Override: the bytes stored at the absolute ``path`` (base path included), bypassing kydb."""
        raise NotImplementedError

    def raw_put(self, db: kydb.DB, path: str, blob: bytes) -> None:
        """Override: store ``blob`` at the absolute ``path``, bypassing kydb."""
        raise NotImplementedError

    @pytest.fixture
    def connect(self, new_url: Callable[[], str]) -> Iterator[Connect]:
        """Connect a URL (fresh by default) with ``kydb.connect`` options; single stores are emptied afterwards."""
        opened: list[kydb.BaseDB] = []

        def _connect(url: str | None = None, **options: Any) -> Any:
            db = kydb.connect(url if url is not None else new_url(), **options)
            opened.append(db)
            return db

        yield _connect
        for db in reversed(opened):
            if isinstance(db, kydb.DB):
                db.rm_tree("/")
        for db in opened:
            db.close()

    @pytest.fixture
    def db(self, connect: Connect) -> Any:
        """A DB on a fresh, empty namespace."""
        return connect()

    def full_path(self, db: kydb.DB, key: str) -> str:
        return db.base_path + kydb.keys.normalize_key(key, system=True)

    def snapshot(self, db: kydb.BaseDB, folder: str = "/") -> dict[str, Any]:
        """Everything below ``folder``: ``{path: value}`` for objects, ``{path/: None}`` for folders."""
        found: dict[str, Any] = {}
        for name in db.ls(folder):
            path = folder.rstrip("/") + "/" + name
            if name.endswith("/"):
                found[path] = None
                found.update(self.snapshot(db, path))
            else:
                found[path] = db.read(path, reload=True)
        return found


class ConnectingTests(_Fixtures):
    """SPEC §1: connecting, identity, pickling, processes."""

    def test_same_url_gives_same_db(self, db: kydb.DB) -> None:
        assert kydb.connect(db._url) is db

    def test_connect_is_thread_safe(self, new_url: Callable[[], str], connect: Connect) -> None:
        url = new_url()
        with ThreadPoolExecutor(8) as pool:
            dbs = list(pool.map(lambda _: kydb.connect(url), range(32)))
        connect(url)
        assert all(d is dbs[0] for d in dbs)

    def test_repr_names_class_and_url(self, db: kydb.DB) -> None:
        assert repr(db) == f"<DB {db.url}>"
        if db.store_url.password:
            assert db.store_url.password not in repr(db)

    def test_pickle_reconnects_to_the_same_db(self, db: kydb.DB) -> None:
        assert pickle.loads(pickle.dumps(db)) is db

    def test_pickled_db_reconnects_in_a_child_process(self, db: kydb.DB) -> None:
        import multiprocessing

        db["/shared/value"] = {"from": "parent"}
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            child_repr, child_value = pool.apply(_child.read_in_child, (db, "/shared/value"))
        assert child_repr == repr(db)
        assert child_value == ({"from": "parent"} if self.shared_between_processes else None)

    def test_processes_writing_one_folder_lose_nothing(self, db: kydb.DB) -> None:
        """4 processes x 200 writes into one folder (each reconnects from a pickled DB)."""
        import multiprocessing

        db["/procs/parent"] = "parent"
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            pool.starmap(_child.write_in_child, [(db, "/procs", worker, 200) for worker in range(4)])
        written = sorted(f"w{worker}-{i}" for worker in range(4) for i in range(200))
        if self.shared_between_processes:
            assert db.ls("/procs") == sorted([*written, "parent"])
            assert db.get_many([f"/procs/{name}" for name in written], reload=True) == {
                f"/procs/w{worker}-{i}": (worker, i) for worker in range(4) for i in range(200)
            }
        else:  # each process has its own store: the children's writes stay there
            assert db.ls("/procs") == ["parent"]

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() does not exist on this platform")
    def test_forked_child_opens_its_own_store(self, db: kydb.DB) -> None:
        db["/forked"] = "before fork"
        parent_store = db.store
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 3
            try:
                fresh = db.store is not parent_store
                code = 0 if fresh and db.read("/forked", reload=True) == "before fork" else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child reused the parent's store or could not read"
        assert db.store is parent_store
        assert db.read("/forked", reload=True) == "before fork"


class KeyTests(_Fixtures):
    """SPEC §2: keys and paths."""

    def test_leading_slash_is_optional(self, db: kydb.DB) -> None:
        db["a/b"] = 1
        assert db["/a/b"] == 1
        assert db.read("/a/b", reload=True) == 1
        db["/a/b"] = 2
        assert db.read("a/b", reload=True) == 2
        assert db.ls("/a") == ["b"] == db.ls("a") == db.ls("a/") == db.ls("/a/")

    def test_base_path_prefixes_every_key(self, db: kydb.DB, connect: Connect) -> None:
        home = connect(db.store_url.with_base(db.base_path + "/home/tony"))
        assert home.base_path == db.base_path + "/home/tony"
        home["/foo"] = 123
        assert db.read("/home/tony/foo", reload=True) == 123
        assert db.ls("/home/tony") == ["foo"]
        assert self.raw_get(db, db.base_path + "/home/tony/foo") is not None
        home.rm_tree("/")
        assert not db.exists("/home/tony/foo")

    @pytest.mark.parametrize(
        "key",
        [
            "",
            "/",
            "a//b",
            "a/./b",
            "a/../b",
            "..",
            ".hidden",
            "a/.b",
            "a/b/",
            "nul\x00x",
            "new\nline",
            "tab\tx",
            "del\x7fx",
            "c1\x85x",
            "lone\ud800surrogate",
        ],
    )
    def test_invalid_keys_raise_before_touching_the_store(self, db: kydb.DB, key: str) -> None:
        db["/existing"] = "kept"
        before = self.snapshot(db)
        with count_calls(db) as calls:
            for attempt in (
                lambda: db.set(key, 1),
                lambda: db.read(key),
                lambda: db.delete(key),
                lambda: db.exists(key),
                lambda: db.set_many({key: 1}),
            ):
                with pytest.raises(kydb.InvalidKey) as info:
                    attempt()
                assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
        assert sum(calls.values()) == 0
        assert self.snapshot(db) == before

    def test_non_string_keys_are_invalid(self, db: kydb.DB) -> None:
        for key in (1, None, b"/a", ("a",)):
            with pytest.raises(kydb.InvalidKey):
                db[key] = 1  # type: ignore[index]
            with pytest.raises(kydb.InvalidKey):
                db.read(key)  # type: ignore[arg-type]

    def test_system_objects_need_system_obj(self, db: kydb.DB) -> None:
        with pytest.raises(kydb.InvalidKey):
            db["/.sys/x"] = 1
        db.set("/.sys/x", 1, system_obj=True)
        assert db.read("/.sys/x", system_obj=True) == 1
        assert db.read("/.sys/x", reload=True, system_obj=True) == 1
        with pytest.raises(kydb.InvalidKey):
            db.read("/.sys/x")
        assert ".sys/" in db.ls("/")
        assert db.ls("/.sys") == ["x"]
        db.delete("/.sys/x", system_obj=True)
        assert not db.exists("/.sys/x", system_obj=True)

    def test_full_path_limit_is_1024_bytes_of_utf8(self, db: kydb.DB) -> None:
        room = MAX_PATH_BYTES - len(db.base_path.encode())
        tops = []
        for char in ("x", "é", "日"):
            longest = _key_of_bytes(room, char)
            db[longest] = char
            assert db.read(longest, reload=True) == char
            assert db.exists(longest)
            assert db.ls(longest.rsplit("/", 1)[0]) == [longest.rsplit("/", 1)[1]]
            tops.append(longest.split("/")[1] + "/")
            too_long = _key_of_bytes(room + 1, char)
            for attempt in (lambda: db.set(too_long, char), lambda: db.read(too_long), lambda: db.mkdir(too_long)):
                with pytest.raises(kydb.InvalidKey):
                    attempt()
        assert db.ls("/") == sorted(tops)

    def test_odd_names_round_trip_through_set_ls_and_rm_tree(self, db: kydb.DB) -> None:
        for name in ODD_NAMES:
            db[f"/odd/{name}"] = name
            db[f"/odd/{name}/inner"] = name
        expected = sorted(ODD_NAMES + [n + "/" for n in ODD_NAMES])
        assert db.ls("/odd") == expected
        assert db.ls("/odd", include_dir=False) == sorted(ODD_NAMES)
        for name in ODD_NAMES:
            assert db.read(f"/odd/{name}", reload=True) == name
            assert db.ls(f"/odd/{name}") == ["inner"]
        db.refresh()
        assert db.get_many(f"/odd/{n}" for n in ODD_NAMES) == {f"/odd/{n}": n for n in ODD_NAMES}

    def test_wildcard_names_never_match_siblings(self, db: kydb.DB) -> None:
        everyone = ["a_b", "aXb", "a%b", "aZZb", "100%", "1000", "st*r", "star", "q?", "qq", "[x]", "x"]
        siblings = list(everyone)
        for name in siblings:
            db[f"/w/{name}/leaf"] = name
            db[f"/w/{name}x"] = name
        for victim in ("a_b", "a%b", "100%", "st*r", "q?", "[x]"):
            db.rm_tree(f"/w/{victim}")
            survivors = [s for s in siblings if s != victim]
            assert [n for n in db.ls("/w") if n.endswith("/")] == sorted(s + "/" for s in survivors)
            assert db.ls("/w", include_dir=False) == sorted(s + "x" for s in everyone)
            siblings = survivors
        for name in siblings:
            assert db.read(f"/w/{name}/leaf", reload=True) == name

    def test_folders_end_with_slash_objects_do_not(self, db: kydb.DB) -> None:
        db["/f/obj"] = 1
        db.mkdir("/f/dir")
        assert db.ls("/f") == ["dir/", "obj"]


class ObjectTests(_Fixtures):
    """SPEC §3: objects."""

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


class BatchTests(_Fixtures):
    """SPEC §9 batch operations: one bulk call each."""

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


class CacheTests(_Fixtures):
    """SPEC §4: the in-process read cache."""

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


class FolderTests(_Fixtures):
    """SPEC §5: folders."""

    def test_walkthrough_folder_sequence(self, db: kydb.DB) -> None:
        db.mkdir("/empty-folder")
        assert db.ls("/") == ["empty-folder/"]
        db["/foo/bar/baz"] = 123
        assert db.ls("/") == ["empty-folder/", "foo/"]
        assert db.ls("/foo") == ["bar/"]
        db.rmdir("/empty-folder")
        assert db.ls("/") == ["foo/"]
        db.rm_tree("/foo")
        assert db.ls("/") == []

    def test_ls_is_sorted_and_include_dir_filters(self, db: kydb.DB) -> None:
        names = ["b", "a", "B", "a-b", "a.b", "z", "0", "é", "Z9"]
        for name in names:
            db[f"/s/{name}"] = 1
            db.mkdir(f"/s/{name}-dir")
        assert db.ls("/s") == sorted(names + [f"{n}-dir/" for n in names])
        assert db.ls("/s", include_dir=False) == sorted(names)

    @pytest.mark.parametrize("page_size", [1, 2, 3, 7, 1000])
    def test_list_dir_page_size_never_changes_the_result(self, db: kydb.DB, page_size: int) -> None:
        db.set_many({f"/p/o{i:02d}": i for i in range(12)})
        for i in range(5):
            db.mkdir(f"/p/d{i}")
        listing = db.list_dir("/p", page_size=page_size)
        assert iter(listing) is listing  # lazy
        assert list(listing) == db.ls("/p")
        assert list(db.list_dir("/p", include_dir=False, page_size=page_size)) == [f"o{i:02d}" for i in range(12)]

    def test_list_dir_pages_lazily(self, db: kydb.DB) -> None:
        db.set_many({f"/lazy/o{i:02d}": i for i in range(20)})
        with count_calls(db) as calls:
            listing = db.list_dir("/lazy", page_size=5)
            assert [next(listing) for _ in range(5)] == [f"o{i:02d}" for i in range(5)]
        assert calls["kydb_list"] == 1

    @pytest.mark.parametrize("page_size", [0, -1, 1.5, "10", True])
    def test_list_dir_rejects_bad_page_size(self, db: kydb.DB, page_size: Any) -> None:
        with pytest.raises(ValueError):
            db.list_dir("/", page_size=page_size)

    def test_ls_of_missing_folder_is_empty(self, db: kydb.DB) -> None:
        assert db.ls("/no/such/folder") == []

    def test_ls_costs_the_same_whatever_the_store_size(self, connect: Connect) -> None:
        small, large = connect(), connect()
        for db, others in ((small, 7), (large, 4997)):
            db.set_many({"/target/one": 1, "/target/two": 2})
            db.mkdir("/target/three")
            for start in range(0, others, 1000):
                db.set_many({f"/bulk/f{i % 50}/o{i}": i for i in range(start, min(others, start + 1000))})
        counts = []
        for db in (small, large):
            with count_calls(db) as calls:
                assert db.ls("/target") == ["one", "three/", "two"]
            counts.append(sum(calls.values()))
        assert counts[1] <= counts[0], f"ls made {counts[1]} hook calls in a 5,000-object store vs {counts[0]}"

    def test_mkdir_creates_intermediate_folders(self, db: kydb.DB) -> None:
        db.mkdir("/x/y/z")
        assert db.is_dir("/x") and db.is_dir("/x/y") and db.is_dir("x/y/z/")
        assert db.ls("/") == ["x/"]
        assert db.ls("/x") == ["y/"]
        assert db.ls("/x/y/z") == []
        db.mkdir("/x/y/z")  # again: no error, no change
        assert db.ls("/x/y") == ["z/"]

    @pytest.mark.parametrize("folder", ["/", "", ".", "a/../b", "/.hidden"])
    def test_mkdir_rejects_root_and_bad_names(self, db: kydb.DB, folder: str) -> None:
        with pytest.raises(ValueError):
            db.mkdir(folder)
        assert db.ls("/") == []

    def test_is_dir(self, db: kydb.DB) -> None:
        db.mkdir("/explicit")
        db["/implied/by/object"] = 1
        assert db.is_dir("/") and db.is_dir("")
        assert db.is_dir("/explicit") and db.is_dir("/implied") and db.is_dir("/implied/by")
        assert not db.is_dir("/implied/by/object")
        assert not db.is_dir("/missing")

    def test_rmdir_only_removes_empty_folders(self, db: kydb.DB) -> None:
        db["/full/x"] = 1
        with pytest.raises(kydb.FolderNotEmpty) as info:
            db.rmdir("/full")
        assert isinstance(info.value, KeyError)
        db.mkdir("/full/sub")
        db.delete("/full/x")
        with pytest.raises(kydb.FolderNotEmpty):
            db.rmdir("/full")
        db.rmdir("/full/sub")
        db.rmdir("/full")
        assert db.ls("/") == []
        assert not db.is_dir("/full")

    @pytest.mark.parametrize("folder", ["/missing", "", ".", "/", "/obj"])
    def test_rmdir_of_missing_or_root_raises_key_error(self, db: kydb.DB, folder: str) -> None:
        db["/obj"] = 1
        with pytest.raises(KeyError):
            db.rmdir(folder)
        assert db.ls("/") == ["obj"]

    def test_rm_tree_removes_a_300_object_tree_in_bulk(self, db: kydb.DB) -> None:
        db.set_many({f"/tree/l{i % 3}/m{i % 7}/o{i}": i for i in range(300)})
        db.mkdir("/tree/empty/deeper")
        db["/keep/x"] = "kept"
        db["/tree-sibling"] = "kept"
        with count_calls(db) as calls:
            removed = db.rm_tree("/tree")
        assert removed == 300  # objects, not folders
        assert calls["kydb_delete"] <= 1, "rm_tree must delete in bulk, not once per object"
        assert calls["kydb_get"] == 0
        assert db.ls("/") == ["keep/", "tree-sibling"]
        assert not db.is_dir("/tree")
        assert not db.exists("/tree/l0/m0/o0")
        with pytest.raises(KeyError):
            db["/tree/l1/m1/o1"]
        assert db.read("/keep/x", reload=True) == "kept"

    def test_rm_tree_of_a_non_folder_raises_key_error(self, db: kydb.DB) -> None:
        db["/obj"] = 1
        for folder in ("/obj", "/missing"):
            with pytest.raises(KeyError):
                db.rm_tree(folder)
        assert db.read("/obj", reload=True) == 1

    def test_rm_tree_root_empties_the_store(self, db: kydb.DB) -> None:
        db.set_many({"/a/b": 1, "/c": 2})
        db.mkdir("/d/e")
        assert db.rm_tree("/") == 2
        assert db.ls("/") == []
        assert not db.exists("/c")
        assert db.rm_tree("/") == 0  # an empty store too
        db["/again"] = 1
        assert db.ls("/") == ["again"]

    def test_ls_never_lists_deleted_objects(self, db: kydb.DB) -> None:
        db.set_many({"/g/a": 1, "/g/b": 2, "/g/sub/c": 3})
        db.delete("/g/a")
        db.delete_many(["/g/sub/c"])
        assert "a" not in db.ls("/g")
        assert db.ls("/g/sub") == []
        for name in db.ls("/g", include_dir=False):
            assert db.exists(f"/g/{name}")


class UnionTests(_Fixtures):
    """SPEC §6: unions."""

    @pytest.fixture
    def union_layers(self, new_url: Callable[[], str], connect: Connect) -> tuple[Any, Any, Any]:
        front_url, back_url = new_url(), new_url()
        front, back = connect(front_url), connect(back_url)
        return connect(f"{front_url};{back_url}"), front, back

    def test_union_reads_first_hit_and_writes_front(self, union_layers: tuple[Any, Any, Any]) -> None:
        union, front, back = union_layers
        front["/k"] = "front"
        back["/k"] = "back"
        back["/only-back"] = "back"
        assert union["/k"] == "front"
        assert union["/only-back"] == "back"
        union["/new"] = "written"
        assert front.read("/new", reload=True) == "written"
        assert not back.exists("/new")
        assert union.exists("/only-back") and not union.exists("/nothing")
        assert union.dbs == (front, back)
        assert repr(union) == f"<UnionDB {front.url};{back.url}>"

    def test_union_ls_merges_sorted_without_duplicates(self, union_layers: tuple[Any, Any, Any]) -> None:
        union, front, back = union_layers
        front.set_many({"/d/a": 1, "/d/c": 1, "/d/sub/x": 1})
        back.set_many({"/d/b": 1, "/d/c": 1, "/d/sub/y": 1})
        back.mkdir("/d/back-only")
        assert union.ls("/d") == ["a", "b", "back-only/", "c", "sub/"]
        assert list(union.list_dir("/d", page_size=1)) == union.ls("/d")
        assert union.ls("/d", include_dir=False) == ["a", "b", "c"]
        assert union.is_dir("/d/back-only") and not union.is_dir("/d/none")

    def test_union_removals_act_on_the_front_only(self, union_layers: tuple[Any, Any, Any]) -> None:
        union, front, back = union_layers
        front["/k"] = "front"
        back["/k"] = "back"
        union.delete("/k")
        assert not front.exists("/k")
        assert union.read("/k", reload=True) == "back"
        with pytest.raises(KeyError):
            union.delete("/k")  # only the back layer has it
        front["/t/x"] = 1
        back["/t/y"] = 2
        assert union.rm_tree("/t") == 1  # the front layer's
        assert not front.is_dir("/t") and back.read("/t/y", reload=True) == 2
        union.mkdir("/made")
        assert front.is_dir("/made") and not back.is_dir("/made")
        union.rmdir("/made")
        assert not front.is_dir("/made")

    def test_union_write_refreshes_the_front_layers_cache(self, union_layers: tuple[Any, Any, Any]) -> None:
        union, front, _ = union_layers
        front["/c"] = 1
        union["/c"] = 2
        assert front["/c"] == 2
        union.set_many({"/c": 3})
        assert front["/c"] == 3

    def test_union_dbobj_belongs_to_the_union(self, union_layers: tuple[Any, Any, Any]) -> None:
        union, front, back = union_layers
        back.upload_objdb_config(OBJDB_CONFIG)
        back.new("Greeter", "/g", name="Back").write()
        g = union.read("/g", reload=True)
        assert g.db is union and g.name() == "Back"
        union.new("Greeter", "/g2", name="Front").write()
        assert front.exists("/g2")


class CacheDBTests(_Fixtures):
    """SPEC §6: cache DBs."""

    @pytest.fixture
    def cache_layers(self, new_url: Callable[[], str], connect: Connect) -> tuple[Any, Any, Any]:
        cache_url, persist_url = new_url(), new_url()
        cache, persist = connect(cache_url), connect(persist_url)
        return connect(f"{cache_url}|{persist_url}"), cache, persist

    def test_read_through_fills_the_cache_store(self, cache_layers: tuple[Any, Any, Any]) -> None:
        cdb, cache, persist = cache_layers
        persist["/k"] = "persisted"
        assert not cache.exists("/k")
        assert cdb["/k"] == "persisted"
        assert cache.read("/k", reload=True) == "persisted"
        assert cdb.cache_db is cache and cdb.persist_db is persist
        assert repr(cdb) == f"<CacheDB {cache.url}|{persist.url}>"

    def test_read_prefers_the_cache_store(self, cache_layers: tuple[Any, Any, Any]) -> None:
        cdb, cache, persist = cache_layers
        persist["/k"] = "persisted"
        cache["/k"] = "cached"
        assert cdb.read("/k", reload=True) == "cached"

    def test_writes_go_to_both_stores(self, cache_layers: tuple[Any, Any, Any]) -> None:
        cdb, cache, persist = cache_layers
        cdb["/w"] = 1
        cdb.set_many({"/m": 2})
        for key, value in (("/w", 1), ("/m", 2)):
            assert persist.read(key, reload=True) == value
            assert cache.read(key, reload=True) == value

    def test_failed_persistent_write_leaves_cache_store_unchanged(self, cache_layers: tuple[Any, Any, Any]) -> None:
        cdb, cache, persist = cache_layers
        cdb["/w"] = "old"
        with failing(persist, "kydb_put"), pytest.raises(kydb.StoreUnavailable):
            cdb["/w"] = "new"
        assert cache.read("/w", reload=True) == "old"
        assert persist.read("/w", reload=True) == "old"
        assert cdb["/w"] == "old"

    def test_delete_and_rm_tree_go_to_both(self, cache_layers: tuple[Any, Any, Any]) -> None:
        cdb, cache, persist = cache_layers
        cdb["/d"] = 1
        cdb["/t/x"] = 1
        cdb.delete("/d")
        assert not cache.exists("/d") and not persist.exists("/d")
        with pytest.raises(KeyError):
            cdb.delete("/d")
        assert cdb.rm_tree("/t") == 1  # the persistent store's
        assert not cache.exists("/t/x") and not persist.exists("/t/x")
        assert not persist.is_dir("/t")

    def test_ls_and_is_dir_come_from_the_persistent_store(self, cache_layers: tuple[Any, Any, Any]) -> None:
        cdb, cache, persist = cache_layers
        persist["/p/x"] = 1
        cache["/p/stale"] = 1
        cache["/cache-only/y"] = 1
        assert cdb.ls("/p") == ["x"]
        assert not cdb.is_dir("/cache-only")
        cdb.mkdir("/made")
        assert persist.is_dir("/made")
        cdb.rmdir("/made")
        assert not persist.is_dir("/made")

    def test_dbobj_read_through_cache_db_belongs_to_it(self, cache_layers: tuple[Any, Any, Any]) -> None:
        cdb, _, persist = cache_layers
        persist.upload_objdb_config(OBJDB_CONFIG)
        persist.new("Greeter", "/g", name="Tony").write()
        g = cdb.read("/g", reload=True)
        assert g.db is cdb and g.name() == "Tony"


class DbObjTests(_Fixtures):
    """SPEC §7: stored Python objects."""

    def test_walkthrough_greeter(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        key = "/hello-world/greeter001"
        greeter = db.new("Greeter", key)
        assert greeter.name() == "John" and greeter.greet() == "Hello John"
        greeter = db.new("Greeter", key, name="Tony")
        assert greeter.greet() == "Hello Tony"
        greeter.name.setvalue("Jane")
        assert greeter.name() == "Jane" and greeter.greet() == "Hello Jane"
        greeter.name.clear()
        assert greeter.name() == "John"
        greeter = db.new("Greeter", key, name="Mary")
        greeter.greet()
        assert greeter.greet_count == 1
        assert greeter.get_stored_dict() == {"name": "Mary"}
        assert (greeter.db, greeter.key, greeter.class_name) == (db, key, "Greeter")
        assert not db.exists(key)  # new() does not write
        greeter.write()
        mary = db[key]
        assert mary is greeter and mary.greet_count == 1
        mary = db.read(key, reload=True)
        assert mary.greet_count == 0 and mary.name() == "Mary"
        assert (mary.db, mary.key, mary.class_name) == (db, key, "Greeter")
        mary.delete()
        assert not db.exists(key)

    def test_stored_form_holds_no_pickled_class(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        db.new("Greeter", "/g", name="Mary").write()
        blob = self.raw_get(db, self.full_path(db, "/g"))
        assert blob is not None
        assert b"kydb.walkthrough" not in blob  # the record names the class; it does not pickle it
        record = envelope.decode(blob, "/g")
        assert record == envelope.DbObjRecord("Greeter", "/g", {"name": "Mary"})

    def test_classes_can_move_between_modules(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        db.new("Greeter", "/g", name="Tony").write()
        db.upload_objdb_config({"Greeter": {"module_path": "kydb.testing.objects", "class_name": "RenamedGreeter"}})
        moved = db.read("/g", reload=True)
        assert type(moved).__name__ == "RenamedGreeter"
        assert moved.greet() == "Hi Tony" and moved.class_name == "Greeter"

    def test_unknown_class_is_key_error(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        with pytest.raises(KeyError) as info:
            db.new("NoSuchClass", "/x")
        assert "NoSuchClass" in str(info.value)
        assert not db.exists("/x")

    def test_missing_config_is_dbobj_exception(self, db: kydb.DB) -> None:
        with pytest.raises(kydb.DbObjException) as info:
            db.new("Greeter", "/x")
        assert "/.configs/objdb" in str(info.value)

    @pytest.mark.parametrize(
        "config",
        [
            {"Greeter": "kydb.testing.objects.Greeter"},
            {"Greeter": {"module_path": "kydb.testing.objects"}},
            {"Greeter": {"module_path": 1, "class_name": "Greeter"}},
            ["Greeter"],
        ],
    )
    def test_malformed_config_is_rejected_before_writing(self, db: kydb.DB, config: Any) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        with pytest.raises(kydb.DbObjException):
            db.upload_objdb_config(config)
        assert db.read("/.configs/objdb", reload=True, system_obj=True) == OBJDB_CONFIG

    def test_malformed_stored_config_entry_is_dbobj_exception(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        db.new("Greeter", "/g").write()
        db.set("/.configs/objdb", {"Greeter": {"module_path": "no.such.module", "class_name": "G"}}, system_obj=True)
        with pytest.raises(kydb.DbObjException) as info:
            db.read("/g", reload=True)
        assert "no.such.module" in str(info.value)
        db.set("/.configs/objdb", {"Greeter": "broken"}, system_obj=True)
        with pytest.raises(kydb.DbObjException):
            db.new("Greeter", "/h")
        db.set("/.configs/objdb", {}, system_obj=True)
        with pytest.raises(kydb.DbObjException) as info2:
            db.read("/g", reload=True)
        assert not isinstance(info2.value, KeyError)

    def test_new_rejects_unknown_stored_attributes(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        with pytest.raises(TypeError):
            db.new("Greeter", "/g", nickname="T")


class ErrorTests(_Fixtures):
    """SPEC §8: errors — a broken store never looks like a missing key."""

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

    def test_failed_delete_still_drops_the_cache_entry(self, db: kydb.DB) -> None:
        db["/k"] = "stored"
        with failing(db, "kydb_delete"), pytest.raises(kydb.StoreUnavailable):
            db.delete("/k")
        assert db["/k"] == "stored"  # read again from the store, which still has it


_REFUSED = object()


class QueryTests(_Fixtures):
    """SPEC §9 recency and index queries, natively or by scanning, as the store declares."""

    def answer(self, run: Callable[[bool], Any]) -> Any:
        """``run(allow_scan)`` the way this store supports; where it must refuse, check that it does."""
        if self.native_queries:
            return run(False)
        with pytest.raises(kydb.IndexNotSupported):
            run(False)
        if not self.keeps_times:
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
        newest = self.answer(lambda scan: db.recent("/r", allow_scan=scan))
        if newest is _REFUSED:
            return
        assert newest == ["b", "c", "a"]
        assert self.answer(lambda scan: db.recent("/r", limit=2, allow_scan=scan)) == ["b", "c"]
        assert self.answer(lambda scan: db.recent("/empty", allow_scan=scan)) == []

    def test_times_are_kept_by_every_write(self, db: kydb.DB) -> None:
        before = time.time_ns()
        db["/t/x"] = 1
        time.sleep(0.002)
        db["/t/x"] = 2  # an overwrite moves mtime, keeps ctime
        entries = self.answer(lambda scan: list(db.folder("/t", allow_scan=scan).entries()))
        if entries is _REFUSED:
            return
        (entry,) = entries
        assert entry.key == "x" and type(entry.mtime) is int and entry.index_value == entry.mtime
        info = db.stat("/t/x")
        assert (info.mtime_ns, info.ctime_ns) == (entry.mtime, entry.ctime)
        if not self.keeps_ctime:
            assert entry.ctime is None and before <= entry.mtime <= time.time_ns()
            with pytest.raises(kydb.IndexNotSupported, match="creation"):
                list(db.folder("/t", allow_scan=True).by("ctime"))
            return
        assert type(entry.ctime) is int
        assert before <= entry.ctime < entry.mtime <= time.time_ns()
        by_ctime = self.answer(lambda scan: list(db.folder("/t", allow_scan=scan).by("ctime").entries()))
        assert by_ctime[0].index_value == entry.ctime

    def test_an_overwrite_within_one_clock_tick_stays_listed_once(self, db: kydb.DB) -> None:
        """A coarse clock gives an overwrite the time its object already has: it stays in the time indexes, once."""
        tick = 1_780_000_000_123_456_789
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(time, "time_ns", lambda: tick)
            db["/tick/x"] = 1
            db["/tick/x"] = 2
            db["/tick/y"] = 3
        newest = self.answer(lambda scan: db.recent("/tick", allow_scan=scan))
        if newest is _REFUSED:
            return
        assert sorted(newest) == ["x", "y"]
        assert db.read("/tick/x", reload=True) == 2
        assert db.stat("/tick/x").mtime_ns == tick
        if self.keeps_ctime:
            by_ctime = self.answer(lambda scan: list(db.folder("/tick", allow_scan=scan).by("ctime")))
            assert sorted(by_ctime) == ["x", "y"]

    def test_user_index_orders_and_bounds(self, db: kydb.DB) -> None:
        dates = {"b1": 20260905, "b2": 20260101, "b3": 20261231, "b4": 20260905}
        for name, date in dates.items():
            db.set(f"/books/{name}", {"name": name}, index={"class_date": date})
        db["/books/no-date"] = "not in the index"
        query = db.folder("/books").by("class_date")
        names = self.answer(lambda scan: list(replace(query, allow_scan=scan)))
        if names is _REFUSED:
            return
        assert names == ["b2", "b1", "b4", "b3"]  # ties ordered by name

        def run(q: FolderQuery) -> list[str]:
            return list(self.answer(lambda scan: list(replace(q, allow_scan=scan))))

        assert run(query.desc()) == ["b3", "b4", "b1", "b2"]
        assert run(query.since(20260905)) == ["b1", "b4", "b3"]
        assert run(query.until(20260905)) == ["b2", "b1", "b4"]
        assert run(query.since(20260905).until(20260905)) == ["b1", "b4"]
        assert run(query.since(20270000).until(20260000)) == []  # inverted: nothing, no error
        assert run(query.desc().limit(2)) == ["b3", "b4"]
        assert run(query.limit(0)) == []
        items = self.answer(lambda scan: list(replace(query, allow_scan=scan).since(20261231).items()))
        assert items == [("b3", {"name": "b3"})]
        entries = self.answer(lambda scan: list(replace(query, allow_scan=scan).entries()))
        assert [e.index_value for e in entries] == [20260101, 20260905, 20260905, 20261231]
        assert db.stat("/books/b1").indexes == {"class_date": 20260905}

    def test_rewrites_keep_or_clear_index_values(self, db: kydb.DB) -> None:
        db.set("/k/a", 1, index={"rank": 5, "other": 1})
        db.set("/k/b", 2, index={"rank": 3})
        db["/k/a"] = 10  # no index mentioned: both kept
        db.set("/k/b", 20, index={"rank": None})  # cleared
        ranked = self.answer(lambda scan: list(db.folder("/k", allow_scan=scan).by("rank")))
        if ranked is _REFUSED:
            return
        assert ranked == ["a"]
        assert db.stat("/k/a").indexes == {"rank": 5, "other": 1}
        db.delete("/k/a")
        assert self.answer(lambda scan: list(db.folder("/k", allow_scan=scan).by("rank"))) == []

    @pytest.mark.parametrize("remove", ["delete", "delete_many", "rm_tree"])
    def test_index_values_go_with_their_object(self, db: kydb.DB, remove: str) -> None:
        db.set("/k/sub/a", 1, index={"rank": 5})
        db.set("/k/b", 2, index={"rank": 7})
        if remove == "rm_tree":
            db.rm_tree("/k/sub")
        else:
            getattr(db, remove)(*(["/k/sub/a"] if remove == "delete" else [["/k/sub/a"]]))
        db["/k/sub/a"] = 3  # created again, with no index values
        ranked = self.answer(lambda scan: list(db.folder("/k/sub", allow_scan=scan).by("rank")))
        if ranked is _REFUSED:
            return
        assert ranked == []
        assert db.stat("/k/sub/a").indexes == {}
        assert db.stat("/k/b").indexes == {"rank": 7}

    def test_index_names_are_case_sensitive(self, db: kydb.DB) -> None:
        db.set("/k/a", 1, index={"rank": 1, "Rank": 2})
        db.set("/k/b", 2, index={"RANK": 9})
        ranked = self.answer(lambda scan: list(db.folder("/k", allow_scan=scan).by("rank").entries()))
        if ranked is _REFUSED:
            return
        assert [(e.key, e.index_value) for e in ranked] == [("a", 1)]
        assert self.answer(lambda scan: list(db.folder("/k", allow_scan=scan).by("RANK"))) == ["b"]
        assert db.stat("/k/a").indexes == {"rank": 1, "Rank": 2}
        assert db.stat("/k/b").indexes == {"RANK": 9}

    def test_index_names_of_64_characters_work_everywhere(self, db: kydb.DB) -> None:
        longest = "n" * 64
        db.set("/k/a", 1, index={longest: 3})
        assert self.answer(lambda scan: list(db.folder("/k", allow_scan=scan).by(longest))) in (["a"], _REFUSED)
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
        everything = self.answer(lambda scan: list(db.folder("/many", allow_scan=scan).by("n")))
        if everything is _REFUSED:
            return
        assert everything == expected
        assert self.answer(lambda scan: list(db.folder("/many", allow_scan=scan).by("n").desc())) == expected[::-1]
        with count_calls(db) as calls:
            first = self.answer(lambda scan: list(db.folder("/many", allow_scan=scan).by("n").limit(3)))
        assert first == expected[:3]
        assert calls["kydb_query"] == (1 if self.native_queries else 2)  # the refused attempt counts too

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
        youngest = self.answer(lambda scan: list(db.folder("/people", allow_scan=scan).by("age").items()))
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
        merged = self.answer(lambda scan: list(union.folder("/u", allow_scan=scan).by("n").entries()))
        if merged is _REFUSED:
            return
        assert [(e.key, e.index_value) for e in merged] == [("only-front", 0), ("only-back", 2), ("shared", 3)]
        cache_db = connect(f"{front_url}|{back_url}")
        from_persist = self.answer(lambda scan: list(cache_db.folder("/u", allow_scan=scan).by("n")))
        assert from_persist == ["shared", "only-back"]


class _CreatesFile:
    """Unpickling this creates a file: stands for any code an attacker's blob would run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (self.path, "w")


def _global_call_blob(module: str, name: str, argument: str) -> bytes:
    """An unsigned kydb blob whose protocol-4 pickle calls ``module.name(argument)`` via STACK_GLOBAL."""

    def text(value: str) -> bytes:
        encoded = value.encode()
        return b"\x8c" + bytes([len(encoded)]) + encoded  # SHORT_BINUNICODE

    payload = b"\x80\x04" + text(module) + text(name) + b"\x93" + text(argument) + b"\x85R."
    return envelope.MAGIC + bytes((envelope.VERSION, 0, 0)) + payload


SIGNING_KEY = b"conformance-signing-key-0123456789"
OTHER_KEY = b"another-signing-key-for-rotation-42"


class TrustTests(_Fixtures):
    """Signed blobs and restricted loading, with blobs planted in the backend's own storage."""

    def test_signing_reader_refuses_a_planted_blob_without_running_it(
        self, db: kydb.DB, connect: Connect, tmp_path: Any
    ) -> None:
        control = tmp_path / "control"
        pickle.loads(pickle.dumps(_CreatesFile(str(control))))  # the payload really runs code when unpickled
        assert control.exists()
        target = tmp_path / "pwned"
        planted = envelope.encode(_CreatesFile(str(target)))
        forged = planted[:5] + bytes([planted[5] | envelope.FLAG_SIGNED]) + planted[6:7] + b"\0" * 32 + planted[7:]
        signing = connect(db._url, signing_key=SIGNING_KEY)
        for blob in (planted, forged):
            self.raw_put(db, self.full_path(db, "/planted"), blob)
            with pytest.raises(kydb.CorruptValue, match="/planted"):
                signing.read("/planted", reload=True)
        restricted = connect(db._url, allowed_modules=[])
        self.raw_put(db, self.full_path(db, "/planted"), planted)
        with pytest.raises(kydb.CorruptValue, match="refused to load global"):
            restricted.read("/planted", reload=True)
        assert not target.exists()

    def test_the_dbobj_config_never_widens_restricted_loading(
        self, db: kydb.DB, connect: Connect, tmp_path: Any
    ) -> None:
        """Whoever writes the store controls the config: naming a module there must not make it loadable."""
        target = tmp_path / "pwned"
        planted = envelope.encode(_CreatesFile(str(target)))  # a global from the 'io' module
        db.upload_objdb_config({"X": {"module_path": "io", "class_name": "open"}, **OBJDB_CONFIG})
        self.raw_put(db, self.full_path(db, "/planted"), planted)
        restricting: list[dict[str, Any]] = [{"allowed_modules": []}, {"serializer": "json"}]
        for options in restricting:
            reader = connect(db._url, **options)
            with pytest.raises(kydb.CorruptValue, match=r"refused to load global io\.open"):
                reader.read("/planted", reload=True)
        assert not target.exists()

    def test_allowed_modules_do_not_leak_what_they_import(self, db: kydb.DB, connect: Connect, tmp_path: Any) -> None:
        """``STACK_GLOBAL('allowed.module', 'os.mkdir')`` walks into what the module imported: refused."""
        allowed = "kydb.testing.conformance"  # imports os, threading, pickle...
        reader = connect(db._url, allowed_modules=[allowed])
        target = tmp_path / "pwned"
        for name in ("os.mkdir", "ThreadPoolExecutor", "pytest.main"):
            self.raw_put(db, self.full_path(db, "/planted"), _global_call_blob(allowed, name, str(target)))
            with pytest.raises(kydb.CorruptValue, match="refused to load global"):
                reader.read("/planted", reload=True)
        assert not target.exists()

    def test_a_signature_is_bound_to_its_key(self, db: kydb.DB, connect: Connect) -> None:
        signing = connect(db._url, signing_key=SIGNING_KEY)
        signing["/limits/test"] = {"limit": 10**9}
        signing["/limits/prod"] = {"limit": 10}
        moved = self.raw_get(db, self.full_path(db, "/limits/test"))
        assert moved is not None
        self.raw_put(db, self.full_path(db, "/limits/prod"), moved)
        with pytest.raises(kydb.CorruptValue, match=r"/limits/prod.*moved from another key"):
            signing.read("/limits/prod", reload=True)
        lenient = connect(db._url, signing_key=SIGNING_KEY, require_signed=False)  # verifies what is signed
        with pytest.raises(kydb.CorruptValue, match="signature"):
            lenient.read("/limits/prod", reload=True)

    def test_a_reader_that_skips_unsigned_checks_still_verifies_signed_blobs(
        self, db: kydb.DB, connect: Connect
    ) -> None:
        signing = connect(db._url, signing_key=SIGNING_KEY)
        signing["/signed"] = "genuine"
        blob = self.raw_get(db, self.full_path(db, "/signed"))
        assert blob is not None
        self.raw_put(db, self.full_path(db, "/signed"), blob[:-1] + bytes([blob[-1] ^ 1]))
        lenient = connect(db._url, signing_key=SIGNING_KEY, require_signed=False)
        with pytest.raises(kydb.CorruptValue, match="signature"):
            lenient.read("/signed", reload=True)

    def test_signed_blobs_round_trip_and_rotate(self, db: kydb.DB, connect: Connect) -> None:
        old = connect(db._url, signing_key=OTHER_KEY)
        old["/signed"] = {"v": 1}
        blob = self.raw_get(db, self.full_path(db, "/signed"))
        assert blob is not None and blob[5] & envelope.FLAG_SIGNED
        rotated = connect(db._url, signing_key=[SIGNING_KEY, OTHER_KEY])
        assert rotated.read("/signed", reload=True) == {"v": 1}
        rotated["/signed"] = {"v": 2}  # now signed with the new key
        with pytest.raises(kydb.CorruptValue, match="signature"):
            old.read("/signed", reload=True)
        assert db.read("/signed", reload=True) == {"v": 2}  # a reader without keys does not verify
        db["/unsigned"] = "legacy"
        with pytest.raises(kydb.CorruptValue, match="not signed"):
            rotated.read("/unsigned", reload=True)
        lenient = connect(db._url, signing_key=SIGNING_KEY, require_signed=False)
        assert lenient.read("/unsigned", reload=True) == "legacy"


class StoreConformance(
    ConnectingTests,
    KeyTests,
    ObjectTests,
    BatchTests,
    CacheTests,
    FolderTests,
    UnionTests,
    CacheDBTests,
    DbObjTests,
    ErrorTests,
    TrustTests,
    QueryTests,
):
    """The whole suite.  Subclass it with ``new_url``, ``raw_get`` and ``raw_put``."""


def unique_name(prefix: str = "kydb-test") -> str:
    """A name no other test run uses: for base paths, buckets, tables."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
