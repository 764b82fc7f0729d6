"""Read-only stores: what a writable twin planted reads back the same, and every write is refused.

A store that declares ``writable=False`` (a tree published over HTTP, a
snapshot on read-only media) cannot run the rest of the suite, which writes
through the store under test.  Its test class subclasses
:class:`ReadOnlyConformance` instead and gives two fixtures: ``writer_url``,
a factory of URLs to fresh, empty namespaces of a *writable* store, and
``reader_url``, which maps such a URL to the read-only URL that reads the
same data::

    class TestPublishedOverHTTP(ReadOnlyConformance):
        @pytest.fixture
        def writer_url(self, served_dir):
            return lambda: f"file://{served_dir}/{unique_name('pub')}"

        @pytest.fixture
        def reader_url(self, server_port):
            return lambda url: f"http://127.0.0.1:{server_port}/{url.rsplit('/', 1)[1]}"

Each test plants data with the writer and checks what the reader returns:
values, listings (odd, system, long and shared names), ``stat``, queries as
the reader's capabilities declare them, unions that put a writable store in
front, cache DBs, DbObj, pickling, failures — and that every write raises
:class:`kydb.ReadOnlyStore` naming the URL before any write hook is called.
The writer's namespaces are emptied when each test ends.
"""

from __future__ import annotations

import multiprocessing
import pickle
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import kydb
from kydb import envelope, transfer
from kydb.keys import MAX_PATH_BYTES

from .. import _child
from ..objects import OBJDB_CONFIG
from ..plugins import count_calls, failing
from .keys import ODD_NAMES, _key_of_bytes
from .values import ObjectTests

__all__ = ["ReadOnlyConformance"]

#: The hooks that change a store: a read-only store's must never be called.
WRITE_HOOKS = ("kydb_put", "kydb_delete", "kydb_mkdir", "kydb_rmdir", "kydb_delete_tree")
_SECOND = 1_000_000_000

Twin = Callable[..., tuple[Any, Any]]


def _same_time(read: int | None, written: int | None) -> bool:
    """The reader's time is the writer's — or, from a source with whole seconds (HTTP's Last-Modified), that second."""
    if read is None or written is None:
        return read is written
    return read == written or (read % _SECOND == 0 and 0 <= written - read < _SECOND)


