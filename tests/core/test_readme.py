"""The README's two commands work on a machine whose Python refuses system-wide installs (PEP 668)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def two_commands() -> tuple[str, str]:
    """The README's demo command and test command, as a user copies them."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Two commands\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    demo, tests = (line for line in block.splitlines() if line.strip() and not line.startswith("#"))
    return demo, tests


def test_the_two_commands_install_into_a_virtual_environment_only() -> None:
    demo, tests = two_commands()
    assert demo.endswith(" -s demo") and tests.endswith("nox")
    for command in (demo, tests):
        first, *rest = (step.strip() for step in command.split("&&"))
        assert first == "python3 -m venv .venv"  # the standard library's venv: no system-wide pip install
        assert rest and all(step.startswith(".venv/bin/") for step in rest), command
        assert any(step.startswith(".venv/bin/pip install nox") for step in rest)
        for escape_hatch in ("sudo", "--break-system-packages", "--user", "python3 -m pip"):
            assert escape_hatch not in command


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    _, tests = two_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in ci
    assert not [line for line in ci if "python3 -m pip" in line]  # nothing else goes into the system Python


def test_the_commands_first_step_makes_an_environment_pip_can_install_into(tmp_path: Path) -> None:
    # Up to the first install, run as written (the install itself needs the network): the .venv it makes
    # is a virtual environment with its own pip, so nothing is installed into the Python that made it.
    _, tests = two_commands()
    first = tests.split("&&")[0].strip().replace("python3", sys.executable, 1)
    subprocess.run(first, shell=True, cwd=tmp_path, check=True)
    probe = subprocess.run(
        [str(tmp_path / ".venv" / "bin" / "pip"), "--version"], capture_output=True, text=True, check=True
    )
    assert str(tmp_path / ".venv") in probe.stdout
    prefix = subprocess.run(
        [str(tmp_path / ".venv" / "bin" / "python"), "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
        capture_output=True, text=True, check=True,
    )
    assert prefix.stdout.strip() == "True"
