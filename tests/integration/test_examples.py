"""The examples run as a user would run them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kydb
from kydb.testing import unique_name

ROOT = Path(__file__).resolve().parents[2]


def test_walkthrough_on_memory(check_walkthrough: Callable[[str], None]) -> None:
    check_walkthrough(f"memory://{unique_name('walk')}")


def test_walkthrough_leaves_the_stores_data_alone(check_walkthrough: Callable[[str], None], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mine.db'}?base=/team"
    db = kydb.connect(url)
    mine = {"/mytest/foo": "mine", "/foo/bar/baz": "mine", "/hello-world/greeter001": "mine"}
    db.set_many(mine)
    db.mkdir("/empty-folder")
    db.set("/.configs/objdb", {}, system_obj=True)
    check_walkthrough(url)
    assert db.get_many(mine, reload=True) == mine and db.is_dir("/empty-folder")
    assert db.read("/.configs/objdb", reload=True, system_obj=True) == {}
    assert db.ls("/", system=True) == [".configs/", "empty-folder/", "foo/", "hello-world/", "mytest/"]


def test_third_party_backend_passes_the_conformance_suite(fresh_venv: Any) -> None:
    fresh_venv.install("kydb-core[testing]", "kydb-dirstore", "pytest", "numpy")
    tests = ROOT / "examples" / "third_party_backend" / "tests"
    result = fresh_venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests), cwd=tests)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert passed >= 130 and "failed" not in summary and "skipped" not in summary, summary
