"""DbObj and @kydb.stored details."""

from __future__ import annotations

import kydb


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
