"""DbObj classes the conformance suite stores (importable in child processes too)."""

from __future__ import annotations

import kydb
from kydb.walkthrough import Greeter

__all__ = ["OBJDB_CONFIG", "Greeter", "RenamedGreeter"]

#: The config that maps the suite's class name to the walkthrough's Greeter.
OBJDB_CONFIG = {
    "Greeter": {"module_path": "kydb.walkthrough", "class_name": "Greeter"},
}


class RenamedGreeter(kydb.DbObj):
    """The Greeter after a refactoring moved and renamed it (stored objects keep working)."""

    def init(self) -> None:
        self.greet_count = 0

    @kydb.stored
    def name(self) -> str:
        return "John"

    def greet(self) -> str:
        return "Hi " + self.name()
