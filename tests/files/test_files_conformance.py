"""kydb-files against kydb's whole conformance suite and the model of the contract."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import kydb
from kydb.testing import StoreConformance, unique_name
from kydb.testing.model import assert_exercised, check_against_model

from .conftest import object_file


class TestFileStore(StoreConformance):
    @pytest.fixture
    def new_url(self, tmp_path: Path) -> Callable[[], str]:
        return lambda: f"file://{tmp_path}/{unique_name('files')}"

    def raw_get(self, db: kydb.DB, path: str) -> bytes | None:
        file = object_file(db, path)
        return file.read_bytes() if file.is_file() else None

    def raw_put(self, db: kydb.DB, path: str, blob: bytes) -> None:
        file = object_file(db, path)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(blob)  # another tool writing the file in place: kydb reads it as the object


class TestFileStoreUnderABasePath(TestFileStore):
    @pytest.fixture
    def new_url(self, tmp_path: Path) -> Callable[[], str]:
        return lambda: f"file://{tmp_path}/shared?base=/{unique_name('base')}"


def test_matches_the_model(tmp_path: Path, model_report: Callable[[str, Counter[str]], None]) -> None:
    opened: list[kydb.BaseDB] = []

    def new_db() -> kydb.BaseDB:
        opened.append(kydb.connect(f"file://{tmp_path}/{unique_name('model')}?base=/base"))
        return opened[-1]

    try:
        stats = check_against_model(new_db, max_examples=100, derandomize=True)
    finally:
        for db in opened:
            db.close()
    assert_exercised(stats)
    model_report("files", stats)
