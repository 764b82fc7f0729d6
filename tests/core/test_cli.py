"""The kydb command line on memory stores: in-process for multi-step flows, subprocesses for the entry points."""

from __future__ import annotations

import datetime
import io
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import kydb
from kydb import cli, transfer
from kydb.testing import count_calls, unique_name
from kydb_memory import MemoryStore

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run ``kydb ARGS`` in this process; returns (exit status, stdout, stderr)."""

    def _run(*argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        with pytest.raises(SystemExit) as exit_info:
            cli.main(list(argv))
        out, err = capsys.readouterr()
        return int(exit_info.value.code or 0), out, err

    return _run


@pytest.fixture
def url() -> str:
    return f"memory://{unique_name('cli')}"


def test_help_documents_commands_options_and_exit_statuses(run: Run) -> None:
    code, out, _ = run("--help")
    assert code == 0 and "ESC as \\x1b" in out and "\x1b" not in out
    for text in ("--url", "--debug", "KYDB_URL", "exit status", "130", "141", "escaped", "ls", "tree", "cat", "put",
                 "rm", "mkdir", "rmdir", "stat", "backends", "cp", "sync", "demo"):
        assert text in out
    expected = {
        "ls": ["--long", "-t"], "tree": ["--depth"], "cat": ["--raw"], "put": ["--bytes", "file"],
        "rm": ["--recursive", "--force", "--yes-really"], "cp": ["--recursive", "--quiet", "SRC", "DST"],
        "sync": ["--quiet", "SRC", "DST", "--delete", "--force", "--yes-really"], "mkdir": ["FOLDER"],
        "rmdir": ["FOLDER"], "stat": ["key"], "backends": [], "demo": ["/kydb-demo-"],
    }
    for command, options in expected.items():
        code, out, _ = run(command, "--help")
        assert code == 0 and "\x1b" not in out
        for option in options:
            assert option in out, (command, option)


def test_put_ls_cat_stat_tree(run: Run, url: str, tmp_path: Path) -> None:
    assert run("-u", url, "put", "/books/MYBOOK", stdin=b'{"pv": 1.5, "legs": [1, 2]}')[0] == 0
    (tmp_path / "v.json").write_text('"from a file"')
    assert run("-u", url, "put", "/books/other", str(tmp_path / "v.json"))[0] == 0
    assert run("-u", url, "put", "/raw/blob", "--bytes", stdin=b"\x00\x01")[0] == 0
    assert run("-u", url, "mkdir", "/empty/deep")[0] == 0
    assert run("-u", url, "ls")[1].splitlines() == ["books/", "empty/", "raw/"]
    assert run("-u", url, "ls", "/books")[1].splitlines() == ["MYBOOK", "other"]
    long = run("-u", url, "ls", "-l", "/books")[1].splitlines()
    info = kydb.connect(url).stat("/books/MYBOOK")
    when = datetime.datetime.fromtimestamp(info.mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")
    assert long[0].split() == [str(info.size), *when.split(), "MYBOOK"]
    assert run("-u", url, "cat", "/books/MYBOOK")[1] == "{'legs': [1, 2], 'pv': 1.5}\n"
    assert run("-u", url, "cat", "/raw/blob")[1] == "b'\\x00\\x01'\n"
    stat = run("-u", url, "stat", "/books/MYBOOK")[1]
    assert f"size:      {info.size} bytes" in stat and "format:    pickle, unsigned" in stat
    assert f"modified:  {when}" in stat
    assert run("-u", url, "tree")[1].splitlines() == [
        "/", "├── books/", "│   ├── MYBOOK", "│   └── other", "├── empty/", "│   └── deep/", "└── raw/", "    └── blob"]
    assert run("-u", url, "tree", "--depth", "1")[1].splitlines() == ["/", "├── books/", "├── empty/", "└── raw/"]


def test_ls_t_lists_newest_first_then_folders(run: Run, url: str) -> None:
    db = kydb.connect(url)
    for name in ("old", "middle", "new"):
        db[f"/t/{name}"] = name
        time.sleep(0.002)
    db.mkdir("/t/a-folder")
    assert run("-u", url, "ls", "-t", "/t")[1].splitlines() == ["new", "middle", "old", "a-folder/"]


def test_cat_raw_writes_the_stored_blob(url: str) -> None:
    db = kydb.connect(url)
    db["/k"] = {"x": 1}
    # a subprocess cannot see this process's memory store, so call main with a binary stdout
    out = io.BytesIO()
    wrapper = io.TextIOWrapper(out)
    saved = sys.stdout
    sys.stdout = wrapper
    try:
        with pytest.raises(SystemExit):
            cli.main(["-u", url, "cat", "--raw", "/k"])
    finally:
        sys.stdout = saved
    wrapper.flush()
    assert out.getvalue() == db.store.tree.objects["/k"]


def test_put_rejects_bad_json_and_writes_nothing(run: Run, url: str) -> None:
    code, _, err = run("-u", url, "put", "/k", stdin=b"{not json")
    assert code == 1 and "not valid JSON" in err and "--bytes" in err
    assert not kydb.connect(url).exists("/k")


def test_rm_rmdir_and_their_safety_catches(run: Run, url: str) -> None:
    db = kydb.connect(url)
    db.set_many({"/a/x": 1, "/a/y": 2, "/b/z": 3})
    db.mkdir("/e")
    assert run("-u", url, "rm", "/a/x")[0] == 0
    code, _, err = run("-u", url, "rm", "/a/missing", "/a/y")
    assert code == 1 and "/a/missing" in err and not db.exists("/a/y")  # the others are still removed
    code, _, err = run("-u", url, "rm", "-r", "/b")  # stdin is not a terminal: no confirmation possible
    assert code == 1 and "not removed" in err and db.exists("/b/z")
    assert run("-u", url, "rm", "-r", "-f", "/b")[0] == 0 and not db.is_dir("/b")
    code, _, err = run("-u", url, "rm", "-rf", "/")
    assert code == 1 and "--yes-really" in err and db.is_dir("/e")
    assert run("-u", url, "rmdir", "/e")[0] == 0
    code, _, err = run("-u", url, "rmdir", "/a/../a")
    assert code == 1 and err.startswith("kydb: error:")
    assert run("-u", url, "rm", "-r", "--yes-really", "/")[0] == 0
    assert db.ls("/") == []


def test_errors_are_one_line_with_masked_urls(run: Run, url: str) -> None:
    code, out, err = run("-u", url, "cat", "/missing")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and url in err and "kydb ls" in err
    code, _, err = run("-u", "redis://ann:hunter2@127.0.0.1:1/x", "ls")
    assert code == 1 and "hunter2" not in err and "ann:***@" in err


def test_debug_shows_the_traceback() -> None:
    quiet = subprocess.run([sys.executable, "-m", "kydb", "-u", "memory://x", "cat", "/missing"],
                           capture_output=True, text=True, check=False)
    loud = subprocess.run([sys.executable, "-m", "kydb", "--debug", "-u", "memory://x", "cat", "/missing"],
                          capture_output=True, text=True, check=False)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr and quiet.stderr.startswith("kydb: error:")
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "NotFound" in loud.stderr


def test_console_script_and_module_agree() -> None:
    script = Path(sys.executable).with_name("kydb")
    via_script = subprocess.run([str(script), "backends"], capture_output=True, text=True, check=True)
    via_module = subprocess.run([sys.executable, "-m", "kydb", "backends"], capture_output=True, text=True, check=True)
    assert via_script.stdout == via_module.stdout
    installed = {info.scheme for info in kydb.backends()}
    assert "memory" in installed
    for scheme, requirement in kydb.registry.WELL_KNOWN_SCHEMES.items():
        line = next(line for line in via_script.stdout.splitlines() if line.split()[:1] == [scheme])
        dist = requirement.split("[")[0]
        if scheme in installed:
            assert dist in line
        else:
            assert line.split(None, 1)[1] == kydb.registry.install_command(scheme)
            assert requirement in line


def test_usage_errors_exit_2(run: Run) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 2


def test_cp_object_and_tree_between_stores(run: Run, url: str) -> None:
    src = kydb.connect(url)
    other = f"memory://{unique_name('dst')}"
    dst = kydb.connect(other)
    src.set_many({f"/books/b{i}": i for i in range(1200)})
    src.set_many({"/books/sub/deep": "deep", "/books/odd name é": "odd"})
    src.mkdir("/books/empty")
    src.set("/books/b7", 7, index={"rank": 3})
    code, _, err = run("-u", url, "cp", "-r", "/books", f"{other}/copy")
    assert code == 0 and "copied 1,202 objects" in err
    assert dst.ls("/copy") == src.ls("/books")
    assert dst.read("/copy/odd name é", reload=True) == "odd" and dst.is_dir("/copy/empty")
    assert run("-u", url, "cp", "/books/b7", f"{other}/single")[0] == 0
    assert dst.read("/single", reload=True) == 7 and dst.stat("/single").indexes == {"rank": 3}
    assert dst.stat("/copy/b7").indexes == {"rank": 3}
    assert run("-u", url, "cp", "/books/b8", f"{other}/copy/sub")[0] == 0  # into an existing folder
    assert dst.read("/copy/sub/b8", reload=True) == 8
    assert run("-u", url, "cp", f"{url}/books/b9", "/local-copy")[0] == 0  # URL to a path in --url
    assert src.read("/local-copy", reload=True) == 9
    code, _, err = run("-u", url, "cp", "/books/nothing", "/x")
    assert code == 1 and "/books/nothing" in err


def test_interrupted_copy_is_resumed_by_sync(url: str) -> None:
    src, dst = kydb.connect(url), kydb.connect(f"memory://{unique_name('dst')}")
    src.set_many({f"/t/{i:04d}": i for i in range(1500)})
    stop = threading.Event()
    first = transfer.copy_tree(src, "/t", dst, "/t", batch_size=500, stop=stop, progress=lambda s: stop.set())
    assert first.interrupted and first.objects == 500
    assert len(dst.ls("/t")) == 500
    second = transfer.copy_tree(src, "/t", dst, "/t", sync=True, batch_size=500)
    assert not second.interrupted and (second.objects, second.skipped) == (1000, 500)
    assert dst.get_many(f"/t/{i:04d}" for i in range(1500)) == {f"/t/{i:04d}": i for i in range(1500)}


def test_sync_rewrites_only_what_differs(run: Run, url: str) -> None:
    src, other = kydb.connect(url), f"memory://{unique_name('dst')}"
    src.set_many({"/s/a": 1, "/s/b": 2})
    assert run("-u", url, "sync", "/s", f"{other}/s")[0] == 0
    src["/s/b"] = 20
    code, _, err = run("-u", url, "sync", "/s", f"{other}/s")
    assert code == 0 and "synced 1 object (" in err and "1 already identical" in err
    assert kydb.connect(other).read("/s/b", reload=True) == 20


def test_demo_runs_the_walkthrough(run: Run, url: str) -> None:
    code, out, _ = run("-u", url, "demo")
    assert code == 0 and "'Hello Tony'" in out and out.rstrip().endswith("removed again.")
    assert kydb.connect(url).ls("/") == []


def test_demo_works_in_a_folder_of_its_own_and_leaves_everything_else(run: Run, url: str) -> None:
    db = kydb.connect(url)
    mine = {"/mytest/keep": 1, "/foo/bar/baz": "mine", "/hello-world/greeter001": "mine", "/empty-folder/x": 2}
    db.set_many(mine)
    db.upload_objdb_config({"Mine": {"module_path": "my.models", "class_name": "Mine"}})
    config = db.read("/.configs/objdb", reload=True, system_obj=True)
    code, out, _ = run("-u", url, "demo")
    assert code == 0 and "'Hello Tony'" in out
    scratch = re.search(r"/kydb-demo-[0-9a-f]{8}/", out)
    assert scratch is not None and f"{scratch.group()} of {url}" in out.splitlines()[0]  # says where it writes
    listings = [line.split(" # ")[1] for line in out.splitlines() if line.startswith("db.ls('/') ")]
    assert listings == ["['empty-folder/']", "['empty-folder/', 'foo/']", "['foo/']", "[]"]  # its own root
    assert db.get_many(mine, reload=True) == mine
    assert db.read("/.configs/objdb", reload=True, system_obj=True) == config
    listed = db.ls("/", system=True)  # and the demo's folder is gone
    assert listed == [".configs/", "empty-folder/", "foo/", "hello-world/", "mytest/"]
    code, out, _ = run("demo", "--help")
    assert "kydb-demo-" in out and "removes" in out and "nothing else" in out


def test_demo_on_a_composite_url_stays_in_its_folder_in_every_layer(run: Run) -> None:
    front, back = f"memory://{unique_name('front')}", f"memory://{unique_name('back')}/team"
    kydb.connect(back)["/mytest/keep"] = "back"
    code, out, _ = run("-u", f"{front};{back}", "demo")
    assert code == 0 and "'Hello Tony'" in out
    assert kydb.connect(front).ls("/") == [] and kydb.connect(back).ls("/") == ["mytest/"]
    assert kydb.connect(back).read("/mytest/keep", reload=True) == "back"


def test_json_values_round_trip_through_put_and_cat(run: Run, url: str) -> None:
    value = {"a": [1, 2.5, None, True], "b": {"c": "é"}}
    assert run("-u", url, "put", "/j", stdin=json.dumps(value).encode())[0] == 0
    assert kydb.connect(url)["/j"] == value


def test_copies_carry_index_values_and_sync_mends_them(url: str) -> None:
    src, dst = kydb.connect(url), kydb.connect(f"memory://{unique_name('dst')}")
    src.set("/i/a", 1, index={"rank": 2})
    src.set("/i/b", 2, index={"rank": 1, "other": 5})
    transfer.copy_tree(src, "/i", dst, "/i")
    assert list(dst.folder("/i").by("rank")) == ["b", "a"]
    dst.set("/i/a", 1, index={"rank": 9, "extra": 1})  # same value, other index values
    stats = transfer.copy_tree(src, "/i", dst, "/i", sync=True)
    assert (stats.objects, stats.skipped) == (1, 1)
    assert dst.stat("/i/a").indexes == {"rank": 2} and dst.stat("/i/b").indexes == {"rank": 1, "other": 5}


class _NoStatStore(MemoryStore):
    """An in-process store that keeps no metadata: stat falls back to reading blobs."""

    capabilities = kydb.Capabilities(shared_between_processes=False)
    kydb_stat = None  # type: ignore[assignment]


def test_copies_read_each_blob_once_from_a_store_without_metadata(url: str) -> None:
    kydb.register_backend("nostat", _NoStatStore)
    try:
        src = kydb.connect(f"nostat://{unique_name('src')}")
        plain = kydb.connect(f"nostat://{unique_name('dst')}")
        src.set_many({f"/c/{i}": i for i in range(30)})
        with count_calls(src) as calls:
            transfer.copy_tree(src, "/c", plain, "/c")
        assert calls["kydb_get"] == 1 and calls["kydb_stat"] == 0
        indexed = kydb.connect(url)
        indexed.set("/c/x", 1, index={"rank": 1})
        transfer.copy_tree(indexed, "/c", plain, "/c")  # the destination cannot keep the index value...
        again = transfer.copy_tree(indexed, "/c", plain, "/c", sync=True)
        assert (again.objects, again.skipped) == (0, 1)  # ...so sync does not rewrite it forever
    finally:
        kydb.unregister_backend("nostat")


def _long_names(count: int) -> dict[str, int]:
    # Names near the 1,024-byte key limit: a copy that ran into its own output would stop after a few levels.
    return {f"/a/o{i:04d}-{'x' * 960}": i for i in range(count)}


@pytest.mark.parametrize("command", [["cp", "-r"], ["sync"]])
def test_cp_and_sync_refuse_a_destination_inside_the_source(run: Run, url: str, command: list[str]) -> None:
    db = kydb.connect(url)
    values = _long_names(1100)  # more than one listing page, so the copy would list its own output
    db.set_many(values)
    for dst in ("/a/sub", "/a", f"{url}/a/deeper/sub"):
        code, out, err = run("-u", url, *command, "/a", dst)
        assert code == 1 and out == "" and err.count("\n") == 1
        assert "into itself" in err and f"/a/ of {url}" in err and url in err.split("destination", 1)[1]
    code, _, err = run("-u", f"{url}/a", *command, "/", f"{url}/a/sub")  # same store, other base paths
    assert code == 1 and "into itself" in err
    assert db.ls("/a") == sorted(name.rpartition("/")[2] for name in values)  # nothing was copied
    assert run("-u", url, *command, "/a", "/ab")[0] == 0  # a sibling whose name starts the same is fine
    assert len(db.ls("/ab")) == 1100


def test_copy_tree_refuses_a_destination_inside_the_source_whatever_the_base_paths(url: str) -> None:
    root, below = kydb.connect(url), kydb.connect(f"{url}/a")
    root.set_many({"/a/x": 1, "/a/y/z": 2})
    for src, src_folder, dst, dst_folder in [
        (root, "/a", root, "/a/sub"),
        (root, "/a", root, "/a"),
        (below, "/", root, "/a/sub"),
        (root, "/a", below, "/y"),
        (root, "/", kydb.connect(f"{url}/elsewhere"), "/"),
        (kydb.connect(f"memory://{unique_name('other')};{url}"), "/a", root, "/a/sub"),  # a union reads both
        (root, "/a", kydb.connect(f"memory://{unique_name('cache')}|{url}"), "/a/sub"),  # a cache DB writes both
    ]:
        for sync in (False, True):
            with pytest.raises(ValueError, match="into itself") as info:
                transfer.copy_tree(src, src_folder, dst, dst_folder, sync=sync)
            assert src.url in str(info.value) and dst.url in str(info.value)
    assert sorted(transfer.walk(root)) == [("/a/x", False), ("/a/y/z", False)]
    transfer.copy_tree(root, "/a/y", root, "/a")  # the source inside the destination is a plain copy
    assert root.read("/a/z", reload=True) == 2
    other = kydb.connect(f"memory://{unique_name('other')}/a")  # another store at the same base path
    assert transfer.copy_tree(root, "/a", other, "/a/sub").objects == 3


def test_copy_summaries_name_both_ends_the_same_way(run: Run, url: str) -> None:
    other = f"memory://{unique_name('dst')}"
    kydb.connect(url).set_many({"/data/a": 1, "/data/b": 2, "/data/c/d": 3})
    code, _, err = run("-u", url, "cp", "-r", "/data", f"{other}/backup")
    assert code == 0
    assert re.fullmatch(
        rf"copied 3 objects \(\d+ B\) from /data/ of {url} to / of {other}/backup in \d+\.\d s; "
        r"0 already identical, 0 empty folders\n",
        err,
    ), err
    code, _, err = run("-u", url, "sync", "/data", f"{other}/backup")
    assert code == 0 and re.fullmatch(
        rf"synced 0 objects \(0 B\) from /data/ of {url} to / of {other}/backup in \d+\.\d s; "
        r"3 already identical, 0 empty folders\n",
        err,
    ), err
    code, _, err = run("-u", url, "cp", "/data/a", f"{other}/single")
    assert code == 0
    assert re.fullmatch(rf"copied 1 object \(\d+ B\) from /data/a of {url} to /single of {other} in \d+\.\d s\n", err)


def test_sync_delete_removes_what_the_source_lacks_once_confirmed(run: Run, url: str) -> None:
    src, other = kydb.connect(url), f"memory://{unique_name('dst')}"
    dst = kydb.connect(other)
    src.set_many({"/s/a": 1, "/s/sub/b": 2, "/s/x": 3})
    src.mkdir("/s/empty")
    dst.set_many({"/s/a": 0, "/s/gone": 9, "/s/sub/b": 2, "/s/sub/gone": 9, "/s/old/x": 1, "/s/old/y/z": 2})
    dst.set_many({"/s/x/inside": 4, "/keep/me": 1})  # a folder where the source has an object, and a neighbour
    dst.mkdir("/s/empty-old")
    before = sorted(transfer.walk(dst))
    code, _, err = run("-u", url, "sync", "/s", f"{other}/s")
    assert code == 0 and dst.exists("/s/gone")  # without --delete, nothing is deleted
    code, _, err = run("-u", url, "sync", "--delete", "/s", f"{other}/s")  # stdin is not a terminal
    assert code == 1 and err.count("\n") == 1 and "-f" in err and "nothing synced" in err
    assert sorted(transfer.walk(dst)) == sorted([*before, ("/s/empty/", True), ("/s/x", False)])
    code, _, err = run("-u", url, "sync", "--delete", "/s", other)  # DST is a whole store
    assert code == 1 and "--yes-really" in err and dst.exists("/keep/me")
    code, _, err = run("-u", url, "sync", "--delete", "-f", "/s", f"{other}/s")
    assert code == 0 and err.rstrip().endswith("0 empty folders, 5 deleted"), err
    assert sorted(transfer.walk(dst, "/s")) == sorted(transfer.walk(src, "/s"))
    assert dst.get_many(["/s/a", "/s/sub/b", "/s/x", "/keep/me"], reload=True) == {
        "/s/a": 1, "/s/sub/b": 2, "/s/x": 3, "/keep/me": 1}
    code, _, err = run("-u", url, "sync", "--delete", "-f", "/s", f"{other}/s")
    assert code == 0 and "synced 0 objects" in err and "0 deleted" in err


def test_copy_tree_delete_pages_through_large_folders_and_keeps_what_the_source_holds(url: str) -> None:
    src, dst = kydb.connect(url), kydb.connect(f"memory://{unique_name('dst')}/base")
    src.set_many({f"/t/{i:04d}": i for i in range(0, 2500, 2)})
    dst.set_many({f"/t/{i:04d}": i for i in range(2500)})
    dst.set("/t/.configs/objdb", {}, system_obj=True)
    stats = transfer.copy_tree(src, "/t", dst, "/t", sync=True, delete=True, batch_size=300)
    assert (stats.objects, stats.skipped, stats.deleted) == (0, 1250, 1251)
    assert dst.ls("/t") == src.ls("/t")
    with pytest.raises(ValueError, match="would be deleted"):  # the source inside the destination
        transfer.copy_tree(src, "/t", src, "/", sync=True, delete=True)
    assert len(src.ls("/t")) == 1250


_FILLED_STORE_THEN_CLI = """
import sys
import kydb
from kydb import cli
db = kydb.connect("memory://big")
db.set_many({f"/big/name-{i:05d}": i for i in range(20000)})
db["/blob"] = bytes(1_000_000)
cli.main(["-u", "memory://big", *sys.argv[1:]])
"""


@pytest.mark.parametrize(
    "command", [["ls", "/big"], ["ls", "-l", "/big"], ["tree"], ["cat", "/blob"], ["cat", "--raw", "/blob"]]
)
def test_a_reader_that_goes_away_ends_the_command_quietly(command: list[str]) -> None:
    # kydb ... | head -c 64: the reader closes the pipe after the first bytes
    with subprocess.Popen(
        [sys.executable, "-c", _FILLED_STORE_THEN_CLI, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.read(64)
        proc.stdout.close()
        err = proc.stderr.read()
    assert len(first) == 64
    assert err == b"" and proc.returncode == 141


def test_control_characters_in_names_are_escaped(run: Run, url: str) -> None:
    db = kydb.connect(url)
    db["/odd/plain"] = 1
    blob = kydb.envelope.encode(2)
    # names kydb refuses to write, as another tool may have written them
    db.store.kydb_put({"/odd/red\x1b[31m!\x07": blob, "/odd/dir\x1b]0;title\x07/inside": blob}, time.time_ns(), {}, {})
    names = ["dir\\x1b]0;title\\x07/", "plain", "red\\x1b[31m!\\x07"]
    code, out, _ = run("-u", url, "ls", "/odd")
    assert code == 0 and out.splitlines() == names
    code, out, _ = run("-u", url, "ls", "-l", "/odd")
    assert code == 0 and [line.split()[-1] for line in out.splitlines()] == names
    code, out, _ = run("-u", url, "tree", "/odd")
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert out.splitlines()[1:] == [
        "├── dir\\x1b]0;title\\x07/  (not listed: the name holds control characters)",
        "├── plain",
        "└── red\\x1b[31m!\\x07",
    ]
    assert "escaped" in run("ls", "--help")[1] and "escaped" in run("tree", "--help")[1]


def test_a_folder_where_an_object_is_expected_says_so(run: Run, url: str) -> None:
    db, other = kydb.connect(url), f"memory://{unique_name('dst')}"
    db.set_many({"/books/MYBOOK": 1, "/x/y": 2})
    for argv, hint in [
        (["cat", "/books"], "kydb ls /books"),
        (["cat", "--raw", "/books"], "kydb ls /books"),
        (["stat", "/books"], "kydb ls -l /books"),
        (["rm", "/x"], "kydb rm -r /x"),
        (["cp", "/x", f"{other}/x"], "kydb cp -r"),
    ]:
        code, out, err = run("-u", url, *argv)
        assert code == 1 and out == "" and err.count("\n") == 1, argv
        assert "is a folder" in err and hint in err and "no such key" not in err and url in err, err
    assert db.exists("/x/y") and kydb.connect(other).ls("/") == []
    code, _, err = run("-u", url, "cat", "/nothing")
    assert code == 1 and "/nothing: no such key" in err


def test_one_rule_for_missing_folders_and_object_paths(run: Run, url: str) -> None:
    db, other = kydb.connect(url), f"memory://{unique_name('dst')}"
    db["/books/MYBOOK"] = {"pv": 1}
    db.mkdir("/empty")
    for argv in (["ls", "/nonexistent"], ["ls", "-l", "/nonexistent"], ["ls", "-t", "/nonexistent"],
                 ["ls", "/books/MYBOOK/"], ["tree", "/nonexistent"], ["rm", "-r", "-f", "/nonexistent"],
                 ["rmdir", "/nonexistent"], ["cp", "-r", "/nonexistent", other], ["sync", "/nonexistent", other]):
        code, out, err = run("-u", url, *argv)
        assert code == 1 and out == "" and err.count("\n") == 1, argv
        assert "no such folder" in err and url in err and ("/nonexistent/" in err or "/MYBOOK/" in err), err
    assert run("-u", url, "ls", "/empty") == (0, "", "")  # an empty folder lists as empty
    assert run("-u", url, "ls", "/books/MYBOOK") == (0, "MYBOOK\n", "")  # an object lists as itself, like ls FILE
    assert run("-u", url, "ls", "-t", "books/MYBOOK") == (0, "MYBOOK\n", "")
    size, _day, _clock, name = run("-u", url, "ls", "-l", "/books/MYBOOK")[1].split()
    assert name == "MYBOOK" and int(size) == db.stat("/books/MYBOOK").size
    assert run("-u", url, "tree", "/books/MYBOOK") == (0, "/books/MYBOOK\n", "")
    for command in (["cp", "-r"], ["sync"]):
        code, _, err = run("-u", url, *command, "/books/MYBOOK", other)
        assert code == 1 and "is an object, not a folder" in err and "kydb cp" in err
    assert run("-u", url, "rm", "-r", "/books/MYBOOK")[0] == 0  # rm -r removes an object, as it does a file
    assert not db.exists("/books/MYBOOK")
