"""Reading a ``redis://`` / ``rediss://`` / ``redis+cluster://`` URL into redis-py connection settings.

``redis://[user:password@]host[:port][/base/path][?option=value&...]``;
``rediss://`` is the same over TLS.  ``redis+cluster://host:port/base`` (and
``rediss+cluster://``) connects to a Redis Cluster through that node (more
seed nodes: ``?nodes=host:port,host:port``).  The URL path is kydb's base
path, so the Redis database number is the ``db`` option, not the path
(unlike redis-py's own URLs).  Unknown options are rejected, never ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kydb.url import StoreURL

__all__ = [
    "DEFAULT_POOL_SIZE",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_PORT",
    "DEFAULT_RETRIES",
    "DEFAULT_SOCKET_TIMEOUT",
    "OPTIONS",
    "RedisOptions",
    "parse_options",
]

DEFAULT_PORT = 6379
#: Seconds to wait for a reply, and (unless ``socket_connect_timeout`` says otherwise) for a connection.
DEFAULT_SOCKET_TIMEOUT = 5.0
#: Retries after a connection refused/reset or a timeout, with jittered exponential backoff.
DEFAULT_RETRIES = 3
#: Connections per server (per node of a cluster) that one process keeps at most.
DEFAULT_POOL_SIZE = 10
#: Seconds a thread waits for a free pooled connection before kydb.StoreUnavailable.
DEFAULT_POOL_TIMEOUT = 5.0
RETRY_BACKOFF_BASE = 0.05
RETRY_BACKOFF_CAP = 1.0


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError("must be a whole number >= 0")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number of seconds")
    return value


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _cert_reqs(text: str) -> str:
    if text not in ("none", "optional", "required"):
        raise ValueError("must be none, optional or required")
    return text


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError("must be a whole number >= 1")
    return int(text)


def _nodes(text: str) -> tuple[tuple[str, int], ...]:
    nodes = []
    for item in text.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ValueError("must be host:port[,host:port...]")
        nodes.append((host.strip("[]").lower(), int(port)))
    return tuple(nodes)


def _text(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return text


#: Every query option: name -> (parser, TLS only, what it means).
OPTIONS: dict[str, tuple[Callable[[str], Any], bool, str]] = {
    "db": (_count, False, "database number (default 0)"),
    "socket_timeout": (_seconds, False, f"seconds to wait for a reply (default {DEFAULT_SOCKET_TIMEOUT:g})"),
    "socket_connect_timeout": (_seconds, False, "seconds to wait for a connection (default: socket_timeout)"),
    "retries": (_count, False, f"retries after a connection failure or timeout (default {DEFAULT_RETRIES})"),
    "health_check_interval": (_count, False, "seconds idle before a connection is checked with PING (default 0: off)"),
    "client_name": (_text, False, "name shown by CLIENT LIST"),
    "pool_size": (_positive, False, f"connections per server kept by this process (default {DEFAULT_POOL_SIZE})"),
    "pool_timeout": (
        _seconds,
        False,
        f"seconds to wait for a free pooled connection (default {DEFAULT_POOL_TIMEOUT:g})",
    ),
    "wait_replicas": (
        _positive,
        False,
        "replicas that must acknowledge every write (WAIT) before it returns (default: none)",
    ),
    "wait_timeout": (_seconds, False, "seconds a write waits for its replicas (default 1)"),
    "nodes": (_nodes, False, "more seed nodes of a cluster, host:port[,host:port...] (redis+cluster:// only)"),
    "ssl_cert_reqs": (_cert_reqs, True, "none, optional or required (default required)"),
    "ssl_ca_certs": (_text, True, "file of CA certificates to trust"),
    "ssl_certfile": (_text, True, "client certificate file"),
    "ssl_keyfile": (_text, True, "client private key file"),
    "ssl_check_hostname": (_flag, True, "check the server certificate's host name (default true)"),
}


@dataclass(frozen=True)
class RedisOptions:
    """Where a store connects and how; ``connection`` are redis-py ``ConnectionPool`` keyword arguments."""

    host: str
    port: int
    db: int
    tls: bool
    retries: int
    connection: dict[str, Any] = field(repr=False)
    cluster: bool = False
    pool_size: int = DEFAULT_POOL_SIZE
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    nodes: tuple[tuple[str, int], ...] = ()
    wait_replicas: int = 0
    wait_timeout: float = 1.0

    @property
    def server(self) -> str:
        """``host:port db N`` (``cluster host:port``), for messages (never credentials)."""
        if self.cluster:
            return f"cluster {self.host}:{self.port}"
        return f"{self.host}:{self.port} db {self.db}"

    def pool_key(self) -> tuple[Any, ...]:
        """What identifies the server and the pool's settings (never the base path): the shared pool's key."""
        return (
            self.cluster,
            self.tls,
            self.host,
            self.port,
            self.nodes,
            self.retries,
            self.pool_size,
            self.pool_timeout,
            tuple(sorted(self.connection.items())),
        )


def parse_options(url: StoreURL) -> RedisOptions:
    """The connection settings of a ``redis``/``rediss`` URL.

    Raises ``ValueError`` naming the masked URL for a missing host, an unknown
    option, an option value that does not parse, or a TLS option on
    ``redis://``.
    """
    tls = url.scheme in ("rediss", "rediss+cluster")
    cluster = url.scheme.endswith("+cluster")
    if url.scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        raise ValueError(
            f"invalid kydb URL {url.masked!r}: unknown scheme {url.scheme!r}; kydb-redis serves redis://, rediss://, "
            "redis+cluster:// and rediss+cluster://"
        )
    if not url.host:
        raise ValueError(f"invalid kydb URL {url.masked!r}: expected {url.scheme}://HOST[:PORT][/base/path]")
    values: dict[str, Any] = {}
    for name, text in url.options.items():
        known = OPTIONS.get(name)
        if known is None:
            listing = ", ".join(sorted(OPTIONS))
            raise ValueError(
                f"invalid kydb URL {url.masked!r}: unknown option {name!r}; {url.scheme}:// takes {listing}"
            )
        parse, tls_only, meaning = known
        if tls_only and not tls:
            raise ValueError(f"invalid kydb URL {url.masked!r}: {name} is a TLS option; use rediss:// for TLS")
        try:
            values[name] = parse(text)
        except ValueError as exc:
            raise ValueError(f"invalid kydb URL {url.masked!r}: option {name}={text!r} {exc} ({meaning})") from None
    port = url.port or DEFAULT_PORT
    if cluster and values.get("db", 0) != 0:
        raise ValueError(f"invalid kydb URL {url.masked!r}: a Redis Cluster has database 0 only; drop ?db=")
    if "nodes" in values and not cluster:
        raise ValueError(f"invalid kydb URL {url.masked!r}: ?nodes= names cluster nodes; use redis+cluster://")
    nodes = values.pop("nodes", ())
    wait_replicas = values.pop("wait_replicas", 0)
    wait_timeout = values.pop("wait_timeout", 1.0)
    pool_size = values.pop("pool_size", DEFAULT_POOL_SIZE)
    pool_timeout = values.pop("pool_timeout", DEFAULT_POOL_TIMEOUT)
    db = values.pop("db", 0)
    retries = values.pop("retries", DEFAULT_RETRIES)
    timeout = values.pop("socket_timeout", DEFAULT_SOCKET_TIMEOUT)
    connection = {
        "host": url.host,
        "port": port,
        "db": db,
        "username": url.username,
        "password": url.password,
        "socket_keepalive": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": values.pop("socket_connect_timeout", timeout),
        **values,
    }
    if cluster:
        del connection["db"]
    return RedisOptions(
        url.host,
        port,
        db,
        tls,
        retries,
        connection,
        cluster,
        pool_size,
        pool_timeout,
        nodes,
        wait_replicas,
        wait_timeout,
    )
