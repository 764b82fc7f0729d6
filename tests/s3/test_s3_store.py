"""What is S3's own: URLs, the layout in the bucket, times, indexes, request counts, errors and large values.

Request counts are read from a proxy between boto3 and the moto server, so
they are the HTTP requests S3 would bill, retries included.  Network faults
and outages are in test_s3_faults.py.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import botocore.session
import pytest

import kydb
from kydb import envelope, transfer
from kydb.testing import unique_name
from kydb_s3 import CONCURRENCY, MTIME_METADATA, AccessDenied, BucketNotFound
from kydb_s3.index_sidecars import encode_index_values
from kydb_s3.scans import SCANS_KEPT
from kydb_s3.testing import LoopbackProxy


def keys_under(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(c["Key"] for page in pages for c in page.get("Contents", []))


def stat_many(db: Any, *keys: str) -> Mapping[str, kydb.ObjectInfo]:
    """The store's stat of several keys at once, as ``kydb ls -l`` and ``kydb cp`` ask for it."""
    return db.plugins.hook.kydb_stat(paths=[db.base_path + key for key in keys])


def put_raw(s3: Any, bucket: str, bodies: Mapping[str, bytes]) -> None:
    """Write objects straight to the bucket, several at a time."""
    with ThreadPoolExecutor(10) as pool:  # the pool of connections of a default client
        list(pool.map(lambda item: s3.put_object(Bucket=bucket, Key=item[0], Body=item[1]), bodies.items()))


@contextlib.contextmanager
def client_event(db: Any, event: str, handler: Callable[..., Any]) -> Iterator[None]:
    """``handler`` registered for botocore ``event`` on the (shared) client of ``db`` while the block runs."""
    events = db.store.client.meta.events
    events.register(event, handler)
    try:
        yield
    finally:
        events.unregister(event, handler)


def once(action: Callable[[], Any]) -> Callable[..., None]:
    """A botocore event handler that runs ``action`` the first time it is called only."""
    pending = [action]

    def handler(**_: Any) -> None:
        if pending:
            pending.pop()()

    return handler


