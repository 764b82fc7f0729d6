"""Peak memory for one large value, put and read back, on each backend: a multiple of the value's size.

    .venv/bin/nox -s bench-memory              # every backend whose server answers
    .venv/bin/nox -s bench-memory -- memory sqlite

Each backend runs in a fresh process: it makes one value of ``SIZE`` bytes
(300 MB by default, ``KYDB_BENCH_MB`` to change), then ``db[key] = value``
and ``db.read(key, reload=True)``, and reports the process's peak resident
memory (``ru_maxrss``) beyond what it held before making the value, divided
by the value's size.  The value itself is one of those multiples, and so is
the copy read back; for ``memory://`` the stored blob is a third.  The target
is 3x or less everywhere.  The same measure for ``kydb put`` of a JSON file
of that size runs the command line in its own process.  Nothing is asserted.

The SQL rows each work in a table of their own, dropped at the end.  MariaDB
(``mariadb``, not run by default) refuses a value over its
``max_allowed_packet`` (16 MiB by default) before sending anything: its row
shows that error.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import uuid

MB = 1 << 20
SIZE = int(os.environ.get("KYDB_BENCH_MB", "300")) * MB
POSTGRESQL = os.environ.get("KYDB_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL = os.environ.get("KYDB_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REDIS = os.environ.get("KYDB_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


_MOTO = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print("http://%s:%d" % server.get_host_and_port(), flush=True)
sys.stdin.read()  # until the benchmark closes the pipe
server.stop()
"""


def _s3_url() -> tuple[str, subprocess.Popen[str]]:
    """A bucket on moto's S3 server, run in a child process: its memory is not the client's."""
    import boto3  # noqa: PLC0415 - only the S3 row needs it

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    server = subprocess.Popen([sys.executable, "-c", _MOTO], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    endpoint = server.stdout.readline().strip()
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench-memory")
    return f"s3://bench-memory/run?endpoint_url={endpoint}", server


def measure(backend: str) -> None:
    """In this process: put and read back one value on ``backend``; print the peak as a multiple of its size."""
    import kydb  # noqa: PLC0415 - imported in the measuring process only, before the baseline

    server = None
    base = f"/bench-memory-{uuid.uuid4().hex[:8]}"
    table = f"bench_memory_{uuid.uuid4().hex[:8]}"  # the SQL rows' own table
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "memory":
            url = f"memory://bench{base}"
        elif backend == "sqlite":
            url = f"sqlite:///{tmp}/bench.db?base={base}"
        elif backend in ("postgresql", "mariadb"):
            url = f"{POSTGRESQL if backend == 'postgresql' else MYSQL}?table={table}"
        elif backend == "redis":
            url = REDIS.rstrip("/") + base
        elif backend == "files":
            url = f"file://{tmp}/store"
        else:
            url, server = _s3_url()
        db = kydb.connect(url)
        db["/warm"] = b"x"  # connections, tables and imports before the baseline
        db.read("/warm", reload=True)
        try:
            before = _peak_bytes()
            value = os.urandom(SIZE)
            db["/big"] = value
            back = db.read("/big", reload=True)
            assert len(back) == SIZE
            peak = _peak_bytes() - before
        finally:
            db.rm_tree("/")
            if backend in ("postgresql", "mariadb"):
                with db.store.engine.begin() as conn:
                    conn.exec_driver_sql(f"DROP TABLE {table}_idx")
                    conn.exec_driver_sql(f"DROP TABLE {table}")
            db.close()
    if server is not None:
        server.communicate()  # closing its stdin stops it
    print(json.dumps({"backend": backend, "ratio": peak / SIZE}))


def measure_cli() -> None:
    """``kydb put`` of a JSON file of SIZE bytes, in a child process, against memory://."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.json")
        with open(path, "w") as file:  # written in pieces: a child's peak memory starts from its parent's
            file.write('"')
            for _ in range((SIZE - 2) // MB):
                file.write("x" * MB)
            file.write("x" * ((SIZE - 2) % MB) + '"')
        warm = os.path.join(tmp, "warm.json")
        with open(warm, "w") as file:
            file.write('"warm"')
        code = (  # a small put first, as the other rows: imports and the store before the baseline
            "import resource, sys\nfrom kydb import cli\n"
            "def put(key, path):\n"
            "    try:\n        cli.main(['-u', 'memory://bench-cli', 'put', key, path])\n"
            "    except SystemExit:\n        pass\n"
            "put('/warm', sys.argv[2])\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "put('/big', sys.argv[1])\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)"
        )
        result = subprocess.run([sys.executable, "-c", code, path, warm], capture_output=True, text=True, check=True)
        print(json.dumps({"backend": "kydb put (JSON file)", "ratio": int(result.stdout.split()[-1]) / SIZE}))


def main(backends: list[str]) -> None:
    print(f"peak memory for one {SIZE // MB} MB value, put then read back (multiple of its size; target 3.0x)")
    for backend in backends:
        args = ["--cli"] if backend == "cli" else ["--one", backend]
        result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print(f"{backend:<24} failed: {result.stderr.strip().splitlines()[-1] if result.stderr else '?'}")
            continue
        row = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"{row['backend']:<24} {row['ratio']:5.2f}x")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        measure(sys.argv[2])
    elif sys.argv[1:2] == ["--cli"]:
        measure_cli()
    else:
        main(sys.argv[1:] or ["memory", "sqlite", "postgresql", "redis", "s3", "files", "cli"])
