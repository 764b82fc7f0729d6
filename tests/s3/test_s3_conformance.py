"""kydb-s3 against the whole conformance suite, over HTTP to moto's S3 server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import kydb
from kydb.testing import StoreConformance, unique_name


class TestS3Store(StoreConformance):
    @pytest.fixture(autouse=True)
    def _raw_access(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    @pytest.fixture
    def new_url(self, bucket: str, moto_endpoint: str) -> Callable[[], str]:
        return lambda: f"s3://{bucket}/{unique_name('s3')}?endpoint_url={moto_endpoint}"

    def raw_get(self, db: kydb.DB, path: str) -> bytes | None:
        try:
            return bytes(self.s3.get_object(Bucket=self.bucket, Key=path[1:])["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def raw_put(self, db: kydb.DB, path: str, blob: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=path[1:], Body=blob)


def test_walkthrough_runs_on_s3(check_walkthrough: Callable[[str], None], bucket: str, moto_endpoint: str) -> None:
    check_walkthrough(f"s3://{bucket}/{unique_name('walk')}?endpoint_url={moto_endpoint}")
