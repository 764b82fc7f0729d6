"""kydb-dynamodb against the model of the contract: random operation sequences on moto's server, over HTTP."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import kydb
from kydb.testing import unique_name
from kydb.testing.model import assert_exercised, check_against_model


def test_matches_the_model(table: str, moto_endpoint: str, model_report: Callable[[str, Counter[str]], None]) -> None:
    opened: list[kydb.BaseDB] = []

    def new_db() -> kydb.BaseDB:
        while opened:  # the previous example is over (and emptied its namespace)
            opened.pop().close()
        opened.append(kydb.connect(f"dynamodb://{table}/{unique_name('model')}?endpoint_url={moto_endpoint}"))
        return opened[-1]

    # Derandomized: every run checks the same sequences, so the coverage check below is stable.
    try:
        stats = check_against_model(new_db, max_examples=60, derandomize=True)
    finally:
        for db in opened:
            db.close()
    assert_exercised(stats)
    model_report("dynamodb", stats)
