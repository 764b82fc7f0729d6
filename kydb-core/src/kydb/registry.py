"""Which backend serves a URL scheme, and which middleware plugins are installed.

Backends register each scheme they serve as an entry point in the
``kydb.schemes`` group (name = scheme, value = ``module:StoreClass``).
:func:`backend_class` looks up only the scheme it is asked for and imports
only that backend, so ``import kydb`` stays light.  In-process registrations
(:func:`register_backend`) are consulted first, then installed entry points.

A scheme claimed by two distributions is a :class:`~kydb.BackendConflict`
naming both — never a silent override.  A backend whose import fails raises
that ``ImportError`` (with the distribution named), never "not installed".

Middleware plugins register in the ``kydb.plugins`` group; each entry point
is a plugin factory called once per connected store (see
:func:`middleware_factories`).  ``KYDB_DISABLE_PLUGINS`` (comma-separated
entry point names) blocks some of them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .entrypoints import EntryPoint, entry_points
from .errors import BackendConflict, UnknownScheme
from .url import mask_url

__all__ = [
    "PLUGIN_GROUP",
    "SCHEME_GROUP",
    "WELL_KNOWN_SCHEMES",
    "BackendInfo",
    "backend_class",
    "backends",
    "default_url",
    "install_command",
    "middleware_factories",
    "refresh",
    "register_backend",
    "unregister_backend",
]

SCHEME_GROUP = "kydb.schemes"
PLUGIN_GROUP = "kydb.plugins"

#: Schemes served by kydb's own distributions, and what to install for each (with the extra a driver needs).
WELL_KNOWN_SCHEMES = {
    "memory": "kydb-memory",
    "redis": "kydb-redis",
    "rediss": "kydb-redis",
    "s3": "kydb-s3",
    "dynamodb": "kydb-dynamodb",
    "sqlite": "kydb-sql",
    "postgresql": "kydb-sql[postgresql]",
    "mysql": "kydb-sql[mysql]",
    "mariadb": "kydb-sql[mysql]",
    "file": "kydb-files",
    "files": "kydb-files",
    "fsspec": "kydb-fsspec",
    "http": "kydb-fsspec",
    "https": "kydb-fsspec",
}


def install_command(scheme: str) -> str | None:
    """``pip install ...`` for a scheme one of kydb's own distributions serves, else None."""
    requirement = WELL_KNOWN_SCHEMES.get(scheme)
    if requirement is None:
        return None
    return f"pip install '{requirement}'" if "[" in requirement else f"pip install {requirement}"


PluginFactory = Callable[..., Any]


@dataclass(frozen=True)
class BackendInfo:
    """One installed scheme: the class serving it and where it comes from."""

    scheme: str
    target: str
    distribution: str
    version: str


_lock = threading.RLock()
_in_process: dict[str, type[Any]] = {}
_loaded: dict[str, type[Any]] = {}
_middleware: list[tuple[str, PluginFactory]] | None = None
_groups: dict[str, list[EntryPoint]] = {}


def _entry_points(group: str, name: str | None = None) -> list[EntryPoint]:
    """The group's entry points (those named ``name``), read once per process (:func:`refresh` rereads)."""
    with _lock:
        if group not in _groups:
            _groups[group] = list(entry_points(group=group))  # one scan of every distribution's metadata
        found = _groups[group]
    return found if name is None else [ep for ep in found if ep.name == name]


def _dist_of(ep: EntryPoint) -> tuple[str, str]:
    return ep.distribution, ep.version


def _unique(eps: list[EntryPoint], what: str) -> EntryPoint | None:
    """The one entry point among ``eps``; duplicates of one distribution collapse."""
    seen: dict[tuple[str, str], EntryPoint] = {}
    for ep in eps:
        seen.setdefault((_dist_of(ep)[0], ep.value), ep)
    if len(seen) > 1:
        claims = ", ".join(f"{dist} ({value})" for dist, value in sorted(seen))
        raise BackendConflict(
            f"{what} is claimed by more than one installed distribution: {claims}. Uninstall all but one of them."
        )
    return next(iter(seen.values()), None)


def register_backend(scheme: str, cls: type[Any], *, replace: bool = False) -> None:
    """Register ``cls`` for ``scheme`` in this process (tests, notebooks).

    Raises :class:`~kydb.BackendConflict` if the scheme is already served —
    registered here or by an installed distribution — unless ``replace``.
    """
    scheme = scheme.lower()
    with _lock:
        if not replace:
            taken = _in_process.get(scheme)
            if taken is not None:
                raise BackendConflict(
                    f"scheme {scheme!r} is already registered to {taken.__module__}.{taken.__qualname__}; "
                    "pass replace=True to override it"
                )
            ep = _unique(_entry_points(SCHEME_GROUP, scheme), f"scheme {scheme!r}")
            if ep is not None:
                raise BackendConflict(
                    f"scheme {scheme!r} is already served by {_dist_of(ep)[0]} ({ep.value}); "
                    "pass replace=True to override it"
                )
        _in_process[scheme] = cls
        _loaded.pop(scheme, None)