# ---------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://", "name a bucket"),
        ("s3://AKIAEXAMPLE:s3cr3t-value@bucket", "credentials do not go in s3 URLs"),
        ("s3://bucket:9000/base", "take no port"),
        ("s3://bucket?colour=red", "unknown query option(s) ['colour']"),
        ("s3://bucket?region=", "empty query option value"),
        ("s3://bucket?endpoint_url=ftp://host", "endpoint_url must be an http"),
        ("s3://bucket?endpoint_url=http://user:s3cr3t-value@host", "must not hold credentials"),
        ("s3://bucket?endpoint_url=http://s3cr3t-value@host:9000", "must not hold credentials"),
        ("s3://bu*cket", "not a valid bucket name"),
        ("s3://bucket/a/../b", "bad base path"),
        ("s3://bucket?read_timeout=0", "?read_timeout= takes a positive number of seconds"),
        ("s3://bucket?connect_timeout=soon", "?connect_timeout= takes a positive number of seconds"),
    ],
)
def test_bad_urls_raise_value_error_naming_the_problem(url: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        kydb.connect(url)
    assert message in str(info.value)
    assert "s3cr3t-value" not in str(info.value)


def test_the_boto3_floor_knows_the_conditional_requests_the_store_sends() -> None:
    # boto3 1.35.69 (November 2024) is the first whose botocore has IfMatch on PutObject: the floor must not
    # go below it, and the botocore in use must know every condition the index sidecars are written with.
    floor = [r for r in importlib.metadata.requires("kydb-s3") or [] if r.startswith("boto3")]
    assert floor == ["boto3>=1.35.69"]
    model = botocore.session.get_session().get_service_model("s3")
    for operation, condition in (("PutObject", "IfMatch"), ("PutObject", "IfNoneMatch"), ("DeleteObject", "IfMatch")):
        assert condition in model.operation_model(operation).input_shape.members, (operation, condition)


def test_unknown_profile_is_a_url_error(aws_env: Path) -> None:
    with pytest.raises(ValueError, match=r"invalid kydb URL.*no-such-profile"):
        kydb.connect("s3://bucket?profile=no-such-profile")


def test_boto3_is_imported_only_when_an_s3_url_is_connected(moto_endpoint: str, bucket: str) -> None:
    program = f"""
import sys
import kydb
assert 's3' in [info.scheme for info in kydb.backends()]
assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'imported too early'
db = kydb.connect('s3://{bucket}/{unique_name("lazy")}?endpoint_url={moto_endpoint}')
db['/k'] = 1
db.rm_tree('/')
assert 'boto3' in sys.modules
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_endpoint_from_aws_endpoint_url_s3(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, bucket: str, s3: Any
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    base = unique_name("env")
    db = kydb.connect(f"s3://{bucket}/{base}")
    try:
        db["/k"] = "via env"
        assert keys_under(s3, bucket, base) == [f"{base}/k"]
    finally:
        db.rm_tree("/")
        db.close()


def test_profile_from_aws_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moto_endpoint: str, bucket: str, s3: Any
) -> None:
    # The profile alone names the credentials, region and endpoint: the store works only if it is used.
    config = tmp_path / "config"
    config.write_text(
        "[profile kydb-test]\naws_access_key_id = profile-key\naws_secret_access_key = profile-secret\n"
        f"region = eu-west-2\nendpoint_url = {moto_endpoint}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # it would win over the profile's region
    base = unique_name("profile")
    db = kydb.connect(f"s3://{bucket}/{base}?profile=kydb-test")
    try:
        assert db.store.client.meta.region_name == "eu-west-2"
        db["/k"] = "via profile"
        assert keys_under(s3, bucket, base) == [f"{base}/k"]
    finally:
        db.rm_tree("/")
        db.close()


def test_region_and_timeout_options(bucket: str, moto_endpoint: str) -> None:
    url = f"s3://{bucket}/{unique_name('region')}?endpoint_url={moto_endpoint}&region=ap-south-1"
    db = kydb.connect(url + "&connect_timeout=2.5&read_timeout=7")
    assert db.store.client.meta.region_name == "ap-south-1"
    assert (db.store.client.meta.config.connect_timeout, db.store.client.meta.config.read_timeout) == (2.5, 7)
    db.close()


def test_retry_budget_comes_from_boto3s_configuration(
    monkeypatch: pytest.MonkeyPatch, connect_s3: Callable[..., Any], proxy: LoopbackProxy
) -> None:
    assert connect_s3(proxy.url).store.max_attempts == 3  # botocore's standard-mode default
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "5")
    db = connect_s3(proxy.url)
    assert db.store.client.meta.config.retries["mode"] == "standard"
    assert db.store.max_attempts == 5
    proxy.fail_next(4, status=500)
    db["/k"] = 1
    assert proxy.operations() == {"PutObject": 5}
    proxy.fail_next(5, status=500)
    with pytest.raises(kydb.StoreUnavailable, match=r"InternalError \(HTTP 500\) after 5 attempt"):
        db["/k"] = 2


# ---------------------------------------------------------------------- layout


def test_one_object_per_key_without_leading_slash(connect_s3: Callable[..., Any], s3: Any, bucket: str) -> None:
    db = connect_s3()
    base = db.base_path[1:]
    db["/books/MYBOOK"] = {"pv": 1.5}
    db["/books/deep/er/key"] = 2
    assert keys_under(s3, bucket, base) == [f"{base}/books/MYBOOK", f"{base}/books/deep/er/key"]
    blob = s3.get_object(Bucket=bucket, Key=f"{base}/books/MYBOOK")["Body"].read()
    assert envelope.decode(blob, "/books/MYBOOK") == {"pv": 1.5}


def test_mkdir_writes_zero_byte_markers_like_the_s3_console(
    connect_s3: Callable[..., Any], s3: Any, bucket: str
) -> None:
    db = connect_s3()
    base = db.base_path[1:]
    db.mkdir("/empty/sub")
    assert keys_under(s3, bucket, base) == [f"{base}/", f"{base}/empty/", f"{base}/empty/sub/"]
    assert s3.head_object(Bucket=bucket, Key=f"{base}/empty/sub/")["ContentLength"] == 0
    assert db.ls("/") == ["empty/"]
    assert db.ls("/empty") == ["sub/"]
    db.rmdir("/empty/sub")
    assert db.ls("/empty") == []
    assert db.is_dir("/empty")


def test_reads_a_bucket_whose_folders_are_only_prefixes(connect_s3: Callable[..., Any], s3: Any, bucket: str) -> None:
    db = connect_s3()
    base = db.base_path[1:]
    for key, value in (("reports/2026/q1", 1), ("reports/2026/q2", 2), ("reports/readme", 3)):
        s3.put_object(Bucket=bucket, Key=f"{base}/{key}", Body=envelope.encode(value))
    s3.put_object(Bucket=bucket, Key=f"{base}/console-folder/", Body=b"")  # made in the S3 console
    assert db.ls("/") == ["console-folder/", "reports/"]
    assert db.ls("/reports") == ["2026/", "readme"]
    assert db.ls("/reports", include_dir=False) == ["readme"]
    assert db.ls("/console-folder") == []
    assert db.is_dir("/reports/2026") and db.is_dir("/console-folder")
    assert not db.exists("/console-folder")
    assert db.get_many(["/reports/2026/q1", "/reports/2026/q2"]) == {"/reports/2026/q1": 1, "/reports/2026/q2": 2}
    db.rm_tree("/reports")
    assert db.ls("/") == ["console-folder/"]


def test_a_folder_emptied_by_a_delete_gets_its_marker_before_the_delete(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    db = connect_s3(proxy.url)
    base = db.base_path[1:]
    db.set_many({"/implied/a": 1, "/implied/b": 2})
    proxy.clear()
    db.delete("/implied/a")
    # Does it exist; the folder's first key (not its marker); its marker; the delete.
    assert proxy.operations() == {"HeadObject": 1, "ListObjectsV2": 1, "PutObject": 1, "DeleteObjects": 1}
    assert keys_under(s3, bucket, base) == [f"{base}/implied/", f"{base}/implied/b"]
    proxy.clear()
    db.delete("/implied/b")
    assert proxy.operations() == {"HeadObject": 1, "ListObjectsV2": 1, "DeleteObjects": 1}  # the marker is there
    assert db.ls("/") == ["implied/"] and db.ls("/implied") == [] and db.is_dir("/implied")
    proxy.clear()
    db.delete_many(["/nowhere/x", "/implied/absent"])  # absent keys make no folder
    assert proxy.operations() == {"ListObjectsV2": 2, "DeleteObjects": 1}
    assert keys_under(s3, bucket, base) == [f"{base}/implied/"]
    db["/p/q/x"] = 1
    db.rm_tree("/p/q")  # the folder above stays, as it does on every store
    db["/r/s/x"] = 1
    db.delete("/r/s/x")
    db.rmdir("/r/s")
    assert db.ls("/") == ["implied/", "p/", "r/"] and db.ls("/p") == db.ls("/r") == []


def test_two_clients_deleting_a_folders_last_objects_at_once_leave_the_folder(
    connect_s3: Callable[..., Any], s3: Any, bucket: str
) -> None:
    db = connect_s3()
    base = db.base_path[1:]
    db.set_many({"/f/a": 1, "/f/b": 2})
    # Another client deletes the folder's other object between kydb's look at the folder and its delete.
    other_client = once(lambda: s3.delete_object(Bucket=bucket, Key=f"{base}/f/b"))
    with client_event(db, "before-call.s3.DeleteObjects", other_client):
        db.delete("/f/a")
    assert db.ls("/") == ["f/"] and db.ls("/f") == []


# ---------------------------------------------------------------------- request counts


@pytest.mark.parametrize("depth", [1, 4, 8])
def test_put_is_one_request_at_any_depth(connect_s3: Callable[..., Any], proxy: LoopbackProxy, depth: int) -> None:
    db = connect_s3(proxy.url)
    key = "".join(f"/level{i}" for i in range(depth))
    db[key] = "value"
    assert proxy.operations() == {"PutObject": 1}
    proxy.clear()
    assert db.read(key, reload=True) == "value"
    assert proxy.operations() == {"GetObject": 1}


def test_exists_is_one_head_request(connect_s3: Callable[..., Any], proxy: LoopbackProxy) -> None:
    db = connect_s3(proxy.url)
    db["/here"] = 1
    proxy.clear()
    assert db.exists("/here")
    assert proxy.operations() == {"HeadObject": 1}
    proxy.clear()
    assert not db.exists("/absent")  # the first miss also checks, once, that the bucket exists
    assert not db.exists("/absent-too")
    assert proxy.operations() == {"HeadObject": 2, "HeadBucket": 1}


def test_list_pages_map_to_max_keys(connect_s3: Callable[..., Any], proxy: LoopbackProxy) -> None:
    db = connect_s3(proxy.url)
    db.set_many({f"/p/o{i:02d}": i for i in range(10)})
    db.mkdir("/p/sub")
    proxy.clear()
    assert list(db.list_dir("/p", page_size=4)) == [*(f"o{i:02d}" for i in range(10)), "sub/"]
    listings = [r for r in proxy.requests if r.operation == "ListObjectsV2"]
    assert len(listings) == 3 == len(proxy.requests)
    assert all("max-keys=4" in r.query and "delimiter=%2F" in r.query for r in listings)


def test_rm_tree_and_delete_many_use_batch_deletes(
    pair: Callable[..., tuple[Any, Any]], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    direct, db = pair(proxy.url)  # direct fills the store without going through the counting proxy
    direct.set_many({f"/tree/f{i % 10}/o{i}": i for i in range(1200)} | {f"/many/o{i}": i for i in range(1200)})
    direct.mkdir("/tree/empty")
    direct["/kept"] = "kept"
    db.rm_tree("/tree")
    # One listing (is_dir) before, then 1,000 keys a page; each page one DeleteObjects.
    assert proxy.operations() == {"ListObjectsV2": 1 + 2, "DeleteObjects": 2}
    base = db.base_path[1:]
    assert keys_under(s3, bucket, f"{base}/tree") == []
    proxy.clear()
    db.delete_many(f"/many/o{i}" for i in range(1200))
    # The folder's first key and its new marker, then 500 keys a request, each with its index sidecar.
    assert proxy.operations() == {"ListObjectsV2": 1, "PutObject": 1, "DeleteObjects": 3}
    # mkdir's marker for the base stays, and the emptied folder with its marker.
    assert keys_under(s3, bucket, base) == [f"{base}/", f"{base}/kept", f"{base}/many/"]


def test_get_many_is_concurrent_and_bounded(connect_s3: Callable[..., Any], moto_endpoint: str) -> None:
    with LoopbackProxy(moto_endpoint, latency=0.05) as slow:
        db = connect_s3(slow.url)
        db.set_many({f"/g/{i}": i for i in range(3 * CONCURRENCY)})
        db.refresh()
        slow.clear()
        assert db.get_many([f"/g/{i}" for i in range(3 * CONCURRENCY)]) == {
            f"/g/{i}": i for i in range(3 * CONCURRENCY)
        }
        assert slow.operations() == {"GetObject": 3 * CONCURRENCY}
        assert 1 < slow.peak_in_flight <= CONCURRENCY


# ---------------------------------------------------------------------- times, indexes and scans


def test_mtime_is_kydbs_own_in_the_objects_metadata_written_by_its_one_put(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    db = connect_s3(proxy.url)
    before = time.time_ns()
    db["/t/k"] = "v"
    assert proxy.operations() == {"PutObject": 1}
    head = s3.head_object(Bucket=bucket, Key=f"{db.base_path[1:]}/t/k")
    stamp = int(head["Metadata"][MTIME_METADATA])
    assert before <= stamp <= time.time_ns()
    proxy.clear()
    assert db.stat("/t/k")[:4] == (head["ContentLength"], stamp, None, {})
    assert proxy.operations() == {"HeadObject": 1, "GetObject": 1}  # the GetObject finds no index sidecar


def test_objects_other_tools_wrote_report_last_modified(connect_s3: Callable[..., Any], s3: Any, bucket: str) -> None:
    db = connect_s3()
    key = f"{db.base_path[1:]}/t/foreign"
    s3.put_object(Bucket=bucket, Key=key, Body=envelope.encode("theirs"))
    last_modified = s3.head_object(Bucket=bucket, Key=key)["LastModified"]
    assert db.stat("/t/foreign").mtime_ns == int(last_modified.timestamp()) * 1_000_000_000
    db["/t/ours"] = "ours"
    assert db.recent("/t", allow_scan=True) == ["ours", "foreign"]


def test_index_values_live_in_a_sidecar_that_plain_puts_leave_alone(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    db = connect_s3(proxy.url)
    base = db.base_path[1:]
    db.set("/books/B1", {"pv": 1}, index={"classDate": 20260905, "rank": -3})
    # The object, then the sidecar read and written; a new sidecar, so a check that its object is still there.
    assert proxy.operations() == {"PutObject": 2, "GetObject": 1, "HeadObject": 1}
    assert keys_under(s3, bucket, base) == [f"{base}/books/.kydb-index/B1", f"{base}/books/B1"]
    sidecar = s3.get_object(Bucket=bucket, Key=f"{base}/books/.kydb-index/B1")["Body"].read()
    assert json.loads(sidecar) == {"classDate": 20260905, "rank": -3}  # index names keep their case
    for write, requests in (
        (lambda: db.set("/books/B1", {"pv": 2}), {"PutObject": 1}),  # a plain rewrite: one request
        (lambda: db.set("/books/B1", {"pv": 3}, index={"rank": -3}), {"PutObject": 1, "GetObject": 1}),  # unchanged
    ):
        proxy.clear()
        write()
        assert proxy.operations() == requests
    assert db.stat("/books/B1").indexes == {"classDate": 20260905, "rank": -3}
    proxy.clear()
    db.delete("/books/B1")  # the object and its sidecar in one DeleteObjects (after its folder's new marker)
    assert proxy.operations() == {"HeadObject": 1, "ListObjectsV2": 1, "PutObject": 1, "DeleteObjects": 1}
    assert keys_under(s3, bucket, base) == [f"{base}/books/"]
    db["/books/B1"] = "a new object by the old name"
    assert db.stat("/books/B1").indexes == {}


def test_updating_an_existing_sidecar_makes_no_check_of_the_object(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy
) -> None:
    db = connect_s3(proxy.url)
    db.set("/books/B1", 1, index={"rank": 1})
    proxy.clear()
    db.set("/books/B1", 2, index={"rank": 2})
    assert proxy.operations() == {"PutObject": 2, "GetObject": 1}
    assert db.stat("/books/B1").indexes == {"rank": 2}


def test_clearing_every_index_value_deletes_the_sidecar(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    db = connect_s3(proxy.url)
    base = db.base_path[1:]
    db.set("/f/a", 1, index={"rank": 1, "tier": 2})
    db.set("/f/b", 2)
    proxy.clear()
    db.set("/f/a", 1, index={"rank": None})  # one value left: the sidecar is written back
    assert proxy.operations() == {"PutObject": 2, "GetObject": 1}
    proxy.clear()
    db.set("/f/a", 1, index={"tier": None})  # none left: no sidecar, rather than an empty one
    assert proxy.operations() == {"PutObject": 1, "GetObject": 1, "DeleteObject": 1}
    assert keys_under(s3, bucket, base) == [f"{base}/f/a", f"{base}/f/b"]
    proxy.clear()
    assert {path[len(db.base_path) :]: info.indexes for path, info in stat_many(db, "/f/a", "/f/b").items()} == {
        "/f/a": {},
        "/f/b": {},
    }
    assert proxy.operations() == {"HeadObject": 2, "ListObjectsV2": 1}  # no sidecar listed: nothing to read
    assert list(db.folder("/f", allow_scan=True).by("rank")) == []


def test_a_concurrent_index_update_outlives_a_clear(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    db = connect_s3(proxy.url)
    sidecar = f"{db.base_path[1:]}/k/.kydb-index/x"
    db.set("/k/x", 1, index={"rank": 1})
    others = iter([{"rank": 1, "other": 7}])  # another writer, between our read of the sidecar and our delete

    def other_writer(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == sidecar and (values := next(others, None)) is not None:
            s3.put_object(Bucket=bucket, Key=sidecar, Body=json.dumps(values).encode())

    db.store.client.meta.events.register("before-parameter-build.s3.DeleteObject", other_writer)
    proxy.clear()
    db.set("/k/x", 2, index={"rank": None})
    # Our delete was refused (If-Match), so we read again, merged, and wrote back what the other writer set.
    assert proxy.operations() == {"PutObject": 2, "GetObject": 2, "DeleteObject": 1}
    assert db.stat("/k/x").indexes == {"other": 7}


def test_sidecars_never_show_as_objects_or_folders(connect_s3: Callable[..., Any], s3: Any, bucket: str) -> None:
    src, dst = connect_s3(), connect_s3()
    for name in ("a", "b"):
        src.set(f"/f/{name}", name, index={"n": ord(name)})
    src["/f/plain"] = "no index"
    src.mkdir("/f/sub")
    assert src.ls("/f") == ["a", "b", "plain", "sub/"]
    assert list(src.list_dir("/f", page_size=1)) == ["a", "b", "plain", "sub/"]
    assert sorted(transfer.walk(src, "/")) == [("/f/a", False), ("/f/b", False), ("/f/plain", False), ("/f/sub/", True)]
    transfer.copy_tree(src, "/", dst, "/")  # what `kydb cp` does: index values come along, sidecars are not objects
    assert dst.ls("/f") == ["a", "b", "plain", "sub/"]
    assert {name: dst.stat(f"/f/{name}").indexes for name in ("a", "b", "plain")} == {
        "a": {"n": 97},
        "b": {"n": 98},
        "plain": {},
    }
    assert src.plugins.hook.kydb_delete_tree(folder=src.base_path + "/f/") == 3  # objects, not sidecars
    assert keys_under(s3, bucket, f"{src.base_path[1:]}/f") == []


def test_reserved_or_too_long_index_paths_are_refused_before_writing(
    connect_s3: Callable[..., Any], s3: Any, bucket: str
) -> None:
    db = connect_s3()
    for key in ("/f/.kydb-index/x", "/f/.kydb-index"):
        with pytest.raises(kydb.InvalidKey, match="reserved by kydb-s3"):
            db.set(key, 1, system_obj=True)
    longest = "/" + "k" * (1024 - len(db.base_path) - 1)  # a full path of exactly 1,024 bytes
    with pytest.raises(kydb.InvalidKey, match=r"its index sidecar's key would be 1035 bytes"):
        db.set(longest, 1, index={"n": 1})
    assert keys_under(s3, bucket, db.base_path[1:]) == []
    db[longest] = "fits without an index"
    assert db.stat(longest).indexes == {}  # no sidecar to look for: its key could not exist
    db.delete(longest)
    assert keys_under(s3, bucket, db.base_path[1:]) == []


def test_the_sidecar_folder_is_invisible_and_untouchable(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    db = connect_s3(proxy.url)
    base = db.base_path[1:]
    db.set("/f/a", 1, index={"rank": 1})
    db.set("/f/b", 2, index={"rank": 2})
    stored = keys_under(s3, bucket, base)
    hidden, sidecar = "/f/.kydb-index", "/f/.kydb-index/a"
    proxy.clear()
    # Every read finds nothing there, without asking S3.
    assert db.ls(hidden) == [] and list(db.list_dir(hidden + "/", page_size=1)) == []
    assert not db.is_dir(hidden)
    assert not db.exists(sidecar, system_obj=True) and not db.exists(hidden, system_obj=True)
    with pytest.raises(kydb.NotFound):
        db.read(sidecar, reload=True, system_obj=True)
    with pytest.raises(kydb.NotFound):
        db.stat(sidecar, system_obj=True)
    assert list(db.folder(hidden, allow_scan=True).by("mtime")) == []
    assert list(db.folder(hidden, allow_scan=True).by("rank")) == []
    assert proxy.operations() == {}
    # Removing anything there finds nothing to remove, and the store refuses it anyway.
    for remove in (
        lambda: db.delete(sidecar, system_obj=True),
        lambda: db.rmdir(hidden, system_obj=True),
        lambda: db.rm_tree(hidden, system_obj=True),
    ):
        with pytest.raises(kydb.NotFound):
            remove()
    hook = db.plugins.hook
    for refused in (
        lambda: hook.kydb_delete(paths=[db.base_path + "/f/x", db.base_path + sidecar], expect={}),
        lambda: hook.kydb_rmdir(folder=db.base_path + hidden + "/"),
        lambda: hook.kydb_delete_tree(folder=db.base_path + hidden + "/"),
        lambda: db.mkdir(hidden + "/sub", system_obj=True),
    ):
        with pytest.raises(kydb.InvalidKey, match="reserved by kydb-s3"):
            refused()
    assert proxy.operations() == {}
    assert keys_under(s3, bucket, base) == stored
    assert {path: info.indexes for path, info in stat_many(db, "/f/a", "/f/b").items()} == {
        db.base_path + "/f/a": {"rank": 1},
        db.base_path + "/f/b": {"rank": 2},
    }


@pytest.mark.parametrize("sidecar_before", [False, True], ids=["creating-the-sidecar", "updating-the-sidecar"])
def test_an_index_write_racing_a_delete_leaves_no_sidecar(
    sidecar_before: bool, connect_s3: Callable[..., Any], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    db = connect_s3(proxy.url)
    base = db.base_path[1:]
    if sidecar_before:
        db.set("/k/x", 0, index={"rank": 0})
    key, sidecar = f"{base}/k/x", f"{base}/k/.kydb-index/x"
    deletes = iter([True])  # another client deletes the object, as kydb does, just before our sidecar write

    def other_deleter(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == sidecar and next(deletes, False):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}, {"Key": sidecar}], "Quiet": True})

    db.store.client.meta.events.register("before-parameter-build.s3.PutObject", other_deleter)
    proxy.clear()
    db.set("/k/x", 1, index={"rank": 1})
    expected = {"PutObject": 2, "GetObject": 1, "HeadObject": 1, "DeleteObject": 1}
    if sidecar_before:  # the If-Match write found no sidecar: read again, and create one
        expected |= {"PutObject": 3, "GetObject": 2}
    assert proxy.operations() == expected
    assert keys_under(s3, bucket, base) == []  # the sidecar written after the delete went too
    db["/k/x"] = "a new object by the old name"
    assert db.stat("/k/x").indexes == {}
    assert list(db.folder("/k", allow_scan=True).by("rank")) == []


def test_a_sidecar_a_delete_failed_to_remove_is_asked_for_again(
    connect_s3: Callable[..., Any], new_bucket: Callable[[], str], moto_endpoint: str, s3: Any
) -> None:
    locked = new_bucket()
    with LoopbackProxy(moto_endpoint) as counting:
        db = connect_s3(counting.url, in_bucket=locked, base="base")
        db.set("/f/a", 1, index={"rank": 1})
        db.set("/f/b", 2, index={"rank": 2})
        _deny(s3, locked, "base/f/.kydb-index/")
        lifts = iter([True])

        def lift_the_denial(**_: Any) -> None:  # S3 fails to delete the sidecar once, then would not again
            if next(lifts, False):
                s3.delete_bucket_policy(Bucket=locked)

        db.store.client.meta.events.register("after-call.s3.DeleteObjects", lift_the_denial)
        counting.clear()
        db.delete("/f/a")
        # The folder's marker first (it had none), then the delete; the second for the sidecar alone.
        assert counting.operations() == {"HeadObject": 1, "ListObjectsV2": 1, "PutObject": 1, "DeleteObjects": 2}
        assert keys_under(s3, locked, "base/f/") == ["base/f/", "base/f/.kydb-index/b", "base/f/b"]
        db["/f/a"] = "a new object by the old name"
        assert db.stat("/f/a").indexes == {}
        # A sidecar S3 keeps failing to delete is named, with what it means.
        _deny(s3, locked, "base/f/.kydb-index/")
        counting.clear()
        try:
            with pytest.raises(AccessDenied) as info:
                db.delete_many(["/f/b"])
        finally:
            s3.delete_bucket_policy(Bucket=locked)
        assert counting.operations() == {"ListObjectsV2": 1, "DeleteObjects": 2}
        message = str(info.value)
        assert "'base/f/.kydb-index/b'" in message and "gives its index values to the next object" in message
        assert keys_under(s3, locked, "base/f/") == ["base/f/", "base/f/.kydb-index/b", "base/f/a"]
        db.rm_tree("/f")
        assert keys_under(s3, locked, "base/") == []


def test_stat_of_a_few_keys_lists_no_more_sidecars_than_it_needs(
    pair: Callable[..., tuple[Any, Any]], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    direct, db = pair(proxy.url)
    base = direct.base_path[1:]
    names = [f"o{i:04d}" for i in range(2100)]
    direct.set_many({f"/f/{name}": name for name in names} | {"/f/plain": "no index"})
    put_raw(s3, bucket, {f"{base}/f/.kydb-index/{name}": encode_index_values({"n": i}) for i, name in enumerate(names)})
    for keys, requests in (
        # The first page holds o0000's sidecar; o2099's lies two pages further on: read, not listed to.
        (["/f/o0000", "/f/o2099"], {"HeadObject": 2, "ListObjectsV2": 1, "GetObject": 2}),
        # One page from o1000 on reaches o1001: both found, and read.
        (["/f/o1000", "/f/o1001"], {"HeadObject": 2, "ListObjectsV2": 1, "GetObject": 2}),
        # One page from o2000 on reaches past 'plain': it has no sidecar, and is not read.
        (["/f/o2000", "/f/plain"], {"HeadObject": 2, "ListObjectsV2": 1, "GetObject": 1}),
    ):
        proxy.clear()
        found = stat_many(db, *keys)
        assert proxy.operations() == requests, keys
        assert {path[len(db.base_path) :]: info.indexes for path, info in found.items()} == {
            key: {"n": int(key[4:])} if key != "/f/plain" else {} for key in keys
        }
    # 1,001 keys: two pages at most, whatever lies between them.
    keys = [f"/f/{name}" for name in names[:1000]] + ["/f/o2099"]
    proxy.clear()
    found = stat_many(db, *keys)
    assert proxy.operations() == {"HeadObject": 1001, "ListObjectsV2": 2, "GetObject": 1001}
    assert found[db.base_path + "/f/o2099"].indexes == {"n": 2099}


def test_a_concurrent_index_update_is_merged_never_lost(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    db = connect_s3(proxy.url)
    sidecar = f"{db.base_path[1:]}/k/.kydb-index/x"
    others = iter([{"other": 7}])  # one other writer, between our read of the sidecar and our write

    def other_writer(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == sidecar and (values := next(others, None)) is not None:
            s3.put_object(Bucket=bucket, Key=sidecar, Body=json.dumps(values).encode())

    db.store.client.meta.events.register("before-parameter-build.s3.PutObject", other_writer)
    db.set("/k/x", 1, index={"rank": 1})
    assert proxy.operations() == {"PutObject": 3, "GetObject": 2}  # our first sidecar write was refused
    assert db.stat("/k/x").indexes == {"other": 7, "rank": 1}
    others = iter([{"other": n} for n in range(100)])  # writers that never stop
    with pytest.raises(kydb.StoreUnavailable, match="changed under 8 tries"):
        db.set("/k/x", 2, index={"rank": 2})
    assert db.read("/k/x", reload=True) == 2  # the value was written; the message says so


def test_a_corrupt_sidecar_is_corrupt_value_naming_it(connect_s3: Callable[..., Any], s3: Any, bucket: str) -> None:
    db = connect_s3()
    db.set("/k/x", 1, index={"rank": 1})
    s3.put_object(Bucket=bucket, Key=f"{db.base_path[1:]}/k/.kydb-index/x", Body=b'{"rank": "high"}')
    for attempt in (
        lambda: db.stat("/k/x"),
        lambda: list(db.folder("/k", allow_scan=True).by("rank")),
        lambda: db.set("/k/x", 1, index={"rank": 2}),
    ):
        with pytest.raises(kydb.CorruptValue, match=r"k/\.kydb-index/x.*'rank' has the value 'high'"):
            attempt()


def query_pages(
    db: Any, folder: str, index: str, limit: int, until: int | None = None
) -> Iterator[list[tuple[str, int]]]:
    """The pages of a scanning folder query, straight from the store's hook, as ``(name, value)`` pairs."""
    cursor = None
    while True:
        request = kydb.QueryRequest(
            db.base_path + folder, index, until=until, limit=limit, cursor=cursor, allow_scan=True
        )
        page = db.plugins.hook.kydb_query(request=request)
        yield [(e.key, e.index_value) for e in page.entries]
        if page.cursor is None:
            return
        cursor = page.cursor


def test_scans_list_once_and_read_each_candidate_once_per_query(
    pair: Callable[..., tuple[Any, Any]], proxy: LoopbackProxy
) -> None:
    direct, db = pair(proxy.url)
    direct.set_many({f"/q/o{i:02d}": i for i in range(30)})  # one write call: one mtime for all 30
    for i in range(0, 30, 3):
        direct.set(f"/q/o{i:02d}", i, index={"tens": i // 10})  # 10 indexed, rewritten later
    direct.mkdir("/q/sub")
    proxy.clear()
    assert db.recent("/q", limit=3, allow_scan=True) == ["o27", "o24", "o21"]
    assert proxy.operations() == {"ListObjectsV2": 1, "HeadObject": 30}
    proxy.clear()
    top = db.folder("/q", allow_scan=True).by("tens").desc().limit(4)
    assert [(e.key, e.index_value) for e in top.entries()] == [("o27", 2), ("o24", 2), ("o21", 2), ("o18", 1)]
    assert proxy.operations() == {"ListObjectsV2": 1, "GetObject": 10, "HeadObject": 4}  # mtimes of 4 entries
    proxy.clear()
    pages = list(query_pages(db, "/q/", "mtime", limit=7))
    assert [len(page) for page in pages] == [7, 7, 7, 7, 2]
    assert proxy.operations() == {"ListObjectsV2": 1, "HeadObject": 30}  # later pages come from the first scan
    proxy.clear()
    pages = list(query_pages(db, "/q/", "tens", limit=4))
    assert [name for page in pages for name, _ in page] == [f"o{i:02d}" for i in range(0, 30, 3)]
    assert proxy.operations() == {"ListObjectsV2": 1, "GetObject": 10, "HeadObject": 10}
    proxy.clear()
    db.plugins.hook.kydb_stat(paths=[f"{db.base_path}/q/o{i:02d}" for i in range(30)])  # as `kydb ls -l` does
    assert proxy.operations() == {"HeadObject": 30, "ListObjectsV2": 1, "GetObject": 10}


def test_queries_outnumbering_the_kept_scans_still_page_completely(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy
) -> None:
    db = connect_s3(proxy.url)
    for i in range(5):
        db.set(f"/q/o{i}", i, index={"n": -i})
    # Queries that differ (in their bound), so each has a scan of its own: the oldest are pushed out.
    queries = [query_pages(db, "/q/", "n", limit=2, until=i) for i in range(SCANS_KEPT + 2)]
    proxy.clear()
    results = [next(query) for query in queries]
    assert proxy.operations()["ListObjectsV2"] == SCANS_KEPT + 2
    proxy.clear()
    for result, query in zip(results, queries, strict=True):
        result += [pair for page in query for pair in page]
    assert results == [[(f"o{i}", -i) for i in range(4, -1, -1)]] * len(queries)
    # The two scans pushed out are made again, and the first of them, kept again, pushes out the oldest.
    assert proxy.operations()["ListObjectsV2"] == 3


def test_query_cursors_are_the_index_value_and_name_and_resume_anywhere(
    pair: Callable[..., tuple[Any, Any]], proxy: LoopbackProxy
) -> None:
    direct, db = pair(proxy.url)
    for i in range(5):
        direct.set(f"/q/o{i}", i, index={"n": i})
    request = kydb.QueryRequest(direct.base_path + "/q/", "n", limit=2, allow_scan=True)
    first = direct.plugins.hook.kydb_query(request=request)
    assert [e.key for e in first.entries] == ["o0", "o1"]
    assert replace(request, cursor=first.cursor).after() == (1, "o1")  # every store's cursor, nothing more
    proxy.clear()  # another store, which kept no scan, resumes from it: it scans again
    second = db.plugins.hook.kydb_query(request=replace(request, cursor=first.cursor))
    assert [e.key for e in second.entries] == ["o2", "o3"]
    assert replace(request, cursor=second.cursor).after() == (3, "o3")
    assert proxy.operations() == {"ListObjectsV2": 1, "GetObject": 5, "HeadObject": 2}
    proxy.clear()  # its own kept scan serves the next page: only the mtime of the entry returned
    third = db.plugins.hook.kydb_query(request=replace(request, cursor=second.cursor))
    assert [e.key for e in third.entries] == ["o4"] and third.cursor is None
    assert proxy.operations() == {"HeadObject": 1}


# ---------------------------------------------------------------------- large values


def test_50_mb_value_round_trips_through_a_multipart_upload(
    connect_s3: Callable[..., Any], proxy: LoopbackProxy, s3: Any, bucket: str
) -> None:
    db = connect_s3(proxy.url)
    value = os.urandom(50 * 1024 * 1024)
    db["/big"] = value
    ops = proxy.operations()
    assert ops["CreateMultipartUpload"] == 1 and ops["CompleteMultipartUpload"] == 1
    assert ops["UploadPart"] == 7  # 50 MiB and the envelope in 8 MiB parts
    # As boto3's own uploads: a CRC32 upload, completed with each part's checksum (S3 refuses a mix).
    head = s3.head_object(Bucket=bucket, Key=db.base_path[1:] + "/big", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] and head["ContentLength"] > len(value)
    proxy.clear()
    assert db.read("/big", reload=True) == value
    assert proxy.operations() == {"GetObject": 1}


# ---------------------------------------------------------------------- errors that are not outages


def test_missing_bucket_is_a_clear_error_never_a_missing_key(
    connect_s3: Callable[..., Any], moto_endpoint: str
) -> None:
    db = connect_s3(moto_endpoint, in_bucket="kydb-no-such-bucket")
    for attempt in (
        lambda: db.read("/k"),
        lambda: db.exists("/k"),
        lambda: db.set("/k", 1),
        lambda: db.ls("/"),
        lambda: db.is_dir("/f"),
        lambda: db.delete_many(["/k"]),
    ):
        with pytest.raises(BucketNotFound) as info:
            attempt()
        assert "'kydb-no-such-bucket' does not exist" in str(info.value)
        assert isinstance(info.value, kydb.StoreUnavailable) and not isinstance(info.value, KeyError)


def test_missing_credentials_are_a_permission_error(
    monkeypatch: pytest.MonkeyPatch, bucket: str, moto_endpoint: str
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    # A region no other test uses, so the store gets a boto3 session of its own, made without credentials.
    db = kydb.connect(f"s3://{bucket}/{unique_name('nocreds')}?endpoint_url={moto_endpoint}&region=eu-north-1")
    try:
        with pytest.raises(AccessDenied, match="no usable AWS credentials") as info:
            db.read("/k")
        assert isinstance(info.value, PermissionError) and not isinstance(info.value, KeyError)
    finally:
        db.close()


def _deny(s3: Any, bucket: str, prefix: str) -> None:
    statement = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["s3:GetObject", "s3:HeadObject", "s3:PutObject", "s3:DeleteObject"],
        "Resource": f"arn:aws:s3:::{bucket}/{prefix}*",
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))


def test_access_denied_is_a_permission_error_never_a_missing_key(
    connect_s3: Callable[..., Any], new_bucket: Callable[[], str], moto_endpoint: str, s3: Any
) -> None:
    locked = new_bucket()
    db = connect_s3(moto_endpoint, in_bucket=locked, base="base")
    db["/secret/k"] = "hidden"
    _deny(s3, locked, "base/secret/")
    db.refresh()
    try:
        for attempt in (
            lambda: db["/secret/k"],
            lambda: db.exists("/secret/k"),
            lambda: db.set("/secret/k", "overwritten"),
        ):
            with pytest.raises(AccessDenied) as info:
                attempt()
            assert isinstance(info.value, PermissionError) and not isinstance(info.value, KeyError)
            assert locked in str(info.value) and "base/secret/k" in str(info.value)
        db["/open/k"] = "fine"
        assert db.read("/open/k", reload=True) == "fine"
    finally:
        s3.delete_bucket_policy(Bucket=locked)
    assert db.read("/secret/k", reload=True) == "hidden"


def test_partial_batch_delete_raises_naming_the_keys(
    connect_s3: Callable[..., Any],
    new_bucket: Callable[[], str],
    moto_endpoint: str,
    s3: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    locked = new_bucket()
    db = connect_s3(moto_endpoint, in_bucket=locked, base="base")
    db.set_many({"/secret/a": 1, "/secret/b": 2, "/open/c": 3, "/open/d": 4})
    _deny(s3, locked, "base/secret/")
    try:
        with pytest.raises(AccessDenied) as info:
            db.delete_many(["/secret/a", "/open/c", "/secret/b", "/open/d"])
    finally:
        s3.delete_bucket_policy(Bucket=locked)
    message = str(info.value)
    assert "failed for 2 of 4 key(s)" in message and "'base/secret/a'" in message and "'base/secret/b'" in message
    assert "'base/open/c'" not in message
    # The emptied folder that could be written keeps its marker; the other one could not be given one.
    assert keys_under(s3, locked, "base/") == ["base/open/", "base/secret/a", "base/secret/b"]
    warned = [r.getMessage() for r in caplog.records if r.name == "kydb_s3"]
    assert len(warned) == 1 and "base/secret/" in warned[0] and "disappears once nothing is left" in warned[0]
