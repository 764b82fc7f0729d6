"""kydb-dirstore against kydb's whole conformance suite: all a backend author writes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import kydb
from kydb.testing import StoreConformance, unique_name


def _file_of(db: kydb.DB, path: str) -> Path:
    """Where the object at the absolute ``path`` lives on disk (worked out independently of the store)."""
    *folders, name = path.strip("/").split("/")
    return Path(db.store_url.path, *(f + ".d" for f in folders), name + ".o")


class TestDirStore(StoreConformance):
    @pytest.fixture
    def new_url(self, tmp_path: Path) -> Callable[[], str]:
        return lambda: f"dir://{tmp_path}/{unique_name('dir')}"

    def raw_get(self, db: kydb.DB, path: str) -> bytes | None:
        file = _file_of(db, path)
        return file.read_bytes() if file.exists() else None

    def raw_put(self, db: kydb.DB, path: str, blob: bytes) -> None:
        file = _file_of(db, path)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(blob)


def test_objects_are_plain_files(tmp_path: Path) -> None:
    db = kydb.connect(f"dir://{tmp_path}/plain")
    db["/books/MYBOOK"] = 1
    assert os.listdir(tmp_path / "plain" / "books.d") == ["MYBOOK.o"]
