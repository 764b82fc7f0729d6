"""A store in kydb-redis's first layout is refused with the command that moves it, and that command works."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import kydb
import kydb_redis
from kydb_redis.layout import sortable

from .conftest import PrivateRedis, raw_client

#: The first layout's put script, as kydb-redis 0.1 ran it: how such stores were written.
LAYOUT1_PUT = """
local n = tonumber(ARGV[1])
local mtime = ARGV[2]
for i = 1, #KEYS do
  local path = KEYS[i]
  local folder, name = string.match(path, '^(.*/)([^/]+/?)$')
  if i <= n then
    redis.call('SET', path, ARGV[i + 2])
    local meta = 'meta:' .. path
    local old = redis.call('HGET', meta, 'mtime')
    local by_mtime = 'index:mtime:' .. folder
    if old then
      redis.call('ZREM', by_mtime, old .. ':' .. name)  -- before the ZADD: old may equal mtime
      redis.call('HSET', meta, 'mtime', mtime)
      folder = nil  -- an object with metadata is listed in its folder already
    else
      redis.call('HSET', meta, 'mtime', mtime, 'ctime', mtime)
      redis.call('ZADD', 'index:ctime:' .. folder, 0, mtime .. ':' .. name)
    end
    redis.call('ZADD', by_mtime, 0, mtime .. ':' .. name)
  end
  while folder and redis.call('ZADD', folder, 0, name) == 1 do
    folder, name = string.match(folder, '^(.*/)([^/]+/?)$')
  end
end
for j = n + 3, #ARGV, 3 do
  local path, index, value = KEYS[tonumber(ARGV[j])], ARGV[j + 1], ARGV[j + 2]
  local folder, name = string.match(path, '^(.*/)([^/]+/?)$')
  local meta, ordered = 'meta:' .. path, 'index:' .. index .. ':' .. folder
  local old = redis.call('HGET', meta, index)
  if old then
    redis.call('ZREM', ordered, old .. ':' .. name)
  end
  if value == '' then
    redis.call('HDEL', meta, index)
  else
    redis.call('HSET', meta, index, value)
    redis.call('ZADD', ordered, 0, value .. ':' .. name)
  end
end
return n
"""


def layout1_put(raw: Any, path: str, value: Any, mtime: int, indexes: dict[str, int] | None = None) -> None:
    """Write ``value`` at ``path`` as kydb-redis 0.1 did."""
    args: list[Any] = [1, sortable(mtime), kydb.envelope.encode(value)]
    for name, index_value in (indexes or {}).items():
        args += [1, name, sortable(index_value)]
    raw.eval(LAYOUT1_PUT, 1, path, *args)


def layout1_mkdir(raw: Any, folder: str) -> None:
    raw.eval(LAYOUT1_PUT, 1, folder, 0, b"")


@pytest.fixture
def legacy(private_redis: Callable[..., PrivateRedis]) -> tuple[PrivateRedis, Any]:
    """A private server holding a layout-1 store at /legacy (and nothing else)."""
    server = private_redis()
    raw = raw_client(server.url)
    t = 1_780_000_000_000_000_000
    layout1_put(raw, "/legacy/books/B1", {"pv": 1}, t, {"class_date": 20260905})
    layout1_put(raw, "/legacy/books/B2", {"pv": 2}, t + 5, {"class_date": -3})
    layout1_put(raw, "/legacy/books/B1", {"pv": 1.5}, t + 9)  # overwritten: mtime t + 9, ctime t
    layout1_put(raw, "/legacy/top", "top", t + 1)
    layout1_mkdir(raw, "/legacy/empty/deeper/")
    return server, raw


def test_a_layout1_store_is_refused_naming_the_migration(legacy: tuple[PrivateRedis, Any]) -> None:
    server, raw = legacy
    for url in (f"{server.url}/legacy", server.url, f"{server.url}/legacy/books"):
        db = kydb.connect(url)
        with pytest.raises(kydb_redis.LayoutError, match=r"first layout.*python -m kydb_redis.migrate") as info:
            db.ls("/")
        assert url in str(info.value)
        with pytest.raises(kydb_redis.LayoutError):
            db["/new"] = 1  # nothing is written beside it either
        db.close()
    assert raw.get("/legacy/top") is not None and not [k for k in raw.scan_iter() if b"{" in k]
    fresh = kydb.connect(f"{server.url}/elsewhere")  # another base path is not concerned
    fresh["/k"] = 1
    assert fresh.read("/k", reload=True) == 1
    fresh.close()


def test_the_migration_command_moves_everything(legacy: tuple[PrivateRedis, Any]) -> None:
    server, raw = legacy
    t = 1_780_000_000_000_000_000
    url = f"{server.url}/legacy"
    result = subprocess.run(
        [sys.executable, "-m", "kydb_redis.migrate", url], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "migrated 3 objects and 4 folders" in result.stdout
    assert [k for k in raw.scan_iter() if b"{" not in k] == []  # no key of the first layout is left
    db = kydb.connect(url)
    assert db.ls("/") == ["books/", "empty/", "top"]
    assert db.ls("/books") == ["B1", "B2"] and db.ls("/empty") == ["deeper/"] and db.is_dir("/empty/deeper")
    assert db.get_many(["/books/B1", "/books/B2", "/top"], reload=True) == {
        "/books/B1": {"pv": 1.5},
        "/books/B2": {"pv": 2},
        "/top": "top",
    }
    b1, b2 = db.stat("/books/B1"), db.stat("/books/B2")
    assert (b1.mtime_ns, b1.ctime_ns, dict(b1.indexes)) == (t + 9, t, {"class_date": 20260905})
    assert (b2.mtime_ns, b2.ctime_ns, dict(b2.indexes)) == (t + 5, t + 5, {"class_date": -3})
    assert db.recent("/books") == ["B1", "B2"]
    assert list(db.folder("/books").by("class_date")) == ["B2", "B1"]
    assert list(db.folder("/books").by("ctime")) == ["B1", "B2"]
    root = kydb.connect(server.url)  # the old root listed only /legacy: it is gone, so the root works too
    assert root.ls("/") == ["legacy/"]
    again = subprocess.run(
        [sys.executable, "-m", "kydb_redis.migrate", url], capture_output=True, text=True, check=False
    )
    assert again.returncode == 0 and "no layout-1 store" in again.stdout
    for closing in (db, root):
        closing.close()
