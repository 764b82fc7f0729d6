"""Every backend at once: URL factories for real stores, for tests that cross backends.

``store_url(kind)`` returns a URL to a fresh, empty namespace on one backend:
``memory``, ``sqlite`` (a file), ``postgresql``, ``mariadb``, ``redis`` or
``s3`` (moto's server on a free loopback port).  Everything made is removed
at the end.  An unreachable server skips (or fails, with
``KYDB_REQUIRE_SERVICES``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import kydb
from kydb.testing import unique_name
from kydb.url import parse_store_url

POSTGRESQL_URL = os.environ.get("KYDB_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("KYDB_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("KYDB_TEST_REDIS_URL", "redis://127.0.0.1:6379")
KINDS = ("memory", "sqlite", "postgresql", "mariadb", "redis", "s3")


class Stores:
    """Makes fresh namespaces on each backend and removes them afterwards."""

    def __init__(self, tmp: Path, missing: Callable[[str, str], None]) -> None:
        self.tmp = tmp
        self.missing = missing
        self.table = unique_name("kydb_it").replace("-", "_")
        self.made: list[str] = []
        self._moto: Any = None
        self._bucket: str | None = None
        self._checked: set[str] = set()

    def _check(self, kind: str, url: str) -> None:
        if kind in self._checked:
            return
        try:
            kydb.connect(url).exists("/probe")
        except (kydb.StoreUnavailable, OSError) as exc:
            self.missing(kind, str(exc).splitlines()[0])
        self._checked.add(kind)

    def _s3_root(self) -> str:
        if self._moto is None:
            try:
                import boto3
                from moto.server import ThreadedMotoServer
            except ImportError as exc:
                self.missing("moto's S3 server", str(exc))
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            for name in [n for n in os.environ if n.startswith("AWS_")]:
                os.environ.pop(name)
            os.environ.update(
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",
                AWS_DEFAULT_REGION="us-east-1",
                AWS_CONFIG_FILE=str(self.tmp / "aws-config"),
                AWS_SHARED_CREDENTIALS_FILE=str(self.tmp / "aws-credentials"),
                AWS_EC2_METADATA_DISABLED="true",
            )
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._moto.start()
            host, port = self._moto.get_host_and_port()
            self.s3_endpoint = f"http://{host}:{port}"
            self._bucket = unique_name("kydb-it")
            boto3.client("s3", endpoint_url=self.s3_endpoint).create_bucket(Bucket=self._bucket)
        return f"s3://{self._bucket}"

    def url(self, kind: str) -> str:
        if kind == "memory":
            root = f"memory://{unique_name('it')}"
        elif kind == "sqlite":
            root = f"sqlite:///{self.tmp / 'store.db'}"
        elif kind in ("postgresql", "mariadb"):
            root = f"{POSTGRESQL_URL if kind == 'postgresql' else MYSQL_URL}?table={self.table}"
        elif kind == "redis":
            root = REDIS_URL
        elif kind == "s3":
            root = f"{self._s3_root()}?endpoint_url={self.s3_endpoint}"
        else:
            raise ValueError(kind)
        sql = kind in ("sqlite", "postgresql", "mariadb")  # their URL path names the database, not the base
        url = parse_store_url(root, path_is_base=not sql).with_base("/" + unique_name(kind))
        self._check(kind, url)
        self.made.append(url)
        return url

    def close(self) -> None:
        for url in self.made:
            db = kydb.connect(url)
            try:
                db.rm_tree("/")
            finally:
                db.close()
        if self.made:
            import sqlalchemy as sa

            for root in (POSTGRESQL_URL, MYSQL_URL):
                if any(url.startswith(root) for url in self.made):
                    engine = kydb.connect(f"{root}?table={self.table}").store.engine  # type: ignore[attr-defined]
                    with engine.begin() as conn:
                        conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.table}_idx"))
                        conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.table}"))
        if self._moto is not None:
            self._moto.stop()


@pytest.fixture(scope="session")
def stores(
    tmp_path_factory: pytest.TempPathFactory, skip_or_fail_missing_service: Callable[[str, str], None]
) -> Iterator[Stores]:
    made = Stores(tmp_path_factory.mktemp("stores"), skip_or_fail_missing_service)
    yield made
    made.close()


@pytest.fixture
def store_url(stores: Stores) -> Callable[[str], str]:
    """``store_url(kind)``: a URL to a fresh, empty namespace on that backend."""
    return stores.url
