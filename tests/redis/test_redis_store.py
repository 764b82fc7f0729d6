"""What is Redis's own: URLs, the key layout, round trips, failures, and the walkthrough."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import kydb
import kydb_redis
from kydb.testing import count_calls, unique_name
from kydb_redis.layout import HEADER_BYTES, MAGIC, folder_key, index_hash_key, new_version, object_key
from kydb_redis.replies import LARGE_REPLY, PARSER_CLASS

from .conftest import (
    PrivateRedis,
    free_port,
    keys_under,
    plant,
    raw_client,
    remove_tree,
    round_trips,
    server_commands,
    with_base,
)

# ---------------------------------------------------------------------- fixtures


def assert_only_the_base_folder_left(raw: Any, base: str) -> None:
    """After ``rm_tree('/')``: nothing below the base path but the base folder's own set, holding its marker."""
    assert keys_under(raw, base + "/") == [folder_key(base + "/").encode()], "rm_tree('/') left keys behind"
    assert raw.zrange(folder_key(base + "/"), 0, -1) == [b"D"]


def assert_emptied(raw: Any, base: str) -> None:
    """What a test's ``rm_tree('/')`` leaves: the base folder, if it was created, and nothing else."""
    if raw.exists(folder_key(base + "/")):
        assert_only_the_base_folder_left(raw, base)
    else:
        assert keys_under(raw, base + "/") == []


@pytest.fixture
def db(redis_url: str, test_root: str) -> Iterator[Any]:
    """A DB under a fresh base path on the server under test; emptied afterwards."""
    db = kydb.connect(with_base(redis_url, f"{test_root}/{unique_name('redis')}"))
    yield db
    db.rm_tree("/")
    db.close()
    client = raw_client(redis_url)
    assert_emptied(client, db.base_path)
    client.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = raw_client(redis_url)
    yield client
    client.close()


@pytest.fixture
def quiet(quiet_redis: PrivateRedis) -> Iterator[tuple[Any, redis.Redis]]:
    """A DB on the private server (exact command counts) and a raw client to it, connection already open."""
    db = kydb.connect(with_base(quiet_redis.url, unique_name("quiet")))
    raw = raw_client(quiet_redis.url)
    db.exists("/warm-up")  # open the pooled connection and check the layout: not what is being counted
    yield db, raw
    db.rm_tree("/")
    assert_emptied(raw, db.base_path)
    remove_tree(raw, db.base_path)
    db.close()
    raw.close()


def deep_key(depth: int, leaf: str = "obj") -> str:
    """A key with ``depth`` components: deep_key(4) == '/d1/d2/d3/obj'."""
    return "".join(f"/d{i}" for i in range(1, depth)) + "/" + leaf


# ---------------------------------------------------------------------- URLs and registration


def test_every_scheme_is_registered_by_kydb_redis() -> None:
    served = {info.scheme: info for info in kydb.backends()}
    for scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        assert served[scheme].target == "kydb_redis:RedisStore"
        assert served[scheme].distribution == "kydb-redis"


def test_password_never_shows() -> None:
    url = "redis://kydb-user:s3cr3t-pw@127.0.0.1:6399/base?db=2&socket_timeout=1"
    db = kydb.connect(url)
    assert "s3cr3t-pw" not in repr(db) and "s3cr3t-pw" not in db.url
    assert repr(db) == "<DB redis://kydb-user:***@127.0.0.1:6399/base?db=2&socket_timeout=1>"
    assert "s3cr3t-pw" not in repr(db.store) and "127.0.0.1:6399 db 2" in repr(db.store)
    db.close()


def test_url_options_reach_the_connection_pool() -> None:
    db = kydb.connect(
        "redis://u:pw@Example.ORG:6390/a/b?db=3&socket_timeout=2.5&socket_connect_timeout=1"
        "&retries=5&health_check_interval=30&client_name=books"
    )
    store = db.store
    assert (store.options.host, store.options.port, store.options.db, store.options.retries) == (
        "example.org",
        6390,
        3,
        5,
    )
    assert db.base_path == "/a/b"
    kwargs = store.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 2.5 and kwargs["socket_connect_timeout"] == 1.0
    assert (kwargs["username"], kwargs["password"], kwargs["client_name"]) == ("u", "pw", "books")
    assert kwargs["health_check_interval"] == 30 and kwargs["retry"].get_retries() == 5
    connection_class = store.client.connection_pool.connection_class
    assert issubclass(connection_class, redis.Connection) and not issubclass(connection_class, redis.SSLConnection)
    db.close()
    tls = kydb.connect("rediss://cache.example.org?ssl_cert_reqs=none&ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=no")
    assert issubclass(tls.store.client.connection_pool.connection_class, redis.SSLConnection)
    assert tls.store.options.port == 6379
    kwargs = tls.store.client.connection_pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_ca_certs"], kwargs["ssl_check_hostname"]) == (
        "none",
        "/etc/ca.pem",
        False,
    )
    tls.close()


