"""DbObj and @kydb.stored details."""

from __future__ import annotations

import threading

import pytest

import kydb
from kydb.testing import unique_name


class Base(kydb.DbObj):
    @kydb.stored
    def colour(self) -> str:
        return "red"

    @kydb.stored
    def size(self) -> int:
        return 1


class Child(Base):
    @kydb.stored
    def size(self) -> int:  # a new default for an inherited stored attribute
        return 2

    @kydb.stored
    def extra(self) -> list[int]:
        return []


class Plain(Base):
    colour = "not stored any more"  # type: ignore[assignment]


def test_stored_attributes_are_inherited_and_overridable() -> None:
    assert Child._stored_names == ("colour", "size", "extra")
    obj = Child(None, "Child", "/c")
    assert obj.get_stored_dict() == {"colour": "red", "size": 2, "extra": []}
    assert Plain._stored_names == ("size",)


def test_stored_value_set_clear_and_explicit_none() -> None:
    obj = Base(None, "Base", "/b", colour=None)
    assert obj.colour() is None  # an explicit None is a value, not "use the default"
    obj.colour.clear()
    assert obj.colour() == "red"
    obj.size.setvalue(5)
    assert obj.get_stored_dict() == {"colour": "red", "size": 5}
    assert isinstance(Base.colour, kydb.stored)
    assert "size=5" in repr(obj.size)


def test_defaults_are_fresh_per_object() -> None:
    a, b = Child(None, "Child", "/a"), Child(None, "Child", "/b")
    a.extra().append(1)  # a default is evaluated once per object and can be filled in place
    assert a.extra() == [1] and a.get_stored_dict()["extra"] == [1]
    assert b.extra() == []


def test_assigning_a_stored_attribute_is_refused_and_points_to_setvalue() -> None:
    obj = Base(None, "Base", "/b")
    with pytest.raises(AttributeError) as info:
        obj.colour = "blue"
    assert "colour" in str(info.value) and "setvalue" in str(info.value)
    assert obj.colour() == "red"  # the stored attribute is intact ...
    assert obj.get_stored_dict() == {"colour": "red", "size": 1}  # ... and so is the stored dict
    obj.colour.setvalue("blue")
    assert obj.get_stored_dict() == {"colour": "blue", "size": 1}
    with pytest.raises(AttributeError) as info:
        del obj.size
    assert "size" in str(info.value) and "clear()" in str(info.value)
    assert obj.size() == 1


def test_new_of_a_class_missing_from_the_config_is_not_a_missing_key() -> None:
    db = kydb.connect(f"memory://{unique_name('dbobj')}")
    db.upload_objdb_config({"Greeter": {"module_path": "kydb.walkthrough", "class_name": "Greeter"}})
    with pytest.raises(kydb.UnknownClass) as info:
        db.new("Nope", "/x")
    assert isinstance(info.value, KeyError) and isinstance(info.value, kydb.DbObjException)
    assert not isinstance(info.value, kydb.NotFound)
    assert "'Nope'" in str(info.value) and "/.configs/objdb" in str(info.value) and "Greeter" in str(info.value)
    assert db.get("/x", "default") == "default"  # the key itself is still simply absent


def test_storing_an_unpicklable_value_names_the_key_and_the_type() -> None:
    db = kydb.connect(f"memory://{unique_name('dbobj')}")
    for value in (lambda: 1, threading.Lock()):
        with pytest.raises(kydb.UnstorableValue) as info:
            db["/books/bad"] = value
        assert isinstance(info.value, TypeError) and isinstance(info.value, kydb.KydbError)
        assert "/books/bad" in str(info.value) and type(value).__name__ in str(info.value)
    assert not db.exists("/books/bad")
