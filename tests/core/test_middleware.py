"""Middleware plugins from the ``kydb.plugins`` entry point group wrap every blob operation."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import kydb
from kydb import envelope
from kydb.testing import unique_name

FakeDist = Callable[..., None]


MIDDLEWARE = '''
import zlib
from collections import Counter

import kydb

MARK = b"ZLIB"


class Counting:
    """Counts the blob operations of every store it is attached to."""

    def __init__(self, url):
        self.calls = Counter()

    @kydb.hookimpl(wrapper=True)
    def kydb_get(self, paths):
        self.calls["get"] += len(paths)
        return (yield)

    @kydb.hookimpl(wrapper=True)
    def kydb_put(self, items):
        self.calls["put"] += len(items)
        return (yield)

    @kydb.hookimpl(wrapper=True)
    def kydb_list(self, folder):
        self.calls["list"] += 1
        return (yield)


def compressing(url):
    """Compresses every blob of the memory stores whose name starts with 'zip-'."""
    if url.backend == "memory" and url.netloc.startswith("zip-"):
        return Compressing()
    return None


class Compressing:
    @kydb.hookimpl(wrapper=True)
    def kydb_put(self, items):
        for path, blob in items.items():
            items[path] = MARK + zlib.compress(blob)
        return (yield)

    @kydb.hookimpl(wrapper=True)
    def kydb_get(self, paths):
        found = yield
        for path, blob in found.items():
            if not blob.startswith(MARK):
                raise ValueError(f"{path} was not written through the compressing middleware")
        return {path: zlib.decompress(blob[len(MARK):]) for path, blob in found.items()}
'''


@pytest.fixture
def middleware(fake_dist: FakeDist) -> None:
    fake_dist(
        "kydb-test-middleware",
        {"kydb.plugins": {"counting": "test_middleware_plugins:Counting",
                          "compressing": "test_middleware_plugins:compressing"}},
        {"test_middleware_plugins": MIDDLEWARE},
    )


def test_counting_middleware_sees_every_operation(middleware: None) -> None:
    db = kydb.connect(f"memory://{unique_name('plain')}")
    counter = db.plugins.get_plugin("counting")
    assert counter is not None
    db.set_many({"/a": 1, "/b": 2})
    db["/c"] = 3
    db.refresh()
    db.get_many(["/a", "/b", "/zzz"])
    db.ls("/")
    assert counter.calls == {"put": 3, "get": 3, "list": 1}
    assert db.plugins.get_plugin("compressing") is None  # its factory declined this store


def test_transforming_middleware_changes_stored_bytes_not_values(middleware: None) -> None:
    db = kydb.connect(f"memory://{unique_name('zip')}")
    value = {"text": "abc" * 10_000}
    db["/big"] = value
    raw = db.store.tree.objects["/big"]
    assert raw.startswith(b"ZLIB") and not raw.startswith(envelope.MAGIC)
    assert len(raw) < len(envelope.encode(value)) / 10
    db.refresh()
    assert db["/big"] == value
    db.set_many({"/x/y": 1})
    assert db.get_many(["/x/y"], reload=True) == {"/x/y": 1}
    assert db.store.tree.objects["/x/y"].startswith(b"ZLIB")
    db.rm_tree("/")  # the defaults' inner calls go through the middleware too
    assert db.ls("/") == []


def test_disabled_plugins_are_not_loaded(middleware: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYDB_DISABLE_PLUGINS", "compressing, counting")
    db = kydb.connect(f"memory://{unique_name('zip')}")
    db["/k"] = 1
    assert db.store.tree.objects["/k"].startswith(envelope.MAGIC)
    assert db.plugins.get_plugin("counting") is None


def test_plugins_registered_at_run_time_apply_to_one_store() -> None:
    from kydb.testing import CallCounter

    a = kydb.connect(f"memory://{unique_name('rt')}")
    b = kydb.connect(f"memory://{unique_name('rt')}")
    counter = CallCounter()
    a.plugins.register(counter)
    a["/k"] = 1
    b["/k"] = 1
    assert counter.calls["kydb_put"] == 1


def test_plugins_and_tracing_see_calls_whenever_they_arrive() -> None:
    """Calls go straight to the store only while nothing else is registered; every change is seen at once."""
    from kydb.testing import CallCounter

    db = kydb.connect(f"memory://{unique_name('rt')}")
    db["/before"] = 0  # dispatch is set up before the plugin arrives
    counter = CallCounter()
    db.plugins.register(counter)
    db["/k"] = 1
    assert db.read("/k", reload=True) == 1
    assert (counter.calls["kydb_put"], counter.calls["kydb_get"]) == (1, 1)
    db.plugins.unregister(counter)
    db["/k"] = 2
    assert counter.calls["kydb_put"] == 1
    traced: list[str] = []
    db.plugins.add_hookcall_monitoring(lambda name, impls, kwargs: traced.append(name), lambda *_: None)
    db["/k"] = 3
    assert db.read("/k", reload=True) == 3
    assert traced == ["kydb_put", "kydb_get"]


def test_a_connect_registers_nothing_with_pluggy_until_plugins_are_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registering a store's hooks with pluggy cost milliseconds per connect: a DB without middleware skips it."""
    import pluggy

    registered: list[object] = []
    register = pluggy.PluginManager.register

    def counting(self: pluggy.PluginManager, plugin: object, name: str | None = None) -> str | None:
        registered.append(plugin)
        return register(self, plugin, name)

    monkeypatch.setattr(pluggy.PluginManager, "register", counting)
    name = unique_name("lazy")
    dbs = [kydb.connect(f"memory://{name}/base{i}") for i in range(100)]
    for i, db in enumerate(dbs):
        db["/k"] = i
        assert db.read("/k", reload=True) == i and db.exists("/k") and db.ls("/") == ["k"]
    assert registered == []
    from kydb.testing import CallCounter

    counter = CallCounter()
    dbs[0].plugins.register(counter)  # the manager is made now: the store, the defaults, then the counter
    assert registered[0] is dbs[0].store and registered[-1] is counter
    dbs[0]["/k"] = "counted"
    assert counter.calls["kydb_put"] == 1 and dbs[1].read("/k", reload=True) == 1


