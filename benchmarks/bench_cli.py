"""``kydb cp -r`` between SQLite and Redis, next to a plain Python copy loop.

    python -m nox -s bench-cli

Copies a tree of 2,000 objects (about 2 kB each) from a SQLite file to the
Redis at ``$KYDB_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379``) two
ways, into fresh base paths each round:

* ``kydb cp -r`` as a user runs it (a subprocess, start-up included);
* the loop a user would otherwise write, ``for k in keys: dst[k] = src[k]``,
  as a script (a subprocess, start-up included);
* ``kydb.transfer.copy_tree``, the engine behind ``cp``, and the same loop,
  both in this process (no start-up: Python, SQLAlchemy and redis-py are
  imported already).

Prints throughput and the ratio; asserts nothing.  Removes what it wrote.
"""

from __future__ import annotations

import os
import shutil
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
#: The loop as a user's script: source and destination URLs as arguments, the keys on stdin.
LOOP_SCRIPT = """
import sys
import kydb
src, dst = kydb.connect(sys.argv[1]), kydb.connect(sys.argv[2])
for key in sys.stdin.read().split():
    dst[key] = src[key]
"""


def main() -> None:
    folder = tempfile.mkdtemp(prefix="kydb-bench-cli-")
    src_url = f"sqlite:///{folder}/src.db"
    src = kydb.connect(src_url)
    keys = [f"/books/desk{i % 20}/b{i:04d}" for i in range(COUNT)]
    src.set_many({key: {"book": key, "legs": list(range(200))} for key in keys})
    loop_times: list[float] = []
    script_times: list[float] = []
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

            dst_url = f"{REDIS_URL}/bench-script-{uuid.uuid4().hex[:8]}"
            written.append(dst_url)
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", LOOP_SCRIPT, src_url, dst_url], input="\n".join(keys), text=True, check=True
            )
            script_times.append(time.perf_counter() - start)

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
        for url in written:
            assert len(kydb.connect(url).get_many(keys[:10], reload=True)) == 10, f"nothing copied to {url}"
    finally:
        for url in written:
            kydb.connect(url).rm_tree("/")
        src.close()
        shutil.rmtree(folder)
    cli, script = min(cli_times), min(script_times)
    engine, loop = min(engine_times), min(loop_times)
    print(f"copy {COUNT:,} objects from SQLite ({folder}) to Redis ({REDIS_URL}), best of {ROUNDS}")
    print(f"{'method':<52} {'seconds':>8} {'objects/s':>10}")
    for label, seconds in (
        ("kydb cp -r (subprocess, start-up included)", cli),
        ("for k in keys: dst[k] = src[k] (a script, likewise)", script),
        ("kydb.transfer.copy_tree (in process)", engine),
        ("for k in keys: dst[k] = src[k] (in process)", loop),
    ):
        print(f"{label:<52} {seconds:>8.2f} {COUNT / seconds:>10,.0f}")
    print(f"throughput ratio: kydb cp -r {script / cli:.1f}x the script; the copy engine {loop / engine:.1f}x the loop")


if __name__ == "__main__":
    main()
