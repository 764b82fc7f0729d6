"""memory:// — and unions and cache DBs built from it — against the model of the SPEC."""

from __future__ import annotations

from collections import Counter

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


def test_memory_store_matches_the_model() -> None:
    stats = check_against_model(lambda: kydb.connect(f"memory://{unique_name('model')}/base"), max_examples=150)
    assert_exercised(stats)
    print(dict(sorted(stats.items())))


def test_union_matches_the_model() -> None:
    stats = check_against_model(
        lambda: kydb.connect(f"memory://{unique_name('front')};memory://{unique_name('back')}/b"), max_examples=150
    )
    assert_exercised(stats)


def test_cache_db_matches_the_model() -> None:
    stats = check_against_model(
        lambda: kydb.connect(f"memory://{unique_name('cache')}|memory://{unique_name('persist')}"), max_examples=150
    )
    assert_exercised(stats)