@pytest.mark.parametrize(
    ("query", "reply", "connect"),
    [("", 5.0, 5.0), ("?socket_timeout=2", 2.0, 2.0), ("?socket_connect_timeout=0.5", 5.0, 0.5)],
)
def test_connections_time_out_and_retry_by_default(query: str, reply: float, connect: float) -> None:
    db = kydb.connect(f"redis://cache.example.org{query}")
    connection = db.store.client.connection_pool.make_connection()  # built, not connected
    assert (connection.socket_timeout, connection.socket_connect_timeout) == (reply, connect)
    assert connection.retry.get_retries() == 3
    assert {redis.ConnectionError, redis.TimeoutError} <= set(connection.retry_on_error)
    db.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis:///base", "expected redis://HOST"),
        ("redis://h?colour=red", "unknown option 'colour'"),
        ("redis://h?db=x", "db='x' must be a whole number"),
        ("redis://h?db=-1", "must be a whole number"),
        ("redis://h?socket_timeout=0", "positive number of seconds"),
        ("redis://h?socket_timeout=nan", "positive number of seconds"),
        ("redis://h?retries=1.5", "whole number"),
        ("redis://h?ssl_ca_certs=/ca.pem", "TLS option; use rediss://"),
        ("rediss://h?ssl_cert_reqs=maybe", "none, optional or required"),
        ("rediss://h?ssl_check_hostname=perhaps", "true or false"),
        ("redis://h:99999", "out of range"),
    ],
)
def test_bad_urls_are_rejected_with_the_password_masked(url: str, message: str) -> None:
    scheme, rest = url.split("://", 1)
    with pytest.raises(ValueError, match=message) as info:
        kydb.connect(f"{scheme}://user:hunter2@{rest}")
    assert "hunter2" not in str(info.value)


def test_db_option_selects_the_database(redis_url: str, test_root: str) -> None:
    base = f"{test_root}/{unique_name('redis-db')}"
    in_db1 = kydb.connect(with_base(redis_url, base) + ("&" if "?" in redis_url else "?") + "db=1")
    in_db0 = kydb.connect(with_base(redis_url.split("?", maxsplit=1)[0], base))
    raw_db1 = raw_client(redis_url.split("?", maxsplit=1)[0] + "?db=1")
    try:
        in_db1["/k"] = "in db 1"
        assert in_db0.get("/k") is None and in_db0.ls("/") == []
        assert raw_db1.get(object_key(f"{base}/k")) is not None
    finally:
        in_db1.rm_tree("/")
        remove_tree(raw_db1, test_root)
        for closing in (in_db0, in_db1, raw_db1):
            closing.close()


# ---------------------------------------------------------------------- the layout


def sortable(value: int) -> bytes:
    """The documented sortable form: 20 digits of value + 2**63."""
    return b"%020d" % (value + 2**63)


def test_layout_keys_of_one_put(db: Any, raw: redis.Redis) -> None:
    base = db.base_path
    db["/x/y"] = {"pv": 1}
    info = db.stat("/x/y")
    mtime = sortable(info.mtime_ns)
    # every key lies below the base path: one string, one sorted set per folder (its marker, listing, indexes)
    assert keys_under(raw, base + "/") == sorted(
        [folder_key(f"{base}/").encode(), folder_key(f"{base}/x/").encode(), object_key(f"{base}/x/y").encode()]
    )
    assert object_key(f"{base}/x/y") == folder_key(f"{base}/x/") + "y"
    assert folder_key(f"{base}/x/").startswith(f"{base}/x/{{") and folder_key(f"{base}/x/").endswith("}")
    value = raw.get(object_key(f"{base}/x/y"))
    assert value[:4] == MAGIC and value[4:24] == mtime and value[24:40].decode() == info.version
    assert kydb.envelope.decode(value[HEADER_BYTES:], "/x/y") == {"pv": 1}
    assert raw.zrange(folder_key(f"{base}/x/"), 0, -1, withscores=True) == [
        (b"C" + mtime + b":y", 0.0),
        (b"D", 0.0),
        (b"Ly\x00" + mtime, 0.0),
        (b"M" + mtime + b":y", 0.0),
    ]
    assert raw.zrange(folder_key(f"{base}/"), 0, -1) == [b"D", b"Lx/"]
    # the base folder itself is listed in its parent (the test run's folder), which is outside the base path
    parent = base.rsplit("/", 1)[0] + "/"
    assert raw.zscore(folder_key(parent), "L" + base.rsplit("/", 1)[1] + "/") == 0.0


def test_layout_objects_and_folders(db: Any, raw: redis.Redis) -> None:
    base = db.base_path
    db["/books/MYBOOK"] = {"pv": 1}
    db["/books"] = "an object beside the folder"
    db.mkdir("/books/empty/deeper")
    assert raw.type(object_key(base + "/books/MYBOOK")) == b"string"
    assert db.ls("/") == ["books", "books/"]
    assert raw.zrangebylex(folder_key(base + "/books/"), "[L", "(M") == [
        b"LMYBOOK\x00" + raw.get(object_key(base + "/books/MYBOOK"))[4:24],
        b"Lempty/",
    ]
    assert raw.zrange(folder_key(base + "/books/empty/"), 0, -1) == [b"D", b"Ldeeper/"]
    assert raw.zrange(folder_key(base + "/books/empty/deeper/"), 0, -1) == [b"D"]  # an empty folder: its marker
    db.delete("/books/MYBOOK")
    assert not raw.exists(object_key(base + "/books/MYBOOK"))
    assert raw.zrange(folder_key(base + "/books/"), 0, -1) == [b"D", b"Lempty/"]  # the folder stays
    db.rmdir("/books/empty/deeper")
    assert not raw.exists(folder_key(base + "/books/empty/deeper/"))
    assert raw.zrange(folder_key(base + "/books/empty/"), 0, -1) == [b"D"]


