"""Stored Python objects: :class:`DbObj`, the :func:`stored` decorator, the class config.

A DbObj's stored form is its config class name, its key and its stored dict
(see :mod:`kydb.envelope`).  The class is found through the config at
``/.configs/objdb``, which maps a class name to ``module_path`` +
``class_name``, so a class can move between modules without breaking the
objects already stored: update the config, not the data.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, NoReturn, TypeVar, overload

from .errors import Conflict, DbObjException, UnknownClass

__all__ = ["OBJDB_CONFIG_KEY", "DbObj", "StoredValue", "remember_stored", "stored"]

OBJDB_CONFIG_KEY = "/.configs/objdb"

T = TypeVar("T")


class StoredValue(Generic[T]):
    """A stored attribute of one object: call it for the value.

    ``obj.name()`` returns the value (the default until one is set),
    ``obj.name.setvalue(v)`` sets it, ``obj.name.clear()`` restores the default.
    """

    __slots__ = ("_attr", "_obj")

    def __init__(self, obj: DbObj, attr: stored[T]) -> None:
        self._obj = obj
        self._attr = attr

    def __call__(self) -> T:
        return self._obj._stored_values[self._attr.name]  # type: ignore[no-any-return]

    def setvalue(self, value: T) -> None:
        """Set the value (stored on the next ``write()``)."""
        self._obj._stored_values[self._attr.name] = value

    def clear(self) -> None:
        """Restore the default value."""
        self._obj._stored_values[self._attr.name] = self._attr.default(self._obj)

    def __repr__(self) -> str:
        return f"<StoredValue {type(self._obj).__name__}.{self._attr.name}={self()!r}>"


class stored(Generic[T]):  # noqa: N801 - used as a decorator, like property
    """Decorate a DbObj method to make it a stored attribute; the method returns its default.

    ::

        class Greeter(kydb.DbObj):
            @kydb.stored
            def name(self):
                return 'John'

    ``obj.name()`` reads it and ``obj.name.setvalue(v)`` sets it; assigning
    (``obj.name = v``) or deleting the attribute raises ``AttributeError``
    saying so, rather than silently replacing the stored attribute.
    """

    def __init__(self, default: Callable[[Any], T]) -> None:
        self.default = default
        self.name = default.__name__
        functools.update_wrapper(self, default)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> stored[T]: ...
    @overload
    def __get__(self, obj: DbObj, owner: type | None = None) -> StoredValue[T]: ...
    def __get__(self, obj: DbObj | None, owner: type | None = None) -> stored[T] | StoredValue[T]:
        if obj is None:
            return self
        return StoredValue(obj, self)

    def __set__(self, obj: DbObj, value: object) -> NoReturn:
        cls = type(obj).__name__
        raise AttributeError(
            f"{cls}.{self.name} is a stored attribute: set it with obj.{self.name}.setvalue(value) "
            f"and read it with obj.{self.name}()"
        )

    def __delete__(self, obj: DbObj) -> NoReturn:
        cls = type(obj).__name__
        raise AttributeError(
            f"{cls}.{self.name} is a stored attribute and cannot be deleted: "
            f"obj.{self.name}.clear() restores its default"
        )


class DbObj:
    """Base class of Python objects stored by class name rather than pickled whole.

    Subclasses declare stored attributes with :func:`kydb.stored` and may
    override :meth:`init` to set up transient state, which is rebuilt on every
    load.  Create instances with ``db.new(class_name, key, **values)``.
    """

    _stored_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names: dict[str, None] = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                if isinstance(attr, stored):
                    names[name] = None
                else:
                    names.pop(name, None)  # overridden by a plain attribute
        cls._stored_names = tuple(names)

    def __init__(self, db: Any, class_name: str, key: str, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(self._stored_names))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} has no stored attribute(s) {unknown}; "
                f"stored attributes: {list(self._stored_names)}"
            )
        self.db = db
        self.class_name = class_name
        self.key = key
        self._stored_digest: bytes | None = None  # of the blob last read or written through db
        # Defaults are evaluated once, so a mutable default (a list) can be filled in place.
        self._stored_values: dict[str, Any] = {
            name: kwargs[name] if name in kwargs else getattr(type(self), name).default(self)
            for name in self._stored_names
        }
        self.init()

    def init(self) -> None:
        """Override to build transient (not stored) state; called on creation and on every load."""

    def get_stored_dict(self) -> dict[str, Any]:
        """The stored attributes and their current values (defaults included)."""
        return {name: getattr(self, name)() for name in self._stored_names}

    def write(self, index: Mapping[str, int | None] | None = None, *, if_unchanged: bool = False) -> None:
        """Store this object at its key (same as ``db[obj.key] = obj``), optionally with index values.

        With ``if_unchanged``, write only if the stored object is still the
        one this object was last read as or written as through its DB (for a
        new object: only if nothing is stored at its key yet); otherwise raise
        :class:`~kydb.Conflict` and write nothing.  Needs a store with
        conditional writes.
        """
        if not if_unchanged:
            self.db.set(self.key, self, index=index)
            return
        if self._stored_digest is None:
            self.db.set(self.key, self, index=index, if_absent=True)
            return
        stored = self.db.get_versioned_blobs([self.key]).get(self.key)
        if stored is None or _digest(stored.blob) != self._stored_digest:
            now = "was deleted" if stored is None else "has been written by someone else"
            raise Conflict(f"{self.key} {now} since this object was read or written; nothing was written")
        self.db.set(self.key, self, index=index, if_version=stored.version)

    def delete(self) -> None:
        """Delete this object from its DB."""
        self.db.delete(self.key)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key}>"


def _digest(blob: bytes) -> bytes:
    import hashlib  # noqa: PLC0415 - only DbObj loads and writes need it, not every import of kydb

    return hashlib.blake2b(blob, digest_size=16).digest()


def remember_stored(obj: DbObj, blob: bytes) -> None:
    """Note that ``obj`` was just read from, or written as, ``blob`` (for ``write(if_unchanged=True)``)."""
    obj._stored_digest = _digest(blob)


def _check_entry(name: object, entry: object) -> tuple[str, str]:
    if (
        not isinstance(name, str)
        or not isinstance(entry, Mapping)
        or not isinstance(entry.get("module_path"), str)
        or not isinstance(entry.get("class_name"), str)
    ):
        raise DbObjException(
            f"DbObj config entry {name!r} is malformed: expected "
            "{'module_path': 'package.module', 'class_name': 'ClassName'}, "
            f"got {entry!r}"
        )
    return entry["module_path"], entry["class_name"]


def check_objdb_config(config: object) -> None:
    """Raise :class:`~kydb.DbObjException` naming the first malformed entry."""
    if not isinstance(config, Mapping):
        raise DbObjException(f"the DbObj config must be a mapping of class names, got {type(config).__name__}")
    for name, entry in config.items():
        _check_entry(name, entry)


@functools.lru_cache(maxsize=1024)
def _import_class(module_path: str, class_name: str) -> type[DbObj]:
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise DbObjException(f"cannot import module {module_path!r} for DbObj class {class_name!r}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, DbObj):
        raise DbObjException(f"{module_path}.{class_name} is not a kydb.DbObj subclass")
    return cls


def resolve_class(config: Mapping[str, Any], class_name: str, key: str, *, for_new: bool = False) -> type[DbObj]:
    """The class configured for ``class_name``.

    A name missing from the config is :class:`~kydb.UnknownClass` (a
    ``KeyError``, never :class:`~kydb.NotFound`) when creating an object, and
    a plain :class:`~kydb.DbObjException` when loading one — a stored object
    must never look like a missing key.
    """
    if class_name not in config:
        message = (
            f"DbObj class {class_name!r} (for {key}) is not in the config at {OBJDB_CONFIG_KEY}; "
            f"configured classes: {sorted(config)}. Add it with db.upload_objdb_config(...)"
        )
        raise UnknownClass(message) if for_new else DbObjException(message)
    return _import_class(*_check_entry(class_name, config[class_name]))


def make_dbobj(
    cls: type[DbObj], db: Any, class_name: str, key: str, values: Mapping[str, Any], *, from_store: bool = False
) -> DbObj:
    """Instantiate ``cls``; values for attributes the class no longer stores are dropped when loading."""
    if from_store:
        values = {name: v for name, v in values.items() if name in cls._stored_names}
    return cls(db, class_name, key, **values)
