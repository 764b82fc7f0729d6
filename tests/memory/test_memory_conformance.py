"""kydb-memory against the whole conformance suite, plus what is memory's own."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import kydb
from kydb.testing import StoreConformance, unique_name


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def new_url(self) -> Callable[[], str]:
        return lambda: f"memory://{unique_name('mem')}/base"

    def raw_get(self, db: kydb.DB, path: str) -> bytes | None:
        return db.store.tree.objects.get(path)

    def raw_put(self, db: kydb.DB, path: str, blob: bytes) -> None:
        db.store.kydb_put(items={path: blob}, mtime_ns=0, indexes={}, expect={})


def test_named_stores_are_shared_by_every_connect() -> None:
    name = unique_name("mem")
    kydb.connect(f"memory://{name}")["/x"] = 1
    assert kydb.connect(f"memory://{name}/")["/x"] == 1
    assert kydb.connect(f"memory://{name}?base=/")["/x"] == 1
    assert kydb.connect(f"memory://{name}-other").get("/x") is None


@pytest.mark.parametrize(
    ("url", "message"),
    [("memory://", "need a store name"), ("memory://x?colour=red", "no query options"),
     ("memory://x/a/../b", "bad base path"), ("memory://x/base?base=/other", "both")],
)
def test_bad_memory_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kydb.connect(url)


def test_listing_uses_the_folder_index_not_a_scan() -> None:
    db = kydb.connect(f"memory://{unique_name('mem')}")
    db.set_many({f"/big/o{i}": i for i in range(2000)})
    db["/small/a"] = 1
    tree = db.store.tree
    assert list(tree.children["/small/"]) == ["a"]
    assert list(tree.children["/"]) == ["big/", "small/"]
    assert len(tree.children["/big/"]) == 2000
