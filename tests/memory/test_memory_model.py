"""memory:// — and unions and cache DBs built from it — against the model of the contract.

Derandomized, so every run checks the same (broad) set of sequences and the
coverage assertion is stable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

import kydb
from kydb.testing import unique_name
from kydb.testing.model import assert_exercised, check_against_model


@pytest.mark.parametrize(
    "make_url",
    [
        lambda: f"memory://{unique_name('model')}/base",
        lambda: f"memory://{unique_name('front')};memory://{unique_name('back')}/b",
        lambda: f"memory://{unique_name('cache')}|memory://{unique_name('persist')}",
    ],
    ids=["store", "union", "cache-db"],
)
def test_matches_the_model(
    make_url: Callable[[], str], request: pytest.FixtureRequest, model_report: Callable[[str, Counter[str]], None]
) -> None:
    stats = check_against_model(lambda: kydb.connect(make_url()), max_examples=150, derandomize=True)
    assert_exercised(stats)
    model_report(f"memory ({request.node.callspec.id})", stats)
