"""URL parsing and masking (kydb.url)."""

from __future__ import annotations

import pytest

import kydb
from kydb.url import mask_url, parse_store_url, scheme_of, split_composite


def test_parse_full_url() -> None:
    url = parse_store_url("redis://ann:s%40cret@Cache.Example:6380/home/tony?db=2&socket_timeout=3")
    assert (url.scheme, url.backend, url.username, url.password) == ("redis", "redis", "ann", "s@cret")
    assert (url.host, url.netloc, url.port) == ("cache.example", "Cache.Example:6380", 6380)
    assert url.base_path == "/home/tony"
    assert dict(url.options) == {"db": "2", "socket_timeout": "3"}
    assert "s@cret" not in repr(url) and "s%40cret" not in repr(url)
    assert url.masked == "redis://ann:***@Cache.Example:6380/home/tony?db=2&socket_timeout=3"


def test_base_path_from_query_when_the_path_is_not_a_base() -> None:
    url = parse_store_url("sqlite:////var/data/kydb.db?base=/books/&table=t", path_is_base=False)
    assert url.path == "//var/data/kydb.db"
    assert url.base_path == "/books"
    assert dict(url.options) == {"table": "t"}


def test_driver_suffix_is_not_part_of_the_backend_scheme() -> None:
    assert scheme_of("postgresql+psycopg://u@h/db") == "postgresql"
    url = parse_store_url("postgresql+psycopg://u@h/db", path_is_base=False)
    assert (url.scheme, url.backend, url.base_path) == ("postgresql+psycopg", "postgresql", "")


def test_root_base_path_is_empty() -> None:
    for text in ("memory://x", "memory://x/", "memory://x?base=/", "memory://x?base="):
        assert parse_store_url(text).base_path == ""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("no-scheme-here", "expected 'scheme://"),
        ("memory:/x", "expected 'scheme://"),
        ("1redis://h", "expected 'scheme://"),
        ("redis://h:notaport", "Port"),
        ("memory://x/a//b", "bad base path"),
        ("memory://x/.hidden", "bad base path"),
        ("memory://x/base?base=/b", "both"),
        ("memory://x?a=1&a=2", "given twice"),
        ("memory://x#frag", "fragment"),
    ],
)
def test_malformed_urls_raise_value_error_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_store_url(text)


def test_errors_mask_the_password() -> None:
    with pytest.raises(ValueError) as info:
        parse_store_url("redis://user:hunter2@host:bad/x")
    assert "hunter2" not in str(info.value) and "***" in str(info.value)
    with pytest.raises(ValueError) as info:
        kydb.connect("redis://user:hunter2@host;")
    assert "hunter2" not in str(info.value)


def test_mask_url_covers_composites_and_secret_options() -> None:
    text = "redis://:pw1@h|s3://bucket?aws_secret_access_key=pw2&region=x;postgresql://u:pw3@h/db?token=pw4"
    masked = mask_url(text)
    for secret in ("pw1", "pw2", "pw3", "pw4"):
        assert secret not in masked
    assert "region=x" in masked
    nested = mask_url("s3://bucket/x?endpoint_url=http://minio:pw5@10.0.0.1:9000&region=eu")
    assert "pw5" not in nested and "minio:***@10.0.0.1:9000" in nested
    token = mask_url("s3://bucket?endpoint_url=http://TOKEN123@10.0.0.1:9000&colour=1")
    assert "TOKEN123" not in token and "http://***@10.0.0.1:9000" in token and "colour=1" in token


def test_split_composite() -> None:
    assert split_composite(" memory://a ") == ("single", ["memory://a"])
    assert split_composite("memory://a;memory://b;memory://c") == ("union", ["memory://a", "memory://b", "memory://c"])
    assert split_composite("memory://c|memory://p") == ("cache", ["memory://c", "memory://p"])
    assert split_composite("memory://c|memory://p;memory://x") == ("union", ["memory://c|memory://p", "memory://x"])
    for bad in ("memory://a;", ";memory://a", "memory://a;;memory://b", "memory://a|memory://b|memory://c", "a|"):
        with pytest.raises(ValueError):
            split_composite(bad)


def test_with_base_rewrites_the_right_part() -> None:
    path_based = parse_store_url("memory://x/old?keep=1")
    assert path_based.with_base("/new/base") == "memory://x/new/base?keep=1"
    query_based = parse_store_url("sqlite:////tmp/a.db?base=/old&table=t", path_is_base=False)
    assert query_based.with_base("/new") == "sqlite:////tmp/a.db?table=t&base=/new"
    assert parse_store_url("memory://x/a b").with_base("/c d%") == "memory://x/c%20d%25"
    assert parse_store_url(parse_store_url("memory://x").with_base("/c d%")).base_path == "/c d%"


def test_without_options() -> None:
    url = parse_store_url("sqlite:///rel.db?base=/b&table=t&timeout=3", path_is_base=False)
    assert url.without_options("table") == "sqlite:///rel.db?timeout=3"
