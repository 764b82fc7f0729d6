"""kydb-sql against the model of the contract (kydb.testing.model): a SQLite file, PostgreSQL and MariaDB.

Derandomized, so every run checks the same sequences and the coverage
assertion is stable.  SQLite gets the full 100 examples; the servers fewer,
to keep the session short (each of their operations is a network round trip).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import kydb
from kydb.testing.model import assert_exercised, check_against_model

from .conftest import Database

EXAMPLES = {"sqlite": 100, "postgresql": 50, "mariadb": 50}


def test_matches_the_model(database: Database, model_report: Callable[[str, Counter[str]], None]) -> None:
    opened: list[kydb.BaseDB] = []

    def new_db() -> kydb.BaseDB:
        while opened:  # the previous example is over (and emptied its namespace): free its connections
            opened.pop().close()
        opened.append(kydb.connect(database.fresh_url()))
        return opened[-1]

    try:
        stats: Counter[str] = check_against_model(new_db, max_examples=EXAMPLES[database.kind], derandomize=True)
    finally:
        for db in opened:
            db.close()
    assert_exercised(stats)
    model_report(database.kind, stats)
