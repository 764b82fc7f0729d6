"""Stored Python objects (DbObj): the config, the stored form, classes that move between modules.

The behaviour checked here is section 7 of ``docs/contract.md``.
"""

from __future__ import annotations

from typing import Any

import pytest

import kydb
from kydb import envelope

from ..objects import OBJDB_CONFIG
from .fixtures import StoreFixtures

__all__ = ["DbObjTests"]


class DbObjTests(StoreFixtures):
    """Stored Python objects (contract §7)."""

    def test_walkthrough_greeter(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        key = "/hello-world/greeter001"
        greeter = db.new("Greeter", key)
        assert greeter.name() == "John" and greeter.greet() == "Hello John"
        greeter = db.new("Greeter", key, name="Tony")
        assert greeter.greet() == "Hello Tony"
        greeter.name.setvalue("Jane")
        assert greeter.name() == "Jane" and greeter.greet() == "Hello Jane"
        greeter.name.clear()
        assert greeter.name() == "John"
        greeter = db.new("Greeter", key, name="Mary")
        greeter.greet()
        assert greeter.greet_count == 1
        assert greeter.get_stored_dict() == {"name": "Mary"}
        assert (greeter.db, greeter.key, greeter.class_name) == (db, key, "Greeter")
        assert not db.exists(key)  # new() does not write
        greeter.write()
        mary = db[key]
        assert mary is greeter and mary.greet_count == 1
        mary = db.read(key, reload=True)
        assert mary.greet_count == 0 and mary.name() == "Mary"
        assert (mary.db, mary.key, mary.class_name) == (db, key, "Greeter")
        mary.delete()
        assert not db.exists(key)

    def test_stored_form_holds_no_pickled_class(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        db.new("Greeter", "/g", name="Mary").write()
        blob = self.raw_get(db, self.full_path(db, "/g"))
        assert blob is not None
        assert b"kydb.walkthrough" not in blob  # the record names the class; it does not pickle it
        record = envelope.decode(blob, "/g")
        assert record == envelope.DbObjRecord("Greeter", "/g", {"name": "Mary"})

    def test_classes_can_move_between_modules(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        db.new("Greeter", "/g", name="Tony").write()
        db.upload_objdb_config({"Greeter": {"module_path": "kydb.testing.objects", "class_name": "RenamedGreeter"}})
        moved = db.read("/g", reload=True)
        assert type(moved).__name__ == "RenamedGreeter"
        assert moved.greet() == "Hi Tony" and moved.class_name == "Greeter"

    def test_unknown_class_is_key_error(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        with pytest.raises(KeyError) as info:
            db.new("NoSuchClass", "/x")
        assert "NoSuchClass" in str(info.value)
        assert not db.exists("/x")

    def test_missing_config_is_dbobj_exception(self, db: kydb.DB) -> None:
        with pytest.raises(kydb.DbObjException) as info:
            db.new("Greeter", "/x")
        assert "/.configs/objdb" in str(info.value)

    @pytest.mark.parametrize(
        "config",
        [
            {"Greeter": "kydb.testing.objects.Greeter"},
            {"Greeter": {"module_path": "kydb.testing.objects"}},
            {"Greeter": {"module_path": 1, "class_name": "Greeter"}},
            ["Greeter"],
        ],
    )
    def test_malformed_config_is_rejected_before_writing(self, db: kydb.DB, config: Any) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        with pytest.raises(kydb.DbObjException):
            db.upload_objdb_config(config)
        assert db.read("/.configs/objdb", reload=True, system_obj=True) == OBJDB_CONFIG

    def test_malformed_stored_config_entry_is_dbobj_exception(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        db.new("Greeter", "/g").write()
        db.set("/.configs/objdb", {"Greeter": {"module_path": "no.such.module", "class_name": "G"}}, system_obj=True)
        with pytest.raises(kydb.DbObjException) as info:
            db.read("/g", reload=True)
        assert "no.such.module" in str(info.value)
        db.set("/.configs/objdb", {"Greeter": "broken"}, system_obj=True)
        with pytest.raises(kydb.DbObjException):
            db.new("Greeter", "/h")
        db.set("/.configs/objdb", {}, system_obj=True)
        with pytest.raises(kydb.DbObjException) as info2:
            db.read("/g", reload=True)
        assert not isinstance(info2.value, KeyError)

    def test_new_rejects_unknown_stored_attributes(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        with pytest.raises(TypeError):
            db.new("Greeter", "/g", nickname="T")
