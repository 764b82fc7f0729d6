"""URL parsing: the one place kydb reads and masks URLs.

A kydb URL is one store (``scheme://...``), a union of stores joined by ``;``
(read the first hit, write the front) or a cache DB ``cache|persist`` (exactly
two).  ``;`` binds loosest: ``redis://c|s3://p;memory://x`` is a union whose
first layer is a cache DB.

Passwords, and query options whose names say they are secret, are replaced by
``***`` in :func:`mask_url`; every message and ``repr`` goes through it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from .errors import InvalidKey
from .keys import normalize_folder

__all__ = [
    "StoreURL",
    "mask_url",
    "parse_store_url",
    "positive_int_option",
    "positive_seconds_option",
    "scheme_of",
    "split_composite",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9.\-]*)(\+[A-Za-z0-9_.\-]+)?://")
_STORE_START = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_USER = re.compile(r"[^/?#@:;|\s]*:")
_BARE_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^@/?#:]+@")
_SECRET_OPTION = re.compile(r"pass|secret|token|credential|signing|(^|_)key$", re.IGNORECASE)
_UNENCODED_IN_PASSWORD = "/?#@"
_MASK = "***"


def _credential_spans(text: str) -> list[tuple[int, int]]:
    """Where each store URL's password lies in ``text``, found on the raw text before any parsing.

    A store URL starts at the beginning or after a ``;``/``|`` separator, and
    runs to the separator before the next store URL.  Its password is
    everything between ``user:`` (right after ``://``) and the *last* ``@``
    in it, so a password holding ``/``, ``?``, ``#``, ``;``, ``|`` or ``@``
    is still found whole; when in doubt, more is treated as secret, never less.
    """
    starts = [
        m
        for m in _STORE_START.finditer(text)
        if not text[: m.start()].strip() or text[: m.start()].rstrip()[-1] in ";|"
    ]
    spans = []
    for i, match in enumerate(starts):
        end = len(text)
        if i + 1 < len(starts):
            before_next = text[: starts[i + 1].start()].rstrip()
            end = len(before_next) - 1  # the separator
        user = _USER.match(text, match.end(), end)
        if user is None:
            continue
        at = text.rfind("@", user.end(), end)
        if at >= 0:
            spans.append((user.end(), at))
    return spans


def _mask_credentials(text: str) -> str:
    for start, end in reversed(_credential_spans(text)):
        text = text[:start] + _MASK + text[end:]
    return text


def _mask_value(name: str, value: str) -> str:
    if _SECRET_OPTION.search(name):
        return _MASK
    # an option that is itself a URL (endpoint_url=http://user:pass@host) keeps its password masked too,
    # and a user part with no password (http://TOKEN@host) is taken for a token
    value = _mask_credentials(value)
    return _BARE_USERINFO.sub(lambda m: f"{m.group(1)}{_MASK}@", value, count=1)


def _mask_query(query: str) -> str:
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    masked = [(n, _mask_value(n, v)) for n, v in pairs]
    if masked == pairs:
        return query
    return urlencode(masked, safe="/*:@")


def _mask_options(url: str) -> str:
    head, sep, query = url.partition("?")
    if sep:
        fragment = ""
        if "#" in query:
            query, fragment = query.split("#", 1)
            fragment = "#" + fragment
        url = head + "?" + _mask_query(query) + fragment
    return url


@functools.lru_cache(maxsize=4096)
def mask_url(url: str) -> str:
    """``url`` with every password and secret query option replaced by ``***``.

    Passwords are found on the raw text first (see :func:`_credential_spans`),
    so this works on composite and on malformed URLs alike — error messages
    can always use it.  Cached: a connect and each error message ask for it.
    """
    masked = _mask_credentials(url)
    return ";".join("|".join(_mask_options(p) for p in part.split("|")) for part in masked.split(";"))


def _split_outside(url: str, separator: str, spans: list[tuple[int, int]]) -> list[str]:
    """``url`` split at ``separator``, except where it stands inside a password."""
    parts: list[str] = []
    last = 0
    for i, char in enumerate(url):
        if char == separator and not any(start <= i < end for start, end in spans):
            parts.append(url[last:i].strip())
            last = i + 1
    parts.append(url[last:].strip())
    return parts


def split_composite(url: str) -> tuple[Literal["single", "union", "cache"], list[str]]:
    """Split a composite URL into its layers (not recursively parsed).

    Returns ``("union", layers)`` for ``a;b``, ``("cache", [cache, persist])``
    for ``a|b`` and ``("single", [url])`` otherwise; a ``;`` or ``|`` inside
    a password does not split.  Raises ``ValueError`` for an empty layer or
    a cache DB that does not have exactly two parts.
    """
    if not isinstance(url, str):
        raise TypeError(f"a kydb URL is a str, not {type(url).__name__}")
    url = url.strip()
    spans = _credential_spans(url)
    parts = _split_outside(url, ";", spans)
    if len(parts) > 1:
        if any(not p for p in parts):
            raise ValueError(f"invalid kydb URL {mask_url(url)!r}: empty layer in a ';' union")
        return "union", parts
    parts = _split_outside(url, "|", spans)
    if len(parts) > 1:
        if len(parts) != 2 or any(not p for p in parts):
            raise ValueError(f"invalid kydb URL {mask_url(url)!r}: a cache DB is exactly 'cache_url|persistent_url'")
        return "cache", parts
    return "single", [url]


def scheme_of(url: str) -> str:
    """The backend scheme of a single-store URL: ``postgresql+psycopg://..`` -> ``postgresql``.

    Raises ``ValueError`` naming the (masked) URL when there is no ``scheme://``.
    """
    match = _SCHEME.match(url)
    if not match:
        raise ValueError(
            f"invalid kydb URL {mask_url(url)!r}: expected 'scheme://...', "
            "for example 'memory://scratch' or 's3://my-bucket/base/path'"
        )
    return match.group(1).lower()


@dataclass(frozen=True)
class StoreURL:
    """A parsed single-store URL.

    ``path`` is the unquoted URL path.  When the backend takes its base path
    from the URL path (``path_is_base``), ``base_path`` comes from there;
    otherwise only from ``?base=``.  ``base_path`` is ``''`` for the root or
    ``/a/b``.  ``options`` holds the query options other than ``base``.
    ``host`` is lower-cased; ``netloc`` is the authority as written, without
    any ``user:password@``.
    The password is never shown by ``repr``; use :attr:`masked` for display.
    """

    raw: str = field(repr=False)
    scheme: str = field(repr=False)
    backend: str = field(repr=False)
    username: str | None = field(repr=False)
    password: str | None = field(repr=False)
    host: str | None = field(repr=False)
    netloc: str = field(repr=False)
    port: int | None = field(repr=False)
    path: str = field(repr=False)
    options: Mapping[str, str] = field(repr=False)
    base_path: str = field(repr=False)
    path_is_base: bool = field(repr=False)

    @property
    def masked(self) -> str:
        """The URL with any password replaced by ``***``."""
        return mask_url(self.raw)

    def __repr__(self) -> str:
        return f"StoreURL({self.masked!r})"

    def with_base(self, base_path: str) -> str:
        """This URL as a string, rooted at ``base_path`` instead of its own base."""
        base = normalize_folder(base_path, system=False).rstrip("/")
        parts = urlsplit(self.raw)
        pairs = [(n, v) for n, v in parse_qsl(parts.query, keep_blank_values=True) if n != "base"]
        path = parts.path
        if self.path_is_base:
            path = quote(base, safe="/")
        elif base:
            pairs.append(("base", base))
        return _unsplit(parts.scheme, parts.netloc, path, pairs)

    def without_options(self, *names: str) -> str:
        """The URL string with the named query options (and ``base``) removed."""
        parts = urlsplit(self.raw)
        drop = {"base", *names}
        pairs = [(n, v) for n, v in parse_qsl(parts.query, keep_blank_values=True) if n not in drop]
        return _unsplit(parts.scheme, parts.netloc, parts.path, pairs)


def _unsplit(scheme: str, netloc: str, path: str, pairs: list[tuple[str, str]]) -> str:
    # urlunsplit would drop the '//' of an empty authority ('sqlite:///x' -> 'sqlite:/x').
    query = urlencode(pairs, safe="/")
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def _base_from(text: str, where: str, masked: str) -> str:
    try:
        return normalize_folder(text, system=False).rstrip("/")
    except InvalidKey as exc:
        raise ValueError(f"invalid kydb URL {masked!r}: bad base path in the {where}: {exc}") from None


def parse_store_url(url: str, path_is_base: bool = True) -> StoreURL:
    """Parse one store's URL (no ``;`` or ``|``).

    ``path_is_base`` says whether the backend reads its base path from the
    URL path (memory, redis, s3) or only from ``?base=`` (SQL URLs, whose
    path names the database).  Raises ``ValueError`` naming the masked URL and
    what is wrong.
    """
    url = url.strip()
    masked = mask_url(url)
    backend = scheme_of(url)
    for start, end in _credential_spans(url):
        if any(char in url[start:end] for char in _UNENCODED_IN_PASSWORD):
            raise ValueError(
                f"invalid kydb URL {masked!r}: the password holds '/', '?', '#' or '@' (or an '@' follows the "
                "host); percent-encode them in the URL: '/' as %2F, '?' as %3F, '#' as %23, '@' as %40"
            )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid kydb URL {masked!r}: {exc}") from None
    if parts.fragment:
        raise ValueError(f"invalid kydb URL {masked!r}: '#' fragments are not allowed")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    names = [n for n, _ in pairs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"invalid kydb URL {masked!r}: query option(s) {duplicated} given twice")
    options = dict(pairs)
    path = unquote(parts.path)
    base_path = ""
    if "base" in options:
        if path_is_base and path.strip("/"):
            raise ValueError(f"invalid kydb URL {masked!r}: base path given both in the URL path and in ?base=")
        base_path = _base_from(options.pop("base"), "?base= option", masked)
    elif path_is_base:
        base_path = _base_from(path, "URL path", masked)
    return StoreURL(
        raw=url,
        scheme=parts.scheme.lower(),
        backend=backend,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        host=parts.hostname,
        netloc=unquote(parts.netloc.rpartition("@")[2]),
        port=port,
        path=path,
        options=MappingProxyType(options),
        base_path=base_path,
        path_is_base=path_is_base,
    )


def positive_seconds_option(url: StoreURL, name: str, default: float | None = None) -> float | None:
    """The URL option ``name`` as a positive, finite number of seconds, or ``default`` when absent.

    Raises ``ValueError`` naming the masked URL and an example otherwise.
    """
    text = url.options.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (0 < value < float("inf")):
        raise ValueError(
            f"invalid kydb URL {url.masked!r}: ?{name}= takes a positive number of seconds, got {text!r} "
            f"(for example ?{name}=5)"
        )
    return value


def positive_int_option(url: StoreURL, name: str, default: int | None = None) -> int | None:
    """The URL option ``name`` as a positive integer, or ``default`` when absent; ``ValueError`` otherwise."""
    text = url.options.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"invalid kydb URL {url.masked!r}: ?{name}= takes a positive whole number, got {text!r} "
            f"(for example ?{name}=10)"
        )
    return int(text)