def test_names_with_braces_colons_and_stars(db: Any, raw: redis.Redis) -> None:
    names = ["{tag}", "a}b{c", "meta:x", "index:mtime:", "*", "{", "}", "a{}b", ":"]
    for name in names:
        db[f"/odd/{name}"] = name
        db[f"/{name}/inside"] = name
    assert db.ls("/odd") == sorted(names)
    assert db.ls("/") == sorted([*(n + "/" for n in names), "odd/"])
    for name in names:
        assert db.read(f"/odd/{name}", reload=True) == name and db.read(f"/{name}/inside", reload=True) == name
    assert all(key.startswith(db.base_path.encode() + b"/") for key in keys_under(raw, db.base_path))
    assert db.rm_tree("/odd") == len(names)


def test_layout_of_times_and_indexes(db: Any, raw: redis.Redis) -> None:
    base = db.base_path
    books = folder_key(base + "/books/")
    db.set("/books/MYBOOK", {"pv": 1}, index={"class_date": 20260905})
    db.set("/books/OTHER", {"pv": 2}, index={"class_date": -5})
    db.set("/books/sub/deeper", 0, index={"class_date": 1})  # not directly in /books: not in its indexes
    mine, other = db.stat("/books/MYBOOK"), db.stat("/books/OTHER")
    assert raw.hgetall(index_hash_key(base + "/books/MYBOOK")) == {b"class_date": sortable(20260905)}
    assert raw.zrangebylex(books, "[Iclass_date:", "(Iclass_date;") == [
        b"Iclass_date:" + sortable(-5) + b":OTHER",
        b"Iclass_date:" + sortable(20260905) + b":MYBOOK",
    ]
    assert raw.zrangebylex(books, "[M", "(N") == [
        b"M" + sortable(mine.mtime_ns) + b":MYBOOK",
        b"M" + sortable(other.mtime_ns) + b":OTHER",
    ]
    assert raw.zrangebylex(books, "[C", "(D") == [
        b"C" + sortable(mine.ctime_ns) + b":MYBOOK",
        b"C" + sortable(other.ctime_ns) + b":OTHER",
    ]

    db.set("/books/MYBOOK", {"pv": 3}, index={"class_date": None})  # rewritten: mtime moves, ctime stays
    rewritten = db.stat("/books/MYBOOK")
    assert rewritten.ctime_ns == mine.ctime_ns < rewritten.mtime_ns and rewritten.version != mine.version
    assert raw.get(object_key(base + "/books/MYBOOK"))[4:24] == sortable(rewritten.mtime_ns)
    assert not raw.exists(index_hash_key(base + "/books/MYBOOK"))
    assert raw.zrangebylex(books, "[Iclass_date:", "(Iclass_date;") == [b"Iclass_date:" + sortable(-5) + b":OTHER"]
    assert raw.zrangebylex(books, "[M", "(N") == [
        b"M" + sortable(other.mtime_ns) + b":OTHER",
        b"M" + sortable(rewritten.mtime_ns) + b":MYBOOK",
    ]
    db.delete("/books/OTHER")  # its entry, its time members and index members go with it
    assert not raw.exists(index_hash_key(base + "/books/OTHER"))
    assert [m for m in raw.zrange(books, 0, -1) if b"OTHER" in m] == []
    assert raw.zrangebylex(books, "[C", "(D") == [b"C" + sortable(mine.ctime_ns) + b":MYBOOK"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_reuses_its_parents_versions() -> None:
    # Versions are a per-process random prefix and a counter: a child that kept the parent's prefix
    # and counter would hand out the very versions the parent hands out next.
    before = new_version()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next versions, then leave without running the parent's teardown
        os.close(reader)
        os.write(writer, b" ".join(new_version() for _ in range(3)))
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_version() for _ in range(3)]
    assert len(child) == 3 and all(len(v) == 16 for v in child + parent)
    assert child[0][:8] != before[:8] and parent[0][:8] == before[:8]  # a new prefix in the child only
    assert not set(child) & set(parent)


