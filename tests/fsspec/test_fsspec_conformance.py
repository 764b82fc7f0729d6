"""kydb-fsspec against kydb's conformance suite: fsspec's memory and file filesystems, and read-only HTTP."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import kydb
from kydb.testing import StoreConformance, unique_name
from kydb.testing.conformance import ReadOnlyConformance
from kydb.testing.model import assert_exercised, check_against_model
from kydb_files import layout


def _object_path(db: kydb.DB, path: str) -> str:
    """Where the object at the absolute ``path`` is on the filesystem, as kydb-files' layout says."""
    store: Any = db.store
    folders, entry = layout.object_entries(path)
    directory = "/".join([store.root, *folders])
    if store.fs.isdir(f"{directory}/{entry}"):
        return f"{directory}/{layout.SAME_NAME_DIR}/{entry}"
    return f"{directory}/{entry}"


class FsspecConformance(StoreConformance):
    def raw_get(self, db: kydb.DB, path: str) -> bytes | None:
        fs = db.store.fs  # type: ignore[attr-defined]
        where = _object_path(db, path)
        return bytes(fs.cat_file(where)) if fs.isfile(where) else None

    def raw_put(self, db: kydb.DB, path: str, blob: bytes) -> None:
        fs = db.store.fs  # type: ignore[attr-defined]
        where = _object_path(db, path)
        fs.makedirs(where.rpartition("/")[0], exist_ok=True)
        fs.pipe_file(where, blob)  # another tool writing the file: kydb reads it as the object


class TestFsspecMemory(FsspecConformance):
    @pytest.fixture
    def new_url(self) -> Callable[[], str]:
        return lambda: f"fsspec+memory://{unique_name('mem')}/store"


class TestFsspecFile(FsspecConformance):
    @pytest.fixture
    def new_url(self, tmp_path: Path) -> Callable[[], str]:
        return lambda: f"fsspec+file://{tmp_path}/{unique_name('file')}"


class TestHTTPReadOnly(ReadOnlyConformance):
    """A tree kydb-files wrote, served by python -m http.server, read over HTTP."""

    @pytest.fixture
    def writer_url(self, http_server: Any) -> Callable[[], str]:
        return lambda: f"file://{http_server.root}/{unique_name('pub')}"

    @pytest.fixture
    def reader_url(self, http_server: Any) -> Callable[[str], str]:
        return lambda url: f"{http_server.url}/{url.rsplit('/', 1)[1]}"


class TestHTTPReadOnlyUnderABasePath(ReadOnlyConformance):
    """The same, with the tree below a base path of one shared directory (and the server's root above it)."""

    @pytest.fixture
    def writer_url(self, http_server: Any) -> Callable[[], str]:
        return lambda: f"file://{http_server.root}/shared?base=/{unique_name('base')}"

    @pytest.fixture
    def reader_url(self, http_server: Any) -> Callable[[str], str]:
        return lambda url: f"{http_server.url}/shared?base={url.rsplit('=', 1)[1]}"


@pytest.mark.parametrize("protocol", ["memory", "file"])
def test_matches_the_model(protocol: str, tmp_path: Path, model_report: Callable[[str, Counter[str]], None]) -> None:
    opened: list[kydb.BaseDB] = []

    def new_db() -> kydb.BaseDB:
        root = unique_name("model") if protocol == "memory" else f"{tmp_path}/{unique_name('model')}"
        opened.append(kydb.connect(f"fsspec+{protocol}://{root}?base=/base"))
        return opened[-1]

    start = time.monotonic()
    try:
        stats = check_against_model(new_db, max_examples=60, derandomize=True)
    finally:
        for db in opened:
            db.close()
    assert_exercised(stats)
    model_report(f"fsspec+{protocol} ({time.monotonic() - start:.0f} s)", stats)
