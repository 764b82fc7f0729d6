"""Backend discovery through entry points (kydb.registry)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pluggy
import pytest

import kydb
from kydb import registry
from kydb.url import StoreURL

FakeDist = Callable[..., None]


DICT_STORE = """
import kydb

class Store:
    def __init__(self, url):
        self.url = url
        self.objects = {}

    @kydb.hookimpl
    def kydb_get(self, paths):
        return {p: self.objects[p] for p in paths if p in self.objects}

    @kydb.hookimpl
    def kydb_put(self, items):
        self.objects.update(items)

    @kydb.hookimpl
    def kydb_delete(self, paths):
        for p in paths:
            self.objects.pop(p, None)

    @kydb.hookimpl
    def kydb_list(self, folder, include_dirs, page_size, cursor):
        return kydb.ListPage([], None)

    @kydb.hookimpl
    def kydb_mkdir(self, folder):
        pass

    @kydb.hookimpl
    def kydb_rmdir(self, folder):
        pass

    @kydb.hookimpl
    def kydb_is_dir(self, folder):
        return False
"""


def test_unknown_well_known_scheme_names_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = [ep for ep in registry._entry_points(registry.SCHEME_GROUP) if ep.name != "s3"]
    monkeypatch.setitem(registry._groups, registry.SCHEME_GROUP, installed)  # as if kydb-s3 were not installed
    monkeypatch.delitem(registry._loaded, "s3", raising=False)
    with pytest.raises(kydb.UnknownScheme) as info:
        kydb.connect("s3://user:secret@bucket/x")
    message = str(info.value)
    assert "pip install kydb-s3" in message
    assert "Installed schemes:" in message and "memory" in message
    assert "secret" not in message
    assert isinstance(info.value, ValueError)


def test_unknown_other_scheme_says_misspelled_or_not_installed() -> None:
    with pytest.raises(kydb.UnknownScheme, match="misspelled"):
        kydb.connect("memroy://x")


def test_scheme_is_found_through_its_entry_point(fake_dist: FakeDist) -> None:
    fake_dist("kydb-fakestore", {"kydb.schemes": {"fake": "fake_store:Store"}}, {"fake_store": DICT_STORE})
    db = kydb.connect("fake://somewhere/base")
    db["/k"] = 1
    assert db.read("/k", reload=True) == 1
    assert type(db.store).__module__ == "fake_store"
    info = {b.scheme: b for b in kydb.backends()}["fake"]
    assert (info.target, info.distribution, info.version) == ("fake_store:Store", "kydb-fakestore", "1.0")


def test_backends_lists_without_importing(fake_dist: FakeDist) -> None:
    import sys

    fake_dist("kydb-lazy", {"kydb.schemes": {"lazy": "lazy_store:Store"}}, {"lazy_store": DICT_STORE})
    assert "lazy" in [b.scheme for b in kydb.backends()]
    assert "lazy_store" not in sys.modules
    assert "memory" in [b.scheme for b in kydb.backends()]


def test_two_distributions_claiming_a_scheme_is_an_error(fake_dist: FakeDist) -> None:
    fake_dist("kydb-one", {"kydb.schemes": {"clash": "one:Store"}}, {"one": DICT_STORE})
    fake_dist("kydb-two", {"kydb.schemes": {"clash": "two:Store"}}, {"two": DICT_STORE})
    with pytest.raises(kydb.BackendConflict) as info:
        kydb.connect("clash://x")
    assert "kydb-one" in str(info.value) and "kydb-two" in str(info.value)


def test_backend_that_fails_to_import_is_not_reported_as_missing(fake_dist: FakeDist) -> None:
    fake_dist("kydb-broken", {"kydb.schemes": {"broken": "broken_store:Store"}},
              {"broken_store": "import no_such_dependency_xyz\n"})
    with pytest.raises(ImportError) as info:
        kydb.connect("broken://x")
    assert not isinstance(info.value, kydb.UnknownScheme)
    assert "kydb-broken" in str(info.value) and "no_such_dependency_xyz" in str(info.value)


def test_missing_required_hooks_fail_at_connect(fake_dist: FakeDist) -> None:
    partial = DICT_STORE.replace("    @kydb.hookimpl\n    def kydb_rmdir", "    def kydb_rmdir")
    fake_dist("kydb-partial", {"kydb.schemes": {"partial": "partial_store:Store"}}, {"partial_store": partial})
    with pytest.raises(TypeError, match="kydb_rmdir"):
        kydb.connect("partial://x")


def test_misspelled_hook_fails_at_connect(fake_dist: FakeDist) -> None:
    typo = DICT_STORE + "\n    @kydb.hookimpl\n    def kydb_gett(self, paths):\n        return {}\n"
    fake_dist("kydb-typo", {"kydb.schemes": {"typo": "typo_store:Store"}}, {"typo_store": typo})
    with pytest.raises(pluggy.PluginValidationError, match="kydb_gett"):
        kydb.connect("typo://x")


class _Store:
    url_path_is_base = True

    def __init__(self, url: StoreURL) -> None:
        self.url = url


@pytest.fixture
def registered() -> Iterator[type[Any]]:
    yield _Store
    kydb.unregister_backend("inproc")


def test_register_backend_in_process(registered: type[Any]) -> None:
    kydb.register_backend("inproc", registered)
    assert {b.scheme: b for b in kydb.backends()}["inproc"].distribution == "<registered in process>"
    with pytest.raises(kydb.BackendConflict, match="replace=True"):
        kydb.register_backend("inproc", registered)
    kydb.register_backend("inproc", registered, replace=True)


def test_register_backend_refuses_to_shadow_an_installed_scheme() -> None:
    with pytest.raises(kydb.BackendConflict, match="kydb-memory"):
        kydb.register_backend("memory", _Store)


def test_default_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYDB_URL", " memory://from-env ")
    assert kydb.default_url() == "memory://from-env"


def test_default_url_without_an_embedded_backend_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KYDB_URL", raising=False)
    if "sqlite" in {b.scheme for b in kydb.backends()}:
        monkeypatch.setenv("XDG_DATA_HOME", "/data")
        assert kydb.default_url() == "sqlite:////data/kydb/kydb.db"
    else:
        with pytest.raises(kydb.UnknownScheme, match="pip install kydb-sql"):
            kydb.default_url()


def test_the_install_hint_names_the_extra_a_driver_needs() -> None:
    assert kydb.registry.install_command("postgresql") == "pip install 'kydb-sql[postgresql]'"
    assert kydb.registry.install_command("mariadb") == "pip install 'kydb-sql[mysql]'"
    assert kydb.registry.install_command("sqlite") == "pip install kydb-sql"
    assert kydb.registry.install_command("nosuch") is None
    if "postgresql" not in {b.scheme for b in kydb.backends()}:  # the core session installs no SQL backend
        with pytest.raises(kydb.UnknownScheme, match=r"served by kydb-sql: pip install 'kydb-sql\[postgresql\]'"):
            kydb.connect("postgresql://u@host/db")
