"""Fixtures for the S3 tests: moto's S3 server on a free loopback port, spoken to over HTTP.

Each test session gets its own server and bucket; each test its own base
path (or bucket).  Credentials are dummies and the user's AWS config is
hidden, so nothing here can reach real AWS.

S3 checks a write's condition (``If-Match``, ``If-None-Match``) and writes
in one atomic step.  moto checks, then writes, with nothing between them to
stop another request's write: under load, two ``PutObject`` with the same
``If-Match`` both succeed, and an ``update`` is lost.  The server here runs
moto's application with its writes (``PUT``, ``POST``, ``DELETE``) one at a
time, bodies read beforehand, so that its conditional writes are atomic as
on S3; reads still run concurrently.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

import kydb
from kydb.testing import unique_name
from kydb.testing.faults import TCPProxy
from kydb_s3.testing import LoopbackProxy


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


class AtomicWrites:
    """A WSGI application around ``app`` that runs its writes one at a time (see the module docstring)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] not in ("PUT", "POST", "DELETE"):
            return self.app(environ, start_response)
        # The body first, outside the lock: a client that stalls mid-upload must not hold up other writes.
        length, stream = environ.get("CONTENT_LENGTH"), environ["wsgi.input"]
        if length:
            body = stream.read(int(length))
        elif environ.get("wsgi.input_terminated"):  # chunked: the server ends the stream after the last chunk
            body = stream.read()
        else:  # no body (reading the socket would wait for the client to hang up)
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        with self.lock:
            return list(self.app(environ, start_response))


@pytest.fixture(scope="session")
def moto_endpoint(aws_env: Path, skip_or_fail_missing_service: Callable[[str, str], None]) -> Iterator[str]:
    """The URL of a moto S3 server (server mode, threaded, writes atomic) listening on 127.0.0.1."""
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server
    except ImportError as exc:
        skip_or_fail_missing_service("moto's S3 server", f"moto[server] is not installed: {exc}")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    app = AtomicWrites(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    serving = threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True)
    serving.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    serving.join()


@pytest.fixture(scope="session")
def s3(moto_endpoint: str) -> Any:
    """A plain boto3 client on the moto server, for looking at buckets behind kydb's back."""
    return boto3.client("s3", endpoint_url=moto_endpoint)


def _remove_bucket(s3: Any, name: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": c["Key"]} for c in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    s3.delete_bucket(Bucket=name)


@pytest.fixture(scope="session")
def bucket(s3: Any) -> Iterator[str]:
    """The test session's bucket; tests work under their own base paths in it."""
    name = unique_name("kydb-s3")
    s3.create_bucket(Bucket=name)
    yield name
    _remove_bucket(s3, name)


@pytest.fixture
def new_bucket(s3: Any) -> Iterator[Callable[[], str]]:
    """A factory of fresh buckets, removed with their contents after the test."""
    made: list[str] = []

    def make() -> str:
        name = unique_name("kydb-s3")
        s3.create_bucket(Bucket=name)
        made.append(name)
        return name

    yield make
    for name in made:
        _remove_bucket(s3, name)


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[LoopbackProxy]:
    """A proxy in front of the moto server that counts requests and injects faults."""
    with LoopbackProxy(moto_endpoint) as running:
        yield running


@pytest.fixture
def tcp_proxy(moto_endpoint: str) -> Iterator[TCPProxy]:
    """A TCP proxy in front of the moto server that drops, refuses or stalls connections on demand."""
    target = urlsplit(moto_endpoint)
    assert target.hostname is not None and target.port is not None
    with TCPProxy(target.hostname, target.port) as running:
        yield running


@pytest.fixture
def connect_s3(bucket: str, moto_endpoint: str) -> Iterator[Callable[..., Any]]:
    """Connect ``s3://bucket/<unique base>`` (or another bucket / endpoint); emptied and closed afterwards."""
    opened: list[Any] = []

    def connect(endpoint: str = moto_endpoint, in_bucket: str = bucket, base: str | None = None) -> Any:
        db = kydb.connect(f"s3://{in_bucket}/{base or unique_name('s3')}?endpoint_url={endpoint}")
        opened.append(db)
        return db

    yield connect
    for db in opened:
        with contextlib.suppress(kydb.KydbError):  # a bucket the test itself made unreachable
            db.rm_tree("/")
        db.close()


@pytest.fixture
def pair(connect_s3: Callable[..., Any], bucket: str) -> Iterator[Callable[..., tuple[Any, Any]]]:
    """``pair(endpoint, options='')``: a DB straight to moto, and one on the same base path through ``endpoint``.

    The first writes what the test needs and cleans up afterwards; the
    second is the one under test (counted by a proxy, or meeting its
    faults), and is closed without touching the network.
    """
    faulty: list[Any] = []

    def make(endpoint: str, options: str = "") -> tuple[Any, Any]:
        direct = connect_s3()
        db = kydb.connect(f"s3://{bucket}{direct.base_path}?endpoint_url={endpoint}{options}")
        faulty.append(db)
        return direct, db

    yield make
    for db in faulty:
        db.close()