def refresh() -> None:
    """Forget what was looked up, so distributions installed since are found."""
    global _middleware
    with _lock:
        _loaded.clear()
        _groups.clear()
        _middleware = None


def unregister_backend(scheme: str) -> None:
    """Undo :func:`register_backend` (a no-op if ``scheme`` was not registered here)."""
    with _lock:
        _in_process.pop(scheme.lower(), None)
        _loaded.pop(scheme.lower(), None)


def _installed_schemes() -> list[str]:
    names = {ep.name for ep in _entry_points(SCHEME_GROUP)}
    return sorted(names | set(_in_process))


def backend_class(scheme: str, url: str = "") -> type[Any]:
    """The store class serving ``scheme`` (the part of a URL scheme before ``+``).

    Raises :class:`~kydb.UnknownScheme` listing the installed schemes, with the
    ``pip install`` command when ``scheme`` is one of kydb's own.
    """
    scheme = scheme.lower()
    with _lock:
        cls = _in_process.get(scheme) or _loaded.get(scheme)
        if cls is not None:
            return cls
        ep = _unique(_entry_points(SCHEME_GROUP, scheme), f"scheme {scheme!r}")
        if ep is None:
            installed = ", ".join(_installed_schemes()) or "none"
            where = f" in {mask_url(url)!r}" if url else ""
            hint = (
                f" The {scheme!r} scheme is served by {WELL_KNOWN_SCHEMES[scheme].split('[')[0]}: "
                f"{install_command(scheme)}"
                if scheme in WELL_KNOWN_SCHEMES
                else " Is the scheme misspelled, or its backend not installed?"
            )
            raise UnknownScheme(f"no kydb backend for scheme {scheme!r}{where}. Installed schemes: {installed}.{hint}")
        dist, version = _dist_of(ep)
        try:
            loaded = ep.load()
        except ImportError as exc:
            raise ImportError(
                f"the kydb backend for {scheme!r} ({dist} {version}, {ep.value}) is installed "
                f"but failed to import: {exc}"
            ) from exc
        if not isinstance(loaded, type):
            raise TypeError(f"entry point {scheme!r} of {dist} ({ep.value}) is not a class")
        _loaded[scheme] = loaded
        return loaded


def backends() -> list[BackendInfo]:
    """Every scheme this process can connect to, without importing any backend."""
    infos: dict[str, BackendInfo] = {}
    for ep in _entry_points(SCHEME_GROUP):
        dist, version = _dist_of(ep)
        infos[ep.name] = BackendInfo(ep.name, ep.value, dist, version)
    with _lock:
        for scheme, cls in _in_process.items():
            infos[scheme] = BackendInfo(scheme, f"{cls.__module__}:{cls.__qualname__}", "<registered in process>", "-")
    return [infos[name] for name in sorted(infos)]


def default_url() -> str:
    """The store to use when none is named: ``$KYDB_URL``, else the embedded SQLite file.

    The embedded default is ``$XDG_DATA_HOME/kydb/kydb.db`` (``~/.local/share/kydb/kydb.db``)
    and needs kydb-sql; without it, :class:`~kydb.UnknownScheme` says what to install.
    """
    url = os.environ.get("KYDB_URL", "").strip()
    if url:
        return url
    if "sqlite" not in {info.scheme for info in backends()}:
        raise UnknownScheme(
            "no store named and no embedded default: set KYDB_URL (e.g. KYDB_URL=memory://scratch), "
            "or pip install kydb-sql for the embedded SQLite store"
        )
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return "sqlite:///" + os.path.abspath(os.path.join(data_home, "kydb", "kydb.db"))


def middleware_factories() -> list[tuple[str, PluginFactory]]:
    """The installed middleware plugin factories, minus ``KYDB_DISABLE_PLUGINS``.

    Each ``kydb.plugins`` entry point loads a callable taking the
    :class:`~kydb.url.StoreURL` of the store being connected and returning a
    plugin object (an instance with ``@kydb.hookimpl`` methods) or ``None``
    to stay out of that store.  A class with such an ``__init__`` qualifies.
    """
    global _middleware
    with _lock:
        if _middleware is None:
            by_name: dict[str, list[EntryPoint]] = {}
            for ep in _entry_points(PLUGIN_GROUP):
                by_name.setdefault(ep.name, []).append(ep)
            loaded = []
            for name, candidates in sorted(by_name.items()):
                chosen = _unique(candidates, f"kydb plugin {name!r}")
                if chosen is not None:
                    loaded.append((name, chosen.load()))
            _middleware = loaded
        disabled = {n.strip() for n in os.environ.get("KYDB_DISABLE_PLUGINS", "").split(",") if n.strip()}
        return [(name, factory) for name, factory in _middleware if name not in disabled]
