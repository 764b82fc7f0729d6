"""Fault injection for backend tests: a TCP proxy that breaks the network, and the fault table.

:class:`TCPProxy` sits between kydb and a real server, on loopback, to break
the network on purpose::

    with TCPProxy("127.0.0.1", 6379) as proxy:
        db = kydb.connect(f"redis://127.0.0.1:{proxy.port}/base")
        proxy.cut()            # drop every open connection now (mid-operation if one is running)
        proxy.cut_after(4096)  # drop the next connection after 4 kB have crossed it
        proxy.refuse()         # close new connections at once, as a dead server would
        proxy.stall()          # keep connections open but move no bytes (a hung server)
        proxy.heal()           # back to normal

Everything runs on daemon threads and binds to 127.0.0.1 only.

:class:`FaultScenario` is one row of a fault table: the fault injected,
what each operation tried under it met, and what was lost.  Its
:meth:`~FaultScenario.attempt` checks the promises for one operation (it
succeeds as if nothing happened, or raises the expected error and never a
``KeyError``); :meth:`~FaultScenario.check_nothing_lost` reads back, after
recovery, what the store acknowledged before.  :func:`fault_table` renders
the rows as text, for a test run's summary::

    scenario = FaultScenario("mystore", "server unreachable (connections refused)")
    proxy.refuse()
    error = scenario.attempt("put", lambda: db.set("/k", 1), expect=kydb.StoreUnavailable)
    proxy.heal()
    assert scenario.attempt("read", lambda: db.read("/kept", reload=True)) == "kept"
    scenario.check_nothing_lost(db, {"/kept": "kept"})
    print("\n".join(fault_table([scenario])))
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar, overload

if TYPE_CHECKING:
    from ..front import BaseDB

__all__ = ["FaultScenario", "TCPProxy", "fault_table"]

_T = TypeVar("_T")
_E = TypeVar("_E", bound=Exception)

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
        #: Round trips so far: each time a client sent bytes, on a new connection or after its server had.
        self.round_trips = 0
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
        client_spoke_last = False
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
                        if sock is client and not client_spoke_last:
                            with self._lock:
                                self.round_trips += 1
                        client_spoke_last = sock is client
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


# ---------------------------------------------------------------------- the fault table


@dataclass
class FaultScenario:
    """One row of a fault table: a fault, the operations tried under it and what they met, what was lost."""

    #: The backend under test (``"redis"``, ``"PostgreSQL"``, ...).
    backend: str
    #: The fault injected, in words.
    fault: str
    #: How many operations met each outcome: the exception's class name, or ``"none"`` for success.
    outcomes: Counter[str] = field(default_factory=Counter)
    #: Acknowledged objects that did not read back intact after the fault (``None``: not checked).
    lost: int | None = None
    #: Failed multi-object writes that left part of themselves behind (``None``: not checked).
    partial: int | None = None

    @overload
    def attempt(self, what: str, operation: Callable[[], _T], *, expect: None = None) -> _T: ...

    @overload
    def attempt(self, what: str, operation: Callable[[], object], *, expect: type[_E]) -> _E: ...

    def attempt(self, what: str, operation: Callable[[], object], *, expect: type[Exception] | None = None) -> object:
        """Run ``operation()``, record its outcome and check it.

        With ``expect=None`` the operation must succeed (a fault the retries
        overcome is invisible); its result is returned.  With an exception
        type it must raise that type, and never a ``KeyError``: "no such
        key" is never an acceptable answer under a fault.  The exception is
        returned, for further checks on its message or cause.  Anything else
        is an ``AssertionError`` naming the fault and ``what``.
        """
        try:
            result = operation()
        except Exception as exc:
            self.outcomes[type(exc).__name__] += 1
            if isinstance(exc, KeyError):
                raise AssertionError(f"{self.fault}: {what} raised {exc!r}, which says 'no such key'") from exc
            if expect is None:
                raise AssertionError(f"{self.fault}: {what} should have succeeded, got {exc!r}") from exc
            if not isinstance(exc, expect):
                raise AssertionError(f"{self.fault}: {what} raised {exc!r}, expected {expect.__name__}") from exc
            return exc
        self.outcomes["none"] += 1
        if expect is not None:
            raise AssertionError(
                f"{self.fault}: {what} succeeded, returning {result!r:.80}, expected {expect.__name__}"
            )
        return result

    def check_nothing_lost(
        self, db: BaseDB, acknowledged: Mapping[str, object], attempted: Mapping[str, object] | None = None
    ) -> None:
        """Every acknowledged object reads back from the store (``reload=True``) with its value.

        ``attempted`` maps keys to values of writes that failed: a store may
        or may not have applied them, so for those keys either value counts
        as intact.  Records :attr:`lost`.
        """
        attempted = attempted or {}
        got = db.get_many(list(acknowledged), reload=True)
        lost = sorted(
            key
            for key, value in acknowledged.items()
            if key not in got or got[key] not in [value, *([attempted[key]] if key in attempted else [])]
        )
        self.lost = len(lost)
        assert not lost, f"{self.fault}: {len(lost)} acknowledged objects lost or changed, e.g. {lost[:5]}"


def fault_table(scenarios: Iterable[FaultScenario]) -> list[str]:
    """The scenarios as the lines of a text table, one row each, under a header and a rule."""
    header = ("backend", "fault injected", "ops", "errors raised, by type", "objects lost", "partial writes")
    rows = [
        (
            scenario.backend,
            scenario.fault,
            str(sum(scenario.outcomes.values())),
            ", ".join(
                f"{name}: {count}"
                for name, count in sorted(scenario.outcomes.items(), key=lambda item: (item[0] == "none", item[0]))
            )
            or "-",
            "not checked" if scenario.lost is None else str(scenario.lost),
            "-" if scenario.partial is None else str(scenario.partial),
        )
        for scenario in scenarios
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    top, *lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return [top, "-+-".join("-" * width for width in widths), *lines]
