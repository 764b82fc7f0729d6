"""kydb-redis against the model of the contract: random operation sequences on the real server and on a cluster."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import kydb
from kydb.testing import unique_name
from kydb.testing.model import assert_exercised, check_against_model

from .conftest import LocalCluster, with_base


def test_matches_the_model(redis_url: str, test_root: str, model_report: Callable[[str, Counter[str]], None]) -> None:
    # Derandomized: every run checks the same sequences, so the coverage check below is stable.
    stats = check_against_model(
        lambda: kydb.connect(with_base(redis_url, f"{test_root}/{unique_name('model')}")),
        max_examples=100,
        derandomize=True,
    )
    assert_exercised(stats)
    model_report("redis", stats)


def test_a_cluster_matches_the_model(
    local_cluster: LocalCluster, model_report: Callable[[str, Counter[str]], None]
) -> None:
    stats = check_against_model(
        lambda: kydb.connect(with_base(local_cluster.url, unique_name("model"))), max_examples=100, derandomize=True
    )
    assert_exercised(stats)
    model_report("redis+cluster", stats)
