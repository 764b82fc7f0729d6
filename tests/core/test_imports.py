"""``import kydb`` and memory:// stay light: no boto3, redis or SQLAlchemy."""

from __future__ import annotations

import subprocess
import sys

HEAVY = {"boto3", "botocore", "redis", "sqlalchemy"}
PROGRAM = """
import sys
import kydb
kydb.connect('memory://x')['/k'] = 1
print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))
"""


def test_import_and_memory_connect_import_no_heavy_backend() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", PROGRAM], capture_output=True, text=True, check=True
    )
    # -X importtime logs every import statement (a backend's own `import boto3` included) ...
    timed = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    # ... but not importlib.import_module() itself, which loads the backend: sys.modules has that.
    loaded = set(result.stdout.split())
    assert {"kydb", "pluggy"} <= timed
    assert {"kydb", "kydb_memory", "pluggy"} <= loaded
    assert not (timed | loaded) & HEAVY, sorted((timed | loaded) & HEAVY)