def test_times_and_index_values_are_exact_beyond_double_precision(db: Any) -> None:
    # Around 1.8e18 ns, 256 neighbouring integers share one double: a store that
    # let a time pass through a Lua number or a score would tie or reorder these.
    t = 1_780_000_000_123_456_789
    assert float(t) == float(t + 1) == float(t + 2)
    path = db.base_path + "/exact/"
    blob = kydb.envelope.encode("v")
    extremes = {"lowest": -(2**63), "low": -(2**63) + 1, "minus": -1, "zero": 0, "high": 2**63 - 2, "top": 2**63 - 1}
    db.store.kydb_put({path + "a": blob}, t, {path + "a": {"n": 2**63 - 1}}, {})
    db.store.kydb_put({path + "b": blob}, t + 1, {path + "b": {"n": 2**63 - 2}}, {})
    db.store.kydb_put({path + "a": blob}, t + 2, {}, {})  # an overwrite: ctime stays t, the index value stays
    db.store.kydb_put({path + k: blob for k in extremes}, t + 3, {path + k: {"e": v} for k, v in extremes.items()}, {})
    a, b = db.stat("/exact/a"), db.stat("/exact/b")
    assert (a.mtime_ns, a.ctime_ns, dict(a.indexes)) == (t + 2, t, {"n": 2**63 - 1})
    assert (b.mtime_ns, b.ctime_ns, dict(b.indexes)) == (t + 1, t + 1, {"n": 2**63 - 2})
    by_mtime = [(e.key, e.index_value) for e in db.folder("/exact").by("mtime").until(t + 2).entries()]
    assert by_mtime == [("b", t + 1), ("a", t + 2)]
    assert [(e.key, e.mtime, e.ctime) for e in db.folder("/exact").by("ctime").until(t + 1).entries()] == [
        ("a", t + 2, t),
        ("b", t + 1, t + 1),
    ]
    assert list(db.folder("/exact").by("ctime").since(t + 1).until(t + 1)) == ["b"]
    assert [(e.key, e.index_value) for e in db.folder("/exact").by("n").desc().entries()] == [
        ("a", 2**63 - 1),
        ("b", 2**63 - 2),
    ]
    assert [(e.key, e.index_value) for e in db.folder("/exact").by("e").entries()] == sorted(
        extremes.items(), key=lambda item: item[1]
    )
    assert list(db.folder("/exact").by("e").since(-(2**63) + 1).until(2**63 - 2)) == ["low", "minus", "zero", "high"]
    assert list(db.folder("/exact").by("e").since(2**63 - 1)) == ["top"]
    assert list(db.folder("/exact").by("e").until(-(2**63))) == ["lowest"]


def test_query_pages_resume_exactly_after_ties(db: Any) -> None:
    # One set_many: every object has the same mtime, so pages split a run of ties.
    db.set_many({f"/ties/o{i:03d}": i for i in range(450)})
    names = [f"o{i:03d}" for i in range(450)]
    assert list(db.folder("/ties")) == names
    assert list(db.folder("/ties").desc()) == names[::-1]
    (when,) = {e.mtime for e in db.folder("/ties").entries()}
    assert list(db.folder("/ties").since(when).until(when).desc().limit(5)) == names[:-6:-1]
    assert list(db.folder("/ties").since(when + 1)) == [] and list(db.folder("/ties").until(when - 1)) == []


def test_objects_written_behind_kydbs_back_have_no_times(db: Any, raw: redis.Redis) -> None:
    db["/planted/kydb"] = 1
    plant(raw, db.base_path + "/planted/other", kydb.envelope.encode(2))
    assert db.ls("/planted") == ["kydb", "other"]
    info = db.stat("/planted/other")
    size = len(raw.get(object_key(db.base_path + "/planted/other")))
    assert (info.size, info.mtime_ns, info.ctime_ns, dict(info.indexes)) == (size, None, None, {})
    assert info.version is not None and info.version.startswith("raw:")
    assert db.read_versioned("/planted/other").version == info.version
    assert db.recent("/planted") == ["kydb"]  # in no index until kydb writes it
    db.set("/planted/other", 3, if_version=info.version)
    assert db.recent("/planted") == ["other", "kydb"] and db.stat("/planted/other").ctime_ns is not None
    assert db.ls("/planted") == ["kydb", "other"]
    key = index_hash_key(db.base_path + "/planted/kydb")
    raw.hset(key, "rank", "yesterday")
    with pytest.raises(kydb_redis.RedisCommandError, match=r"planted/.*kydb.* has b'yesterday'.*other than kydb"):
        db.stat("/planted/kydb")
    raw.delete(key)


def test_rm_tree_leaves_no_key_behind(db: Any, raw: redis.Redis) -> None:
    db.set_many({f"/t/{i % 4}/{i % 3}/o{i}": i for i in range(60)})
    for i in range(0, 60, 7):
        db.set(f"/t/{i % 4}/{i % 3}/o{i}", i, index={"n": -i})
    db.mkdir("/t/empty")
    db["/keep"] = 1
    assert len(keys_under(raw, db.base_path + "/t/")) > 60 + 12  # objects, index hashes, folders
    assert db.rm_tree("/t") == 60
    assert keys_under(raw, db.base_path + "/t/") == []
    assert db.ls("/") == ["keep"]
    db.rm_tree("/")
    assert_only_the_base_folder_left(raw, db.base_path)


def test_ls_pages_follow_redis_byte_order(db: Any) -> None:
    names = ["é", "e\u0301", "Z", "a", "a_b", "日本", "🙂", "a b", "a-b", "a.b", "a0"]
    for name in names:
        db[f"/u/{name}"] = name
        db.mkdir(f"/u/{name}")
    expected = sorted(names + [n + "/" for n in names])
    for page_size in (1, 3, 100):
        assert list(db.list_dir("/u", page_size=page_size)) == expected


