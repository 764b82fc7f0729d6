"""Front-object behaviour that does not depend on the backend."""

from __future__ import annotations

import pickle

import pytest

import kydb
from kydb.testing import unique_name


def test_repr_and_url_mask_the_password(password_scheme: str) -> None:
    url = f"{password_scheme}://admin:hunter2@{unique_name('s')}/base"
    db = kydb.connect(url)
    assert "hunter2" not in repr(db) and "admin:***@" in repr(db)
    assert "hunter2" not in db.url
    assert "hunter2" not in repr(db.store_url)
    with pytest.raises(KeyError) as info:
        db["/missing"]
    assert "hunter2" not in str(info.value)
    union = kydb.connect(f"{url};memory://{unique_name('m')}")
    assert "hunter2" not in repr(union) and repr(union).startswith("<UnionDB ")
    assert pickle.loads(pickle.dumps(db)) is db  # the real URL travels, so it can reconnect


def test_connect_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        kydb.connect(None)  # type: ignore[arg-type]


def test_union_of_cache_dbs_and_three_layers() -> None:
    a, b, c = (f"memory://{unique_name(n)}" for n in "abc")
    db = kydb.connect(f"{a}|{b};{c}")
    assert isinstance(db, kydb.UnionDB)
    cache_db, third = db.dbs
    assert isinstance(cache_db, kydb.CacheDB) and third is kydb.connect(c)
    kydb.connect(c)["/only-c"] = 3
    kydb.connect(b)["/only-b"] = 2
    assert db["/only-c"] == 3 and db["/only-b"] == 2
    assert kydb.connect(a).read("/only-b", reload=True) == 2  # filled through the cache DB
    three = kydb.connect(f"{a};{b};{c}")
    assert three.ls("/") == ["only-b", "only-c"]


def test_union_dbs_keep_their_own_base_paths() -> None:
    name = unique_name("m")
    db = kydb.connect(f"memory://{name}/front;memory://{name}/back")
    db["/k"] = 1
    assert kydb.connect(f"memory://{name}")["/front/k"] == 1


def test_get_many_returns_keys_as_given() -> None:
    db = kydb.connect(f"memory://{unique_name('m')}")
    db["/a"] = 1
    assert db.get_many(["a", "/a", "b"]) == {"a": 1, "/a": 1}


def test_close_forgets_and_reconnects() -> None:
    url = f"memory://{unique_name('m')}"
    db = kydb.connect(url)
    db["/k"] = 1
    db.close()
    again = kydb.connect(url)
    assert again is not db
    assert again["/k"] == 1
    assert db["/k"] == 1  # the closed DB reconnects when used
