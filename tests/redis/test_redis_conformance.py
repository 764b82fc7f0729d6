"""kydb-redis against the whole conformance suite: on the real server (or fakeredis, see conftest) and on a cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import kydb
from kydb.testing import StoreConformance, unique_name

from .conftest import LocalCluster, plant, raw_client, raw_object, with_base

_clients: dict[str, Any] = {}


def _raw(db: kydb.DB) -> Any:
    url = db.store_url.with_base("")  # one client per server and database, whatever the base path
    if url not in _clients:
        _clients[url] = raw_client(url)
    return _clients[url]


class RawAccess:
    def raw_get(self, db: kydb.DB, path: str) -> bytes | None:
        # The documented layout: an object is a string (a 40-byte header, then the blob) in its folder's slot.
        return raw_object(_raw(db), path)

    def raw_put(self, db: kydb.DB, path: str, blob: bytes) -> None:
        # As another tool writes: the plain blob, listed in its folder, the folders made.
        plant(_raw(db), path, blob)


class TestRedisStore(RawAccess, StoreConformance):
    @pytest.fixture
    def new_url(self, redis_url: str, test_root: str) -> Callable[[], str]:
        return lambda: with_base(redis_url, f"{test_root}/{unique_name('redis')}")


class TestRedisCluster(RawAccess, StoreConformance):
    @pytest.fixture
    def new_url(self, local_cluster: LocalCluster) -> Callable[[], str]:
        return lambda: with_base(local_cluster.url, unique_name("cluster"))
