"""What is DynamoDB's own: URLs, the table's lifecycle and layout, requests per operation, large objects, clients.

Request counts are read from a proxy between boto3 and the moto server
(:class:`kydb_dynamodb.testing.DynamoDBProxy`), so they are the HTTP
requests DynamoDB would bill, retries included.  Network faults and
throttling are in test_dynamodb_faults.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

import kydb
from kydb.testing import unique_name
from kydb_dynamodb import CLIENTS, INLINE_LIMIT, PART_SIZE, AccessDenied, TableLayoutMismatch, layout
from kydb_dynamodb.testing import DynamoDBProxy


def partition(dynamodb: Any, table: str, key: str) -> list[dict[str, Any]]:
    """Every item of one partition, read behind kydb's back."""
    pages = dynamodb.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="p = :p",
        ExpressionAttributeValues={":p": {"S": key}},
        ConsistentRead=True,
    )
    return [item for page in pages for item in page["Items"]]


def sort_keys(dynamodb: Any, table: str, key: str) -> list[str]:
    return [item["n"]["S"] for item in partition(dynamodb, table, key)]


def tables(dynamodb: Any) -> list[str]:
    return [name for page in dynamodb.get_paginator("list_tables").paginate() for name in page["TableNames"]]


@pytest.fixture
def fresh_table(dynamodb: Any) -> Iterator[str]:
    """The name of a table that does not exist yet (deleted afterwards if a test made it)."""
    name = unique_name("kydb-fresh")
    yield name
    if name in tables(dynamodb):
        dynamodb.delete_table(TableName=name)


@pytest.fixture
def counted(proxy: DynamoDBProxy, pair: Callable[..., tuple[Any, Any]]) -> tuple[Any, Any, DynamoDBProxy]:
    """A DB straight to moto, the same base path through the counting proxy (table already checked), the proxy."""
    direct, db = pair(proxy.url)
    db.is_dir("/")  # the root: no request
    db.exists("/warm-up")  # the store's one DescribeTable, and a first request
    proxy.clear()
    return direct, db, proxy


# ---------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("dynamodb://", "name a table"),
        ("dynamodb://AKIAEXAMPLE:s3cr3t-value@table", "credentials do not go in dynamodb URLs"),
        ("dynamodb://table:8000/base", "take no port"),
        ("dynamodb://table?colour=red", "unknown query option(s) ['colour']"),
        ("dynamodb://table?region=", "empty query option value"),
        ("dynamodb://table?endpoint_url=ftp://host", "endpoint_url must be an http"),
        ("dynamodb://table?endpoint_url=http://user:s3cr3t-value@host", "must not hold credentials"),
        ("dynamodb://t*ble", "not a valid table name"),
        ("dynamodb://ab", "not a valid table name"),
        ("dynamodb://table/a/../b", "bad base path"),
        ("dynamodb://table?pool_size=0", "pool_size= takes a positive whole number"),
        ("dynamodb://table?pool_timeout=soon", "pool_timeout= takes a positive number of seconds"),
        ("dynamodb://table?read_timeout=-1", "read_timeout= takes a positive number of seconds"),
    ],
)
def test_bad_urls_raise_value_error_naming_the_problem(url: str, message: str, aws_env: Any) -> None:
    with pytest.raises(ValueError) as info:
        kydb.connect(url)
    assert message in str(info.value)
    assert "s3cr3t-value" not in str(info.value)


