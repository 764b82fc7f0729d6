"""Fixtures for kydb-core's own tests."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import kydb
from kydb import registry
from kydb_memory import MemoryStore

FakeDist = Callable[..., None]


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDist]:
    """Make an installed distribution appear: metadata, entry points and modules on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    added_modules: list[str] = []

    def make(name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str] | None = None) -> None:
        info = site / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        sections = [f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for g, eps in entry_points.items()]
        (info / "entry_points.txt").write_text("".join(sections))
        for module, source in (modules or {}).items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
            added_modules.append(module)
        registry.refresh()

    yield make
    for module in added_modules:
        sys.modules.pop(module, None)
    registry.refresh()


class PasswordMemoryStore(MemoryStore):
    """memory:// under another scheme, whose URLs may carry credentials like a network backend's."""


@pytest.fixture
def password_scheme() -> Iterator[str]:
    """A scheme serving in-process stores whose URLs carry a user and password (``pwmem://user:pw@name``)."""
    kydb.register_backend("pwmem", PasswordMemoryStore)
    yield "pwmem"
    kydb.unregister_backend("pwmem")
