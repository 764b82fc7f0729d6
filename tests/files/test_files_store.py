"""kydb-files beyond the conformance suite: its URLs, the layout on disk, names, other tools' files, leftovers."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

import kydb
from kydb.testing import unique_name
from kydb_files import UnsupportedFilesystem, layout

from .conftest import object_file


def tree(root: Path) -> list[str]:
    """Every path below ``root``, relative and sorted, directories with a trailing ``/`` (like ``find``)."""
    return sorted(str(path.relative_to(root)) + ("/" if path.is_dir() else "") for path in root.rglob("*"))


@pytest.fixture
def store(tmp_path: Path) -> tuple[kydb.DB, Path]:
    root = tmp_path / unique_name("files")
    db = kydb.connect(f"file://{root}")
    yield db, root
    db.close()


def test_the_layout_is_a_tree_a_person_can_browse(store: tuple[kydb.DB, Path]) -> None:
    db, root = store
    db["/books/MYBOOK"] = {"pv": 1.5}
    db.set("/books/B1", {"pv": 2}, index={"class_date": 20260905})
    db["/curves/usd libor"] = [1.0, 1.25]
    db["/curves/usd libor"] = [1.0, 1.5]  # an overwrite: the creation time goes in a metadata file
    db["/a"] = "an object"
    db["/a/b"] = "below an object of the same name"
    db.upload_objdb_config({"Greeter": {"module_path": "m", "class_name": "Greeter"}})
    db.mkdir("/empty")
    long_name = "L" * 300
    db[f"/{long_name}"] = "a name too long for a directory entry"
    hashed = layout.entry_name(long_name)
    assert hashed == ".kydb-long-10bf7a12272b807eaaeddab8c6d7b5f87ab37c1c"  # as kydb-files/README.md shows
    assert tree(root) == sorted([
        ".configs/", ".configs/.kydb-lock", ".configs/objdb",
        ".kydb-lock", ".kydb-meta/", f".kydb-meta/{hashed}", ".kydb-same-name/", ".kydb-same-name/a",
        f"{hashed}",
        "a/", "a/.kydb-lock", "a/b",
        "books/", "books/.kydb-lock", "books/.kydb-meta/", "books/.kydb-meta/B1", "books/B1", "books/MYBOOK",
        "curves/", "curves/.kydb-lock", "curves/.kydb-meta/", "curves/.kydb-meta/usd libor", "curves/usd libor",
        "empty/",
    ])  # fmt: skip
    # the files are the stored blobs, byte for byte
    assert kydb.envelope.decode((root / "books" / "MYBOOK").read_bytes(), "/books/MYBOOK") == {"pv": 1.5}
    assert db.get_blobs(["/books/B1"])["/books/B1"] == (root / "books" / "B1").read_bytes()
    # a file carries kydb's modification time, so ls -l shows it
    assert (root / "books" / "MYBOOK").stat().st_mtime_ns == db.stat("/books/MYBOOK").mtime_ns
    assert db.ls("/", system=True) == [".configs/", long_name, "a", "a/", "books/", "curves/", "empty/"]


def test_metadata_files_only_where_the_file_cannot_say_it(store: tuple[kydb.DB, Path]) -> None:
    db, root = store
    db["/f/plain"] = 1
    assert not (root / "f" / ".kydb-meta").exists()
    first = db.stat("/f/plain")
    assert first.ctime_ns == first.mtime_ns and first.indexes == {}
    db["/f/plain"] = 2
    second = db.stat("/f/plain")
    assert (root / "f" / ".kydb-meta" / "plain").is_file()
    assert second.ctime_ns == first.ctime_ns < second.mtime_ns
    db.delete("/f/plain")
    assert not (root / "f" / ".kydb-meta" / "plain").exists()
    db["/f/plain"] = 3  # new again: no creation time of its own to keep
    assert not (root / "f" / ".kydb-meta" / "plain").exists()
    assert db.stat("/f/plain").ctime_ns == db.stat("/f/plain").mtime_ns


def test_versions_change_on_every_write_even_at_one_time_and_size(
    store: tuple[kydb.DB, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, _ = store
    monkeypatch.setattr(time, "time_ns", lambda: 1_780_000_000_000_000_000)  # a clock that never moves
    seen = []
    for _ in range(6):
        db["/v"] = 1  # the same bytes, the same time, every time
        seen.append(db.stat("/v").version)
    assert len(set(seen)) == len(seen)


def test_missing_directory_reads_as_an_empty_store_and_reads_create_nothing(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    db = kydb.connect(f"file://{root}?base=/team")
    assert db.ls("/") == [] and not db.exists("/x") and not db.is_dir("/x")
    with pytest.raises(kydb.NotFound):
        db.read("/x", reload=True)
    assert db.rm_tree("/") == 0
    assert list(db.folder("/", allow_scan=True)) == []
    assert not (tmp_path / "not").exists()
    db["/x"] = 1  # the first write makes it
    assert (root / "team" / "x").is_file()


def test_relative_urls_and_the_files_spelling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = unique_name("rel")
    db = kydb.connect(f"file://./{name}/store")
    db["/k"] = 1
    assert (tmp_path / name / "store" / "k").is_file()
    assert db.store.root == str(tmp_path / name / "store")
    same = kydb.connect(f"files://{tmp_path}/{name}/store")  # the original kydb's scheme name
    assert same.read("/k", reload=True) == 1
    assert kydb.connect(f"file://localhost{tmp_path}/{name}/store").read("/k", reload=True) == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file://server/share/dir", "not on host 'server'"),
        ("file:///", "filesystem's root"),
        ("file:///tmp/x?pool_size=3", "no query options but base"),
        ("file:///tmp/x/../..", "filesystem's root"),
    ],
)
def test_urls_that_name_no_directory_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kydb.connect(url)


@pytest.mark.parametrize("name", [".kydb", ".kydb-lock", ".kydb-meta", ".kydb-tmp-1-2", "..kydb", ".kydbx", "...kydb"])
def test_names_like_kydbs_own_entries_are_ordinary_system_objects(store: tuple[kydb.DB, Path], name: str) -> None:
    db, root = store
    db.set(f"/s/{name}", name, system_obj=True)
    db.set(f"/s/{name}/inside", 1, system_obj=True)
    db.set("/s/plain", 2, index={"n": 1})
    stored = "." + name  # one more dot: kydb's own entries stay its own
    assert (root / "s" / stored).is_dir() and (root / "s" / ".kydb-same-name" / stored).is_file()
    assert db.ls("/s", system=True) == sorted([name, name + "/", "plain"])
    assert db.read(f"/s/{name}", reload=True, system_obj=True) == name
    assert db.stat("/s/plain").indexes == {"n": 1}
    assert db.rm_tree("/s") == 3


def test_names_too_long_for_a_directory_entry(store: tuple[kydb.DB, Path]) -> None:
    db, root = store
    long_name = "é" * 200  # 400 bytes of UTF-8
    db[f"/x/{long_name}"] = "object"
    db[f"/x/{long_name}/inner"] = "below it"
    db.set(f"/x/{long_name}/{long_name}", "both long", index={"n": 3})
    hashed = layout.entry_name(long_name)
    assert (root / "x" / hashed).is_dir() and (root / "x" / ".kydb-same-name" / hashed).is_file()
    assert (root / "x" / hashed / ".kydb-name").read_text("utf-8") == long_name
    assert db.ls("/x") == [long_name, long_name + "/"]
    assert db.ls(f"/x/{long_name}") == ["inner", long_name]
    assert db.read(f"/x/{long_name}", reload=True) == "object"
    assert db.stat(f"/x/{long_name}/{long_name}").indexes == {"n": 3}
    assert db.rm_tree(f"/x/{long_name}") == 2
    assert db.ls("/x") == [long_name]


def test_an_object_and_a_folder_of_one_name(store: tuple[kydb.DB, Path]) -> None:
    db, root = store
    db.set("/p/a", "object", index={"n": 1})
    version = db.stat("/p/a").version
    db["/p/a/b"] = "child"  # the folder takes the name; the object moves beside it, unchanged
    assert (root / "p" / "a").is_dir() and (root / "p" / ".kydb-same-name" / "a").is_file()
    assert db.read("/p/a", reload=True) == "object" and db.stat("/p/a").version == version
    assert db.ls("/p") == ["a", "a/"]
    db["/p/a"] = "rewritten beside the folder"
    assert db.read("/p/a", reload=True) == "rewritten beside the folder"
    assert db.rm_tree("/p/a") == 1
    assert db.ls("/p") == ["a"] and db.read("/p/a", reload=True) == "rewritten beside the folder"
    db["/p/a"] = "back in place"  # no folder any more: the object takes its own name again
    assert (root / "p" / "a").is_file() and not (root / "p" / ".kydb-same-name" / "a").exists()
    assert db.read("/p/a", reload=True) == "back in place" and db.stat("/p/a").indexes == {"n": 1}
    db.delete("/p/a")
    assert db.ls("/p") == []


def test_files_written_by_other_tools_are_objects(store: tuple[kydb.DB, Path], tmp_path: Path) -> None:
    db, root = store
    db["/made/by/kydb"] = {"v": 1}
    (root / "copied").mkdir()
    shutil.copyfile(root / "made" / "by" / "kydb", root / "copied" / "here")  # a plain copy, times of its own
    assert db.read("/copied/here", reload=True) == {"v": 1}
    info = db.stat("/copied/here")
    assert info.mtime_ns == info.ctime_ns == (root / "copied" / "here").stat().st_mtime_ns
    assert info.indexes == {} and isinstance(info.version, str)
    db.set("/copied/here", {"v": 2}, if_version=info.version)
    assert db.read("/copied/here", reload=True) == {"v": 2}
    (root / "copied" / "here").write_bytes(b"not kydb data")  # another tool rewrites it in place
    with pytest.raises(kydb.CorruptValue, match="/copied/here"):
        db.read("/copied/here", reload=True)
    assert db.stat("/copied/here").version != info.version


def test_a_tree_copied_with_its_times_keeps_creation_times_and_indexes(tmp_path: Path) -> None:
    original = kydb.connect(f"file://{tmp_path}/original")
    original.set("/books/B1", 1, index={"class_date": 20260905})
    original["/books/B1"] = 2
    shutil.copytree(tmp_path / "original", tmp_path / "copy")  # cp -a / rsync -a: new inodes, same times
    copy = kydb.connect(f"file://{tmp_path}/copy")
    before, after = original.stat("/books/B1"), copy.stat("/books/B1")
    assert (after.mtime_ns, after.ctime_ns, after.indexes) == (before.mtime_ns, before.ctime_ns, before.indexes)
    copy.set("/books/B1", 3, if_version=after.version)
    assert copy.stat("/books/B1").indexes == {"class_date": 20260905}
    assert original.read("/books/B1", reload=True) == 2


def test_leftovers_of_interrupted_writes_are_hidden_then_swept(store: tuple[kydb.DB, Path]) -> None:
    db, root = store
    db["/w/kept"] = 1
    db.set("/w/indexed", 2, index={"n": 1})
    debris = [root / "w" / ".kydb-tmp-999999-dead", root / "w" / ".kydb-meta" / ".kydb-tmp-999999-meta"]
    for path in debris:
        path.write_bytes(b"half a write")
    trash = root / "w" / ".kydb-tmp-999999-trash"
    (trash / "sub").mkdir(parents=True)
    (trash / "sub" / "x").write_bytes(b"a tree whose deleter died")
    assert sorted(name for name in os.listdir(root / "w") if not name.startswith(".")) == ["indexed", "kept"]
    assert db.ls("/w") == ["indexed", "kept"]  # a listing that finds leftovers sweeps them, if no write is running
    assert not any(path.exists() for path in [*debris, trash])
    assert db.read("/w/kept", reload=True) == 1 and db.stat("/w/indexed").indexes == {"n": 1}


def test_a_case_insensitive_filesystem_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.path.lexists
    # What a default macOS volume answers: 'x-Kydb-Å' is also found as 'x-kydb-å'.
    monkeypatch.setattr(os.path, "lexists", lambda path: real(path) or "-kydb-" in os.path.basename(path))
    db = kydb.connect(f"file://{tmp_path}/insensitive")
    with pytest.raises(UnsupportedFilesystem, match="case-sensitive"):
        db["/k"] = 1
    monkeypatch.undo()
    assert os.listdir(tmp_path / "insensitive") == []


def test_the_conformance_helper_finds_objects_where_the_layout_says(store: tuple[kydb.DB, Path]) -> None:
    db, root = store
    db["/h/a"] = 1
    db["/h/a/b"] = 2
    assert object_file(db, "/h/a") == root / "h" / ".kydb-same-name" / "a"
    assert object_file(db, "/h/a/b") == root / "h" / "a" / "b"


def test_a_conditional_write_that_conflicts_leaves_no_folder(store: tuple[kydb.DB, Path]) -> None:
    db, root = store
    db["/kept"] = 1
    with pytest.raises(kydb.Conflict):
        db.set("/new/deeper/k", 1, if_version="a version it never had")
    assert db.ls("/") == ["kept"] and not (root / "new").exists()


def test_a_write_cut_off_between_its_metadata_and_its_file_leaves_the_old_object_whole(
    store: tuple[kydb.DB, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, _ = store
    db.set("/m/k", "old", index={"rank": 1})
    db["/m/k"] = "old"  # overwritten once: its creation time and index values live in its metadata
    before = db.stat("/m/k")
    real = os.replace

    def dies_before_the_file_lands(source: str, target: str) -> None:
        if target.endswith("/m/k"):
            raise KeyboardInterrupt  # the writer goes away after its metadata file landed
        real(source, target)

    monkeypatch.setattr(os, "replace", dies_before_the_file_lands)
    with pytest.raises(KeyboardInterrupt):
        db.set("/m/k", "new", index={"rank": 2})
    monkeypatch.undo()
    assert db.read("/m/k", reload=True) == "old"
    assert db.stat("/m/k") == before  # its times, index values and version: the old object's, whole
    db.set("/m/k", "next", if_version=before.version)
    after = db.stat("/m/k")
    assert after.indexes == {"rank": 1} and after.ctime_ns == before.ctime_ns