def test_folder_key_of_another_type_is_an_error_not_an_empty_folder(db: Any, raw: redis.Redis) -> None:
    db["/x/ok"] = 1
    raw.set(folder_key(db.base_path + "/x/"), "written by something else")  # the folder's sorted set, clobbered
    raw.hset(object_key(db.base_path + "/h"), "field", "value")  # an object key holding a hash
    for attempt in (
        lambda: db.ls("/x"),
        lambda: db.set("/x/y", 1),
        lambda: db.read("/h", reload=True),
        lambda: db.get_many(["/h", "/missing"], reload=True),
    ):
        with pytest.raises(kydb_redis.RedisCommandError, match="WRONGTYPE") as info:
            attempt()
        assert not isinstance(info.value, KeyError)
    with pytest.raises(kydb_redis.RedisCommandError) as info:
        db.get_many(["/h", "/missing"], reload=True)
    assert f"WRONGTYPE {object_key(db.base_path + '/h')!r} holds a hash" in str(info.value)  # text, not b'...'
    # A script stops at the command Redis rejects, after the ones before it ran.  Clear up by hand.
    raw.delete(*keys_under(raw, db.base_path + "/x/"), object_key(db.base_path + "/h"))
    raw.zrem(folder_key(db.base_path + "/"), "Lx/")


# ---------------------------------------------------------------------- round trips and commands


def script_calls(commands: Any) -> dict[str, int]:
    """The script calls among ``commands`` (removed from it): ``{'evalsha': 1}`` or ``{'eval': 1}``."""
    return {name: commands.pop(name) for name in ("eval", "evalsha") if name in commands}


@pytest.mark.parametrize("depth", [1, 4, 8, 16])
def test_a_put_into_an_existing_folder_is_one_round_trip_of_at_most_four_commands(
    quiet: tuple[Any, redis.Redis], depth: int
) -> None:
    db, raw = quiet
    db["/load-the-script"] = 0
    if depth > 1:
        db.mkdir(deep_key(depth).rsplit("/", 1)[0])
    for what, key, expected in (
        ("new object in an existing folder", deep_key(depth), {"set": 1, "zscore": 1, "zadd": 1}),
        ("overwrite", deep_key(depth), {"set": 1, "zrem": 1, "zadd": 1}),
        ("new object beside it", deep_key(depth, "sibling"), {"set": 1, "zscore": 1, "zadd": 1}),
    ):
        with server_commands(raw) as commands, round_trips() as sent:
            db[key] = {"what": what}
        assert sent == [1], what
        assert script_calls(commands) == {"evalsha": 1}, what
        assert dict(commands) == expected, what  # with the script call: four commands
    assert {"obj", "sibling"} <= set(db.ls(deep_key(depth).rsplit("/", 1)[0] or "/"))


@pytest.mark.parametrize("depth", [2, 4, 16])
def test_a_first_put_into_a_new_folder_chain_lists_the_folders_first(
    quiet: tuple[Any, redis.Redis], depth: int
) -> None:
    db, raw = quiet
    db["/load-the-script"] = 0
    with server_commands(raw) as commands, round_trips() as sent:
        db[deep_key(depth)] = "deep"
    # the put finds no folder and writes nothing; one script lists and marks the new folders, the put follows
    assert sent == [2]
    assert commands["evalsha"] == 2 and commands["eval"] == 1 and commands["set"] == 2 and commands["del"] == 1
    assert commands["zadd"] == 2 * (depth - 1) + 1  # an entry and a marker per new folder, the object's members
    path = db.base_path + deep_key(depth)
    folder = path.rsplit("/", 1)[0] + "/"
    while folder != db.base_path + "/":  # every new folder is listed in its parent and has its marker
        parent, name = folder[:-1].rsplit("/", 1)
        assert raw.zscore(folder_key(parent + "/"), "L" + name + "/") == 0.0
        assert raw.zscore(folder_key(folder), "D") == 0.0
        folder = parent + "/"
    assert db.read(deep_key(depth), reload=True) == "deep"


def test_reads_and_listings_are_one_round_trip_each(quiet: tuple[Any, redis.Redis]) -> None:
    db, raw = quiet
    db.set_many({deep_key(4, f"k{i:04d}"): i for i in range(1000)})
    folder = deep_key(4).rsplit("/", 1)[0]
    for what, operation, expected in (
        ("cold read", lambda: db.read(deep_key(4, "k0001"), reload=True), {"get": 1}),
        ("versioned read", lambda: db.read_versioned(deep_key(4, "k0001")), {"get": 1}),
        ("exists", lambda: db.exists(deep_key(4, "k0001")), {"exists": 1}),
        ("is_dir", lambda: db.is_dir(folder), {"zscore": 1}),
        ("a page of ls", lambda: next(db.list_dir(folder, page_size=50)), {"zrangebylex": 1}),
    ):
        with server_commands(raw) as commands, round_trips() as sent:
            operation()
        assert sent == [1], what
        assert dict(commands) == expected, what
    with round_trips() as sent:
        db.mkdir(folder + "/new/deeper")
    assert sent == [1]  # one script lists and marks the new folders
    with server_commands(raw) as commands, round_trips() as sent:
        got = db.get_many([deep_key(4, f"k{i:04d}") for i in range(1000)], reload=True)
    assert got == {deep_key(4, f"k{i:04d}"): i for i in range(1000)}
    assert sent == [1] and dict(commands) == {"mget": 1}
    with server_commands(raw) as commands, round_trips() as sent:
        got = db.get_many([deep_key(4, f"k{i:04d}") for i in range(990, 1010)], reload=True)
    assert got == {deep_key(4, f"k{i:04d}"): i for i in range(990, 1000)}
    assert sent == [2] and dict(commands) == {"mget": 1, "exists": 1}  # misses: one EXISTS checks they are absent


