"""The examples run as a user would run them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from kydb.testing import unique_name

ROOT = Path(__file__).resolve().parents[2]

WALKTHROUGH_RESULTS = [
    ("db[key]", "123"),
    ("db.read(key, reload=True)", "123"),
    ("db.read(key, reload=True) == val", "True"),
    ("db.ls('/')", "['empty-folder/']"),
    ("db.ls('/')", "['empty-folder/', 'foo/']"),
    ("db.ls('/foo')", "['bar/']"),
    ("db.ls('/')", "['foo/']"),
    ("db.ls('/')", "[]"),
    ("greeter.name()", "'John'"),
    ("greeter.greet()", "'Hello John'"),
    ("greeter.greet()", "'Hello Tony'"),
    ("greeter.name()", "'Jane'"),
    ("greeter.greet()", "'Hello Jane'"),
    ("greeter.greet_count", "1"),
    ("greeter.get_stored_dict()", "{'name': 'Mary'}"),
    ("mary.greet_count  (still cached)", "1"),
    ("mary.greet_count  (reloaded)", "0"),
    ("mary.name()", "'Mary'"),
]


def run_walkthrough(url: str) -> list[tuple[str, str]]:
    """Run examples/walkthrough.py on ``url`` and return its (step, result) lines."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "walkthrough.py"), url],
        capture_output=True, text=True, cwd=ROOT.parent, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("removed again.")
    return [tuple(part.strip() for part in line.split(" # ", 1))  # type: ignore[misc]
            for line in result.stdout.splitlines() if " # " in line]


def test_walkthrough_on_memory() -> None:
    assert run_walkthrough(f"memory://{unique_name('walk')}") == WALKTHROUGH_RESULTS


def test_third_party_backend_passes_the_conformance_suite(fresh_venv: Any) -> None:
    fresh_venv.install("kydb-core[testing]", "kydb-dirstore", "pytest", "numpy")
    tests = ROOT / "examples" / "third_party_backend" / "tests"
    result = fresh_venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests), cwd=tests)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert passed >= 130 and "failed" not in summary and "skipped" not in summary, summary
