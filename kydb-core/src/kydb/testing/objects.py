"""DbObj classes the conformance suite stores (importable in child processes too)."""

from __future__ import annotations

import kydb

#: The config that maps the suite's class names to this module.
OBJDB_CONFIG = {
    "Greeter": {"module_path": "kydb.testing.objects", "class_name": "Greeter"},
}


class Greeter(kydb.DbObj):
    """The walkthrough's Greeter."""

    def init(self) -> None:
        self.greet_count = 0

    @kydb.stored
    def name(self) -> str:
        return "John"

    def greet(self) -> str:
        self.greet_count += 1
        return "Hello " + self.name()


class RenamedGreeter(kydb.DbObj):
    """Greeter after a refactoring moved and renamed it (stored objects keep working)."""

    def init(self) -> None:
        self.greet_count = 0

    @kydb.stored
    def name(self) -> str:
        return "John"

    def greet(self) -> str:
        return "Hi " + self.name()
