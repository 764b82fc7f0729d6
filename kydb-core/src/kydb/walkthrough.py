"""The kydb walkthrough, step by step, printing what each step returns.

``kydb demo`` and ``examples/walkthrough.py`` run it.  It works on any store,
in a new folder of its own (``/kydb-demo-XXXXXXXX``, used as the base path of
the DB it connects) that it removes at the end; nothing else in the store is
changed or removed.
"""

from __future__ import annotations

import secrets
import sys
from datetime import datetime
from typing import Any

import kydb
from kydb.url import split_composite

__all__ = ["Greeter", "main", "scratch_url"]

SCRATCH_PREFIX = "/kydb-demo-"


class Greeter(kydb.DbObj):
    """The walkthrough's stored Python object (its config points at this module)."""

    def init(self) -> None:
        self.greet_count = 0

    @kydb.stored
    def name(self) -> str:
        return "John"

    def greet(self) -> str:
        self.greet_count += 1
        return "Hello " + self.name()


def show(expression: str, value: Any) -> None:
    print(f"{expression:<44} # {value!r}")


def scratch_url(url: str, folder: str) -> str:
    """``url`` with ``folder`` appended to the base path of each of its stores (every layer of a composite)."""
    kind, parts = split_composite(url)
    if kind != "single":
        return (";" if kind == "union" else "|").join(scratch_url(part, folder) for part in parts)
    db = kydb.connect(url)
    if not isinstance(db, kydb.DB):
        raise TypeError(f"{db.url} is not a single store")
    return db.store_url.with_base(db.base_path + folder)


def main(url: str) -> None:
    """Run the walkthrough in a new folder of the store at ``url``, and remove that folder at the end."""
    store = kydb.connect(url)
    folder = SCRATCH_PREFIX + secrets.token_hex(4)
    while store.is_dir(folder):
        folder = SCRATCH_PREFIX + secrets.token_hex(4)
    print(f"working in {folder}/ of {store.url}, removed at the end; nothing else is touched")
    try:
        steps(kydb.connect(scratch_url(url, folder)))
    finally:
        if store.is_dir(folder):
            store.rm_tree(folder)
    print(f"\ndone: the walkthrough's folders, and {folder}/, are removed again.")


def steps(db: kydb.BaseDB) -> None:
    """The walkthrough's steps on ``db``, which they may fill and empty at will."""
    print(f"connected: {db!r}")

    print("\n## Literals as data")
    key = "/mytest/foo"
    db[key] = 123
    show("db[key]", db[key])
    show("db.read(key, reload=True)", db.read(key, reload=True))

    print("\n## Vanilla Python objects")
    key = "/mytest/bar"
    val = {
        "my_int": 123,
        "my_float": 123.456,
        "my_str": "hello",
        "my_list": [1, 2, 3],
        "my_datetime": datetime.now(),
    }
    db[key] = val
    show("db.read(key, reload=True) == val", db.read(key, reload=True) == val)

    print("\n## Object hierarchy")
    db.rm_tree("/mytest")
    db.mkdir("/empty-folder")
    show("db.ls('/')", db.ls("/"))
    db["/foo/bar/baz"] = 123
    show("db.ls('/')", db.ls("/"))
    show("db.ls('/foo')", db.ls("/foo"))
    db.rmdir("/empty-folder")
    show("db.ls('/')", db.ls("/"))
    db.rm_tree("/foo")
    show("db.ls('/')", db.ls("/"))

    print("\n## Python object DB")
    db.upload_objdb_config(
        {
            "Greeter": {
                "module_path": "kydb.walkthrough",
                "class_name": "Greeter",
            }
        }
    )
    key = "/hello-world/greeter001"
    greeter = db.new("Greeter", key)
    show("greeter.name()", greeter.name())
    show("greeter.greet()", greeter.greet())

    greeter = db.new("Greeter", key, name="Tony")
    show("greeter.greet()", greeter.greet())

    greeter.name.setvalue("Jane")
    show("greeter.name()", greeter.name())
    show("greeter.greet()", greeter.greet())

    greeter = db.new("Greeter", key, name="Mary")
    greeter.greet()
    show("greeter.greet_count", greeter.greet_count)
    show("greeter.get_stored_dict()", greeter.get_stored_dict())

    greeter.write()
    mary = db[key]
    show("mary.greet_count  (still cached)", mary.greet_count)
    mary = db.read(key, reload=True)
    show("mary.greet_count  (reloaded)", mary.greet_count)
    show("mary.name()", mary.name())

    db.rm_tree("/hello-world")
    db.rm_tree("/.configs", system_obj=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "memory://walkthrough")
