"""kydb-dynamodb against the whole conformance suite, over HTTP to moto's DynamoDB server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import kydb
from kydb.testing import StoreConformance, unique_name
from kydb_dynamodb import layout


def read_raw(dynamodb: Any, table: str, path: str) -> bytes | None:
    """The blob stored for ``path``, read from its data item (and parts) with plain boto3."""
    item = dynamodb.get_item(TableName=table, Key=layout.data_key(path), ConsistentRead=True).get("Item")
    if item is None:
        return None
    if "d" in item:
        return bytes(item["d"]["B"])
    version, count = item["v"]["S"], int(item["k"]["N"])
    parts = [
        dynamodb.get_item(TableName=table, Key=layout.part_key(path, version, n), ConsistentRead=True)["Item"]["d"]["B"]
        for n in range(count)
    ]
    return b"".join(parts)


def write_raw(dynamodb: Any, table: str, path: str, blob: bytes) -> None:
    """An object in kydb's layout, written with plain boto3: head, data item and folder entries in one transaction."""
    items = layout.object_items(path, blob, time.time_ns())
    dynamodb.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": item}} for item in items])


class TestDynamoDBStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _raw_access(self, dynamodb: Any, table: str) -> None:
        self.dynamodb, self.table = dynamodb, table

    @pytest.fixture
    def new_url(self, table: str, moto_endpoint: str) -> Callable[[], str]:
        return lambda: f"dynamodb://{table}/{unique_name('d')}?endpoint_url={moto_endpoint}"

    def raw_get(self, db: kydb.DB, path: str) -> bytes | None:
        return read_raw(self.dynamodb, self.table, path)

    def raw_put(self, db: kydb.DB, path: str, blob: bytes) -> None:
        write_raw(self.dynamodb, self.table, path, blob)


def test_walkthrough_runs_on_dynamodb(check_walkthrough: Callable[[str], None], table: str, moto_endpoint: str) -> None:
    check_walkthrough(f"dynamodb://{table}/{unique_name('walk')}?endpoint_url={moto_endpoint}")
