"""Fixtures for the Redis tests: the server under test, raw access to it, and private servers.

The suite runs against the Redis at ``KYDB_TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379``), each test under its own base path.  When nothing
answers there and ``KYDB_REQUIRE_SERVICES`` is unset, it runs against
fakeredis (over TCP, so child processes reach it too) and says so in the
summary; with ``KYDB_REQUIRE_SERVICES`` set that is a failure instead.

Tests that kill a server or count its commands start their own
``redis-server`` on a free loopback port (:class:`PrivateRedis`); the
cluster tests start a local Redis Cluster of three masters
(:class:`LocalCluster`, session-scoped).  Every base path the tests use on
the shared server lies below one folder of this run (:func:`test_root`),
removed at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import kydb
from kydb.testing import unique_name
from kydb.url import parse_store_url
from kydb_redis.layout import HEADER_BYTES, MAGIC, MARKER, folder_key, object_key, split_path
from kydb_redis.options import parse_options

REDIS_URL = os.environ.get("KYDB_TEST_REDIS_URL", "redis://127.0.0.1:6379")

_fallback_notes: list[str] = []


def with_base(url: str, base: str) -> str:
    """``url`` rooted at the base path ``/base``, keeping its options."""
    return parse_store_url(url).with_base(f"/{base.strip('/')}")


def raw_client(url: str) -> Any:
    """A plain redis-py client (a cluster client for redis+cluster://) for a kydb Redis URL, without retries."""
    options = parse_options(parse_store_url(url))
    if options.cluster:
        settings = {k: v for k, v in options.connection.items() if k not in ("host", "port")}
        return redis.RedisCluster(host=options.host, port=options.port, **settings)
    return redis.Redis(**options.connection, ssl=options.tls, retry=Retry(NoBackoff(), 0))


def glob_escape(text: str) -> str:
    """``text`` as a literal in a ``SCAN MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def keys_under(client: Any, prefix: str) -> list[bytes]:
    """Every key starting with ``prefix``: in layout 2, every key kydb keeps for paths below it."""
    if isinstance(client, redis.RedisCluster):
        found = client.scan_iter(match=glob_escape(prefix) + "*", count=1000, target_nodes=redis.RedisCluster.PRIMARIES)
    else:
        found = client.scan_iter(match=glob_escape(prefix) + "*", count=1000)
    return sorted(found)


def raw_object(client: Any, path: str) -> bytes | None:
    """The blob kydb stored at the absolute ``path`` (its header stripped), or None."""
    value = client.get(object_key(path))
    if value is not None and value.startswith(MAGIC):
        return bytes(value[HEADER_BYTES:])
    return value


def plant(client: Any, path: str, blob: bytes) -> None:
    """Write ``blob`` at ``path`` as another tool would: a plain string, listed, its folders made."""
    client.set(object_key(path), blob)
    folder, name = split_path(path)
    client.zadd(folder_key(folder), {"L" + name: 0})
    while folder != "/":
        parent, child = split_path(folder)
        client.zadd(folder_key(parent), {"L" + child: 0})
        client.zadd(folder_key(folder), {MARKER: 0})
        folder = parent


def remove_tree(client: Any, base: str) -> None:
    """Remove every key below the folder ``base`` (``/name``) and its entry in the root, behind kydb's back."""
    keys = keys_under(client, base + "/")
    for start in range(0, len(keys), 500):
        for key in keys[start : start + 500]:
            client.unlink(key)
    parent, name = split_path(base + "/")
    client.zrem(folder_key(parent), "L" + name)


def _unreachable(url: str) -> str | None:
    """Why ``url``'s server does not answer PING, or None if it does."""
    client = raw_client(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        return str(exc)
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def redis_url(require_services: bool, skip_or_fail_missing_service: Callable[[str, str], None]) -> Iterator[str]:
    """The URL (no base path) of the Redis the suite runs against."""
    why = _unreachable(REDIS_URL)
    if why is None:
        yield REDIS_URL
        return
    if require_services:
        skip_or_fail_missing_service(f"Redis at {kydb.url.mask_url(REDIS_URL)}", why)
    fakeredis = pytest.importorskip("fakeredis", reason=f"Redis is not reachable ({why}) and fakeredis is missing")
    server = fakeredis.TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()
    _fallback_notes.append(
        f"Redis at {kydb.url.mask_url(REDIS_URL)} is not reachable ({why}): the Redis tests ran against "
        "fakeredis instead; set KYDB_REQUIRE_SERVICES=1 to make this a failure"
    )
    try:
        yield f"redis://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def test_root(redis_url: str) -> Iterator[str]:
    """A folder of this run on the shared server (``/kydb-tests-...``): tests' base paths lie below it."""
    root = "/" + unique_name("kydb-tests")
    yield root
    client = raw_client(redis_url)
    remove_tree(client, root)
    client.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for note in _fallback_notes:
        terminalreporter.write_sep("!", note, yellow=True)


# ---------------------------------------------------------------------- private servers


def free_port(below: int = 65536) -> int:
    """A loopback port below ``below`` nothing listens on (at the time of asking)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < below:
            return port


class PrivateRedis:
    """A ``redis-server`` of this test's own on a free loopback port, in a temporary directory.

    ``persistent`` turns on the append-only file with an fsync per write, so a
    write the server acknowledged survives a kill.  :meth:`kill` ends the
    process with SIGKILL (a crash, no shutdown save); :meth:`start` starts it
    again on the same port and directory.
    """

    def __init__(self, binary: str, directory: Path, *extra: str, persistent: bool = False) -> None:
        self.binary = binary
        self.directory = directory
        # a cluster node's bus listens 10,000 ports higher
        self.port = free_port(below=55536 if "--cluster-enabled" in extra else 65536)
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
        self.args = [
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
            "--dir", str(directory), "--logfile", str(directory / "redis.log"), *extra,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.process = subprocess.Popen([self.binary, *self.args], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    reply = sock.recv(64)
                if reply.startswith((b"+PONG", b"-NOAUTH")):
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None


@pytest.fixture(scope="session")
def redis_server_binary(skip_or_fail_missing_service: Callable[[str, str], None]) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        skip_or_fail_missing_service("redis-server", "no redis-server binary on PATH to start a private server")
    assert binary is not None
    return binary


@pytest.fixture
def private_redis(redis_server_binary: str, tmp_path: Path) -> Iterator[Callable[..., PrivateRedis]]:
    """``private_redis(*redis_server_args, persistent=False)`` starts a server that is stopped after the test."""
    started: list[PrivateRedis] = []

    def start(*extra: str, persistent: bool = False) -> PrivateRedis:
        directory = tmp_path / f"redis-{len(started)}"
        directory.mkdir()
        server = PrivateRedis(redis_server_binary, directory, *extra, persistent=persistent)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def quiet_redis(redis_server_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A private server nothing else talks to, so its command counters are exact."""
    server = PrivateRedis(redis_server_binary, tmp_path_factory.mktemp("quiet-redis"))
    yield server
    server.stop()


# ---------------------------------------------------------------------- counting


@contextmanager
def round_trips() -> Iterator[list[int]]:
    """Count requests redis-py sends in the block: ``[n]``.

    redis-py writes a command, or a whole pipeline, with one
    ``send_packed_command`` and then reads the replies: one call is one round
    trip.  (Wraps the method of ``redis.Connection``, the class plain
    ``redis://`` connections use.)
    """
    count = [0]
    own = "send_packed_command" in vars(redis.Connection)
    original = redis.Connection.send_packed_command

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(self, *args, **kwargs)

    redis.Connection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield count
    finally:
        if own:
            redis.Connection.send_packed_command = original  # type: ignore[method-assign]
        else:
            del redis.Connection.send_packed_command


def command_stats(client: redis.Redis) -> Counter[str]:
    """``INFO commandstats`` as ``{command: calls}``, without INFO itself.

    Redis counts the commands a Lua script runs too (``set``, ``zadd`` inside
    an ``evalsha``).
    """
    stats = client.info("commandstats")
    return Counter(
        {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items() if name != "cmdstat_info"}
    )


@contextmanager
def server_commands(client: redis.Redis) -> Iterator[Counter[str]]:
    """The commands the server ran during the block (exact only on a server nothing else uses)."""
    delta: Counter[str] = Counter()
    before = command_stats(client)
    yield delta
    delta.update(command_stats(client))
    delta.subtract(before)
    for name in [n for n, calls in delta.items() if calls == 0]:
        del delta[name]


# ---------------------------------------------------------------------- a local Redis Cluster


class LocalCluster:
    """A Redis Cluster of ``masters`` masters (and ``replicas`` replicas each) on free loopback ports.

    Each node is a :class:`PrivateRedis` in a directory of its own; ``redis-cli
    --cluster create`` assigns the slots.  :attr:`url` is the
    ``redis+cluster://`` URL (no base path) of the first node.
    """

    def __init__(self, binary: str, directory: Path, masters: int = 3, replicas: int = 0) -> None:
        self.nodes: list[PrivateRedis] = []
        try:
            for i in range(masters * (1 + replicas)):
                node_dir = directory / f"node-{i}"
                node_dir.mkdir()
                self.nodes.append(
                    PrivateRedis(
                        binary,
                        node_dir,
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        # replicas sync at once, and take over whenever their master fails
                        "--repl-diskless-sync-delay",
                        "0",
                        "--cluster-replica-validity-factor",
                        "0",
                    )
                )
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                [self.cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas), "--cluster-yes"],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            self.wait_until_ok()
        except BaseException:
            self.stop()
            raise

    cli = shutil.which("redis-cli") or "redis-cli"

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def client(self, node: PrivateRedis) -> redis.Redis:
        return redis.Redis(port=node.port, retry=Retry(NoBackoff(), 0), socket_timeout=5)

    def wait_until_ok(self, timeout: float = 60) -> None:
        """Until every running node says ``cluster_state:ok`` and every running replica is in sync."""
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for node in self.nodes:
                if node.process is None or node.process.poll() is not None:
                    continue
                try:
                    with self.client(node) as client:
                        info = client.cluster("info")
                        replication = client.info("replication")
                        synced = replication["role"] == "master" or replication.get("master_link_status") == "up"
                        states.append(
                            (info["cluster_state"] if synced else "syncing", int(info["cluster_slots_assigned"]))
                        )
                except (redis.RedisError, OSError):
                    states.append(("down", 0))
            if states and all(state == ("ok", 16384) for state in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the local Redis Cluster did not settle: {states}")
            time.sleep(0.2)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_cli_binary(redis_server_binary: str, skip_or_fail_missing_service: Callable[[str, str], None]) -> str:
    """``redis-cli``, which creates local clusters (with ``redis-server``)."""
    binary = shutil.which("redis-cli")
    if binary is None:
        skip_or_fail_missing_service("redis-cli", "no redis-cli binary on PATH to create a local Redis Cluster")
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def local_cluster(
    redis_server_binary: str, redis_cli_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """A Redis Cluster of three masters on free loopback ports, for the whole run."""
    cluster = LocalCluster(redis_server_binary, tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()