def test_the_scheme_is_registered_and_imports_boto3_only_when_used() -> None:
    code = (
        "import sys, kydb; info = {b.scheme: b.distribution for b in kydb.backends()}; "
        "print(info['dynamodb'], kydb.registry.WELL_KNOWN_SCHEMES['dynamodb'], 'boto3' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["kydb-dynamodb", "kydb-dynamodb", "False"]


# ---------------------------------------------------------------------- the table


def test_reads_of_a_missing_table_see_an_empty_store_and_create_nothing(
    fresh_table: str, moto_endpoint: str, dynamodb: Any
) -> None:
    db = kydb.connect(f"dynamodb://{fresh_table}/base?endpoint_url={moto_endpoint}")
    try:
        assert db.ls("/") == [] and not db.exists("/k") and not db.is_dir("/a")
        assert db.get("/k", "absent") == "absent" and db.get_many(["/a", "/b"]) == {}
        assert db.recent("/") == [] and list(db.folder("/").by("rank")) == []
        with pytest.raises(kydb.NotFound):
            db.stat("/k")
        assert db.rm_tree("/") == 0
        db.delete_many(["/k"])
        assert fresh_table not in tables(dynamodb)
    finally:
        db.close()


def test_the_first_write_creates_the_table_with_kydbs_layout(
    fresh_table: str, moto_endpoint: str, dynamodb: Any
) -> None:
    db = kydb.connect(f"dynamodb://{fresh_table}?endpoint_url={moto_endpoint}")
    try:
        db["/books/b1"] = {"pv": 1.5}
        table = dynamodb.describe_table(TableName=fresh_table)["Table"]
        assert table["TableStatus"] == "ACTIVE"
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == [("p", "HASH"), ("n", "RANGE")]
        keyed = {i["IndexName"]: i["KeySchema"] for i in table["GlobalSecondaryIndexes"]}
        indexes = {name: [k["AttributeName"] for k in schema] for name, schema in keyed.items()}
        assert indexes == {"order": ["p", "o"], "created": ["p", "co"]}
        assert layout.layout_problems(table) == []
        assert db.read("/books/b1", reload=True) == {"pv": 1.5}
    finally:
        db.rm_tree("/")
        db.close()


def test_a_table_of_another_layout_is_refused_naming_what_differs(
    fresh_table: str, moto_endpoint: str, dynamodb: Any
) -> None:
    # The original kydb's table: hash key 'path', a folder-index GSI, one binary 'contents' attribute.
    dynamodb.create_table(
        TableName=fresh_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "path", "AttributeType": "S"},
            {"AttributeName": "folder", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "path", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "folder-index",
                "KeySchema": [{"AttributeName": "folder", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    dynamodb.put_item(TableName=fresh_table, Item={"path": {"S": "/k"}, "contents": {"B": b"old kydb"}})
    db = kydb.connect(f"dynamodb://{fresh_table}?endpoint_url={moto_endpoint}")
    try:
        for attempt in (lambda: db.read("/k"), lambda: db.set("/k", 1), lambda: db.ls("/")):
            with pytest.raises(TableLayoutMismatch) as info:
                attempt()
            message = str(info.value)
            assert fresh_table in message and "path HASH S" in message and "p HASH S, n RANGE S" in message
            assert "no global secondary index 'order'" in message and not isinstance(info.value, KeyError)
        assert dynamodb.scan(TableName=fresh_table)["Count"] == 1  # nothing written
    finally:
        db.close()


# ---------------------------------------------------------------------- the layout


def test_objects_folders_and_indexes_in_the_table(
    connect_dynamodb: Callable[..., Any], dynamodb: Any, table: str
) -> None:
    db = connect_dynamodb()
    base = db.base_path
    db.set("/books/b1", "book", index={"rank": 7})
    db.mkdir("/books/empty")
    assert sort_keys(dynamodb, table, f"{base}/books/") == ["\x01b1", "b1", "empty/"]
    assert sort_keys(dynamodb, table, f"{base}/") == ["books/"]
    head, data = (layout.head_key(f"{base}/books/b1"), layout.data_key(f"{base}/books/b1"))
    head_item = dynamodb.get_item(TableName=table, Key=head)["Item"]
    data_item = dynamodb.get_item(TableName=table, Key=data)["Item"]
    info = db.stat("/books/b1")
    assert head_item["v"]["S"] == data_item["v"]["S"] == info.version
    assert int(head_item["m"]["N"]) == info.mtime_ns == int(head_item["c"]["N"])
    assert int(head_item["z"]["N"]) == len(data_item["d"]["B"]) == info.size
    assert head_item["x_rank"] == {"N": "7"} and head_item["xi"] == {"SS": ["rank"]}
    assert bytes(head_item["o"]["B"]) == layout.ordered(info.mtime_ns, "b1") == bytes(head_item["co"]["B"])
    (index_item,) = partition(dynamodb, table, layout.index_partition(f"{base}/books/", "rank"))
    assert index_item["n"]["S"] == "b1" and bytes(index_item["o"]["B"]) == layout.ordered(7, "b1")
    db.delete("/books/b1")
    assert sort_keys(dynamodb, table, f"{base}/books/") == ["empty/"]
    assert partition(dynamodb, table, layout.index_partition(f"{base}/books/", "rank")) == []


def test_an_object_and_a_folder_of_one_name_are_two_items(
    connect_dynamodb: Callable[..., Any], dynamodb: Any, table: str
) -> None:
    db = connect_dynamodb()
    db["/a"] = "object"
    db["/a/b"] = "below"
    assert sort_keys(dynamodb, table, f"{db.base_path}/") == ["\x01a", "a", "a/"]
    assert db.ls("/") == ["a", "a/"] and db.ls("/", include_dir=False) == ["a"]


def test_user_index_queries_leave_out_stale_index_items(
    connect_dynamodb: Callable[..., Any], dynamodb: Any, table: str
) -> None:
    db = connect_dynamodb()
    db.set("/q/a", 1, index={"rank": 1})
    db.set("/q/b", 2, index={"rank": 2})
    # An index item left behind (as a failed cleanup would) for an object that no longer has the value.
    stale = {**layout.index_item_key(f"{db.base_path}/q/gone", "rank"), "o": {"B": layout.ordered(0, "gone")}}
    dynamodb.put_item(TableName=table, Item=stale)
    changed = {**layout.index_item_key(f"{db.base_path}/q/a", "rank"), "o": {"B": layout.ordered(5, "a")}}
    dynamodb.put_item(TableName=table, Item=changed)  # the head still says 1
    entries = list(db.folder("/q").by("rank").entries())
    assert [(e.key, e.index_value) for e in entries] == [("b", 2)]
    assert entries[0].mtime == db.stat("/q/b").mtime_ns


def test_query_ties_of_names_cut_in_the_key_are_ordered_by_the_whole_name(fresh_table: str, moto_endpoint: str) -> None:
    db = kydb.connect(f"dynamodb://{fresh_table}?endpoint_url={moto_endpoint}")  # no base path: names of 1,020 bytes
    try:
        stem = "n" * 1016
        names = [stem + tail for tail in ("zz", "b", "a", "y", "ab")]
        for name in names:
            db.set("/" + name, name, index={"rank": 3})
        db.set("/short", 0, index={"rank": 3})
        db.set("/first", 0, index={"rank": 1})
        expected = ["first", *sorted([*names, "short"])]
        assert list(db.folder("/").by("rank")) == expected
        assert list(db.folder("/").by("rank").desc()) == expected[::-1]
        for ascending in (True, False):  # one entry a page, resuming from each cursor
            got, cursor = [], None
            while True:
                request = kydb.QueryRequest(folder="/", index="rank", ascending=ascending, limit=1, cursor=cursor)
                page = db.plugins.hook.kydb_query(request=request)
                got += [entry.key for entry in page.entries]
                if page.cursor is None:
                    break
                cursor = page.cursor
            assert got == (expected if ascending else expected[::-1])
    finally:
        db.rm_tree("/")
        db.close()


def test_paths_too_deep_for_one_transaction(connect_dynamodb: Callable[..., Any]) -> None:
    db = connect_dynamodb()
    deep = "/" + "/".join(["d"] * 130) + "/leaf"
    db[deep] = "deep"
    assert db.read(deep, reload=True) == "deep"
    assert db.ls(deep.rsplit("/", 1)[0]) == ["leaf"] and db.ls("/") == ["d/"]
    assert db.rm_tree("/d") == 1 and db.ls("/") == []


# ---------------------------------------------------------------------- requests per operation


def test_a_put_is_one_transaction_whatever_the_depth(counted: tuple[Any, Any, DynamoDBProxy]) -> None:
    _, db, proxy = counted
    db["/k"] = 1
    db["/a/b/c/d/e/k"] = 2
    db.set("/a/k", 3, index={"rank": 1, "other": 2})
    assert proxy.operations() == {"TransactWriteItems": 3}
    actions = [len(r.body["TransactItems"]) for r in proxy.requests]
    assert actions == [2 + 1, 2 + 6, 2 + 2 + 2]  # head and data item, an entry per level below the root, index items


def test_reads_are_one_request_each(counted: tuple[Any, Any, DynamoDBProxy]) -> None:
    direct, db, proxy = counted
    direct.set_many({"/r/k": 1, "/r/j": 2})
    assert db.read("/r/k", reload=True) == 1
    assert db.exists("/r/k") and db.is_dir("/r") and db.stat("/r/j").size > 0
    assert db.ls("/r") == ["j", "k"]
    assert db.recent("/r") == ["k", "j"]  # one set_many: one mtime, ties newest-first by name
    assert proxy.operations() == {"GetItem": 3, "BatchGetItem": 1, "Query": 2}  # read, exists, is_dir; stat


def test_batches_respect_dynamodbs_limits(counted: tuple[Any, Any, DynamoDBProxy]) -> None:
    _, db, proxy = counted
    values = {f"/m/{i // 50}/k{i:03d}": i for i in range(250)}
    db.set_many(values)
    writes = [r for r in proxy.requests if r.operation == "TransactWriteItems"]
    assert all(len(r.body["TransactItems"]) <= 100 for r in writes)
    assert len(writes) == 6  # 250 objects x 2 actions, and 6 folder entries: 506 actions, at most 100 a request
    proxy.clear()
    assert db.get_many(list(values), reload=True) == values
    gets = [r for r in proxy.requests if r.operation == "BatchGetItem"]
    assert sorted(len(next(iter(r.body["RequestItems"].values()))["Keys"]) for r in gets) == [50, 100, 100]
    proxy.clear()
    db.delete_many(list(values)[:120])
    assert proxy.operations() == {"TransactWriteItems": 3}  # 50 objects (100 actions) a transaction
    proxy.clear()
    assert db.rm_tree("/m") == 130
    operations = proxy.operations()
    assert operations["Query"] == 6 and operations["TransactWriteItems"] == 3 and "Scan" not in operations
    batches = [r for r in proxy.requests if r.operation == "BatchWriteItem"]
    assert all(len(next(iter(r.body["RequestItems"].values()))) <= 25 for r in batches)
    assert sum(len(next(iter(r.body["RequestItems"].values()))) for r in batches) == 6  # the folder entries


def test_unprocessed_keys_and_items_are_asked_for_again(counted: tuple[Any, Any, DynamoDBProxy]) -> None:
    direct, db, proxy = counted
    values = {f"/u/k{i}": i for i in range(40)}
    direct.set_many(values)
    proxy.leave_unprocessed(3)
    assert db.get_many(list(values), reload=True) == values
    assert proxy.operations()["BatchGetItem"] == 4  # 40 keys asked for, then 20, then 10, then the last 5
    proxy.clear()
    proxy.leave_unprocessed(2)
    db.mkdir("/u/a/b/c/d")
    assert proxy.operations()["BatchWriteItem"] == 3 and db.is_dir("/u/a/b/c/d")


def test_a_batch_left_unprocessed_every_time_raises_store_unavailable(
    counted: tuple[Any, Any, DynamoDBProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    direct, db, proxy = counted
    monkeypatch.setattr("kydb_dynamodb.connection.UNPROCESSED_ROUNDS", 2)
    direct.set_many({"/k": "kept", "/j": "kept"})
    proxy.leave_unprocessed(100)
    with pytest.raises(kydb.StoreUnavailable, match="unprocessed") as info:
        db.get_many(["/k", "/j"], reload=True)
    assert db.store.table.name in str(info.value) and not isinstance(info.value, KeyError)
    assert proxy.operations()["BatchGetItem"] == 4  # one key served, then nothing three times: give up


# ---------------------------------------------------------------------- large objects


@pytest.mark.parametrize("size", [5 * 1024 * 1024, 50 * 1024 * 1024], ids=["5MB", "50MB"])
def test_large_values_round_trip_in_parts(
    size: int, counted: tuple[Any, Any, DynamoDBProxy], dynamodb: Any, table: str
) -> None:
    _, db, proxy = counted
    value = os.urandom(size)
    db["/big"] = value
    parts = -(-(size + 100) // PART_SIZE)  # the blob: the value, and kydb's envelope around it
    writes = proxy.operations()
    assert writes["TransactWriteItems"] == 1 and writes["GetItem"] == 1 and writes["Query"] == 1
    assert writes["BatchWriteItem"] == 1 + -(-parts // 25)  # the pending marker, then the parts
    proxy.clear()
    assert db.read("/big", reload=True) == value
    assert proxy.operations() == {"GetItem": 1, "BatchGetItem": -(-parts // 32)}
    keys = sort_keys(dynamodb, table, f"{db.base_path}/")
    assert len([k for k in keys if k.startswith("\x02")]) == parts and {"\x01big", "big"} < set(keys)
    assert len(keys) == parts + 2  # no marker left
    db["/big"] = b"small now"
    keys = sort_keys(dynamodb, table, f"{db.base_path}/")
    assert keys == ["\x01big", "big"]  # the old parts and their marker are gone
    db["/big"] = value
    db.delete("/big")
    assert sort_keys(dynamodb, table, f"{db.base_path}/") == []


def test_readers_never_see_a_mix_of_two_large_values(connect_dynamodb: Callable[..., Any]) -> None:
    writer = connect_dynamodb()
    reader = kydb.connect(writer.store_url.raw, legacy_signatures=True)  # its own cache: reads go to the store
    first, second = os.urandom(INLINE_LIMIT * 3), os.urandom(INLINE_LIMIT * 3)
    writer["/v"] = first
    seen: Counter[str] = Counter()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            got = reader.read("/v", reload=True)
            seen["first" if got == first else "second" if got == second else "mixed"] += 1

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(12):
            writer["/v"] = second if i % 2 == 0 else first
    finally:
        stop.set()
        thread.join()
        reader.close()
    assert seen["mixed"] == 0 and seen["first"] + seen["second"] > 0, seen


def test_a_conditional_large_write_that_cannot_win_uploads_nothing(counted: tuple[Any, Any, DynamoDBProxy]) -> None:
    _, db, proxy = counted
    db["/c"] = "old"
    version = db.stat("/c").version
    db["/c"] = "newer"
    proxy.clear()
    with pytest.raises(kydb.Conflict, match="/c"):
        db.set("/c", os.urandom(INLINE_LIMIT * 2), if_version=version)
    assert proxy.operations() == {"GetItem": 1}  # the head was read: nothing was uploaded
    db.set("/c", big := os.urandom(INLINE_LIMIT * 2), if_version=db.stat("/c").version)
    assert db.read("/c", reload=True) == big
    with pytest.raises(kydb.Conflict):
        db.set("/c", b"x", if_absent=True)
    db.delete("/c", if_version=db.stat("/c").version)
    assert not db.exists("/c")


def test_parts_of_an_abandoned_write_are_removed_later(
    counted: tuple[Any, Any, DynamoDBProxy], dynamodb: Any, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct, db, proxy = counted
    direct["/o/v"] = "old"
    proxy.cut_from(2)  # GetItem of the head, the pending marker, then nothing: the parts never arrive
    with pytest.raises(kydb.StoreUnavailable):
        db["/o/v"] = os.urandom(INLINE_LIMIT * 2)
    proxy.heal()
    folder = f"{db.base_path}/o/"
    assert [k[0] for k in sort_keys(dynamodb, table, folder)] == ["\x01", "\x03", "v"]  # a pending marker left
    assert db.read("/o/v", reload=True) == "old"
    db["/o/v"] = os.urandom(INLINE_LIMIT * 2)  # a young pending marker is left alone: it may be a live write
    assert len([k for k in sort_keys(dynamodb, table, folder) if k.startswith("\x03")]) == 1
    monkeypatch.setattr("kydb_dynamodb.store.ORPHAN_GRACE_S", 0)
    db["/o/v"] = value = os.urandom(INLINE_LIMIT * 2)
    assert not [k for k in sort_keys(dynamodb, table, folder) if k[0] == "\x03"]
    assert len([k for k in sort_keys(dynamodb, table, folder) if k[0] == "\x02"]) == 3
    assert db.read("/o/v", reload=True) == value


def test_rm_tree_removes_parts_of_writes_still_pending(
    counted: tuple[Any, Any, DynamoDBProxy], dynamodb: Any, table: str
) -> None:
    _, db, proxy = counted
    proxy.cut_from(3)  # the head, the marker and one batch of parts, then nothing: no switch
    with pytest.raises(kydb.StoreUnavailable):
        db["/p/new"] = os.urandom(INLINE_LIMIT * 2)
    proxy.heal()
    assert not db.exists("/p/new") and len(sort_keys(dynamodb, table, f"{db.base_path}/p/")) == 4  # marker, 3 parts
    assert db.rm_tree("/p") == 0
    assert sort_keys(dynamodb, table, f"{db.base_path}/p/") == []


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize("code", ["AccessDeniedException", "UnrecognizedClientException"])
def test_access_denied_is_a_permission_error(code: str, counted: tuple[Any, Any, DynamoDBProxy]) -> None:
    direct, db, proxy = counted
    direct["/k"] = "kept"
    for attempt in (lambda: db.read("/k", reload=True), lambda: db.set("/k", 1), lambda: db.ls("/")):
        proxy.fail_next(1, code)
        with pytest.raises(AccessDenied) as info:
            attempt()
        assert isinstance(info.value, PermissionError) and not isinstance(info.value, KeyError)
        assert code in str(info.value) and db.store.table.name in str(info.value)
    assert db.read("/k", reload=True) == "kept"


def test_a_transaction_cancelled_by_another_is_tried_again(counted: tuple[Any, Any, DynamoDBProxy]) -> None:
    _, db, proxy = counted
    reasons = [{"Code": "TransactionConflict", "Message": "another transaction"}, {"Code": "None"}]
    proxy.fail_next(2, "TransactionCanceledException", CancellationReasons=reasons)
    db["/k"] = "written"
    assert proxy.operations()["TransactWriteItems"] == 3
    assert db.read("/k", reload=True) == "written"


# ---------------------------------------------------------------------- clients


def test_one_client_per_configuration_shared_by_tables_and_base_paths(
    connect_dynamodb: Callable[..., Any], table: str, fresh_table: str
) -> None:
    one, two = connect_dynamodb(), connect_dynamodb(in_table=fresh_table)
    client = one.store.table.client
    assert two.store.table.client is client
    users = CLIENTS.users(one.store._pool_key)
    assert users >= 2
    other = connect_dynamodb(options="&pool_size=3")
    assert other.store.table.client is not client
    assert other.store.table.client.meta.config.max_pool_connections == 3
    assert client.meta.config.max_pool_connections == 16  # the default
    two.rm_tree("/")
    two.close()
    assert CLIENTS.users(one.store._pool_key) == users - 1


def test_the_endpoint_may_come_from_the_environment(
    moto_endpoint: str, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_endpoint)
    db = kydb.connect(f"dynamodb://{table}/{unique_name('env')}")
    try:
        db["/k"] = "via the environment"
        plain = boto3.client("dynamodb", endpoint_url=moto_endpoint)
        item = plain.get_item(TableName=table, Key=layout.head_key(db.base_path + "/k"))
        assert "Item" in item
    finally:
        db.rm_tree("/")
        db.close()


def test_an_exhausted_pool_raises_store_unavailable_saying_how_to_grow_it(
    counted: tuple[Any, Any, DynamoDBProxy], table: str, proxy: DynamoDBProxy
) -> None:
    direct, _, _ = counted
    db = kydb.connect(f"dynamodb://{table}{direct.base_path}?endpoint_url={proxy.url}&pool_size=1&pool_timeout=0.2")
    try:
        db.exists("/warm-up")
        connection = db.store.table.connection
        # Another request holds the only connection.
        with connection.slot(), pytest.raises(kydb.StoreUnavailable, match=r"exhausted.*pool_size=.*now 1"):
            db.read("/k", reload=True)
        assert db.get("/k") is None
    finally:
        db.close()
