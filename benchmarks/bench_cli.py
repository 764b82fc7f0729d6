"""``kydb cp -r`` between SQLite and Redis, next to a plain Python copy loop.

    python -m nox -s bench-cli

Copies a tree of 2,000 objects (about 2 kB each) from a SQLite file to the
Redis at ``$KYDB_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379``) two
ways, into fresh base paths each round:

* ``kydb cp -r`` as a user runs it (a subprocess, start-up included);
* ``kydb.transfer.copy_tree``, the engine behind it, in this process;
* the loop a user would otherwise write: ``for k in keys: dst[k] = src[k]``.

Prints throughput and the ratio; asserts nothing.  Removes what it wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid

import kydb
from kydb import transfer

REDIS_URL = os.environ.get("KYDB_TEST_REDIS_URL", "redis://127.0.0.1:6379")
COUNT = 2000
ROUNDS = 3


def main() -> None:
    folder = tempfile.mkdtemp(prefix="kydb-bench-cli-")
    src_url = f"sqlite:///{folder}/src.db"
    src = kydb.connect(src_url)
    keys = [f"/books/desk{i % 20}/b{i:04d}" for i in range(COUNT)]
    src.set_many({key: {"book": key, "legs": list(range(200))} for key in keys})
    loop_times: list[float] = []
    cli_times: list[float] = []
    engine_times: list[float] = []
    written: list[str] = []
    try:
        for _ in range(ROUNDS):
            dst_url = f"{REDIS_URL}/bench-cli-{uuid.uuid4().hex[:8]}"
            written.append(dst_url)
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "kydb", "-u", src_url, "cp", "-r", "-q", "/books", f"{dst_url}/books"],
                check=True,
            )
            cli_times.append(time.perf_counter() - start)

            dst_url = f"{REDIS_URL}/bench-engine-{uuid.uuid4().hex[:8]}"
            written.append(dst_url)
            start = time.perf_counter()
            transfer.copy_tree(src, "/books", kydb.connect(dst_url), "/books")
            engine_times.append(time.perf_counter() - start)

            dst_url = f"{REDIS_URL}/bench-loop-{uuid.uuid4().hex[:8]}"
            written.append(dst_url)
            dst = kydb.connect(dst_url)
            src.clear_cache()
            start = time.perf_counter()
            for key in keys:
                dst[key] = src[key]
            loop_times.append(time.perf_counter() - start)
        copied = kydb.connect(written[0]).get_many(keys[:10], reload=True)
        assert len(copied) == 10
    finally:
        for url in written:
            kydb.connect(url).rm_tree("/")
    cli, engine, loop = min(cli_times), min(engine_times), min(loop_times)
    print(f"copy {COUNT:,} objects from SQLite ({folder}) to Redis ({REDIS_URL}), best of {ROUNDS}")
    print(f"{'method':<44} {'seconds':>8} {'objects/s':>10}")
    print(f"{'kydb cp -r (subprocess, start-up included)':<44} {cli:>8.2f} {COUNT / cli:>10,.0f}")
    print(f"{'kydb.transfer.copy_tree (in process)':<44} {engine:>8.2f} {COUNT / engine:>10,.0f}")
    print(f"{'for k in keys: dst[k] = src[k]':<44} {loop:>8.2f} {COUNT / loop:>10,.0f}")
    print(f"kydb cp -r is {loop / cli:.1f}x the loop's throughput; the copy engine itself {loop / engine:.1f}x")


if __name__ == "__main__":
    main()