def test_recent_and_queries_are_one_command_per_page(quiet: tuple[Any, redis.Redis]) -> None:
    db, raw = quiet
    for start in range(0, 5000, 1000):
        db.set_many({f"/r/o{i:04d}": i for i in range(start, start + 1000)})
    db.set("/r/newest", "last", index={"rank": 7})
    db.recent("/r", limit=1)  # loads the script: what follows is EVALSHA
    with server_commands(raw) as commands, round_trips() as sent:
        newest = db.recent("/r", limit=10)
    assert newest[0] == "newest" and len(newest) == 10
    assert sent == [1]
    # the page's 11 index members, then each object's ctime from its listing entry
    assert dict(commands) == {"evalsha": 1, "zrevrangebylex": 1, "zrangebylex": 10}
    with server_commands(raw) as commands, round_trips() as sent:
        assert len(list(db.folder("/r").limit(450))) == 450
    assert sent == [3] and commands["evalsha"] == 3  # pages of 200, 200, 50
    db.refresh()
    with server_commands(raw) as commands, round_trips() as sent:
        assert list(db.folder("/r").by("rank").items()) == [("newest", "last")]
    assert sent == [2] and commands["evalsha"] == 1 and commands["get"] == 1  # the query, then the value
    with server_commands(raw) as commands, round_trips() as sent:
        info = db.stat("/r/newest")
    assert info.indexes == {"rank": 7} and info.size > 0
    assert sent == [1]
    assert dict(commands) == {"exists": 1, "strlen": 1, "getrange": 1, "zrangebylex": 1, "hgetall": 1}


def test_batches_are_pipelined(quiet: tuple[Any, redis.Redis]) -> None:
    db, raw = quiet
    values = {f"/batch/f{i % 7}/k{i}": i for i in range(5000)}
    for f in range(7):
        db.mkdir(f"/batch/f{f}")
    db.set_many({"/load-the-script": 0, "/and-this": 1})  # the batch script
    with server_commands(raw) as commands, round_trips() as sent:
        db.set_many(values)
    assert sent == [1], "7 script calls, one per folder, go out in one pipeline"
    assert commands["set"] == 5000 and commands["evalsha"] == 7
    with round_trips() as sent:
        assert db.get_many(list(values), reload=True) == values
    assert sent == [1]
    with server_commands(raw) as commands, round_trips() as sent:
        db.delete_many(list(values)[:2500])
    assert sent == [1] and commands["unlink"] == 2500 and commands["evalsha"] + commands["eval"] == 7
    assert len(db.ls("/batch/f0")) == len([k for k in list(values)[2500:] if k.startswith("/batch/f0/")])
    with round_trips() as sent:
        db.set_many({f"/batch/new{i % 3}/k{i}": i for i in range(300)})
    assert sent == [2]  # into three new folders: tried, then the folders made and the objects written


def test_rm_tree_of_10000_objects_takes_a_few_requests(quiet: tuple[Any, redis.Redis]) -> None:
    db, raw = quiet
    for start in range(0, 10_000, 2500):
        db.set_many({f"/big/s{i % 10}/d{i % 3}/o{i}": i for i in range(start, start + 2500)})
    db.mkdir("/big/empty/deeper")
    db["/stays"] = 1
    with server_commands(raw) as commands, round_trips() as sent, count_calls(db) as calls:
        assert db.rm_tree("/big") == 10_000
    assert sent[0] <= 20, f"rm_tree of 10,000 objects sent {sent[0]} requests"
    assert commands["unlink"] == 10_000
    assert (
        commands["evalsha"] + commands["eval"] <= 80
    )  # a script call per folder and 1,000 objects, per folder removed
    assert calls["kydb_delete"] == 0 and calls["kydb_get"] == 0
    assert keys_under(raw, db.base_path + "/big/") == []
    assert db.ls("/") == ["stays"]


def test_lost_script_cache_costs_one_extra_round_trip(quiet: tuple[Any, redis.Redis]) -> None:
    db, raw = quiet
    db["/s/a"] = 1
    db.set_many({"/s/x": 0, "/s/y": 0})  # both put scripts are loaded
    raw.script_flush()  # what a server restart without persistence does to scripts
    with round_trips() as sent:
        db["/s/b"] = 2
    assert sent == [2]  # EVALSHA -> NOSCRIPT, then EVAL
    with round_trips() as sent:
        db["/s/c"] = 3
    assert sent == [1]
    raw.script_flush()
    with round_trips() as sent:
        db.set_many({f"/s/m{i}": i for i in range(3000)})
    assert sent == [2]
    assert db.ls("/s") == ["a", "b", "c", *sorted(f"m{i}" for i in range(3000)), "x", "y"]