class _SpecnameStore(kydb.Store):
    """A store implementing one hook under another name, and one as a wrapper: served through pluggy."""

    def __init__(self, url: object) -> None:
        self.data: dict[str, bytes] = {}
        self.folders = {"/"}
        self.wrapped = 0
        self.asked = 0

    def kydb_get(self, paths: list[str]) -> dict[str, bytes]:
        return {p: self.data[p] for p in paths if p in self.data}

    def kydb_put(self, items: dict[str, bytes], mtime_ns: int, indexes: object, expect: object) -> None:
        self.data.update(items)
        for path in items:
            parts = path.split("/")[1:-1]
            self.folders.update("/" + "/".join(parts[:i]) + "/" if i else "/" for i in range(len(parts) + 1))

    def kydb_delete(self, paths: list[str], expect: object) -> None:
        for path in paths:
            self.data.pop(path, None)

    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        names = {p[len(folder) :].split("/")[0] for p in self.data if p.startswith(folder)}
        return kydb.ListPage(sorted(names), None)

    def kydb_mkdir(self, folder: str) -> None:
        self.folders.add(folder)

    def kydb_rmdir(self, folder: str) -> None:
        self.folders.discard(folder)

    def kydb_is_dir(self, folder: str) -> bool:
        return folder in self.folders

    @kydb.hookimpl(specname="kydb_exists")
    def has(self, path: str) -> bool:
        self.asked += 1
        return path in self.data

    @kydb.hookimpl(wrapper=True)
    def kydb_stat(self, paths: list[str]) -> object:
        self.wrapped += 1
        return (yield)  # the default's answer


def test_stores_with_wrappers_or_specnames_are_served_through_pluggy() -> None:
    kydb.register_backend("specnamemem", _SpecnameStore)
    try:
        db = kydb.connect(f"specnamemem://{unique_name('spec')}")
        db["/a/b"] = 1
        assert db.exists("/a/b") and not db.exists("/a/c") and db.store.asked == 2
        assert db.stat("/a/b").size > 0 and db.store.wrapped == 1
        db.close()
    finally:
        kydb.unregister_backend("specnamemem")
