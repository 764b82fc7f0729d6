"""Folders: mkdir, ls and its paging, is_dir, rmdir, rm_tree.

The behaviour checked here is section 5 of ``docs/contract.md``.
"""

from __future__ import annotations

from typing import Any

import pytest

import kydb

from ..plugins import count_calls
from .fixtures import Connect, StoreFixtures

__all__ = ["FolderTests"]


class FolderTests(StoreFixtures):
    """Folders (contract §5)."""

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
        """A listing that walked the store would take a page per 1,000 objects: 2,500 make three."""
        small, large = connect(), connect()
        for db, others in ((small, 7), (large, 2497)):
            db.set_many({"/target/one": 1, "/target/two": 2})
            db.mkdir("/target/three")
            for start in range(0, others, 1000):
                db.set_many({f"/bulk/f{i % 50}/o{i}": i for i in range(start, min(others, start + 1000))})
        counts = []
        for db in (small, large):
            with count_calls(db) as calls:
                assert db.ls("/target") == ["one", "three/", "two"]
            counts.append(sum(calls.values()))
        assert counts[1] <= counts[0], f"ls made {counts[1]} hook calls in a 2,500-object store vs {counts[0]}"

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

    def test_a_folder_emptied_by_delete_stays_until_removed(self, db: kydb.DB) -> None:
        db["/p/one/x"] = 1
        db.set_many({"/p/many/a": 1, "/p/many/b": 2, "/p/many/sub/c": 3})
        db.delete("/p/one/x")
        db.delete_many(["/p/many/a", "/p/many/b", "/p/many/sub/c"])
        assert db.ls("/p") == ["many/", "one/"]
        assert db.ls("/p/many") == ["sub/"] and db.ls("/p/one") == [] and db.ls("/p/many/sub") == []
        assert db.is_dir("/p/one") and db.is_dir("/p/many") and db.is_dir("/p/many/sub")
        db.rmdir("/p/one")
        assert db.ls("/p") == ["many/"] and not db.is_dir("/p/one")
        assert db.rm_tree("/p/many") == 0
        assert not db.is_dir("/p/many") and not db.is_dir("/p/many/sub")
        # Removing its last subfolder leaves the folder above, empty, as a delete would.
        assert db.ls("/p") == [] and db.is_dir("/p") and db.ls("/") == ["p/"]
        db.delete_many(["/nowhere/x"])  # deleting what does not exist makes no folder
        assert db.ls("/") == ["p/"] and not db.is_dir("/nowhere")

    def test_ls_never_lists_deleted_objects(self, db: kydb.DB) -> None:
        db.set_many({"/g/a": 1, "/g/b": 2, "/g/sub/c": 3})
        db.delete("/g/a")
        db.delete_many(["/g/sub/c"])
        assert "a" not in db.ls("/g")
        assert db.ls("/g/sub") == []
        for name in db.ls("/g", include_dir=False):
            assert db.exists(f"/g/{name}")
