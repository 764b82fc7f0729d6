"""Testing against DynamoDB on loopback: moto's server made to keep DynamoDB's promises, and a faulty proxy.

:class:`MotoServer` runs moto's DynamoDB in this process (``pip install
'moto[server]'``), on 127.0.0.1; :class:`DynamoDBProxy` sits between boto3
and it, counting requests, answering DynamoDB's errors and cutting them.

Put it in front of a local DynamoDB endpoint (moto's server, DynamoDB
Local) and give its URL to boto3 or kydb::

    with DynamoDBProxy("http://127.0.0.1:8000") as proxy:
        db = kydb.connect(f"dynamodb://table/base?endpoint_url={proxy.url}")
        proxy.fail_next(2, "ProvisionedThroughputExceededException")  # botocore retries, then succeeds
        db["/a"] = 1
        proxy.operations()             # Counter({'TransactWriteItems': 3, 'DescribeTable': 1})
        proxy.cut_from(3)              # from the 4th request on, drop every connection unanswered
        proxy.leave_unprocessed(1)     # the next batch request: the server gets half, the rest comes back

It listens on 127.0.0.1 only and uses nothing but the standard library.
DynamoDB's protocol is one ``POST /`` per request, its operation in the
``X-Amz-Target`` header and errors as JSON bodies.
"""

from __future__ import annotations

import copy
import http.client
import importlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = ["DynamoDBProxy", "MotoServer", "ProxiedRequest"]

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "expect"}
)


@dataclass(frozen=True)
class ProxiedRequest:
    """One request that reached the proxy: its operation and its JSON body."""

    operation: str
    body: Mapping[str, Any]


@dataclass
class _Fault:
    remaining: int
    code: str
    status: int
    extra: Mapping[str, Any]
    when: Callable[[ProxiedRequest], bool] | None


_BATCHES = {"BatchGetItem": "UnprocessedKeys", "BatchWriteItem": "UnprocessedItems"}


def _withhold(operation: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``body`` with the second half of each table's keys or items taken out, and what was taken out."""
    kept: dict[str, Any] = {}
    withheld: dict[str, Any] = {}
    for table, asked in body.get("RequestItems", {}).items():
        entries = asked["Keys"] if operation == "BatchGetItem" else asked
        half = len(entries) // 2
        if operation == "BatchGetItem":
            if half:
                kept[table] = {**asked, "Keys": entries[:half]}
            withheld[table] = {**asked, "Keys": entries[half:]}
        else:
            if half:
                kept[table] = entries[:half]
            withheld[table] = entries[half:]
    return {**body, "RequestItems": kept}, withheld


def _merge(operation: str, answer: dict[str, Any], withheld: dict[str, Any]) -> bytes:
    """The server's answer with what was withheld reported as unprocessed."""
    if operation == "BatchGetItem":
        answer.setdefault("Responses", {})
    answer[_BATCHES[operation]] = withheld
    return json.dumps(answer).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: DynamoDBProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the proxy's record of requests is :attr:`DynamoDBProxy.requests`."""

    def do_POST(self) -> None:
        proxy = self.server.proxy
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = self.headers.get("X-Amz-Target", "")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        request = ProxiedRequest(target.rpartition(".")[2], body)
        fault, cut, reach = proxy.record(request)
        if cut and not reach:
            self.close_connection = True
            return  # dropped before the server saw it
        if fault is not None:
            answer = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{fault.code}",
                                 "message": f"injected {fault.code}", **fault.extra}).encode()  # fmt: skip
            self._send(fault.status, [("Content-Type", "application/x-amz-json-1.0")], answer)
            return
        withheld: dict[str, Any] = {}
        if request.operation in _BATCHES and proxy.take_unprocessed():
            body, withheld = _withhold(request.operation, body)
            raw = json.dumps(body).encode()
            if not body["RequestItems"]:  # nothing left for the server: answer at once
                answer = _merge(request.operation, {}, withheld)
                self._send(200, [("Content-Type", "application/x-amz-json-1.0")], answer)
                return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"content-length"}}
        upstream = http.client.HTTPConnection(proxy.target_host, proxy.target_port, timeout=120)
        try:
            upstream.request("POST", self.path, body=raw, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        if cut:
            self.close_connection = True
            return  # the server did it; its answer is lost
        skip = _HOP_BY_HOP | {"server", "date", "content-length"}
        if withheld and response.status == 200:
            data = _merge(request.operation, json.loads(data), withheld)
            skip |= {"x-amz-crc32"}  # the body changed
        self._send(response.status, [(k, v) for k, v in response.getheaders() if k.lower() not in skip], data)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class DynamoDBProxy:
    """A threaded HTTP proxy on 127.0.0.1 in front of ``target`` (an ``http://host:port`` endpoint).

    Every request is recorded in :attr:`requests`.  Use it as a context
    manager, or call :meth:`close`.
    """

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"the proxy forwards to a plain http://host:port endpoint, not {target!r}")
        self.target_host: str = parts.hostname
        self.target_port: int = parts.port
        #: Every request received, in order of arrival.
        self.requests: list[ProxiedRequest] = []
        self._faults: list[_Fault] = []
        self._passing: int | None = None  # requests still let through before every one is cut
        self._unprocessed = 0  # batch requests still to answer with half of them unprocessed
        self._reach = False
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        host, port = self._server.server_address[:2]
        #: The endpoint URL to give boto3 (``?endpoint_url=`` in a kydb URL).
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="kydb-dynamodb-proxy", daemon=True)
        self._thread.start()

    def fail_next(
        self,
        count: int,
        code: str,
        status: int = 400,
        when: Callable[[ProxiedRequest], bool] | None = None,
        **extra: Any,
    ) -> None:
        """Answer the next ``count`` requests (those ``when`` accepts) with DynamoDB's error ``code``.

        ``extra`` goes into the error's JSON body (``CancellationReasons=[...]``
        for a ``TransactionCanceledException``).
        """
        with self._lock:
            self._faults.append(_Fault(count, code, status, extra, when))

    def cut_from(self, passing: int, reach_server: bool = False) -> None:
        """Let ``passing`` more requests through, then drop every connection without an answer.

        With ``reach_server`` the dropped requests still reach the server,
        which acts on them; only their answers are lost.
        """
        with self._lock:
            self._passing, self._reach = passing, reach_server

    def leave_unprocessed(self, count: int) -> None:
        """For the next ``count`` batch requests, the server gets only the first half of each table's keys or items.

        The rest comes back as ``UnprocessedKeys`` / ``UnprocessedItems``, as
        DynamoDB answers when it throttles a batch or a response would pass
        16 MB; a request of one key or item is answered with all of it
        unprocessed, without reaching the server.
        """
        with self._lock:
            self._unprocessed = count

    def take_unprocessed(self) -> bool:
        """Whether this batch request is one to leave partly unprocessed (counts it)."""
        with self._lock:
            if self._unprocessed <= 0:
                return False
            self._unprocessed -= 1
            return True

    def heal(self) -> None:
        """Forward every request again, and forget pending faults."""
        with self._lock:
            self._passing = None
            self._unprocessed = 0
            self._faults.clear()

    def record(self, request: ProxiedRequest) -> tuple[_Fault | None, bool, bool]:
        """Note a request; the fault to answer it with, whether to cut it, and whether it reaches the server."""
        with self._lock:
            self.requests.append(request)
            if self._passing is not None:
                if self._passing == 0:
                    return None, True, self._reach
                self._passing -= 1
            for fault in self._faults:
                if fault.remaining > 0 and (fault.when is None or fault.when(request)):
                    fault.remaining -= 1
                    return fault, False, False
        return None, False, False

    def operations(self) -> Counter[str]:
        """How many requests of each DynamoDB operation were received."""
        with self._lock:
            return Counter(r.operation for r in self.requests)

    def clear(self) -> None:
        """Forget the requests received."""
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> DynamoDBProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _OneAtATime:
    """A WSGI app that lets one request at a time into moto's ``app``, and forgets moto's instance records."""

    def __init__(self, app: Any, forget: Callable[[], None]) -> None:
        self.app = app
        self.forget = forget
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self.lock:
            try:
                return list(self.app(environ, start_response))
            finally:
                self.forget()


