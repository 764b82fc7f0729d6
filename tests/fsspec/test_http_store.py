"""kydb-fsspec's read-only http(s):// store beyond the conformance suite: listings, options, failures, the pool."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import kydb
from kydb.testing import unique_name
from kydb_fsspec import http as kydb_http
from kydb_fsspec.http import listing_links

NGINX = """<html><head><title>Index of /pub/books/</title></head><body><h1>Index of /pub/books/</h1><hr><pre>
<a href="../">../</a>
<a href="sub%20folder/">sub folder/</a>                                      05-Dec-2026 10:00       -
<a href="MYBOOK">MYBOOK</a>                                             05-Dec-2026 10:00     49
<a href="100%25">100%</a>                                               05-Dec-2026 10:00     49
</pre><hr></body></html>"""

APACHE = """<html><head><title>Index of /pub/books</title></head><body><h1>Index of /pub/books</h1>
<table><tr><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th></tr>
<tr><td><a href="/pub/">Parent Directory</a></td></tr>
<tr><td><a href="sub%20folder/">sub folder/</a></td></tr>
<tr><td><a href="MYBOOK">MYBOOK</a></td></tr>
<tr><td><a href="100%25">100%</a></td></tr>
</table></body></html>"""

ABSOLUTE = """<ul><li><a href="/pub/books/sub%20folder/">sub folder</a></li><li><a href="/pub/books/MYBOOK">MYBOOK</a>
<li><a href="/pub/books/100%25">100%</a><li><a href="https://elsewhere.example/x">elsewhere</a></ul>"""


@pytest.mark.parametrize("page", [NGINX, APACHE, ABSOLUTE], ids=["nginx", "apache", "absolute links"])
def test_directory_listings_of_common_servers(page: str) -> None:
    assert sorted(listing_links(page, "/pub/books/")) == [("100%", False), ("MYBOOK", False), ("sub folder", True)]


class Behaviour:
    """What the scripted server answers: a status per path, and the requests it saw."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, bytes]]] = {}
        self.seen: list[tuple[str, str, str | None]] = []
        self.password: str | None = None


@pytest.fixture
def scripted() -> Iterator[tuple[str, Behaviour]]:
    """A web server answering from a script (statuses, bodies), on a free loopback port."""
    behaviour = Behaviour()

    class Handler(BaseHTTPRequestHandler):
        def answer(self, head: bool) -> None:
            auth = self.headers.get("Authorization")
            behaviour.seen.append((self.command, self.path, auth))
            if behaviour.password is not None:
                wanted = "Basic " + base64.b64encode(f"me:{behaviour.password}".encode()).decode()
                if auth != wanted:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            queue = behaviour.answers.get(self.path, [(404, b"")])
            status, body = queue.pop(0) if len(queue) > 1 else queue[0]
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def do_GET(self) -> None:
            self.answer(head=False)

        def do_HEAD(self) -> None:
            self.answer(head=True)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", behaviour
    server.shutdown()
    server.server_close()


def test_an_object_and_its_folder_listing(scripted: tuple[str, Behaviour]) -> None:
    url, behaviour = scripted
    behaviour.answers["/pub/books/"] = [(200, NGINX.encode())]
    behaviour.answers["/pub/books/MYBOOK"] = [(200, kydb.envelope.encode({"pv": 1.5}))]
    db = kydb.connect(f"{url}/pub")
    assert db.ls("/books") == ["100%", "MYBOOK", "sub folder/"]
    assert db.read("/books/MYBOOK", reload=True) == {"pv": 1.5}
    assert not db.exists("/books/nothing")
    db.close()


def test_answers_worth_retrying_are_retried(scripted: tuple[str, Behaviour]) -> None:
    url, behaviour = scripted
    blob = kydb.envelope.encode("after two 503s")
    behaviour.answers["/k"] = [(503, b""), (503, b""), (200, blob)]
    db = kydb.connect(url)
    assert db.read("/k", reload=True) == "after two 503s"
    behaviour.answers["/down"] = [(503, b"")]
    with pytest.raises(kydb.StoreUnavailable, match=r"did not answer.*HTTP 503.*after 3 attempts"):
        db.read("/down", reload=True)
    db.close()


def test_credentials_in_the_url_are_sent_and_never_shown(scripted: tuple[str, Behaviour]) -> None:
    url, behaviour = scripted
    behaviour.password = "s3cret"
    behaviour.answers["/k"] = [(200, kydb.envelope.encode(1))]
    host = url.removeprefix("http://")
    with pytest.raises(PermissionError, match="HTTP 401") as info:
        kydb.connect(url).read("/k", reload=True)
    assert "s3cret" not in str(info.value)
    db = kydb.connect(f"http://me:s3cret@{host}/")
    assert db.read("/k", reload=True) == 1 and "s3cret" not in repr(db)
    wrong = kydb.connect(f"http://me:wrong@{host}/")
    with pytest.raises(PermissionError, match=r"http://me:\*\*\*@"):
        wrong.read("/k", reload=True)


