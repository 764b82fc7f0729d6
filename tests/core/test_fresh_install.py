"""``pip install kydb-core`` alone knows no backend; installing kydb-memory makes memory:// work."""

from __future__ import annotations

from typing import Any


def test_core_alone_then_with_memory(fresh_venv: Any) -> None:
    fresh_venv.install("kydb-core")
    attempt = "import kydb; kydb.connect('memory://x')['/k'] = 1; print(kydb.connect('memory://x')['/k'])"
    alone = fresh_venv.run("-c", attempt)
    assert alone.returncode != 0
    assert "kydb.errors.UnknownScheme" in alone.stderr
    assert "pip install kydb-memory" in alone.stderr
    assert "Installed schemes: none" in alone.stderr

    fresh_venv.install("kydb-memory")
    after = fresh_venv.run("-c", attempt)
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "1"
