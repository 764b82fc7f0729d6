"""``http://`` and ``https://``: a tree in kydb-files' layout, published by any static web server, read-only.

The URL names the tree's root; ``GET`` reads an object (its file is the
blob), ``HEAD`` and the object's metadata file answer ``stat``, and ``ls``
reads the server's directory listing (``python -m http.server``, nginx's
``autoindex``, Apache's ``mod_autoindex``...): the links in it are the
directory's entries, decoded as kydb-files' layout says.  The store declares
``writable=False``, so kydb refuses every write with
:class:`kydb.ReadOnlyStore` before calling it.

Standard library only (``http.client``): connections to one server are kept
alive in a pool shared by every store of the process that talks to it
(:class:`kydb.pools.SharedPools`), ``?pool_size=`` connections at most.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import html.parser
import http.client
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, NoReturn, TypeVar

import kydb
from kydb.pools import SharedPools
from kydb.url import positive_int_option, positive_seconds_option
from kydb_files import layout
from kydb_files.layout import META_DIR, NAME_FILE, RESERVED_PREFIX, SAME_NAME_DIR, Meta
from kydb_files.pages import ListingPages

__all__ = ["DEFAULT_POOL_SIZE", "DEFAULT_POOL_TIMEOUT", "DEFAULT_TIMEOUT", "HTTPStore", "listing_links"]

DEFAULT_TIMEOUT = 30.0
DEFAULT_POOL_SIZE = 8
DEFAULT_POOL_TIMEOUT = 30.0
_ATTEMPTS = 3
_ABSENT = frozenset({301, 302, 303, 307, 308, 404, 410})  # a redirect: a directory (or nothing) at that name
_RETRY = frozenset({408, 425, 429, 500, 502, 503, 504})
_OPTIONS = frozenset({"timeout", "pool_size", "pool_timeout"})
_T = TypeVar("_T")


class _Answer(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class _Connections:
    """At most ``size`` keep-alive connections to one server, shared by threads."""

    def __init__(self, scheme: str, host: str, port: int, timeout: float, size: int, wait: float) -> None:
        self.server = f"{scheme}://{host}:{port}"
        self._connect: Callable[[], http.client.HTTPConnection]
        if scheme == "https":
            context = ssl.create_default_context()
            self._connect = lambda: http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            self._connect = lambda: http.client.HTTPConnection(host, port, timeout=timeout)
        self.size, self.wait = size, wait
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []

    def request(self, method: str, target: str, headers: Mapping[str, str]) -> _Answer:
        """One request on a free connection; waits up to ``wait`` seconds for one.

        Raises :class:`kydb.StoreUnavailable` when every connection stayed in
        use that long, and the connection's ``OSError`` or
        ``http.client.HTTPException`` when the exchange fails.
        """
        if not self._slots.acquire(timeout=self.wait):
            raise kydb.StoreUnavailable(
                f"all {self.size} connections to {self.server} stayed in use for {self.wait:g} s (the pool is "
                f"exhausted); raise ?pool_size= (default {DEFAULT_POOL_SIZE}) or ?pool_timeout= "
                f"(default {DEFAULT_POOL_TIMEOUT:g} s) in the URL"
            )
        try:
            with self._lock:
                connection = self._idle.pop() if self._idle else self._connect()
            try:
                connection.request(method, target, headers=dict(headers))
                response = connection.getresponse()
                body = response.read()
            except BaseException:
                connection.close()
                raise
            if response.will_close:
                connection.close()
            else:
                with self._lock:
                    self._idle.append(connection)
            return _Answer(response.status, response.headers, body)
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


_pools: SharedPools[_Connections] = SharedPools(lambda pool: pool.close())


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(value for name, value in attrs if name == "href" and value)


def listing_links(page: str, directory: str) -> list[tuple[str, bool]]:
    """The entries a server's directory listing links to: ``(name, is_directory)``, names decoded.

    ``directory`` is the listing's own URL path (ending with ``/``).  Links
    relative to it (``name``, ``name/``) and absolute ones below it count;
    parent links, sort links (``?C=N;O=D``) and links elsewhere do not.
    """
    parser = _Links()
    parser.feed(page)
    found: dict[str, bool] = {}
    for href in parser.hrefs:
        split = urllib.parse.urlsplit(href)
        if split.scheme or split.netloc or not split.path:
            continue
        path = split.path
        if path.startswith("/"):
            if not path.startswith(directory) or path == directory:
                continue
            path = path[len(directory) :]
        name = urllib.parse.unquote(path.removesuffix("/"), errors="surrogateescape")
        if not name or "/" in name or name in (".", ".."):
            continue
        found[name] = found.get(name, False) or path.endswith("/")
    return list(found.items())


def _http_time(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp()) * 1_000_000_000
    except (TypeError, ValueError):
        return None


class HTTPStore(kydb.Store):
    """A published kydb-files tree, read over HTTP(S); every write is refused before it reaches here."""

    # Times come from metadata files (exact) or Last-Modified (whole seconds); queries scan.
    capabilities = kydb.Capabilities(url_path_is_base=False, keeps_times=True, keeps_ctime=True, writable=False)

    def __init__(self, url: kydb.StoreURL) -> None:
        super().__init__(url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"invalid kydb URL {url.masked!r}: expected http://host[:port]/path/to/tree")
        unknown = sorted(set(url.options) - _OPTIONS)
        if unknown:
            raise ValueError(
                f"invalid kydb URL {url.masked!r}: unknown option(s) {unknown}; "
                f"http(s) URLs take base, {', '.join(sorted(_OPTIONS))}"
            )
        timeout = positive_seconds_option(url, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
        size = positive_int_option(url, "pool_size", DEFAULT_POOL_SIZE) or DEFAULT_POOL_SIZE
        wait = positive_seconds_option(url, "pool_timeout", DEFAULT_POOL_TIMEOUT) or DEFAULT_POOL_TIMEOUT
        port = url.port or (443 if url.scheme == "https" else 80)
        host = url.host
        self._headers = {"User-Agent": "kydb-fsspec", "Accept-Encoding": "identity"}
        if url.username is not None:
            token = f"{url.username}:{url.password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
        self._root = "/".join(urllib.parse.quote(part, safe="") for part in url.path.rstrip("/").split("/"))
        self._key = (url.scheme, host, port, timeout, size, wait)
        self._pool = _pools.acquire(self._key, lambda: _Connections(url.scheme, host, port, timeout, size, wait))
        self._open = True
        self._pages = ListingPages()

    def kydb_close(self) -> None:
        if self._open:
            self._open = False
            _pools.release(self._key)

    # ------------------------------------------------------------------ requests

    def _dir(self, folder: str) -> str:
        """The URL path of a folder's directory, ending with ``/``."""
        entries = layout.folder_entries(folder)
        return self._root + "/" + "".join(urllib.parse.quote(entry, safe="") + "/" for entry in entries)

    def _locate(self, path: str) -> tuple[str, str]:
        folders, entry = layout.object_entries(path)
        return self._root + "/" + "".join(urllib.parse.quote(e, safe="") + "/" for e in folders), entry

    def _fetch(self, method: str, target: str, what: str, allow: Iterable[int] = ()) -> _Answer:
        """``method`` ``target`` with retries; statuses 2xx, ``allow`` and the absent ones come back."""
        error = ""
        for attempt in range(_ATTEMPTS):
            if attempt:
                time.sleep(0.05 * 2**attempt)
            try:
                answer = self._pool.request(method, target, self._headers)
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
                continue
            if answer.status in _RETRY:
                error = f"HTTP {answer.status}"
                continue
            if 200 <= answer.status < 300 or answer.status in _ABSENT or answer.status in allow:
                return answer
            self._refuse(answer.status, target, what)
        raise kydb.StoreUnavailable(
            f"{what}: {self.url.masked} did not answer {method} {target} ({error}) after {_ATTEMPTS} attempts; "
            "check that the server is up (and ?timeout=)"
        )

    def _refuse(self, status: int, target: str, what: str) -> NoReturn:
        if status in (401, 403):
            raise PermissionError(f"{what}: {self.url.masked} refused {target} (HTTP {status}); check the credentials")
        raise kydb.StoreUnavailable(f"{what}: {self.url.masked} answered HTTP {status} for {target}")

    def _object(self, path: str, method: str = "GET") -> _Answer | None:
        """The answer for the object's file (beside a folder of its name, if need be), or ``None`` if absent."""
        d, entry = self._locate(path)
        quoted = urllib.parse.quote(entry, safe="")
        for target in (d + quoted, f"{d}{SAME_NAME_DIR}/{quoted}"):
            answer = self._fetch(method, target, f"reading {path}")
            if answer.status == 200:
                return answer
        return None

    def _meta(self, d: str, entry: str, what: str) -> Meta | None:
        answer = self._fetch("GET", f"{d}{META_DIR}/{urllib.parse.quote(entry, safe='')}", what)
        return Meta.from_bytes(answer.body) if answer.status == 200 else None

    # ------------------------------------------------------------------ reading

    def _each(self, paths: Sequence[str], one: Callable[[str], _T | None]) -> dict[str, _T]:
        """``{path: one(path)}`` for the paths where it is not ``None``: up to ``pool_size`` requests at once."""
        if len(paths) == 1:
            results: Iterable[_T | None] = [one(paths[0])]
        else:
            with ThreadPoolExecutor(min(len(paths), self._pool.size)) as workers:
                results = list(workers.map(one, paths))
        return {path: result for path, result in zip(paths, results, strict=True) if result is not None}

    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        def one(path: str) -> bytes | None:
            answer = self._object(path)
            return None if answer is None else answer.body

        return self._each(paths, one)

    def kydb_exists(self, path: str) -> bool:
        return self._object(path, "HEAD") is not None

    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, kydb.ObjectInfo]:
        def one(path: str) -> kydb.ObjectInfo | None:
            answer = self._object(path, "HEAD")
            if answer is None:
                return None
            size = int(answer.headers.get("Content-Length") or 0)
            meta = self._meta(*self._locate(path), f"reading the metadata of {path}")
            stamp = _http_time(answer.headers.get("Last-Modified"))
            return layout.describe(meta, size, stamp)._replace(version=None)  # no versions: nothing to write

        return self._each(paths, one)

    # ------------------------------------------------------------------ folders

    def _entries(self, target: str, what: str) -> list[tuple[str, bool]] | None:
        """The entries of the directory at ``target`` from the server's listing; ``None`` if there is none."""
        answer = self._fetch("GET", target, what, allow=(403,))
        if answer.status == 403:
            raise PermissionError(
                f"{what}: {self.url.masked} does not list {target} (HTTP 403); listing needs the server's directory "
                "listings (nginx: autoindex on; python -m http.server lists by default)"
            )
        if answer.status != 200:
            return None
        charset = answer.headers.get_content_charset() or "utf-8"
        return listing_links(answer.body.decode(charset, errors="replace"), target)

    def _names(self, d: str, what: str) -> list[str]:
        names = []
        for entry, is_dir in self._entries(d, what) or []:
            if entry.startswith(RESERVED_PREFIX):
                if layout.is_long(entry):
                    component = self._long_name(d, entry, is_dir, what)
                    if component is not None:
                        names.append(layout.kydb_name(component, is_dir))
                elif entry == SAME_NAME_DIR and is_dir:
                    for inner, inner_is_dir in self._entries(f"{d}{SAME_NAME_DIR}/", what) or []:
                        if inner_is_dir or layout.is_temp(inner):
                            continue
                        if layout.is_long(inner):
                            component = self._long_name(d, inner, False, what)
                        else:
                            component = layout.component_of(inner)
                        if component is not None:
                            names.append(component)
                continue
            component = layout.component_of(entry)
            if component is not None:
                names.append(layout.kydb_name(component, is_dir))
        return names

    def _long_name(self, d: str, entry: str, is_dir: bool, what: str) -> str | None:
        if is_dir:
            answer = self._fetch("GET", f"{d}{urllib.parse.quote(entry)}/{NAME_FILE}", what)
            with contextlib.suppress(UnicodeDecodeError):
                return answer.body.decode("utf-8") if answer.status == 200 else None
            return None
        meta = self._meta(d, entry, what)
        return None if meta is None else meta.name

    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        d = self._dir(folder)
        return self._pages.page(d, cursor, page_size, include_dirs, lambda: self._names(d, f"listing {folder}"))

    def kydb_is_dir(self, folder: str) -> bool:
        if folder == "/":
            return True
        answer = self._fetch("HEAD", self._dir(folder), f"looking for folder {folder}", allow=(403,))
        return answer.status in (200, 403)  # 403: there, but the server lists no directories

    # ------------------------------------------------------------------ writing: never reached

    def _read_only(self) -> NoReturn:
        raise kydb.ReadOnlyStore(f"{self.url.masked} is read-only")

    def kydb_put(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None],
    ) -> None:
        self._read_only()

    def kydb_delete(self, paths: Sequence[str], expect: Mapping[str, str]) -> None:
        self._read_only()

    def kydb_mkdir(self, folder: str) -> None:
        self._read_only()

    def kydb_rmdir(self, folder: str) -> None:
        self._read_only()
