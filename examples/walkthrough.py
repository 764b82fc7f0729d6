"""The kydb walkthrough, step by step, printing what each step returns.

    python examples/walkthrough.py [URL]        # default: sqlite:///kydb-demo.db

Runs on any store; it works under its own folders and removes them at the end.
The default is the embedded store: a SQLite file in the current directory,
kept between runs (pip install kydb-sql).
"""

import sys
from datetime import datetime
from pathlib import Path

import kydb

# ``path.to.module`` (the Greeter) lives next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def show(expression, value):
    print(f"{expression:<44} # {value!r}")


def main(url="sqlite:///kydb-demo.db"):
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
                "module_path": "path.to.module",
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
    main(*sys.argv[1:2])