def test_threads_share_one_connection_pool(quiet_redis: PrivateRedis) -> None:
    name = unique_name("pool").replace("-", "_")
    db = kydb.connect(with_base(quiet_redis.url, unique_name("pool")) + f"?client_name={name}")
    raw = raw_client(quiet_redis.url)
    opened_before = raw.info("stats")["total_connections_received"]

    wrong: list[tuple[int, int, Any]] = []

    def work(worker: int) -> None:
        for i in range(30):
            db[f"/w{worker}/k{i}"] = i
            back = db.read(f"/w{worker}/k{i}", reload=True)
            if back != i:
                wrong.append((worker, i, back))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong
    assert db.ls("/") == [f"w{w}/" for w in range(6)]
    # 360 operations from 6 threads reuse at most one connection per thread
    assert raw.info("stats")["total_connections_received"] - opened_before <= 6
    assert 1 <= len([c for c in raw.client_list() if c["name"] == name]) <= 6
    db.rm_tree("/")
    db.close()
    raw.close()


# ---------------------------------------------------------------------- failures


def test_wrong_password_is_permission_error(private_redis: Callable[..., PrivateRedis]) -> None:
    server = private_redis("--requirepass", "right-pw")
    db = kydb.connect(f"redis://:wrong-pw@127.0.0.1:{server.port}?retries=0")
    with pytest.raises(PermissionError) as info:
        db.read("/k", reload=True)
    assert not isinstance(info.value, (KeyError, kydb.StoreUnavailable))
    assert "wrong-pw" not in str(info.value) and f"127.0.0.1:{server.port}" in str(info.value)
    db.close()


def test_a_connection_the_server_closed_is_replaced_before_it_is_used(redis_url: str, test_root: str) -> None:
    """With no retry to spare, a put and a cold read still succeed after the server dropped the pooled connection.

    The pool sees the closed connection and opens a new one before sending;
    sent on the closed one, the command would fail and, with ``retries=0``,
    raise ``StoreUnavailable``.
    """
    name = unique_name("dropped")
    db = kydb.connect(with_base(redis_url, f"{test_root}/{name}") + f"?retries=0&client_name={name}")
    raw = raw_client(redis_url)
    try:
        db["/x"] = 1
        for step, operation in enumerate((lambda: db.set("/x", 2), lambda: db.read("/x", reload=True))):
            ids = [client["id"] for client in raw.client_list() if client["name"] == name]
            assert ids, f"step {step}: kydb's pooled connection should be open"
            for client_id in ids:
                raw.client_kill_filter(_id=client_id)
            deadline = time.monotonic() + 5
            while any(client["name"] == name for client in raw.client_list()):
                assert time.monotonic() < deadline, f"step {step}: CLIENT KILL left the connection open"
                time.sleep(0.01)
            operation()
        assert db.read("/x", reload=True) == 2
    finally:
        db.rm_tree("/")
        db.close()
        raw.close()


def test_a_reply_left_unread_on_a_pooled_connection_is_never_taken_for_the_next_one(db: Any) -> None:
    """A connection handed back with a reply still unread is reconnected, not read: each read gets its own value."""
    db["/a"] = "value of a"
    db["/b"] = "value of b"
    pool = db.store.client.connection_pool
    for unread in ("in the socket", "in redis-py's buffer"):
        connection = pool.get_connection()
        connection.send_command("GET", object_key(db.base_path + "/a"))
        if unread == "in redis-py's buffer":
            assert connection.can_read(timeout=5)  # reads the reply from the socket into redis-py's buffer
        else:
            assert select.select([connection._sock], [], [], 5)[0]  # the reply has arrived, unread
        pool.release(connection)
        assert db.read("/b", reload=True) == "value of b", unread
        db["/b"] = "value of b"  # a put on the next connection reads its own reply too
        assert db.read("/a", reload=True) == "value of a", unread


class _Listener:
    """A loopback TCP server that counts the connections it accepts and handles each with ``behaviour``."""

    def __init__(self, behaviour: Callable[[socket.socket], None]) -> None:
        self.accepted = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self._stopping = threading.Event()
        self._behaviour = behaviour
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self.port: int = self._server.getsockname()[1]

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            self.accepted += 1
            self._behaviour(conn)

    def settled_count(self, expected: int) -> int:
        """The connections accepted, once ``expected`` have been (or 5 s have passed), plus any stragglers."""
        deadline = time.monotonic() + 5
        while self.accepted < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        return self.accepted

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._server.close()


