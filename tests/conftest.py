"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kydb.testing.faults import FaultScenario, fault_table

ROOT = Path(__file__).resolve().parent.parent

#: With KYDB_REQUIRE_SERVICES set (CI sets it), a missing server fails instead of skipping.
REQUIRE_SERVICES = bool(os.environ.get("KYDB_REQUIRE_SERVICES"))


@pytest.fixture(scope="session")
def require_services() -> bool:
    """True when a missing Redis/PostgreSQL/MariaDB must fail the run rather than skip or fall back."""
    return REQUIRE_SERVICES


def service_missing(name: str, why: str) -> None:
    """Fail (KYDB_REQUIRE_SERVICES) or skip because ``name`` is unreachable."""
    message = f"{name} is not reachable ({why})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and KYDB_REQUIRE_SERVICES is set", pytrace=False)
    pytest.skip(f"{message}; set KYDB_REQUIRE_SERVICES=1 to make this a failure")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """With KYDB_REQUIRE_SERVICES, a skipped test is a failure: CI must not pass by running less."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_SERVICES and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped while KYDB_REQUIRE_SERVICES is set: {reason}"


@pytest.fixture(scope="session")
def skip_or_fail_missing_service() -> Callable[[str, str], None]:
    """``skip_or_fail_missing_service(name, why)``: see :func:`service_missing`."""
    return service_missing


_FAULT_SCENARIOS = pytest.StashKey[list[FaultScenario]]()


@pytest.fixture(scope="session")
def fault_scenario(pytestconfig: pytest.Config) -> Callable[[str, str], FaultScenario]:
    """``fault_scenario(backend, fault)``: a new row of the fault matrix printed at the end of the run."""
    scenarios = pytestconfig.stash.setdefault(_FAULT_SCENARIOS, [])

    def start(backend: str, fault: str) -> FaultScenario:
        scenario = FaultScenario(backend, fault)
        scenarios.append(scenario)
        return scenario

    return start


_MODEL_RUNS = pytest.StashKey[list[tuple[str, Counter[str]]]]()


@pytest.fixture(scope="session")
def model_report(pytestconfig: pytest.Config) -> Callable[[str, Counter[str]], None]:
    """``model_report(target, stats)``: list a model check's statistics at the end of the run."""
    runs = pytestconfig.stash.setdefault(_MODEL_RUNS, [])
    return lambda target, stats: runs.append((target, stats))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print the fault matrix (one row per fault scenario, whatever the backend) and the model checks' statistics."""
    scenarios = config.stash.get(_FAULT_SCENARIOS, [])
    if scenarios:
        terminalreporter.section("fault matrix")
        for line in fault_table(scenarios):
            terminalreporter.write_line(line)
    runs = config.stash.get(_MODEL_RUNS, [])
    if runs:
        terminalreporter.section("model check: examples, operations, and each operation's outcomes")
        for target, stats in runs:
            outcomes = {name: count for name, count in sorted(stats.items()) if name != "examples"}
            terminalreporter.write_line(
                f"{target}: {stats['examples']} examples, {sum(outcomes.values())} operations; "
                + ", ".join(f"{name} {count}" for name, count in outcomes.items())
            )


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


def _run_walkthrough(url: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "walkthrough.py"), url],
        capture_output=True, text=True, cwd=ROOT.parent, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("removed again.")
    lines = [line for line in result.stdout.splitlines() if " # " in line]
    steps = [tuple(part.strip() for part in line.split(" # ", 1)) for line in lines]
    assert steps == WALKTHROUGH_RESULTS


@pytest.fixture(scope="session")
def check_walkthrough() -> Callable[[str], None]:
    """Run examples/walkthrough.py on a URL and check every step's printed result."""
    return _run_walkthrough


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
         "pytest", "numpy", "hypothesis"],
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
