"""The walkthrough's ``path/to/module.py``: the Greeter the DbObj config points at."""

import kydb


class Greeter(kydb.DbObj):
    def init(self):
        self.greet_count = 0

    @kydb.stored
    def name(self):
        return "John"

    def greet(self):
        self.greet_count += 1
        return "Hello " + self.name()