@pytest.mark.parametrize("kind", ["refused", "reset", "timeout"])
def test_network_failures_are_retried_then_store_unavailable(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    held: list[socket.socket] = []
    listener = None
    connects = 0
    if kind == "refused":
        port = free_port()  # nothing listens there
        connect = redis.Connection._connect

        def counted(self: redis.Connection) -> Any:
            nonlocal connects
            connects += 1
            return connect(self)

        monkeypatch.setattr(redis.Connection, "_connect", counted)
    else:  # "reset" closes every connection at once; "timeout" accepts and never answers
        listener = _Listener((lambda conn: conn.close()) if kind == "reset" else held.append)
        port = listener.port
    db = kydb.connect(f"redis://:pw@127.0.0.1:{port}/x?retries=2&socket_timeout=0.2&socket_connect_timeout=0.2")
    try:
        for attempt in (
            lambda: db.set("/k", 1),
            lambda: db.read("/k", reload=True),
            lambda: db.ls("/"),
            lambda: db.is_dir("/f"),
            lambda: db.set_many({"/a": 1, "/b": 2}),
            lambda: db.mkdir("/m"),
            lambda: db.delete_many(["/a"]),
            lambda: db.get_many(["/a", "/b"]),
            lambda: db.rm_tree("/"),
        ):
            before = listener.accepted if listener else connects
            with pytest.raises(kydb.StoreUnavailable, match=f"127.0.0.1:{port} db 0.*after 2 retries") as info:
                attempt()
            assert "redis://:***@" in str(info.value) and ":pw@" not in str(info.value)
            assert isinstance(info.value.__cause__, redis.RedisError)
            # the first try and two retries, each on a fresh connection
            tries = listener.settled_count(before + 3) if listener else connects
            assert tries - before == 3
        with count_calls(db) as calls, pytest.raises(kydb.StoreUnavailable):
            db["/k"]
        assert calls["kydb_get"] == 1  # the failed write cached nothing: the read went to the store
    finally:
        if listener:
            listener.stop()
        for conn in held:
            conn.close()
        db.close()


def test_the_value_limit_is_the_servers(quiet: tuple[Any, redis.Redis]) -> None:
    _, raw = quiet  # a real redis-server with its default settings
    limit = int(raw.config_get("proto-max-bulk-len")["proto-max-bulk-len"])
    assert limit == kydb_redis.MAX_VALUE_BYTES + HEADER_BYTES  # the blob and kydb's header fit in one string


def test_values_over_the_limit_are_refused_before_sending(
    db: Any, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 1024 * 1024  # stands in for Redis's 512 MiB, without allocating gigabytes
    monkeypatch.setattr(kydb_redis.store, "MAX_VALUE_BYTES", limit)
    db["/big"] = "old value"
    huge = bytes(limit)  # the value alone is at the limit; its envelope is over it
    with count_calls(db) as calls, round_trips() as sent, pytest.raises(ValueError, match=rf"/big.*{limit:,} bytes"):
        db["/big"] = huge
    assert calls["kydb_put"] == 1 and sent == [0]
    assert db["/big"] == "old value" and db.read("/big", reload=True) == "old value"
    too_big = bytes(limit + 1)
    with pytest.raises(ValueError, match="/other"):
        db.store.kydb_put({db.base_path + "/fine": b"x", db.base_path + "/other": too_big}, time.time_ns(), {}, {})
    assert not raw.exists(db.base_path + "/fine") and db.ls("/") == ["big"]


def test_large_values_are_read_straight_into_one_buffer(db: Any, raw: redis.Redis) -> None:
    """Values whose reply is just under, at and over the size read past redis-py's buffer, mixed with small ones."""
    large = LARGE_REPLY
    client = db.store._acquire().client  # the store's own connections
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        assert type(connection._parser) is PARSER_CLASS
    finally:
        pool.release(connection)
    sizes = {"under": large - 1, "at": large, "over": large + 1, "big": 5 * large + 12345}
    values: dict[str, Any] = {}
    for name, size in sizes.items():  # a value whose stored form (header, envelope, pickle) is ``size`` bytes
        key, length = f"/v/{name}", size
        for _ in range(3):
            db[key] = values[key] = os.urandom(length)
            length += size - len(raw.get(object_key(db.base_path + key)))
        assert len(raw.get(object_key(db.base_path + key))) == size
    values |= {f"/v/small{i}": f"small {i}" for i in range(3)}
    db.set_many(values)
    for key, value in values.items():
        assert db.read(key, reload=True) == value
    assert db.get_many(list(values), reload=True) == values  # one MGET: large replies among small ones
    assert db.read_versioned("/v/big")[0] == values["/v/big"]
    stored = client.get(object_key(db.base_path + "/v/at"))
    assert type(stored) is bytearray and len(stored) == large  # the large-reply path was taken ...
    blob = db.store.kydb_get([db.base_path + "/v/at"])[db.base_path + "/v/at"]
    assert type(blob) is bytes and len(blob) == large - HEADER_BYTES  # ... and the store hands on bytes
    assert type(client.get(object_key(db.base_path + "/v/under"))) is bytes


# ---------------------------------------------------------------------- TLS and the walkthrough


def test_rediss_talks_tls(
    private_redis: Callable[..., PrivateRedis], tmp_path: Path, skip_or_fail_missing_service: Callable[[str, str], None]
) -> None:
    if shutil.which("openssl") is None:
        skip_or_fail_missing_service("openssl", "no openssl binary to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
    names = "subjectAltName=DNS:localhost,IP:127.0.0.1"
    subprocess.run(["openssl", *request.split(), "-addext", names, "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)  # fmt: skip
    tls_port = free_port()
    server = private_redis("--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                           "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no")  # fmt: skip
    db = kydb.connect(f"rediss://localhost:{tls_port}/tls?ssl_ca_certs={cert}")
    db["/over/tls"] = {"secure": True}
    assert db.read("/over/tls", reload=True) == {"secure": True}
    assert db.ls("/over") == ["tls"]
    plain = kydb.connect(f"redis://127.0.0.1:{server.port}/tls")
    assert plain.read("/over/tls", reload=True) == {"secure": True}  # the same server, without TLS
    db.rm_tree("/")
    db.close()
    plain.close()


def test_walkthrough_runs_on_redis(redis_url: str, test_root: str, check_walkthrough: Callable[[str], None]) -> None:
    url = with_base(redis_url, f"{test_root}/{unique_name('walkthrough')}")
    check_walkthrough(url)
    db = kydb.connect(url)
    assert db.ls("/") == []
    db.rm_tree("/")
