"""memory:// — and unions and cache DBs built from it — against the model of the SPEC.

Derandomized, so every run checks the same (broad) set of sequences and the
coverage assertion is stable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

import kydb
from kydb.testing import unique_name
from kydb.testing.model import check_against_model

EVERY_OUTCOME = [
    "set -> ok", "set -> InvalidKey", "read -> ok", "read -> NotFound", "exists -> ok", "delete -> ok",
    "delete -> NotFound", "mkdir -> ok", "rmdir -> ok", "rmdir -> FolderNotEmpty", "rmdir -> NotFound",
    "rm_tree -> ok", "rm_tree -> NotFound", "ls -> ok", "is_dir -> ok",
]


def assert_exercised(stats: Counter[str]) -> None:
    """The run reached every interesting outcome, so agreement means something."""
    missing = [outcome for outcome in EVERY_OUTCOME if not stats[outcome]]
    assert not missing, f"the model check never reached {missing}: {dict(stats)}"


@pytest.mark.parametrize(
    "make_url",
    [
        lambda: f"memory://{unique_name('model')}/base",
        lambda: f"memory://{unique_name('front')};memory://{unique_name('back')}/b",
        lambda: f"memory://{unique_name('cache')}|memory://{unique_name('persist')}",
    ],
    ids=["store", "union", "cache-db"],
)
def test_matches_the_model(make_url: Callable[[], str]) -> None:
    stats = check_against_model(lambda: kydb.connect(make_url()), max_examples=150, derandomize=True)
    assert_exercised(stats)
    print(dict(sorted(stats.items())))
