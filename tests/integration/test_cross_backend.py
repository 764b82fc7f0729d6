"""Unions and cache DBs that mix backends, and the model check on every backend."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

import kydb
from kydb.testing.model import assert_exercised, check_against_model
from kydb.testing.objects import OBJDB_CONFIG

StoreURL = Callable[[str], str]

PAIRS = [("redis", "sqlite"), ("redis", "s3"), ("memory", "postgresql"), ("sqlite", "mariadb")]


@pytest.mark.parametrize(("cache", "persist"), PAIRS, ids=[f"{c}|{p}" for c, p in PAIRS])
def test_cache_db_across_backends(store_url: StoreURL, cache: str, persist: str) -> None:
    cache_url, persist_url = store_url(cache), store_url(persist)
    cdb = kydb.connect(f"{cache_url}|{persist_url}")
    cache_db, persist_db = kydb.connect(cache_url), kydb.connect(persist_url)
    persist_db.upload_objdb_config(OBJDB_CONFIG)
    persist_db.new("Greeter", "/people/tony", name="Tony").write(index={"age": 40})
    persist_db["/books/b1"] = {"pv": 1.5}
    greeter = cdb.read("/people/tony", reload=True)
    assert greeter.db is cdb and greeter.greet() == "Hello Tony"
    assert cdb["/books/b1"] == {"pv": 1.5}
    assert cache_db.read("/books/b1", reload=True) == {"pv": 1.5}  # filled by the read
    cdb["/books/b2"] = {"pv": 2.5}
    assert persist_db.read("/books/b2", reload=True) == cache_db.read("/books/b2", reload=True) == {"pv": 2.5}
    assert cdb.ls("/books") == ["b1", "b2"]
    assert list(cdb.folder("/people", allow_scan=True).by("age")) == ["tony"]
    cdb.rm_tree("/books")
    assert not persist_db.is_dir("/books") and not cache_db.exists("/books/b1")


@pytest.mark.parametrize(("front", "back"), [("memory", "s3"), ("sqlite", "redis"), ("postgresql", "sqlite")])
def test_union_across_backends(store_url: StoreURL, front: str, back: str) -> None:
    front_url, back_url = store_url(front), store_url(back)
    union = kydb.connect(f"{front_url};{back_url}")
    kydb.connect(back_url).set_many({"/ref/usd": 1.0, "/ref/eur": 1.1})
    union["/ref/eur"] = 1.2  # a local override in the front layer
    assert union.get_many(["/ref/usd", "/ref/eur"], reload=True) == {"/ref/usd": 1.0, "/ref/eur": 1.2}
    assert union.ls("/ref") == ["eur", "usd"]
    assert kydb.connect(back_url).read("/ref/eur", reload=True) == 1.1


MODEL_TARGETS = ["sqlite", "postgresql", "mariadb", "redis", "s3", "redis|sqlite", "memory;s3"]
#: Enough sequences to reach every outcome assert_exercised asks for, few enough for a CI budget.
MODEL_EXAMPLES = 40


@pytest.mark.parametrize("target", MODEL_TARGETS)
def test_backend_matches_the_model(
    store_url: StoreURL, target: str, model_report: Callable[[str, Counter[str]], None]
) -> None:
    def new_db() -> kydb.BaseDB:
        if "|" in target:
            return kydb.connect("|".join(store_url(kind) for kind in target.split("|")))
        if ";" in target:
            return kydb.connect(";".join(store_url(kind) for kind in target.split(";")))
        return kydb.connect(store_url(target))

    stats = check_against_model(new_db, max_examples=MODEL_EXAMPLES, steps=30, derandomize=True)
    model_report(target, stats)
    assert_exercised(stats)
