"""Installed entry points, read straight from the distributions' metadata files.

``importlib.metadata`` finds entry points too, but importing it costs about
half of what ``import kydb; kydb.connect('memory://x')`` imports (it brings
in ``email``, ``zipfile`` and more).  Every installer writes an
``entry_points.txt`` into each distribution's ``*.dist-info`` (or
``*.egg-info``) directory on ``sys.path``; this module reads those directly,
and falls back to ``importlib.metadata`` when ``sys.path`` holds something
it does not read itself (a zip file).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple

__all__ = ["EntryPoint", "entry_points"]

_SUFFIXES = (".dist-info", ".egg-info")


class EntryPoint(NamedTuple):
    """One entry point: its ``name = module:attr`` line, and the distribution that declared it."""

    name: str
    value: str
    distribution: str
    version: str

    def load(self) -> Any:
        """Import the module and return the object the entry point names."""
        module, _, attrs = self.value.partition(":")
        found: Any = importlib.import_module(module.strip())
        for attr in filter(None, attrs.strip().split(".")):
            found = getattr(found, attr)
        return found


def _name_and_version(info_dir: str) -> tuple[str, str]:
    """The distribution's ``Name`` and ``Version``, from the headers of its metadata."""
    headers: dict[str, str] = {}
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(info_dir, filename), encoding="utf-8") as file:
                for line in file:
                    if not line.strip():  # the headers end at the first blank line
                        break
                    field, _, value = line.partition(":")
                    if field in ("Name", "Version"):
                        headers.setdefault(field, value.strip())
        except OSError:
            continue
        break
    return headers.get("Name", "<unknown distribution>"), headers.get("Version", "?")


def _read_group(path: str, group: str) -> list[tuple[str, str]]:
    """``(name, value)`` of each entry point of ``group`` in one ``entry_points.txt``."""
    found = []
    section = None
    try:
        with open(path, encoding="utf-8") as file:
            for raw in file:
                line = raw.strip()
                if not line or line[0] in "#;":
                    continue
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1].strip()
                elif section == group and "=" in line:
                    name, _, value = line.partition("=")
                    found.append((name.strip(), value.strip()))
    except OSError:
        return []
    return found


def _scan(group: str) -> Iterator[EntryPoint] | None:
    """The group's entry points from every ``sys.path`` directory; None if a path entry is not a directory."""
    points: list[EntryPoint] = []
    for entry in sys.path:
        folder = entry or "."
        if os.path.isfile(folder):
            return None  # a zip file on sys.path: importlib.metadata knows how to read it
        try:
            with os.scandir(folder) as listing:
                infos = sorted(e.name for e in listing if e.name.endswith(_SUFFIXES))
        except OSError:
            continue
        for info in infos:
            found = _read_group(os.path.join(folder, info, "entry_points.txt"), group)
            if not found:
                continue
            distribution, version = _name_and_version(os.path.join(folder, info))
            points.extend(EntryPoint(n, v, distribution, version) for n, v in found)
    return iter(points)


def entry_points(group: str) -> list[EntryPoint]:
    """Every installed entry point of ``group`` (duplicates of one distribution included)."""
    scanned = _scan(group)
    if scanned is not None:
        return list(scanned)
    from importlib import metadata  # noqa: PLC0415 - only for what the direct scan cannot read

    found = []
    for ep in metadata.entry_points(group=group):
        name, version = (str(ep.dist.metadata["Name"]), ep.dist.version) if ep.dist else ("<unknown distribution>", "?")
        found.append(EntryPoint(ep.name, ep.value, name, version))
    return found
