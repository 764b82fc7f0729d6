"""kydb-files next to the plain file operations it is made of, and kydb-fsspec's HTTP reads next to urllib.

    python -m nox -s bench-files

* put: ``db[key] = value`` (a new object; an overwrite, which also writes
  its metadata file) against ``pickle.dumps`` + ``open().write()`` +
  ``os.replace()`` of a temporary file — with and without the ``fsync`` of
  the file and of the directory that kydb-files does for durability;
* cold get: ``db.read(key, reload=True)`` against ``open().read()`` +
  ``pickle.loads`` of the same pickle;
* ls: ``db.ls`` of a folder of 10 objects in a store of 10,000, and of a
  folder of 10,000, against ``sorted(os.listdir())``;
* HTTP cold get: ``db.read(key, reload=True)`` from ``http://`` (a tree
  served by ``python -m http.server`` on loopback) against
  ``urllib.request.urlopen(url).read()`` + ``pickle.loads``.

Prints times per operation and ratios (best of several runs); asserts nothing.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import kydb

PAYLOADS = {
    "small dict": {"book": "MYBOOK", "pv": 1.5, "ccy": "USD", "legs": [1, 2, 3]},
    "100 kB list": list(range(25_000)),
}
N = 200
STORE_SIZE = 10_000


def per_op(*runs: Callable[[], None], count: int, repeat: int = 5) -> list[float]:
    """Seconds per operation of each run (each does ``count`` operations): the best of ``repeat``.

    The runs take turns, so a disk that is busier for a while (other
    processes' fsyncs) slows each of them alike.
    """
    best = [float("inf")] * len(runs)
    for _ in range(repeat):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - start)
    return [seconds / count for seconds in best]


def plain_put(directory: Path, names: list[str], value: object, durable: bool) -> None:
    for name in names:
        temp = directory / f".tmp-{name}"
        with open(temp, "wb") as file:
            file.write(pickle.dumps(value, protocol=5))
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temp, directory / name)
        if durable:
            fd = os.open(directory, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)


def plain_get(directory: Path, names: list[str]) -> None:
    for name in names:
        with open(directory / name, "rb") as file:
            pickle.loads(file.read())


def row(label: str, kydb_s: float, plain_s: float, plain_label: str) -> None:
    print(f"{label:<34} {kydb_s * 1e6:>10.1f} µs {plain_s * 1e6:>10.1f} µs {kydb_s / plain_s:>7.2f}x   {plain_label}")


def serve(root: Path) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    port = re.search(r"port (\d+)", server.stdout.readline())
    assert port is not None, "python -m http.server did not start"
    return server, f"http://127.0.0.1:{port.group(1)}"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="kydb-bench-files-"))
    db = kydb.connect(f"file://{work}/store")
    plain = work / "plain"
    plain.mkdir()
    names = [f"k{i:04d}" for i in range(N)]
    header = f"{'operation':<34} {'kydb':>13} {'plain':>13} {'ratio':>8}   plain is"
    print(f"kydb-files on {work} ({N} objects a run, best of 5)\n\n{header}")
    for label, value in PAYLOADS.items():

        def put_new(value: object = value, runs: list[int] = [0]) -> None:  # noqa: B006 - counts the runs
            runs[0] += 1
            for name in names:
                db[f"/new{runs[0]}/{name}"] = value

        def put_over(value: object = value) -> None:
            for name in names:
                db[f"/over/{name}"] = value

        put_over()
        new_s, over_s, durable_s, fast_s = per_op(
            put_new,
            put_over,
            lambda value=value: plain_put(plain, names, value, durable=True),
            lambda value=value: plain_put(plain, names, value, durable=False),
            count=N,
        )
        get_s, plain_get_s = per_op(
            lambda: [db.read(f"/over/{name}", reload=True) for name in names] and None,
            lambda: plain_get(plain, names),
            count=N,
        )
        print(f"-- {label} ({len(db.get_blobs(['/over/k0000'])['/over/k0000']):,} bytes stored)")
        row("put (new object)", new_s, durable_s, "write + fsync + os.replace + fsync(dir)")
        row("put (new object)", new_s, fast_s, "write + os.replace, no fsync")
        row("put (overwrite: + metadata file)", over_s, durable_s, "write + fsync + os.replace + fsync(dir)")
        row("cold get", get_s, plain_get_s, "open().read() + pickle.loads")
        db.rm_tree("/")

    print(f"-- ls ({STORE_SIZE:,} objects in the store)")
    batch = 1000
    for start in range(0, STORE_SIZE, batch):  # 100 folders of 100
        db.set_many({f"/bulk/f{i // 100:03d}/o{i:05d}": i for i in range(start, start + batch)})
    db.set_many({f"/target/o{i}": i for i in range(10)})
    target = work / "store" / "target"
    ls_s, listdir_s = per_op(
        lambda: [db.ls("/target") for _ in range(1000)] and None,
        lambda: [sorted(os.listdir(target)) for _ in range(1000)] and None,
        count=1000,
    )
    row("ls of 10 in 10,000", ls_s, listdir_s, "sorted(os.listdir())")
    big = work / "store" / "big"
    for start in range(0, STORE_SIZE, batch):
        db.set_many({f"/big/o{i:05d}": i for i in range(start, start + batch)})
    time.sleep(1.1)  # a folder left alone for a second, as most are when listed
    ls_big_s, listdir_big_s = per_op(
        lambda: [db.ls("/big") for _ in range(20)] and None,
        lambda: [sorted(os.listdir(big)) for _ in range(20)] and None,
        count=20,
    )
    row("ls of a folder of 10,000", ls_big_s, listdir_big_s, "sorted(os.listdir())")

    server, url = serve(work / "store")
    try:
        reader = kydb.connect(f"{url}/")
        for label, value in PAYLOADS.items():
            db.set_many({f"/http/{name}": value for name in names})

            def fetch() -> None:
                for name in names:
                    with urllib.request.urlopen(f"{url}/http/{name}") as answer:
                        pickle.loads(answer.read()[7:])  # the pickle after kydb's 7-byte header

            http_s, urllib_s = per_op(
                lambda: [reader.read(f"/http/{name}", reload=True) for name in names] and None, fetch, count=N
            )
            print(f"-- HTTP, {label}")
            row("cold get over http://", http_s, urllib_s, "urllib.request.urlopen().read() + pickle.loads")
        reader.close()
    finally:
        server.terminate()
        server.wait()
    db.rm_tree("/")
    db.close()


if __name__ == "__main__":
    main()
