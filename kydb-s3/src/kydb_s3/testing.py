"""An HTTP proxy for testing code that talks to S3: it counts, delays and fails requests.

Put it in front of a local S3 endpoint (moto's server, MinIO) and give its
URL to boto3 or kydb::

    with LoopbackProxy("http://127.0.0.1:5000", latency=0.02) as proxy:
        db = kydb.connect(f"s3://bucket/base?endpoint_url={proxy.url}")
        proxy.fail_next(2)             # the next two requests are answered 503 SlowDown
        db["/a"] = 1                   # botocore retries and succeeds
        proxy.operations()             # Counter({'PutObject': 3})

It listens on 127.0.0.1 only and uses nothing but the standard library.
Path-style requests are assumed (the style boto3 uses for IP endpoints).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

__all__ = ["LoopbackProxy", "ProxiedRequest"]

# Headers that belong to one connection, not to the request or response being forwarded.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "expect"}
)
# What S3 answers with these statuses (503 is its throttling answer; 400 here, its answer to a
# DeleteObjects body it cannot read; 409 and 412, its answers to conditional writes that lost).
_ERRORS = {
    400: ("MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema."),
    409: ("ConditionalRequestConflict", "A conflicting conditional operation is currently in progress."),
    412: ("PreconditionFailed", "At least one of the pre-conditions you specified did not hold."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}


def _error_body(status: int) -> bytes:
    code, message = _ERRORS.get(status, ("InternalError", "Injected failure."))
    xml = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + xml.encode()


@dataclass(frozen=True)
class ProxiedRequest:
    """One request that reached the proxy: method, path (percent-encoded) and query string."""

    method: str
    path: str
    query: str

    @property
    def operation(self) -> str:
        """The S3 API operation, e.g. ``PutObject`` or ``ListObjectsV2``."""
        params = parse_qs(self.query, keep_blank_values=True)
        on_object = "/" in self.path.strip("/")
        method = self.method
        if method == "GET" and not on_object:
            return "ListObjectsV2" if params.get("list-type") == ["2"] else "ListObjects"
        if method == "POST" and "delete" in params:
            return "DeleteObjects"
        if "uploadId" in params:
            by_method = {"PUT": "UploadPart", "POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload"}
            return by_method.get(method, "ListParts")
        if method == "POST" and "uploads" in params:
            return "CreateMultipartUpload"
        kind = "Object" if on_object else "Bucket"
        verbs = {"GET": "Get", "PUT": "Put", "HEAD": "Head", "DELETE": "Delete"}
        return f"{verbs.get(method, method)}{kind}"


@dataclass
class _Fault:
    remaining: int
    status: int
    when: Callable[[ProxiedRequest], bool] | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: LoopbackProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 does; also answers "Expect: 100-continue"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK would hold every response back by ~40 ms.
    disable_nagle_algorithm = True
    server: _Server
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the proxy's record of requests is :attr:`LoopbackProxy.requests`."""

    def _read_body(self) -> bytes:
        # botocore always sends Content-Length (bodies are bytes or seekable files), never chunked.
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _exchange(
        self, proxy: LoopbackProxy, body: bytes, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """Send the request upstream on this connection's keep-alive connection, opened on first use."""
        if self._upstream is not None:
            try:
                return self._round_trip(self._upstream, body, headers)
            except (http.client.RemoteDisconnected, ConnectionError):
                pass  # the server closed the idle connection: open a new one
        self._close_upstream()
        self._upstream = http.client.HTTPConnection(proxy.target_host, proxy.target_port, timeout=120)
        return self._round_trip(self._upstream, body, headers)

    def _round_trip(
        self, upstream: http.client.HTTPConnection, body: bytes, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        return response, response.read()

    def _close_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def finish(self) -> None:
        self._close_upstream()
        super().finish()

    def _forward(self) -> None:
        proxy = self.server.proxy
        with proxy.in_flight():
            self._forward_one(proxy)

    def _forward_one(self, proxy: LoopbackProxy) -> None:
        body = self._read_body()
        path, _, query = self.path.partition("?")
        fault = proxy.record(ProxiedRequest(self.command, path, query))
        if proxy.latency:
            time.sleep(proxy.latency)
        if fault is not None:
            self._send(fault.status, [("Content-Type", "application/xml")], _error_body(fault.status))
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        response, data = self._exchange(proxy, body, headers)
        received = response.getheaders()
        # send_response adds its own Server and Date headers; the body's length is set by _send.
        skip = _HOP_BY_HOP | {"server", "date", "content-length"}
        forwarded = [(k, v) for k, v in received if k.lower() not in skip]
        length = int(response.headers.get("Content-Length") or 0) if self.command == "HEAD" else None
        self._send(response.status, forwarded, data, length)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815 - http.server's names


class LoopbackProxy:
    """A threaded HTTP proxy on 127.0.0.1 in front of ``target`` (an ``http://host:port`` endpoint).

    ``latency`` seconds are added to every request (real S3 answers in tens
    of milliseconds; a local server in well under one).  Every request is
    recorded in :attr:`requests`.  Use it as a context manager, or call
    :meth:`close`.
    """

    def __init__(self, target: str, latency: float = 0.0) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"the proxy forwards to a plain http://host:port endpoint, not {target!r}")
        self.target_host: str = parts.hostname
        self.target_port: int = parts.port
        self.latency = latency
        #: Every request received, in order of arrival.
        self.requests: list[ProxiedRequest] = []
        #: The most requests that were being handled at one time.
        self.peak_in_flight = 0
        self._in_flight_now = 0
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        host, port = self._server.server_address[:2]
        #: The endpoint URL to give boto3 (``?endpoint_url=`` in a kydb URL).
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="kydb-s3-proxy", daemon=True)
        self._thread.start()

    def fail_next(self, count: int, status: int = 503, when: Callable[[ProxiedRequest], bool] | None = None) -> None:
        """Answer the next ``count`` requests (those ``when`` accepts) with ``status`` and S3's error for it.

        503 is S3's ``SlowDown`` (throttling: botocore backs off for up to
        seconds between attempts); 500 is ``InternalError`` (backoff in tens
        of milliseconds); 400 ``MalformedXML``, 409 ``ConditionalRequestConflict``
        and 412 ``PreconditionFailed`` are not retried.
        """
        with self._lock:
            self._faults.append(_Fault(count, status, when))

    def record(self, request: ProxiedRequest) -> _Fault | None:
        """Note a request the proxy received; the fault to answer it with, if one is due."""
        with self._lock:
            self.requests.append(request)
            for fault in self._faults:
                if fault.remaining > 0 and (fault.when is None or fault.when(request)):
                    fault.remaining -= 1
                    return fault
        return None

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count a request as in flight (for ``peak_in_flight``) while the block runs."""
        with self._lock:
            self._in_flight_now += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight_now)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight_now -= 1

    def operations(self) -> Counter[str]:
        """How many requests of each S3 operation were received."""
        with self._lock:
            return Counter(r.operation for r in self.requests)

    def clear(self) -> None:
        """Forget the requests received, the peak of requests in flight and any faults still pending."""
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self.peak_in_flight = self._in_flight_now

    def close(self) -> None:
        """Stop listening (connections already open are dropped when their clients close them)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> LoopbackProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
