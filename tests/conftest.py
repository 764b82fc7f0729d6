"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of kydb's distributions, the example backend and their dependencies.

    Built once per test session from the checkout; fresh virtual
    environments install from here with ``--no-index``.
    """
    target = tmp_path_factory.mktemp("wheelhouse")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(target),
         str(ROOT / "kydb-core"), str(ROOT / "kydb-memory"), str(ROOT / "examples" / "third_party_backend"),
         "pytest", "numpy"],
        check=True,
    )
    return target


class FreshVenv:
    """A new virtual environment that installs only from the wheelhouse."""

    def __init__(self, path: Path, wheelhouse: Path) -> None:
        venv.EnvBuilder(with_pip=True).create(path)
        self.python = path / ("Scripts" if os.name == "nt" else "bin") / "python"
        self.wheelhouse = wheelhouse

    def install(self, *requirements: str) -> None:
        subprocess.run(
            [str(self.python), "-m", "pip", "install", "--quiet", "--no-index",
             "--find-links", str(self.wheelhouse), *requirements],
            check=True,
        )

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.python), *args], capture_output=True, text=True, cwd=cwd, check=False)


@pytest.fixture
def fresh_venv(tmp_path: Path, wheelhouse: Path) -> FreshVenv:
    """A new, empty virtual environment (Python + pip) that installs from the wheelhouse."""
    return FreshVenv(tmp_path / "venv", wheelhouse)
