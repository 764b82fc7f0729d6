"""The kydb walkthrough, step by step, printing what each step returns.

``kydb demo`` and ``examples/walkthrough.py`` run it.  It works on any store,
under its own folders, and removes them at the end.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import kydb

__all__ = ["Greeter", "main"]


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


def main(url: str) -> None:
    """Run the walkthrough on the store at ``url``."""
    db = kydb.connect(url)
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
    print("\ndone: the walkthrough's folders are removed again.")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "memory://walkthrough")
