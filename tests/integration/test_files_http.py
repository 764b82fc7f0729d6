"""Publish a store: ``kydb cp -r`` from SQLite into a directory, then read it over HTTP — the same objects."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kydb
from kydb.testing.objects import OBJDB_CONFIG


@pytest.fixture
def published(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory and the URL where ``python -m http.server`` serves it (a free loopback port)."""
    root = tmp_path / "pub"
    root.mkdir()
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    port = re.search(r"port (\d+)", server.stdout.readline())
    assert port is not None, "python -m http.server did not start"
    yield root, f"http://127.0.0.1:{port.group(1)}"
    server.terminate()
    server.wait(timeout=30)
    server.stdout.close()


def everything(db: kydb.BaseDB, folder: str = "/") -> dict[str, Any]:
    """``{path: (value, index values)}`` for every object, ``{path/: None}`` for every folder."""
    found: dict[str, Any] = {}
    for name in db.ls(folder):
        path = folder.rstrip("/") + "/" + name
        if name.endswith("/"):
            found[path] = None
            found.update(everything(db, path))
        else:
            value = db.read(path, reload=True, system_obj=True)
            found[path] = (
                value.get_stored_dict() if isinstance(value, kydb.DbObj) else value,
                db.stat(path, system_obj=True).indexes,
            )
    return found


def test_copied_from_sqlite_to_a_directory_and_read_over_http(tmp_path: Path, published: tuple[Path, str]) -> None:
    root, server = published
    source_url = f"sqlite:///{tmp_path / 'x.db'}"
    source = kydb.connect(source_url)
    source.upload_objdb_config(OBJDB_CONFIG)
    source.set_many({f"/books/B{i}": {"pv": i * 1.5, "ccy": "USD"} for i in range(50)})
    for i in range(0, 50, 7):
        source.set(f"/books/B{i}", {"pv": i}, index={"class_date": 20260900 + i})
    source["/curves/usd libor"] = [1.0, 1.25, 1.5]
    source["/odd/100% st*r [x] é"] = "odd"
    source["/same"] = "an object"
    source["/same/below"] = "and a folder of its name"
    source["/" + "L" * 300] = "a name longer than a file name may be"
    source.mkdir("/empty")
    source.new("Greeter", "/people/tony", name="Tony").write()
    copied = subprocess.run(
        [sys.executable, "-m", "kydb", "cp", "-r", source_url, f"file://{root}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    assert "copied 57 objects" in copied.stderr  # 50 books, the config and 6 others
    reader = kydb.connect(f"{server}/")
    assert everything(reader) == everything(source)
    assert reader.read("/people/tony", reload=True).greet() == "Hello Tony"
    assert list(reader.folder("/books", allow_scan=True).by("class_date")) == [f"B{i}" for i in range(0, 50, 7)]
    with pytest.raises(kydb.ReadOnlyStore, match=re.escape(reader.url)):
        reader["/books/B1"] = "changed"
    listed = subprocess.run(
        [sys.executable, "-m", "kydb", "-u", f"{server}/", "ls", "/"], capture_output=True, text=True, check=True
    )
    assert listed.stdout.splitlines() == source.ls("/")
    # A writable view over the published tree: writes go to the memory store in front.
    view = kydb.connect(f"memory://{tmp_path.name};{server}/")
    view["/books/B1"] = "changed in front"
    view["/books/new"] = "only in front"
    assert view.read("/books/B1", reload=True) == "changed in front"
    assert view.read("/books/B2", reload=True) == source.read("/books/B2", reload=True)
    assert view.ls("/books") == sorted([*source.ls("/books"), "new"])
    assert reader.read("/books/B1", reload=True) == source.read("/books/B1", reload=True)