def test_a_server_that_lists_no_directories(scripted: tuple[str, Behaviour]) -> None:
    url, behaviour = scripted
    behaviour.answers["/books/"] = [(403, b"")]
    db = kydb.connect(url)
    assert db.is_dir("/books")  # there, but not listed
    with pytest.raises(PermissionError, match="autoindex"):
        db.ls("/books")


def test_a_server_that_is_not_there_is_unavailable_never_absent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nobody listens there
    db = kydb.connect(f"http://127.0.0.1:{port}/pub?timeout=2")
    for attempt in (lambda: db.read("/k", reload=True), lambda: db.exists("/k"), lambda: db.ls("/")):
        with pytest.raises(kydb.StoreUnavailable, match=f"127.0.0.1:{port}/pub") as info:
            attempt()
        assert not isinstance(info.value, KeyError)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A listener that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_an_exhausted_pool_says_how_to_raise_it(silent_server: int) -> None:
    db = kydb.connect(f"http://127.0.0.1:{silent_server}/?timeout=3&pool_size=1&pool_timeout=0.2")
    outcome: list[BaseException] = []

    def wait_for_the_silent_server() -> None:
        try:
            db.exists("/k")
        except kydb.StoreUnavailable as exc:
            outcome.append(exc)

    stuck = threading.Thread(target=wait_for_the_silent_server)
    stuck.start()  # holds the only connection while the server stays silent
    time.sleep(0.3)
    started = time.monotonic()
    with pytest.raises(kydb.StoreUnavailable, match=r"pool is exhausted.*\?pool_size= \(default 8\)"):
        db.exists("/other")
    assert time.monotonic() - started < 2  # waited pool_timeout, not the server's timeout
    stuck.join()
    assert len(outcome) == 1 and "did not answer" in str(outcome[0])  # its own wait ended by ?timeout=
    db.close()


def test_stores_on_one_server_share_one_pool(http_server: Any) -> None:
    first = kydb.connect(f"{http_server.url}/{unique_name('a')}")
    key = first.store._key  # type: ignore[attr-defined]
    users = kydb_http._pools.users(key)  # other tests' stores on this server may still hold it
    second = kydb.connect(f"{http_server.url}/{unique_name('b')}?base=/x")
    assert key == second.store._key  # type: ignore[attr-defined]
    assert kydb_http._pools.users(key) == users + 1  # one pool, one more user
    first.close()
    second.close()
    assert kydb_http._pools.users(key) == users - 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:1/?verify=no", r"unknown option\(s\) \['verify'\]"),
        ("http://127.0.0.1:1/?pool_size=0", "pool_size= takes a positive whole number"),
        ("http://127.0.0.1:1/?timeout=soon", "timeout= takes a positive number of seconds"),
        ("http:///no-host", "expected http://host"),
    ],
)
def test_bad_http_urls_are_refused_at_connect(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kydb.connect(url)


def test_names_hidden_by_the_layout_are_found_over_http(http_server: Any, tmp_path: Path) -> None:
    name = unique_name("hidden")
    writer = kydb.connect(f"file://{http_server.root}/{name}")
    reader = kydb.connect(f"{http_server.url}/{name}")
    long_name = "日" * 100
    writer["/a"] = "object"
    writer["/a/b"] = "folder of the same name"
    writer[f"/{long_name}"] = "long object"
    writer[f"/{long_name}/x"] = "long folder"
    writer.set("/.kydb-meta", "a system object named like the layout's own", system_obj=True)
    assert reader.ls("/", system=True) == sorted([".kydb-meta", "a", "a/", long_name, long_name + "/"])
    assert reader.read("/.kydb-meta", reload=True, system_obj=True) == "a system object named like the layout's own"
    assert reader.read("/a", reload=True) == "object" and reader.read(f"/{long_name}", reload=True) == "long object"
    writer.rm_tree("/")


def test_every_page_of_a_listing_comes_from_one_request(http_server: Any) -> None:
    name = unique_name("pages")
    writer = kydb.connect(f"file://{http_server.root}/{name}")
    writer.set_many({f"/p/o{i:03d}": i for i in range(250)})
    reader = kydb.connect(f"{http_server.url}/{name}")
    requests: list[str] = []
    pool = reader.store._pool  # type: ignore[attr-defined]
    original: Callable[..., Any] = pool.request

    def counting(method: str, target: str, headers: Any) -> Any:
        requests.append(f"{method} {target}")
        return original(method, target, headers)

    pool.request = counting
    try:
        assert list(reader.list_dir("/p", page_size=10)) == [f"o{i:03d}" for i in range(250)]
    finally:
        del pool.request
    assert requests == [f"GET /{name}/p/"]
    writer.rm_tree("/")
