"""Fixtures for the DynamoDB tests: moto's DynamoDB server on a free loopback port, spoken to over HTTP.

Each test session gets its own server and table; each test its own base
path (or table).  Credentials are dummies and the user's AWS config is
hidden, so nothing here can reach real AWS.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

import kydb
from kydb.testing import unique_name
from kydb.testing.faults import TCPProxy
from kydb_dynamodb.layout import table_definition
from kydb_dynamodb.testing import DynamoDBProxy, MotoServer


@pytest.fixture(scope="session")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clean AWS environment: dummy credentials, no config files; yields an empty directory for them."""
    home = tmp_path_factory.mktemp("aws")
    patch = pytest.MonkeyPatch()
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        patch.delenv(name)
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    patch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield home
    patch.undo()


@pytest.fixture(scope="session")
def moto_endpoint(aws_env: Path, skip_or_fail_missing_service: Callable[[str, str], None]) -> Iterator[str]:
    """The URL of a moto server speaking DynamoDB's protocol on 127.0.0.1."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        skip_or_fail_missing_service("moto's DynamoDB server", f"moto[server] is not installed: {exc}")
    server = MotoServer().start()  # see its docstring for what it sets right in moto
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def dynamodb(moto_endpoint: str) -> Any:
    """A plain boto3 client on the moto server, for looking at tables behind kydb's back."""
    return boto3.client("dynamodb", endpoint_url=moto_endpoint)


@pytest.fixture(scope="session")
def table(dynamodb: Any) -> str:
    """The test session's table, with kydb's layout; tests work under their own base paths in it."""
    name = unique_name("kydb")
    dynamodb.create_table(**table_definition(name))
    return name


@pytest.fixture
def connect_dynamodb(table: str, moto_endpoint: str) -> Iterator[Callable[..., Any]]:
    """Connect ``dynamodb://table/<unique base>`` (or another table / endpoint); emptied and closed afterwards."""
    opened: list[Any] = []

    def connect(
        endpoint: str = moto_endpoint, in_table: str = table, base: str | None = None, options: str = ""
    ) -> Any:
        db = kydb.connect(f"dynamodb://{in_table}/{base or unique_name('d')}?endpoint_url={endpoint}{options}")
        opened.append(db)
        return db

    yield connect
    for db in opened:
        with contextlib.suppress(kydb.KydbError):  # a store the test itself made unreachable
            db.rm_tree("/")
        db.close()


@pytest.fixture
def pair(connect_dynamodb: Callable[..., Any], table: str) -> Iterator[Callable[..., tuple[Any, Any]]]:
    """``pair(endpoint, options='')``: a DB straight to moto, and one on the same base path through ``endpoint``.

    The first writes what the test needs and cleans up afterwards; the
    second is the one under test (counted by a proxy, or meeting its
    faults), and is closed without touching the network.
    """
    faulty: list[Any] = []

    def make(endpoint: str, options: str = "") -> tuple[Any, Any]:
        direct = connect_dynamodb()
        db = kydb.connect(f"dynamodb://{table}{direct.base_path}?endpoint_url={endpoint}{options}")
        faulty.append(db)
        return direct, db

    yield make
    for db in faulty:
        db.close()


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[DynamoDBProxy]:
    """An HTTP proxy in front of the moto server that counts requests and injects DynamoDB's errors."""
    with DynamoDBProxy(moto_endpoint) as running:
        yield running


@pytest.fixture
def tcp_proxy(moto_endpoint: str) -> Iterator[TCPProxy]:
    """A TCP proxy in front of the moto server that drops, refuses or stalls connections on demand."""
    target = urlsplit(moto_endpoint)
    assert target.hostname is not None and target.port is not None
    with TCPProxy(target.hostname, target.port) as running:
        yield running
