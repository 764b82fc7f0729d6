"""kydb-redis against the whole conformance suite, on the real server (or fakeredis, see conftest)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

import kydb
from kydb.testing import StoreConformance, unique_name

from .conftest import raw_client, with_base

_clients: dict[str, redis.Redis] = {}


def _raw(db: kydb.DB) -> redis.Redis:
    url = db.store_url.with_base("")  # one client per server and database, whatever the base path
    if url not in _clients:
        _clients[url] = raw_client(url)
    return _clients[url]


class TestRedisStore(StoreConformance):
    @pytest.fixture
    def new_url(self, redis_url: str) -> Callable[[], str]:
        return lambda: with_base(redis_url, unique_name("redis"))

    def raw_get(self, db: kydb.DB, path: str) -> bytes | None:
        # The documented layout: an object is the Redis string named by its full path.
        value = _raw(db).get(path)
        assert value is None or isinstance(value, bytes)
        return value

    def raw_put(self, db: kydb.DB, path: str, blob: bytes) -> None:
        # The string, plus the entries that list it: each folder is a sorted set of child names.
        client = _raw(db)
        client.set(path, blob)
        parts = path.strip("/").split("/")
        for depth, name in enumerate(parts):
            folder = "/" + "".join(p + "/" for p in parts[:depth])
            client.zadd(folder, {name if depth == len(parts) - 1 else name + "/": 0})
