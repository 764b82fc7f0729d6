"""What a dict-like, hierarchical store offers of Python's protocols, and what it refuses (and says instead)."""

from __future__ import annotations

import pytest

import kydb
from kydb.testing import count_calls, unique_name


@pytest.fixture
def db() -> kydb.BaseDB:
    db = kydb.connect(f"memory://{unique_name('proto')}")
    db.set_many({"/a/x": 1, "/a/y": 2, "/a/sub/z": 3, "/top": 4})
    return db


def test_iterating_or_counting_a_store_is_refused_with_the_lazy_ways_instead(db: kydb.BaseDB) -> None:
    with pytest.raises(TypeError, match=r"db\.keys\(folder, recursive=True\).*db\.walk"):
        list(db)
    with pytest.raises(TypeError, match="no len"):
        len(db)
    assert bool(db) is True  # no len(), yet still true
    assert "/a/x" in db and "/nope" not in db


def test_keys_lists_a_folder_or_a_tree_lazily(db: kydb.BaseDB) -> None:
    assert list(db.keys("/a")) == ["/a/x", "/a/y"]
    assert sorted(db.keys("/", recursive=True)) == ["/a/sub/z", "/a/x", "/a/y", "/top"]
    with count_calls(db) as calls:
        first = next(db.keys("/", recursive=True))
    assert first == "/top" and calls["kydb_list"] == 1  # lazy: one folder listed for the first key


def test_walk_is_os_walk_for_folders(db: kydb.BaseDB) -> None:
    assert list(db.walk("/")) == [("/", ["a"], ["top"]), ("/a/", ["sub"], ["x", "y"]), ("/a/sub/", [], ["z"])]
    assert list(db.walk("/a/sub")) == [("/a/sub/", [], ["z"])]


def test_a_db_is_a_context_manager(db: kydb.BaseDB) -> None:
    url = f"memory://{unique_name('with')}"
    with kydb.connect(url) as inside:
        inside["/k"] = 1
    assert kydb.connect(url).read("/k") == 1
