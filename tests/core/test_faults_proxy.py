"""The fault-injecting TCP proxy (kydb.testing.faults) against a plain echo server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from kydb.testing.faults import TCPProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def exchange(port: int, payload: bytes, timeout: float = 2.0) -> bytes:
    """Send ``payload`` and read the echo; a connection closed or reset on us returns what came back."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            while len(received) < len(payload):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
    return received


def test_forwards_both_ways(echo_port: int) -> None:
    with TCPProxy("127.0.0.1", echo_port) as proxy:
        assert exchange(proxy.port, b"hello" * 10_000) == b"hello" * 10_000
        assert proxy.connections == 1


def test_counts_round_trips(echo_port: int) -> None:
    with TCPProxy("127.0.0.1", echo_port) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as sock:
            for n in range(1, 4):  # each request answered before the next: one round trip each
                sock.sendall(b"ping")
                assert sock.recv(10) == b"ping"
                assert proxy.round_trips == n
        assert exchange(proxy.port, b"one more") == b"one more"  # a new connection's first request counts too
        assert proxy.round_trips == 4


def test_cut_drops_open_connections(echo_port: int) -> None:
    with TCPProxy("127.0.0.1", echo_port) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        sock.sendall(b"x")
        assert sock.recv(10) == b"x"
        proxy.cut()
        assert proxy.dropped == 1
        with _either_closed():
            sock.sendall(b"y")
            assert sock.recv(10) == b""
        sock.close()
        assert exchange(proxy.port, b"again") == b"again"  # new connections work


def test_cut_after_drops_mid_stream(echo_port: int) -> None:
    with TCPProxy("127.0.0.1", echo_port) as proxy:
        proxy.cut_after(1000)
        got = exchange(proxy.port, b"z" * 100_000)
        assert len(got) < 100_000
        assert exchange(proxy.port, b"whole") == b"whole"  # only the next connection was cut
        assert proxy.dropped == 1


def test_refuse_and_heal(echo_port: int) -> None:
    with TCPProxy("127.0.0.1", echo_port) as proxy:
        proxy.refuse()
        assert exchange(proxy.port, b"nobody home") == b""
        proxy.heal()
        assert exchange(proxy.port, b"back") == b"back"


def test_stall_holds_bytes_until_healed(echo_port: int) -> None:
    with TCPProxy("127.0.0.1", echo_port) as proxy:
        proxy.stall()
        with pytest.raises(TimeoutError):
            exchange(proxy.port, b"slow", timeout=0.3)
        proxy.heal()
        assert exchange(proxy.port, b"fast") == b"fast"


def test_stall_holds_bytes_sent_on_an_open_connection() -> None:
    received: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))

    def record() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                received.append(data)
                conn.sendall(b"ok")

    threading.Thread(target=record, daemon=True).start()
    with TCPProxy("127.0.0.1", server.getsockname()[1]) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        sock.sendall(b"before")
        assert sock.recv(10) == b"ok"
        time.sleep(0.25)  # the forwarding thread is waiting for bytes when the stall begins
        proxy.stall()
        sock.sendall(b"during")
        time.sleep(0.5)  # the proxy's forwarding thread wakes up within 0.1 s
        assert b"".join(received) == b"before"
        proxy.cut()  # a stalled connection dropped: what it held never arrives
        proxy.heal()
        time.sleep(0.3)
        assert b"".join(received) == b"before"
        sock.close()
    server.close()


class _either_closed:  # noqa: N801 - a context manager used like pytest.raises
    """A cut connection shows as a reset (OSError) or as end of stream, depending on timing."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        return exc_type is None or (isinstance(exc_type, type) and issubclass(exc_type, OSError))
