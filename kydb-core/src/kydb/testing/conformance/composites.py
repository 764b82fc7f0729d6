"""Unions (``a;b``) and cache DBs (``cache|persist``) built from the store under test.

The behaviour checked here is section 6 of ``docs/contract.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import kydb

from ..objects import OBJDB_CONFIG
from ..plugins import failing
from .fixtures import Connect, StoreFixtures

__all__ = ["CacheDBTests", "UnionTests"]


class UnionTests(StoreFixtures):
    """Unions (contract §6)."""

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


class CacheDBTests(StoreFixtures):
    """Cache DBs (contract §6)."""

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
        assert cdb.read("/k") == "cached"
        assert cdb.get_many(["/k"]) == {"/k": "cached"}

    def test_reload_reads_the_persistent_store_and_refreshes_the_cache_store(
        self, cache_layers: tuple[Any, Any, Any]
    ) -> None:
        cdb, cache, persist = cache_layers
        cdb["/k"] = "old"
        persist["/k"] = "new"  # changed behind the cache DB's back
        assert cdb["/k"] == "old"  # the in-process cache, until asked to reload
        assert cdb.read("/k", reload=True) == "new"
        assert cache.read("/k", reload=True) == "new"  # the cache store is refreshed too
        cdb["/gone"] = 1
        persist.delete("/gone")
        with pytest.raises(kydb.NotFound):
            cdb.read("/gone", reload=True)
        assert not cache.exists("/gone")  # dropped from the cache store, which must not serve it again
        persist["/many"] = "fresh"
        cache["/many"] = "stale"
        assert cdb.get_many(["/many"], reload=True) == {"/many": "fresh"}

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
