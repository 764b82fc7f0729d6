"""A writer SIGKILLed in the middle of a 50 MB put leaves the old value or the new one, whole, and nothing visible."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import kydb

SIZE = 50 * 1024 * 1024
KILLS = 20

# Writes bytes([i]) * SIZE at /big for i = 1, 2, ...; says which i it starts before each put.
WRITER = """
import sys, kydb
db = kydb.connect(sys.argv[1])
i = int(sys.argv[2])
while True:
    i += 1
    print(i, flush=True)
    db["/big"] = bytes([i % 256]) * {size}
"""


def whole(value: object) -> int:
    """The i of a value the writer wrote, checking it is whole (SIZE bytes, all the same)."""
    assert isinstance(value, bytes) and len(value) == SIZE, f"a torn value: {type(value)} of {len(value)} bytes"
    assert value == bytes([value[0]]) * SIZE, "a value mixing two writes"
    return value[0]


def test_a_killed_writer_leaves_old_or_new_whole_and_no_visible_temporary_files(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/crash"
    reader = kydb.connect(url)
    reader["/big"] = bytes([0]) * SIZE
    folder = tmp_path / "crash"
    started = 0  # the highest i a writer began to write
    old = 0  # the value stored before the writer runs
    leftovers_seen = 0
    rng = random.Random(20260905)
    for kill in range(KILLS):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER.format(size=SIZE), url, str(started)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        began = [int(writer.stdout.readline())]  # it has begun a put
        deadline = time.monotonic() + rng.uniform(0.05, 0.6)
        while time.monotonic() < deadline:  # read while it writes: never a torn value
            whole(reader.read("/big", reload=True))
        if kill % 2:  # every other kill waits for a put's temporary file: killed halfway through writing it
            while not any(name.startswith(".kydb-tmp-") for name in os.listdir(folder)):
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.02))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        began += [int(line) for line in writer.stdout.read().split()]
        writer.stdout.close()
        started = began[-1]
        # The last put it began finished before the kill (new), or did not (old: the put before it).
        allowed = {started % 256, (started - 1) % 256 if len(began) > 1 else old}
        old = whole(reader.read("/big", reload=True))
        assert old in allowed, f"read {old}, expected one of {allowed}"
        visible = sorted(name for name in os.listdir(folder) if not name.startswith("."))
        assert visible == ["big"], f"a killed write left {visible} visible"
        leftovers_seen += any(name.startswith(".kydb-tmp-") for name in os.listdir(folder))
        assert reader.ls("/") == ["big"]  # the listing also sweeps what the killed writer left
        assert not any(name.startswith(".kydb-tmp-") for name in os.listdir(folder))
    # The kills that waited for a temporary file caught a put in the middle of writing it.
    assert leftovers_seen >= KILLS // 2, f"only {leftovers_seen} of {KILLS} kills interrupted a put"