class _TableCopies:
    """Stands in for the ``copy`` module in moto's DynamoDB models: one copy of each table per transaction."""

    def __init__(self, table_class: type) -> None:
        self.table_class = table_class
        self.copies: dict[int, Any] | None = None

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if self.copies is None or not isinstance(value, self.table_class):
            return copy.deepcopy(value, memo)
        if id(value) not in self.copies:
            self.copies[id(value)] = copy.deepcopy(value, memo)
        return self.copies[id(value)]

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


_patch_lock = threading.Lock()
_patched = False


def _copy_each_table_once() -> None:
    """Make moto copy a table once per transaction, not once per action (see :class:`MotoServer`)."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        models: Any = importlib.import_module("moto.dynamodb.models")
        copies = _TableCopies(importlib.import_module("moto.dynamodb.models.table").Table)
        transact = models.DynamoDBBackend.transact_write_items

        def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
            copies.copies = {}
            try:
                transact(backend, transact_items)
            finally:
                copies.copies = None

        models.copy = copies
        models.DynamoDBBackend.transact_write_items = transact_write_items
        _patched = True


class MotoServer:
    """moto's server in this process on 127.0.0.1:``port`` (0: a free port), for DynamoDB over HTTP.

    Three things about moto's DynamoDB are set right, in this process, so
    that it keeps the promises kydb relies on and stays usable for tables
    of thousands of items:

    * **One request at a time.**  moto applies a transaction to its tables
      in place and, when a condition fails, restores a copy of the whole
      table taken when the transaction began, undoing any write another
      request made meanwhile; DynamoDB isolates transactions item by item.
      Connections are still accepted concurrently, so a stalled or cut
      connection holds no one up.
    * **One copy per transaction.**  moto copies the table once per action
      of a transaction (all of them before it applies any): a transaction
      of 100 actions copied the table 100 times.  The copies are the same,
      so one is kept.
    * **No instance records.**  moto records every model instance it ever
      makes (for its ``moto-api`` pages), table copies included: every
      transaction kept a whole table alive.  The records are cleared after
      each request (``reset_model_data``, which leaves the tables alone).

    A server stopped and started again on the same port finds its tables
    as they were: moto keeps them in the process, as DynamoDB keeps them on
    its disks.
    """

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint URL (``http://127.0.0.1:port``)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        werkzeug_app = importlib.import_module("moto.moto_server.werkzeug_app")
        serving = importlib.import_module("werkzeug.serving")
        forget = importlib.import_module("moto.core.model_instances").reset_model_data
        _copy_each_table_once()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
        app = _OneAtATime(werkzeug_app.DomainDispatcherApplication(werkzeug_app.create_backend_app), forget)
        self._server = serving.make_server(
            "127.0.0.1", self.port, app, threaded=True, request_handler=werkzeug_app.MotoRequestHandler
        )
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-dynamodb", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the tables stay, in this process)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
