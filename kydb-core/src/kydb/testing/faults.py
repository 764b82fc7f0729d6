"""A loopback TCP proxy that tests put between kydb and a real server, to break the network on purpose.

::

    with TCPProxy("127.0.0.1", 6379) as proxy:
        db = kydb.connect(f"redis://127.0.0.1:{proxy.port}/base")
        proxy.cut()            # drop every open connection now (mid-operation if one is running)
        proxy.cut_after(4096)  # drop the next connection after 4 kB have crossed it
        proxy.refuse()         # close new connections at once, as a dead server would
        proxy.stall()          # keep connections open but move no bytes (a hung server)
        proxy.heal()           # back to normal

Everything runs on daemon threads and binds to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from types import TracebackType

__all__ = ["TCPProxy"]

_CHUNK = 65536


class TCPProxy:
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port``, with faults on demand."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._refusing = False
        self._stalled = threading.Event()
        self._cut_after: int | None = None
        self._closed = False
        #: Connections accepted so far (refused ones included).
        self.connections = 0
        #: Open connections the proxy has dropped so far (by cut, cut_after or refuse), so a test can
        #: tell that its fault really struck.
        self.dropped = 0
        self._thread = threading.Thread(target=self._accept, name=f"tcp-proxy-{self.port}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ controls

    def cut(self) -> None:
        """Drop every open connection, both ways, now."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self.dropped += len(pairs)
        for pair in pairs:
            _close(*pair)

    def cut_after(self, nbytes: int) -> None:
        """Drop the next connection accepted, once more than ``nbytes`` (either way) have crossed it."""
        with self._lock:
            self._cut_after = nbytes

    def refuse(self) -> None:
        """Drop open connections and close new ones at once (the server looks down)."""
        self._refusing = True
        self.cut()

    def stall(self) -> None:
        """Stop moving bytes; connections stay open (the server looks hung)."""
        self._stalled.set()

    def heal(self) -> None:
        """Accept and forward normally again."""
        self._refusing = False
        self._cut_after = None
        self._stalled.clear()

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._closed = True
        self._listener.close()
        self.cut()

    def __enter__(self) -> TCPProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ forwarding

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if self._refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                # Forward each chunk at once: with Nagle's algorithm, a chunk sent while the previous one
                # awaits its (delayed) ACK waits up to 40 ms, and every request/answer through the proxy slows.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._pairs.append((client, server))
                limit, self._cut_after = self._cut_after, None
            threading.Thread(target=self._pump, args=(client, server, limit), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket, limit: int | None) -> None:
        peer = {client: server, server: client}
        moved = 0
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ)
            selector.register(server, selectors.EVENT_READ)
            try:
                while True:
                    if self._stalled.is_set():
                        time.sleep(0.05)  # hold the bytes back
                        if client.fileno() < 0 or server.fileno() < 0:
                            return
                        continue
                    for key, _ in selector.select(timeout=0.1):
                        if self._stalled.is_set():
                            break  # stalled while waiting: bytes that arrived since stay unread
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        data = sock.recv(_CHUNK)
                        if not data:
                            return
                        if limit is not None and moved + len(data) > limit:
                            peer[sock].sendall(data[: max(limit - moved, 0)])
                            with self._lock:
                                self.dropped += 1
                            return  # cut mid-stream
                        peer[sock].sendall(data)
                        moved += len(data)
            except (OSError, ValueError):
                return
            finally:
                with self._lock:
                    if (client, server) in self._pairs:
                        self._pairs.remove((client, server))
                _close(client, server)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):  # already closed by the other side
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
