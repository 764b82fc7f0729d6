"""Large replies read straight into one buffer: reading a big value holds it once, not three times.

redis-py's pure-Python parser collects a bulk reply in its socket buffer,
copies it out, then copies it again without the trailing CRLF: reading a
300 MB value holds 900 MB at once (hiredis holds more).  kydb's
connections (:func:`connection_class`, for a single server and for a
cluster's nodes) read a bulk reply of :data:`LARGE_REPLY` bytes or more
from the socket into a ``bytearray`` of its size, and every other reply
with redis-py's own code.  Such a reply is a ``bytearray``, not ``bytes``:
the store turns a value into the ``bytes`` it hands on while it drops the
value's header (one copy; see ``kydb_redis.store._blob``).

The parsers build on redis-py's RESP2 and RESP3 parser classes (redis-py 8
speaks RESP3 unless told otherwise, earlier releases RESP2), which redis-py
does not export as public API.  If a redis-py release moves them,
:data:`PARSER_CLASS` is ``None`` and kydb's connections use redis-py's
default parser: every value still reads back, with redis-py's copies.
"""

from __future__ import annotations

import socket
from typing import Any

import redis
import redis.utils
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["LARGE_REPLY", "PARSER_CLASS", "connection_class"]

#: Bulk replies of this many bytes or more are read straight into a buffer of their own.
LARGE_REPLY = 1 << 20

try:
    from redis._parsers import _RESP2Parser, _RESP3Parser
    from redis._parsers import socket as _redis_socket
    from redis._parsers.socket import SocketBuffer
except ImportError:  # pragma: no cover - a redis-py that moved its parsers: its own are used
    PARSER_CLASS: type[Any] | None = None
else:
    #: What redis-py's parsers pass as ``timeout`` for "the connection's own" (not a poll's).
    _NO_TIMEOUT = getattr(_redis_socket, "SENTINEL", None)

    _read = SocketBuffer.read

    class _LargeReplyBuffer(SocketBuffer):
        """redis-py's socket buffer, but a large bulk reply goes from the socket into one ``bytearray``."""

        def read(self, length: int, timeout: Any = _NO_TIMEOUT) -> Any:
            if length < LARGE_REPLY or timeout is not _NO_TIMEOUT:  # polls with a timeout of their own: rare
                return _read(self, length, timeout)  # every small reply: redis-py's read, called straight
            buffer = self._buffer
            if buffer is None or buffer.closed:
                raise RedisConnectionError("Connection closed by server.")
            reply = bytearray(length + 2)  # and the reply's CRLF
            view = memoryview(reply)
            filled = buffer.readinto(view)  # what redis-py has read from the socket already
            try:
                while filled < len(reply):
                    received = self._sock.recv_into(view[filled:])
                    if not received:
                        raise RedisConnectionError("Connection closed by server.")
                    filled += received
            except TimeoutError:  # the socket's own timeout (socket.timeout)
                raise RedisTimeoutError("Timeout reading from socket") from None
            except OSError as exc:
                raise RedisConnectionError(f"Error while reading from socket: {exc.args}") from None
            finally:
                view.release()
            del reply[-2:]
            return reply

    class _LargeReplies:
        """Makes a redis-py parser read through a :class:`_LargeReplyBuffer`."""

        _sock: socket.socket
        socket_read_size: int

        def on_connect(self, connection: Any) -> None:
            super().on_connect(connection)  # type: ignore[misc]
            self._buffer = _LargeReplyBuffer(self._sock, self.socket_read_size, connection.socket_timeout)

    class _LargeReplyRESP2Parser(_LargeReplies, _RESP2Parser):  # type: ignore[misc]
        """redis-py's RESP2 parser over a :class:`_LargeReplyBuffer`."""

    class _LargeReplyRESP3Parser(_LargeReplies, _RESP3Parser):  # type: ignore[misc]
        """redis-py's RESP3 parser over a :class:`_LargeReplyBuffer`."""

    # The protocol redis-py speaks unless told otherwise: RESP3 from redis-py 8, RESP2 before.
    _DEFAULT_PROTOCOL = getattr(redis.utils, "DEFAULT_RESP_VERSION", 2)
    PARSER_CLASS = _LargeReplyRESP3Parser if _DEFAULT_PROTOCOL == 3 else _LargeReplyRESP2Parser


class _Connection(redis.Connection):
    """redis-py's connection, reading replies with :data:`PARSER_CLASS`."""

    def __init__(self, **kwargs: Any) -> None:
        if PARSER_CLASS is not None:
            kwargs.setdefault("parser_class", PARSER_CLASS)
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]


class _SSLConnection(redis.SSLConnection):
    """redis-py's TLS connection, reading replies with :data:`PARSER_CLASS`."""

    def __init__(self, **kwargs: Any) -> None:
        if PARSER_CLASS is not None:
            kwargs.setdefault("parser_class", PARSER_CLASS)
        super().__init__(**kwargs)


def connection_class(tls: bool) -> type[redis.Connection]:
    """The connection class for kydb's pools (and a cluster's nodes): redis-py's, with the large-reply parser."""
    return _SSLConnection if tls else _Connection
