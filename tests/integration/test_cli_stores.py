"""The kydb command line as a user runs it (subprocesses) on persistent stores, and between backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import kydb
from kydb import transfer

StoreURL = Callable[[str], str]


def kydb_cli(*args: str, env: dict[str, str] | None = None, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kydb", *args], input=stdin, capture_output=True, env=env, timeout=300, check=False
    )


def text(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode()


def test_every_command_on_a_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "KYDB_URL": url}

    def ok(*args: str, stdin: bytes = b"") -> str:
        result = kydb_cli(*args, env=env, stdin=stdin)
        assert result.returncode == 0, result.stderr.decode()
        return text(result)

    ok("put", "/books/MYBOOK", stdin=b'{"pv": 1.5, "ccy": "USD"}')
    (tmp_path / "curve.json").write_text(json.dumps([1.0, 1.5, 2.25]))
    ok("put", "/curves/usd libor é", str(tmp_path / "curve.json"))
    ok("put", "--bytes", "/raw/blob", stdin=b"\x00\xff")
    ok("mkdir", "/empty/deeper")
    assert ok("ls").splitlines() == ["books/", "curves/", "empty/", "raw/"]
    assert ok("ls", "/curves").splitlines() == ["usd libor é"]
    size, _day, clock, name = ok("ls", "-l", "/books").split()
    assert name == "MYBOOK" and int(size) == kydb.connect(url).stat("/books/MYBOOK").size and ":" in clock
    ok("put", "/books/NEWER", stdin=b"2")
    assert ok("ls", "-t", "/books").splitlines() == ["NEWER", "MYBOOK"]
    assert ok("tree", "--depth", "1").splitlines() == ["/", "├── books/", "├── curves/", "├── empty/", "└── raw/"]
    assert ok("cat", "/books/MYBOOK") == "{'ccy': 'USD', 'pv': 1.5}\n"
    raw = kydb_cli("cat", "--raw", "/raw/blob", env=env).stdout
    assert raw.startswith(b"KYDB") and kydb.envelope.decode(raw, "/raw/blob") == b"\x00\xff"
    stat = ok("stat", "/books/MYBOOK")
    assert "format:    pickle, unsigned" in stat and "modified:  " in stat and "created:   " in stat
    ok("rmdir", "/empty/deeper")
    ok("rm", "/raw/blob")
    ok("rm", "-r", "-f", "/curves")
    assert ok("ls").splitlines() == ["books/", "empty/", "raw/"]
    backends = ok("backends")
    for scheme in ("sqlite", "postgresql", "redis", "s3", "memory"):
        assert scheme in backends
    missing = kydb_cli("cat", "/books/nothing", env=env)
    assert missing.returncode == 1 and missing.stderr.decode().count("\n") == 1


def test_demo_runs_on_the_embedded_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KYDB_URL"}
    env["XDG_DATA_HOME"] = str(tmp_path)
    result = kydb_cli("demo", env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert "'Hello Tony'" in text(result) and text(result).rstrip().endswith("removed again.")
    assert (tmp_path / "kydb" / "kydb.db").exists()  # the embedded SQLite file, created on first use


def test_demo_leaves_the_data_in_the_embedded_default_alone(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KYDB_URL"}
    env["XDG_DATA_HOME"] = str(tmp_path)
    for key in ("/mytest/keep", "/foo/keep", "/hello-world/keep"):
        assert kydb_cli("put", key, env=env, stdin=b'"mine"').returncode == 0
    config = {"Mine": {"module_path": "my.models", "class_name": "Mine"}}
    kydb.connect(f"sqlite:///{tmp_path / 'kydb' / 'kydb.db'}").set("/.configs/objdb", config, system_obj=True)
    before = kydb_cli("tree", env=env).stdout
    result = kydb_cli("demo", env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert "/kydb-demo-" in text(result).splitlines()[0]
    assert kydb_cli("tree", env=env).stdout == before
    assert text(kydb_cli("cat", "/mytest/keep", env=env)) == "'mine'\n"
    assert b"Mine" in kydb_cli("cat", "/.configs/objdb", env=env).stdout


def test_unreachable_server_is_one_line_with_the_password_masked() -> None:
    result = kydb_cli("-u", "redis://ann:s3cr3t-pw@127.0.0.1:1/x?retries=0", "ls")
    err = result.stderr.decode()
    assert result.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "s3cr3t-pw" not in err and "127.0.0.1:1" in err and "StoreUnavailable" not in err
    # what to do, said once, and where to find more
    assert err.count("Check that the server is running and reachable") == 1 and "--debug" in err and ".." not in err


NAMES = ["plain", "with space", "é accent", "日本", "100%", "a_b", "quo'te"]


def fill(db: kydb.BaseDB, count: int) -> dict[str, object]:
    values = {f"/tree/{NAMES[i % len(NAMES)]}/{i // 100}/o{i:04d}": {"i": i, "pad": "x" * 2000} for i in range(count)}
    for start in range(0, count, 500):
        db.set_many(dict(list(values.items())[start : start + 500]))
    db.mkdir("/tree/empty folder")
    return values


def test_cp_sqlite_to_redis_2000_objects(store_url: StoreURL) -> None:
    src_url, dst_url = store_url("sqlite"), store_url("redis")
    values = fill(kydb.connect(src_url), 2000)
    result = kydb_cli("-u", src_url, "cp", "-r", "/tree", f"{dst_url}/copied")
    assert result.returncode == 0, result.stderr.decode()
    assert "copied 2,000 objects" in result.stderr.decode() and "1 empty folder" in result.stderr.decode()
    dst = kydb.connect(dst_url)
    got = dst.get_many([f"/copied{key[len('/tree'):]}" for key in values], reload=True)
    assert got == {f"/copied{key[len('/tree'):]}": value for key, value in values.items()}
    assert dst.is_dir("/copied/empty folder")


def test_interrupted_copy_is_resumed_by_sync(store_url: StoreURL) -> None:
    src_url, dst_url = store_url("sqlite"), store_url("redis")
    src, dst = kydb.connect(src_url), kydb.connect(dst_url)
    values = fill(src, 3000)
    copy = subprocess.Popen(
        [sys.executable, "-m", "kydb", "-u", src_url, "cp", "-r", "/tree", f"{dst_url}/tree"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not dst.is_dir("/tree") and time.monotonic() < deadline:  # the first batch has landed
        time.sleep(0.01)
    copy.send_signal(signal.SIGINT)
    _, err = copy.communicate(timeout=120)
    assert copy.returncode == 130, err.decode()
    assert "interrupted: copied" in err.decode() and "kydb sync" in err.decode()
    copied = int(err.decode().split("copied ", 1)[1].split(" objects")[0].replace(",", ""))
    assert 0 < copied < 3000
    synced = kydb_cli("-u", src_url, "sync", "/tree", f"{dst_url}/tree")
    assert synced.returncode == 0, synced.stderr.decode()
    summary = synced.stderr.decode()
    assert f"synced {3000 - copied:,} objects" in summary and f"{copied:,} already identical" in summary
    assert dst.get_many(list(values), reload=True) == values


def test_a_terminal_gets_a_progress_line(store_url: StoreURL) -> None:
    import pty

    src_url, dst_url = store_url("sqlite"), store_url("redis")
    fill(kydb.connect(src_url), 1200)
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "kydb", "-u", src_url, "cp", "-r", "/tree", f"{dst_url}/tree"],
        stdout=subprocess.DEVNULL, stderr=follower,
    ) as copy:
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
    os.close(leader)
    assert copy.returncode == 0
    progress = shown.decode()
    assert "\r" in progress and "/1,200 objects" in progress and "obj/s" in progress and "ETA" in progress
    assert "copied 1,200 objects" in progress


def test_no_progress_line_without_a_terminal(store_url: StoreURL) -> None:
    src_url, dst_url = store_url("sqlite"), store_url("redis")
    fill(kydb.connect(src_url), 600)
    result = kydb_cli("-u", src_url, "cp", "-r", "/tree", f"{dst_url}/tree")
    assert result.returncode == 0 and "\r" not in result.stderr.decode() and "obj/s" not in result.stderr.decode()
    quiet = kydb_cli("-u", src_url, "sync", "-q", "/tree", f"{dst_url}/tree")
    assert quiet.returncode == 0 and quiet.stderr == b""


def test_sync_delete_between_sqlite_and_redis(store_url: StoreURL) -> None:
    src_url, dst_url = store_url("sqlite"), store_url("redis")
    src, dst = kydb.connect(src_url), kydb.connect(dst_url)
    values = fill(src, 1500)
    assert kydb_cli("-u", src_url, "cp", "-q", "-r", "/tree", f"{dst_url}/tree").returncode == 0
    gone = [key for i, key in enumerate(values) if i % 3 == 0]
    src.delete_many(gone)
    src.rm_tree("/tree/plain")
    dst.set_many({"/tree/é accent/extra": 1, "/tree/zz/extra": 2, "/tree/100%/0/o0000 copy": 3})
    result = kydb_cli("-u", src_url, "sync", "--delete", "-f", "/tree", f"{dst_url}/tree")
    assert result.returncode == 0, result.stderr.decode()
    remaining = {key: value for key, value in values.items() if key not in gone and "/plain/" not in key}
    deleted = len(values) - len(remaining) + 3
    assert result.stderr.decode().rstrip().endswith(f"{deleted:,} deleted"), result.stderr.decode()
    assert sorted(transfer.walk(dst, "/tree")) == sorted(transfer.walk(src, "/tree"))
    assert dst.get_many(list(remaining), reload=True) == remaining
