"""Keys other tools wrote into the bucket: names kydb cannot represent, and names S3's DeleteObjects cannot carry.

Each test plants such keys with plain boto3 beside objects kydb wrote, then
checks what a kydb user sees: listings, walks and ``kydb cp -r`` skip what
kydb cannot name (and say so in the log), and ``rm_tree`` leaves nothing
behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

import kydb
from kydb import cli, envelope, transfer
from kydb.testing import unique_name
from kydb_s3.testing import LoopbackProxy

#: Names XML 1.0 cannot carry as they are: control characters, the non-characters U+FFFE and U+FFFF, and
#: the carriage return (which XML reads back as a line feed).
NOT_IN_XML = ["a\x01b", "a\x1fb", "a\ufffeb", "a\uffffb", "a\rb"]
#: Keys below the folder kydb cannot name: an empty path component (listed as the folder ``/``).
EMPTY_COMPONENT = ["/x", "sub//y"]


def keys_under(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(c["Key"] for page in pages for c in page.get("Contents", []))


def plant(s3: Any, bucket: str, db: Any) -> list[str]:
    """Objects kydb cannot name under ``/f`` of ``db``, written as another tool would; their S3 keys."""
    prefix = f"{db.base_path[1:]}/f/"
    longest = "L" * (1024 - len(prefix.encode()))  # a 1,024-byte key: its kydb path would be 1,025 bytes
    keys = [prefix + name for name in [*NOT_IN_XML, *EMPTY_COMPONENT, longest]]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=envelope.encode("foreign"))
    return keys


def test_rm_tree_deletes_keys_that_delete_objects_cannot_carry(
    pair: Callable[..., tuple[Any, Any]], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    direct, db = pair(proxy.url)
    direct.set_many({f"/f/k{i}": i for i in range(3)} | {"/f/sub/k": 3, "/kept": 4})
    planted = plant(s3, bucket, direct)
    proxy.clear()
    assert db.rm_tree("/f") == 4 + len(planted)
    # is_dir, one listing page, one DeleteObjects for what XML can carry, one DeleteObject for each other key.
    assert proxy.operations() == {"ListObjectsV2": 2, "DeleteObjects": 1, "DeleteObject": len(NOT_IN_XML)}
    assert keys_under(s3, bucket, f"{db.base_path[1:]}/f") == []
    assert db.ls("/") == ["kept"]


def test_a_delete_objects_refused_as_malformed_is_sent_again_key_by_key(
    pair: Callable[..., tuple[Any, Any]], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    direct, db = pair(proxy.url)
    direct.set_many({"/f/a": 1, "/f/b": 2, "/f/c": 3})
    proxy.clear()
    proxy.fail_next(1, status=400, when=lambda request: request.operation == "DeleteObjects")  # MalformedXML
    db.delete_many(["/f/a", "/f/b"])
    assert keys_under(s3, bucket, f"{db.base_path[1:]}/f") == [f"{db.base_path[1:]}/f/", f"{db.base_path[1:]}/f/c"]
    # The folder's look and marker; the refused batch; then each object and its sidecar on their own.
    assert proxy.operations() == {"ListObjectsV2": 1, "PutObject": 1, "DeleteObjects": 1, "DeleteObject": 4}


def test_listings_and_walks_skip_names_kydb_cannot_represent_and_say_so(
    connect_s3: Callable[..., Any], s3: Any, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = connect_s3()
    db.set_many({"/f/k0": 0, "/f/k1": 1, "/f/sub/k": 2})
    planted = plant(s3, bucket, db)
    caplog.set_level(logging.WARNING, logger="kydb_s3")
    assert db.ls("/f") == ["k0", "k1", "sub/"]  # never '/', never a name kydb's key rules refuse
    warnings = [r.getMessage() for r in caplog.records if r.name == "kydb_s3"]
    assert len(warnings) == 1  # one per listing page, naming every key it skipped
    prefix = f"{db.base_path[1:]}/f/"
    # 'f//x' lists as the folder 'f//'; 'f/sub//y' lies below 'sub/', a folder kydb can name.
    named = [key for key in planted if "/" not in key[len(prefix) :]] + [prefix + "/"]
    assert f"skipped {len(named)} key(s)" in warnings[0]
    assert all(repr(key) in warnings[0] for key in named)
    caplog.clear()
    assert list(db.list_dir("/f", page_size=2)) == ["k0", "k1", "sub/"]
    assert db.ls("/f/sub") == ["k"]
    assert sorted(transfer.walk(db, "/f")) == [("/k0", False), ("/k1", False), ("/sub/k", False)]
    assert sorted(db.recent("/f", allow_scan=True)) == ["k0", "k1"]  # a scan names only what kydb can
    assert all(r.name == "kydb_s3" and "cannot name" in r.getMessage() for r in caplog.records)


def test_kydb_cp_copies_everything_representable(
    connect_s3: Callable[..., Any],
    s3: Any,
    bucket: str,
    moto_endpoint: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = connect_s3()
    src.set_many({"/f/k0": 0, "/f/k1": 1, "/f/sub/k": 2})
    src.mkdir("/f/empty")
    plant(s3, bucket, src)
    dst_base = unique_name("s3-cp")
    dst_url = f"s3://{bucket}/{dst_base}?endpoint_url={moto_endpoint}"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["-u", src.url, "cp", "-q", "-r", "/f", dst_url])
    assert exit_info.value.code == 0, capsys.readouterr().err
    dst = connect_s3(base=dst_base)
    assert dst.ls("/") == ["empty/", "k0", "k1", "sub/"]
    assert dst.get_many(["/k0", "/k1", "/sub/k"]) == {"/k0": 0, "/k1": 1, "/sub/k": 2}
    assert keys_under(s3, bucket, dst_base) == sorted(
        f"{dst_base}/{name}" for name in ("", "empty/", "k0", "k1", "sub/k")
    )


def test_names_kydb_cannot_represent_are_never_returned_by_a_scan_by_index(
    connect_s3: Callable[..., Any], s3: Any, bucket: str
) -> None:
    db = connect_s3()
    db.set("/f/k", 1, index={"rank": 1})
    prefix = f"{db.base_path[1:]}/f/"
    s3.put_object(Bucket=bucket, Key=f"{prefix}a\x01b", Body=envelope.encode("foreign"))
    s3.put_object(Bucket=bucket, Key=f"{prefix}.kydb-index/a\x01b", Body=b'{"rank": 0}')
    assert list(db.folder("/f", allow_scan=True).by("rank").items()) == [("k", 1)]
    with pytest.raises(kydb.InvalidKey):
        db["/f/a\x01b"]