class ReadOnlyConformance:
    """A read-only store against data its writable twin planted (contract §13, ``writable``)."""

    @pytest.fixture
    def writer_url(self) -> Callable[[], str]:
        """Override: a factory of URLs, each a fresh, empty namespace of a writable store."""
        raise NotImplementedError("a ReadOnlyConformance subclass must define the writer_url fixture")

    @pytest.fixture
    def reader_url(self) -> Callable[[str], str]:
        """Override: the read-only URL that reads what the writer URL given holds."""
        raise NotImplementedError("a ReadOnlyConformance subclass must define the reader_url fixture")

    @pytest.fixture
    def twin(self, writer_url: Callable[[], str], reader_url: Callable[[str], str]) -> Iterator[Twin]:
        """``twin(**connect_options)``: a (writer, reader) pair on a fresh namespace; emptied afterwards."""
        opened: list[tuple[Any, Any]] = []

        def make(**options: Any) -> tuple[Any, Any]:
            url = writer_url()
            pair = kydb.connect(url, **options), kydb.connect(reader_url(url), **options)
            opened.append(pair)
            return pair

        yield make
        for writer, reader in opened:
            writer.rm_tree("/")
            writer.close()
            reader.close()

    @pytest.fixture
    def pair(self, twin: Twin) -> tuple[Any, Any]:
        """A writer and the read-only reader of its data."""
        return twin()

    def tree(self, db: kydb.BaseDB, folder: str = "/") -> dict[str, Any]:
        """``{path/: None}`` for every folder and ``{path: value}`` for every object below ``folder``."""
        found: dict[str, Any] = {}
        for name in db.ls(folder):
            path = folder.rstrip("/") + "/" + name
            if name.endswith("/"):
                found[path] = None
                found.update(self.tree(db, path))
            else:
                found[path] = db.read(path, reload=True, system_obj=True)
        return found

    # ------------------------------------------------------------------ what it declares

    def test_it_declares_itself_read_only(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        _, reader = pair
        assert reader.capabilities.writable is False
        assert reader.capabilities == type(reader.store).capabilities_for(reader.store_url)
        assert repr(reader) == f"<DB {reader.url}>"
        assert kydb.connect(reader.store_url.raw) is reader
        assert pickle.loads(pickle.dumps(reader)) is reader

    # ------------------------------------------------------------------ reading

    def test_values_read_back_equal(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        writer, reader = pair
        values = {f"/v/{i}": value for i, value in enumerate(ObjectTests.VALUES)}
        values["/v/big"] = bytes(range(256)) * 20_000  # 5 MB
        writer.set_many(values)
        for key, value in values.items():
            back = reader.read(key, reload=True)
            assert back == value and type(back) is type(value), key
        reader.refresh()
        assert reader.get_many(values) == values
        assert reader.get_blobs(values) == writer.get_blobs(values)
        assert reader.exists("/v/0") and "/v/1" in reader

    def test_numpy_arrays_read_back(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        np = pytest.importorskip("numpy")
        writer, reader = pair
        writer["/array"] = np.arange(10_000, dtype="float64").reshape(100, 100)
        back = reader.read("/array", reload=True)
        assert back.dtype == np.float64 and np.array_equal(back, writer.read("/array", reload=True))

    def test_missing_keys_and_folders(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        writer, reader = pair
        writer["/here/k"] = 1
        writer.mkdir("/here/empty")
        with pytest.raises(kydb.NotFound, match="/missing") as info:
            reader.read("/missing", reload=True)
        assert isinstance(info.value, KeyError)
        for absent in ("/missing", "/here", "/here/empty", "/here/k/deeper"):
            assert not reader.exists(absent)
            assert reader.get(absent, "default") == "default"
            with pytest.raises(kydb.NotFound):
                reader.stat(absent)
        assert reader.ls("/no/such/folder") == [] and not reader.is_dir("/no/such")
        assert reader.get_many(["/missing", "/here/k"]) == {"/here/k": 1}

    def test_invalid_keys_raise_before_the_store_is_asked(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        _, reader = pair
        with count_calls(reader) as calls:
            for key in ("", "a//b", ".hidden", "a/../b", "nul\x00x", "a/b/"):
                with pytest.raises(kydb.InvalidKey):
                    reader.read(key, reload=True)
                with pytest.raises(kydb.InvalidKey):
                    reader.exists(key)
        assert sum(calls.values()) == 0

    def test_corrupt_blobs_raise_corrupt_value(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        writer, reader = pair
        writer.put_blobs({"/bad": b"not kydb data", "/cut": envelope.encode(list(range(100)))[:30]})
        for key in ("/bad", "/cut"):
            with pytest.raises(kydb.CorruptValue, match=key):
                reader.read(key, reload=True)

    def test_signed_blobs_verify_through_the_reader(self, twin: Twin) -> None:
        writer, reader = twin(signing_key=b"read-only-conformance-key-0123456789")
        writer["/signed"] = {"v": 1}
        assert reader.read("/signed", reload=True) == {"v": 1}
        writer.put_blobs({"/moved": writer.get_blobs(["/signed"])["/signed"]})
        with pytest.raises(kydb.CorruptValue, match="/moved"):
            reader.read("/moved", reload=True)

    # ------------------------------------------------------------------ listing

    def test_listings_match_the_writers(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        writer, reader = pair
        writer.set_many({f"/odd/{name}": name for name in ODD_NAMES})
        writer.set_many({f"/odd/{name}/inner": name for name in ODD_NAMES[:5]})
        writer["/same"] = "an object"
        writer["/same/below"] = "an object and a folder of one name"
        writer.mkdir("/empty/deeper")
        writer.upload_objdb_config(OBJDB_CONFIG)  # a system object: /.configs/objdb
        writer.set("/.kydb-like", "a system name like a store's own", system_obj=True)
        long_name = "é" * 150  # 300 bytes: longer than a file name may be on most filesystems
        writer[f"/long/{long_name}"] = "long object"
        writer[f"/long/{long_name}/{long_name}"] = "long folder and object"
        deepest = _key_of_bytes(MAX_PATH_BYTES - len(writer.base_path.encode()), "日")
        writer[deepest] = "at the length limit"
        assert self.tree(reader) == self.tree(writer)
        for folder in ("/", "/odd", "/same", "/long", f"/long/{long_name}"):
            expected = writer.ls(folder)
            assert reader.ls(folder) == expected
            assert reader.ls(folder, include_dir=False) == writer.ls(folder, include_dir=False)
            for page_size in (1, 2, 1000):
                assert list(reader.list_dir(folder, page_size=page_size)) == expected
        for folder in ("/odd", "/empty", "/empty/deeper", "/same", "/.configs", f"/long/{long_name}"):
            assert reader.is_dir(folder)
        assert reader.read(deepest, reload=True) == "at the length limit"

    def test_a_listing_sees_what_was_written_since_the_last(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        writer, reader = pair
        writer.set_many({"/f/a": 1, "/f/b": 2})
        assert reader.ls("/f") == ["a", "b"]
        writer.delete("/f/a")
        writer["/f/c"] = 3
        assert reader.ls("/f") == ["b", "c"]

    # ------------------------------------------------------------------ metadata and queries

    def test_stat_reports_what_the_writer_keeps(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        writer, reader = pair
        writer["/s/plain"] = "x" * 1000
        writer.set("/s/indexed", 1, index={"rank": 7, "Rank": -2})
        writer["/s/indexed"] = 2  # an overwrite keeps the creation time and the index values
        for key in ("/s/plain", "/s/indexed"):
            wrote, read = writer.stat(key), reader.stat(key)
            assert read.size == wrote.size
            if not reader.capabilities.keeps_times:
                assert read.mtime_ns is None and read.ctime_ns is None and not read.indexes
                continue
            assert _same_time(read.mtime_ns, wrote.mtime_ns), (key, read, wrote)
            assert dict(read.indexes) == dict(wrote.indexes)
            if reader.capabilities.keeps_ctime:
                assert _same_time(read.ctime_ns, wrote.ctime_ns), (key, read, wrote)
            if not reader.capabilities.conditional_writes:
                assert read.version is None
        assert reader.stat_many(["/s/plain", "/s/none"]).keys() == {"/s/plain"}

    def test_queries_answer_as_declared(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        writer, reader = pair
        ranks = {"b1": 20260905, "b2": 20260101, "b3": 20261231, "b4": 20260905}
        for name, rank in ranks.items():
            writer.set(f"/q/{name}", name, index={"rank": rank})
        writer["/q/unranked"] = "not in the index"
        query = reader.folder("/q").by("rank")
        if reader.capabilities.native_queries:
            names = list(query)
        else:
            with pytest.raises(kydb.IndexNotSupported):
                list(query)
            if not reader.capabilities.keeps_times:
                with pytest.raises(kydb.IndexNotSupported):
                    list(reader.folder("/q", allow_scan=True).by("rank"))
                return
            query = reader.folder("/q", allow_scan=True).by("rank")
            names = list(query)
        assert names == ["b2", "b1", "b4", "b3"]
        assert list(query.desc().limit(2)) == ["b3", "b4"]
        assert list(query.since(20260905).until(20260905).items()) == [("b1", "b1"), ("b4", "b4")]

    # ------------------------------------------------------------------ writes

    def test_every_write_is_refused_before_the_store_is_called(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        writer, reader = pair
        writer.upload_objdb_config(OBJDB_CONFIG)
        writer.set_many({"/w/k": "kept", "/w/sub/x": 1})
        writer.mkdir("/w/empty")
        before = self.tree(writer)
        greeter = reader.new("Greeter", "/w/g", name="Ann")
        attempts: dict[str, Callable[[], object]] = {
            "set": lambda: reader.set("/w/k", "changed"),
            "setitem": lambda: reader.__setitem__("/w/new", 1),
            "set_many": lambda: reader.set_many({"/w/k": 2, "/w/new": 3}),
            "put_blobs": lambda: reader.put_blobs({"/w/new": envelope.encode(1)}),
            "delete": lambda: reader.delete("/w/k"),
            "delitem": lambda: reader.__delitem__("/w/k"),
            "delete_many": lambda: reader.delete_many(["/w/k", "/w/sub/x"]),
            "mkdir": lambda: reader.mkdir("/w/made"),
            "rmdir": lambda: reader.rmdir("/w/empty"),
            "rm_tree": lambda: reader.rm_tree("/w"),
            "rm_tree root": lambda: reader.rm_tree("/"),
            "upload_objdb_config": lambda: reader.upload_objdb_config(OBJDB_CONFIG),
            "DbObj.write": greeter.write,
        }
        with count_calls(reader) as calls:
            for what, attempt in attempts.items():
                with pytest.raises(kydb.ReadOnlyStore, match=re.escape(reader.url)) as info:
                    attempt()
                assert isinstance(info.value, PermissionError), what
            # A conditional write is refused as a write: the store is read-only, whatever else it lacks.
            for attempt in (
                lambda: reader.set("/w/k", 1, if_absent=True),
                lambda: reader.update("/w/k", lambda v: v + "!"),
            ):
                with pytest.raises(kydb.ReadOnlyStore, match=re.escape(reader.url)):
                    attempt()
        assert all(calls[hook] == 0 for hook in WRITE_HOOKS), dict(calls)
        assert self.tree(writer) == before and self.tree(reader) == before
        assert reader.read("/w/k", reload=True) == "kept"

    # ------------------------------------------------------------------ with other stores

    def test_a_union_puts_a_writable_store_in_front(
        self, pair: tuple[kydb.DB, kydb.DB], writer_url: Callable[[], str]
    ) -> None:
        writer, reader = pair
        writer.set_many({"/u/published": "back", "/u/shadowed": "back", "/u/sub/x": 1})
        front_url = writer_url()
        front = kydb.connect(front_url)
        union: Any = kydb.connect(f"{front_url};{reader.store_url.raw}")
        try:
            assert union.capabilities.writable and union.dbs == (front, reader)
            front["/u/shadowed"] = "front"
            union["/u/new"] = "written to the front"
            assert union.read("/u/published", reload=True) == "back"
            assert union.read("/u/shadowed", reload=True) == "front"
            assert front.read("/u/new", reload=True) == "written to the front" and not reader.exists("/u/new")
            assert union.ls("/u") == ["new", "published", "shadowed", "sub/"]
            with pytest.raises(KeyError):
                union.delete("/u/published")  # only the read-only layer has it
            assert union.rm_tree("/u") == 2  # the front's two
            assert union.ls("/u") == ["published", "shadowed", "sub/"] and reader.exists("/u/published")
        finally:
            front.rm_tree("/")
            union.close()
            front.close()

    def test_a_cache_db_reads_through_and_refuses_writes(
        self, pair: tuple[kydb.DB, kydb.DB], writer_url: Callable[[], str]
    ) -> None:
        writer, reader = pair
        writer["/c/k"] = "published"
        cache_url = writer_url()
        cache_db = kydb.connect(f"{cache_url}|{reader.store_url.raw}")
        cache = kydb.connect(cache_url)
        try:
            assert not cache_db.capabilities.writable
            assert cache_db["/c/k"] == "published" and cache.read("/c/k", reload=True) == "published"
            with pytest.raises(kydb.ReadOnlyStore):
                cache_db["/c/k"] = "changed"
            assert cache.read("/c/k", reload=True) == "published"
        finally:
            cache.rm_tree("/")
            cache_db.close()
            cache.close()

    def test_trees_copy_out_of_the_read_only_store(
        self, pair: tuple[kydb.DB, kydb.DB], writer_url: Callable[[], str]
    ) -> None:
        writer, reader = pair
        writer.set_many({"/t/a": 1, "/t/sub/b": [2], "/t/sub/deeper/c": {"c": 3}})
        writer.set("/t/indexed", 4, index={"rank": 1})
        writer.mkdir("/t/empty")
        copy = kydb.connect(writer_url())
        try:
            stats = transfer.copy_tree(reader, "/t", copy, "/")
            assert (stats.objects, stats.folders) == (4, 1)
            assert self.tree(copy) == {k.removeprefix("/t"): v for k, v in self.tree(writer, "/t").items()}
            assert copy.stat("/indexed").indexes == ({"rank": 1} if reader.capabilities.keeps_times else {})
        finally:
            copy.rm_tree("/")
            copy.close()

    def test_dbobjs_read_from_the_read_only_store_belong_to_it(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        writer, reader = pair
        writer.upload_objdb_config(OBJDB_CONFIG)
        writer.new("Greeter", "/people/tony", name="Tony").write()
        tony = reader.read("/people/tony", reload=True)
        assert tony.db is reader and tony.name() == "Tony" and tony.greet() == "Hello Tony"

    def test_a_pickled_reader_reads_in_a_child_process(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        writer, reader = pair
        writer["/shared/value"] = {"from": "the writer"}
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            child_repr, child_value = pool.apply(_child.read_in_child, (reader, "/shared/value"))
        assert child_repr == repr(reader) and child_value == {"from": "the writer"}

    def test_failures_are_never_a_missing_key(self, pair: tuple[kydb.DB, kydb.DB]) -> None:
        writer, reader = pair
        writer["/k"] = 1
        with failing(reader, "kydb_get", "kydb_exists", "kydb_list", "kydb_is_dir", "kydb_stat"):
            for attempt in (
                lambda: reader.read("/k", reload=True),
                lambda: reader.get("/missing"),
                lambda: reader.exists("/k"),
                lambda: reader.ls("/"),
                lambda: reader.is_dir("/x"),
                lambda: reader.stat("/k"),
            ):
                with pytest.raises(kydb.StoreUnavailable):
                    attempt()
        assert reader.read("/k", reload=True) == 1
