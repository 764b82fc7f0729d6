"""Middleware for tests: count hook calls, or make hooks fail like a broken network.

Register one on a single store's plugin manager::

    with count_calls(db) as calls:
        db.ls('/books')
    assert calls['kydb_list'] == 1
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from .. import hookspecs
from ..compose import CacheDB, UnionDB
from ..db import DB
from ..errors import StoreUnavailable
from ..front import BaseDB
from ..hookspecs import hookimpl

__all__ = ["HOOK_NAMES", "CallCounter", "FailOn", "count_calls", "failing"]

#: Every hook of the storage contract.
HOOK_NAMES = tuple(sorted(hookspecs.REQUIRED_HOOKS + hookspecs.OPTIONAL_HOOKS))


def _counting(name: str) -> Callable[..., Generator[None, Any, Any]]:
    @hookimpl(wrapper=True, specname=name)
    def wrapper(self: CallCounter) -> Generator[None, Any, Any]:
        self.calls[name] += 1
        return (yield)

    return wrapper


def _failing(name: str) -> Callable[..., Generator[None, Any, Any]]:
    @hookimpl(wrapper=True, specname=name)
    def wrapper(self: FailOn) -> Generator[None, Any, Any]:
        if name in self.hooks and self.remaining != 0:
            self.remaining -= 1
            raise self.error(f"injected failure in {name}")
        return (yield)

    return wrapper


class CallCounter:
    """Counts every hook call (including calls the core defaults make to other hooks)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()


class FailOn:
    """Raises ``error`` from the named hooks, before the store is called.

    ``times`` limits how many calls fail (``-1``: every call).
    """

    def __init__(
        self, hooks: Iterable[str], error: Callable[[str], BaseException] = StoreUnavailable, times: int = -1
    ) -> None:
        unknown = set(hooks) - set(HOOK_NAMES)
        if unknown:
            raise ValueError(f"no such hooks: {sorted(unknown)}")
        self.hooks = frozenset(hooks)
        self.error = error
        self.remaining = times


for _name in HOOK_NAMES:
    setattr(CallCounter, _name, _counting(_name))
    setattr(FailOn, _name, _failing(_name))


def _single_stores(db: BaseDB) -> list[DB]:
    if isinstance(db, DB):
        return [db]
    layers = db.dbs if isinstance(db, UnionDB) else (db.cache_db, db.persist_db) if isinstance(db, CacheDB) else ()
    return [store for layer in layers for store in _single_stores(layer)]


@contextmanager
def count_calls(db: BaseDB) -> Iterator[Counter[str]]:
    """Count hook calls made by ``db`` (every store of a composite) inside the block."""
    counter = CallCounter()
    stores = _single_stores(db)
    for store in stores:
        store.plugins.register(counter, name=f"count-calls-{id(counter)}")
    try:
        yield counter.calls
    finally:
        for store in stores:
            store.plugins.unregister(counter, name=f"count-calls-{id(counter)}")


@contextmanager
def failing(db: DB, *hooks: str, error: Callable[[str], BaseException] = StoreUnavailable) -> Iterator[FailOn]:
    """Make the named hooks of one store raise ``error`` inside the block."""
    plugin = FailOn(hooks, error)
    db.plugins.register(plugin)
    try:
        yield plugin
    finally:
        db.plugins.unregister(plugin)
