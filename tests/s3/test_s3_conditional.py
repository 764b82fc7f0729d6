"""Conditional writes on S3: versions are ETags, conditions travel as If-Match / If-None-Match headers.

The behaviour every store shares is in the conformance suite (``conditional.py``,
run over moto's server by test_s3_conformance.py); here is what is S3's
own: which requests carry which condition, what each costs, how S3's
answers become :class:`kydb.Conflict`, and the writes S3 cannot make
conditionally.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import kydb
from kydb_s3 import MULTIPART_THRESHOLD
from kydb_s3.testing import LoopbackProxy


@contextlib.contextmanager
def sent_params(db: Any, operation: str) -> Iterator[list[dict[str, Any]]]:
    """The parameters of every ``operation`` request ``db``'s client builds while the block runs."""
    seen: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append(dict(params))

    events = db.store.client.meta.events
    event = f"before-parameter-build.s3.{operation}"
    events.register(event, record)
    try:
        yield seen
    finally:
        events.unregister(event, record)


def test_the_version_is_the_etag_read_with_the_value_in_one_request(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    db = connect_s3(proxy.url)
    db["/k"] = {"v": 1}
    etag = s3.head_object(Bucket=bucket, Key=f"{db.base_path[1:]}/k")["ETag"]
    proxy.clear()
    assert db.read_versioned("/k") == ({"v": 1}, etag)
    assert proxy.operations() == {"GetObject": 1}
    assert db.stat("/k").version == etag
    db["/k"] = {"v": 1}  # the same bytes again: S3 keeps the ETag, and the contract allows it
    assert db.stat("/k").version == etag
    db["/k"] = {"v": 2}
    assert db.stat("/k").version != etag


def test_conditional_puts_send_their_condition_in_one_put_object(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy
) -> None:
    db = connect_s3(proxy.url)
    with sent_params(db, "PutObject") as sent:
        proxy.clear()
        db.set("/k", 1, if_absent=True)
        assert proxy.operations() == {"PutObject": 1}
        version = db.stat("/k").version
        proxy.clear()
        db.set("/k", 2, if_version=version)
        assert proxy.operations() == {"PutObject": 1}
    assert [(p.get("IfNoneMatch"), p.get("IfMatch")) for p in sent] == [("*", None), (None, version)]
    proxy.clear()
    with pytest.raises(kydb.Conflict, match="/k: its version is no longer"):
        db.set("/k", 3, if_version=version)
    with pytest.raises(kydb.Conflict, match="/k: an object already exists"):
        db.set("/k", 3, if_absent=True)
    assert proxy.operations() == {"PutObject": 2}  # refused by S3 (412), not retried
    assert db.read("/k", reload=True) == 2


def test_a_conditional_put_of_a_large_value_is_one_put_object_not_a_multipart_upload(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy
) -> None:
    db = connect_s3(proxy.url)
    large = b"x" * (MULTIPART_THRESHOLD + 1)
    db.set("/big", large, if_absent=True)  # S3 checks a condition only on PutObject (or on completing parts)
    assert proxy.operations() == {"PutObject": 1}
    version = db.stat("/big").version
    proxy.clear()
    db.set("/big", large + b"y", if_version=version)
    assert proxy.operations() == {"PutObject": 1}
    with pytest.raises(kydb.Conflict):
        db.set("/big", large, if_version=version)
    assert db.read("/big", reload=True) == large + b"y"


def test_a_conditional_put_larger_than_one_put_object_takes_is_refused_before_writing(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = connect_s3(proxy.url)
    monkeypatch.setattr("kydb_s3.store.MAX_PUT_BYTES", 1000)  # S3's 5 GiB, made small enough to test
    with pytest.raises(kydb.ConditionalWritesNotSupported, match=r"/big: a conditional write of .* nothing was"):
        db.set("/big", b"x" * 2000, if_absent=True)
    assert proxy.operations() == {}
    assert not db.exists("/big")


@pytest.mark.parametrize("status", [409, 412])
def test_s3s_answers_to_a_lost_condition_are_conflicts_naming_the_key(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy, status: int
) -> None:
    db = connect_s3(proxy.url)
    db["/k"] = 1
    version = db.stat("/k").version
    proxy.clear()
    proxy.fail_next(1, status=status, when=lambda request: request.operation == "PutObject")
    with pytest.raises(kydb.Conflict, match="/k") as info:
        db.set("/k", 2, if_version=version)
    assert not isinstance(info.value, KeyError)
    assert proxy.operations() == {"PutObject": 1}
    assert db.read("/k", reload=True) == 1


def test_a_conditional_delete_is_one_delete_object_with_if_match(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    db = connect_s3(proxy.url)
    db.set("/f/k", 1, index={"rank": 1})
    db["/f/other"] = 2
    version = db.stat("/f/k").version
    db["/f/k"] = 3
    proxy.clear()
    with sent_params(db, "DeleteObject") as sent:
        with pytest.raises(kydb.Conflict, match="/f/k: its version is no longer"):
            db.delete("/f/k", if_version=version)
        assert db.read("/f/k", reload=True) == 3 and db.stat("/f/k").indexes == {"rank": 1}
        current = db.stat("/f/k").version
        proxy.clear()
        db.delete("/f/k", if_version=current)
    # The folder's look (its marker was written before the refused delete), the delete, then the sidecar.
    assert proxy.operations() == {"ListObjectsV2": 1, "DeleteObject": 1, "DeleteObjects": 1}
    assert [p.get("IfMatch") for p in sent] == [version, current]
    base = db.base_path[1:]
    keys = sorted(c["Key"] for c in s3.list_objects_v2(Bucket=bucket, Prefix=base).get("Contents", []))
    assert keys == [f"{base}/f/", f"{base}/f/other"]


def test_several_objects_at_once_cannot_be_written_conditionally(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy
) -> None:
    db = connect_s3(proxy.url)
    hook = db.plugins.hook
    paths = [db.base_path + "/a", db.base_path + "/b"]
    proxy.clear()
    with pytest.raises(kydb.ConditionalWritesNotSupported, match="one object per request"):
        hook.kydb_put(items=dict.fromkeys(paths, b"x"), mtime_ns=1, indexes={}, expect=dict.fromkeys(paths))
    with pytest.raises(kydb.ConditionalWritesNotSupported, match="one object per request"):
        hook.kydb_delete(paths=paths, expect=dict.fromkeys(paths, '"etag"'))
    assert proxy.operations() == {}
