"""What every conformance test class shares: the fixtures a backend provides, and helpers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import kydb

__all__ = ["Connect", "StoreFixtures", "unique_name"]

Connect = Callable[..., Any]


class StoreFixtures:
    """The fixtures a backend's test class provides (``new_url``, ``raw_get``, ``raw_put``) and the suite's helpers.

    What a test expects of optional behaviour comes from the capabilities the
    store declares (``db.capabilities``, see :class:`kydb.Capabilities`) —
    never from flags on the test class, so a store cannot claim in its tests
    what it does not declare, and a declaration it does not keep fails here.
    """

    @pytest.fixture
    def new_url(self) -> Callable[[], str]:
        """Override: return a factory of URLs, each naming a fresh, empty namespace."""
        raise NotImplementedError("a StoreConformance subclass must define the new_url fixture")

    def raw_get(self, db: kydb.DB, path: str) -> bytes | None:
        """Override: the bytes stored at the absolute ``path`` (base path included), bypassing kydb."""
        raise NotImplementedError

    def raw_put(self, db: kydb.DB, path: str, blob: bytes) -> None:
        """Override: store ``blob`` at the absolute ``path``, bypassing kydb."""
        raise NotImplementedError

    @pytest.fixture
    def connect(self, new_url: Callable[[], str]) -> Iterator[Connect]:
        """Connect a URL (fresh by default) with ``kydb.connect`` options; single stores are emptied afterwards."""
        opened: list[kydb.BaseDB] = []

        def _connect(url: str | None = None, **options: Any) -> Any:
            db = kydb.connect(url if url is not None else new_url(), **options)
            opened.append(db)
            return db

        yield _connect
        for db in reversed(opened):
            if isinstance(db, kydb.DB):
                db.rm_tree("/")
        for db in opened:
            db.close()

    @pytest.fixture
    def db(self, connect: Connect) -> Any:
        """A DB on a fresh, empty namespace."""
        return connect()

    def full_path(self, db: kydb.DB, key: str) -> str:
        return db.base_path + kydb.keys.normalize_key(key, system=True)

    def snapshot(self, db: kydb.BaseDB, folder: str = "/") -> dict[str, Any]:
        """Everything below ``folder``: ``{path: value}`` for objects, ``{path/: None}`` for folders."""
        found: dict[str, Any] = {}
        for name in db.ls(folder):
            path = folder.rstrip("/") + "/" + name
            if name.endswith("/"):
                found[path] = None
                found.update(self.snapshot(db, path))
            else:
                found[path] = db.read(path, reload=True)
        return found


def unique_name(prefix: str = "kydb-test") -> str:
    """A name no other test run uses: for base paths, buckets, tables."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
