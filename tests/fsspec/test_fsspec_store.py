"""kydb-fsspec's fsspec+ URLs beyond the conformance suite: options, what each protocol declares, shared trees."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import kydb
from kydb.testing import unique_name
from kydb.url import parse_store_url
from kydb_fsspec import FsspecStore


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        ("fsspec://bucket/dir", ValueError, "name the fsspec protocol after 'fsspec\\+'"),
        ("fsspec+nosuch://bucket/dir", ValueError, "Protocol not known: nosuch"),
        ("fsspec+gcs://bucket/dir", ImportError, "gcsfs.*pip install kydb-fsspec"),
        ("fsspec+http://host/dir", ValueError, "read HTTP with http://"),
        ("fsspec+memory://x/dir?storage_options=[1]", ValueError, "takes a JSON object"),
        ("fsspec+memory://x/dir?storage_options=nope", ValueError, "takes a JSON object"),
        ('fsspec+file:///tmp/x?auto_mkdir=1&storage_options={"auto_mkdir":true}', ValueError, "given twice"),
    ],
)
def test_urls_fsspec_cannot_serve_are_refused_clearly(url: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        kydb.connect(url)


def test_options_in_the_url_go_to_the_filesystem(tmp_path: Path) -> None:
    typed = kydb.connect(f'fsspec+file://{tmp_path}/a?storage_options={{"auto_mkdir": false}}')
    assert typed.store.fs.auto_mkdir is False  # type: ignore[attr-defined]
    as_text = kydb.connect(f"fsspec+file://{tmp_path}/b?auto_mkdir=yes&base=/team")
    assert as_text.store.fs.auto_mkdir == "yes" and as_text.base_path == "/team"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "conditional", "shared"),
    [
        ("fsspec+memory://x/dir", True, False),
        ("fsspec+file:///srv/kydb", True, True),
        ("fsspec+gcs://bucket/dir", False, True),
        ("fsspec+s3://bucket/dir", False, True),
        ("fsspec+sftp://host/dir", False, True),
    ],
)
def test_each_protocol_declares_what_it_can_lock(url: str, conditional: bool, shared: bool) -> None:
    declared = FsspecStore.capabilities_for(parse_store_url(url, path_is_base=False))
    assert (declared.conditional_writes, declared.shared_between_processes) == (conditional, shared)
    assert declared.keeps_times and declared.keeps_ctime and declared.writable and not declared.url_path_is_base


@pytest.mark.parametrize("writer_scheme", ["file", "fsspec+file"])
def test_kydb_files_and_fsspec_file_share_one_tree(tmp_path: Path, writer_scheme: str) -> None:
    root = tmp_path / unique_name("shared")
    reader_scheme = "fsspec+file" if writer_scheme == "file" else "file"
    writer, reader = kydb.connect(f"{writer_scheme}://{root}"), kydb.connect(f"{reader_scheme}://{root}")
    writer.set("/books/B1", {"pv": 1}, index={"class_date": 20260905})
    writer["/books/B1"] = {"pv": 2}
    writer["/books/plain"] = "a first write"
    writer["/a"] = "object"
    writer["/a/b"] = "below it"
    long_name = "x" * 300
    writer[f"/{long_name}/{long_name}"] = "long"
    writer.mkdir("/empty")
    for folder in ("/", "/books", "/a", f"/{long_name}"):
        assert reader.ls(folder) == writer.ls(folder)
    for key in ("/books/B1", "/books/plain", "/a", "/a/b", f"/{long_name}/{long_name}"):
        assert reader.read(key, reload=True) == writer.read(key, reload=True)
        wrote, read = writer.stat(key), reader.stat(key)
        assert (read.size, read.mtime_ns, read.ctime_ns, read.indexes) == (
            wrote.size,
            wrote.mtime_ns,
            wrote.ctime_ns,
            wrote.indexes,
        )
        assert read.version == wrote.version  # one version, whichever store reads it
    version = reader.stat("/books/B1").version
    reader.set("/books/B1", {"pv": 3}, if_version=version)  # a conditional write through the other store
    with pytest.raises(kydb.Conflict):
        writer.set("/books/B1", {"pv": 4}, if_version=version)
    assert writer.read("/books/B1", reload=True) == {"pv": 3}


@pytest.mark.parametrize("protocol", ["memory", "file"])
def test_a_conditional_write_that_conflicts_leaves_no_folder(tmp_path: Path, protocol: str) -> None:
    root = unique_name("c") if protocol == "memory" else f"{tmp_path}/{unique_name('c')}"
    db = kydb.connect(f"fsspec+{protocol}://{root}")
    db["/kept"] = 1
    with pytest.raises(kydb.Conflict):
        db.set("/new/deeper/k", 1, if_version="a version it never had")
    assert db.ls("/") == ["kept"] and not db.is_dir("/new")
    db.rm_tree("/")


def test_folders_made_in_memory_are_folders_of_the_memory_filesystem() -> None:
    name = unique_name("mem")
    db = kydb.connect(f"fsspec+memory://{name}/store")
    db["/books/B1"] = 1
    db.mkdir("/empty")
    fs = db.store.fs  # type: ignore[attr-defined]
    assert (
        fs.isdir(f"/{name}/store/empty")
        and fs.cat_file(f"/{name}/store/books/B1") == db.get_blobs(["/books/B1"])["/books/B1"]
    )
    db.rm_tree("/")
    assert not fs.exists(f"/{name}/store/books")


@pytest.mark.parametrize("protocol", ["memory", "file"])
def test_a_write_cut_off_between_its_metadata_and_its_file_leaves_the_old_object_whole(
    tmp_path: Path, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = unique_name("cut") if protocol == "memory" else f"{tmp_path}/{unique_name('cut')}"
    db = kydb.connect(f"fsspec+{protocol}://{root}")
    db.set("/m/k", "old", index={"rank": 1})
    db["/m/k"] = "old"
    before = db.stat("/m/k")
    store: Any = db.store
    if protocol == "memory":
        real_pipe = store.fs.pipe_file

        def dies_before_the_file_lands(path: str, value: bytes, **kwargs: Any) -> None:
            if path.endswith("/m/k"):
                raise KeyboardInterrupt  # the writer goes away after its metadata file landed
            real_pipe(path, value, **kwargs)

        monkeypatch.setattr(store.fs, "pipe_file", dies_before_the_file_lands)
    else:
        real_replace = os.replace

        def dies_before_the_rename(source: str, target: str) -> None:
            if target.endswith("/m/k"):
                raise KeyboardInterrupt
            real_replace(source, target)

        monkeypatch.setattr(os, "replace", dies_before_the_rename)
    with pytest.raises(KeyboardInterrupt):
        db.set("/m/k", "new", index={"rank": 2})
    monkeypatch.undo()
    assert db.read("/m/k", reload=True) == "old"
    assert db.stat("/m/k") == before
    db.set("/m/k", "next", if_version=before.version)
    assert db.stat("/m/k").indexes == {"rank": 1}
    db.rm_tree("/")
