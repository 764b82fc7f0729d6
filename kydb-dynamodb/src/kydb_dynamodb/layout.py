"""Where kydb's objects live in a DynamoDB table: item keys and shapes, and the table's definition.

One table holds everything under a composite primary key: partition key
``p`` and sort key ``n``, both strings.  The partition of a folder (``p`` =
the folder's path, ``/a/b/``) holds, by sort key::

    n = "\\x01" name                         the object's data: its blob (``d``), or how many parts (``k``)
    n = "\\x02" digest(name) version part    one part of a large object's blob (``d``)
    n = "\\x03" digest(name) version         a marker of parts that are not (or no longer) an object's
    n = name                                the object's head: version, times, size, index values
    n = name "/"                            a subfolder's entry

Names never hold control characters (kydb's key rules), so the auxiliary
items sort before every name and a listing, which reads from ``" "`` on,
never reads them.  ``digest(name)`` keeps part and marker keys short for
names of up to 1,023 bytes (a sort key holds at most 1,024).

User index values live in one more partition per folder and index,
``p`` = folder ``"\\x1f"`` index, one item per object (``n`` = name) with the
value in its ``o``.  Two global secondary indexes order everything a folder
query needs: ``order`` (partition ``p``, sort ``o``) holds each head under its
folder by modification time, and each index item under its index partition
by value; ``created`` (partition ``p``, sort ``co``) holds each head by
creation time.  ``o`` and ``co`` are :func:`ordered` keys: the value as 8
big-endian bytes (offset so that signed order is byte order), then the name.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kydb.keys import ancestors, split_path

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TableDescriptionTypeDef

__all__ = [
    "BATCH_GET",
    "BATCH_WRITE",
    "CREATED_INDEX",
    "DATA",
    "INLINE_LIMIT",
    "MARKER",
    "NAMES_FROM",
    "ORDER_INDEX",
    "PART",
    "PART_SIZE",
    "TRANSACTION_ACTIONS",
    "TRANSACTION_BYTES",
    "Item",
    "Key",
    "data_key",
    "folder_entry_key",
    "from_ordered",
    "head_key",
    "index_attribute",
    "index_item_key",
    "index_partition",
    "layout_problems",
    "marker_key",
    "marker_prefix",
    "new_version",
    "object_items",
    "ordered",
    "part_key",
    "table_definition",
]

Item = dict[str, "AttributeValueTypeDef"]
Key = dict[str, "AttributeValueTypeDef"]

#: The primary key's attributes, and the sort keys of the two global secondary indexes.
PARTITION, SORT, ORDER, CREATED_ORDER = "p", "n", "o", "co"
ORDER_INDEX = "order"
CREATED_INDEX = "created"
#: Attributes of a head: version, modification and creation times (ns), size in bytes, part count,
#: the names of the user indexes it was ever given, and (``x_<index>``) each index's value.
VERSION, MTIME, CTIME, SIZE, PARTS, INDEX_NAMES = "v", "m", "c", "z", "k", "xi"
#: Attributes of data items and parts (the bytes), and of markers (their state and when they were made).
BLOB, STATE, MADE = "d", "s", "t"
PENDING, OBSOLETE = "pending", "obsolete"

#: Sort-key prefixes of the auxiliary items, and where names start (names never hold control characters).
DATA, PART, MARKER, NAMES_FROM = "\x01", "\x02", "\x03", " "
_INDEX_SEPARATOR = "\x1f"

#: A blob up to this size is stored in its data item; a larger one in parts of this size.  DynamoDB's
#: item limit is 400 KB, attribute names and key values included: a part's key is at most 1,086 bytes.
PART_SIZE = INLINE_LIMIT = 384 * 1024
#: DynamoDB's limits: actions and request bytes per TransactWriteItems, keys per BatchGetItem, items per
#: BatchWriteItem.  Transactions are filled to less than their 4 MB, leaving room for keys and names.
TRANSACTION_ACTIONS = 100
TRANSACTION_BYTES = 3_500_000
BATCH_GET = 100
BATCH_WRITE = 25
#: Parts per BatchGetItem: a response carries at most 16 MB.
PARTS_PER_GET = 32
#: Name bytes kept in an ordered key: a sort key holds 1,024 bytes, 8 of them the value.
_ORDERED_NAME_BYTES = 1016
_OFFSET = 2**63


def S(text: str) -> AttributeValueTypeDef:  # noqa: N802 - DynamoDB's own type letters
    """A string attribute value."""
    return {"S": text}


def N(number: int) -> AttributeValueTypeDef:  # noqa: N802
    """A number attribute value."""
    return {"N": str(number)}


def B(data: bytes) -> AttributeValueTypeDef:  # noqa: N802
    """A binary attribute value."""
    return {"B": data}


def ordered(value: int, name: str) -> bytes:
    """The sort key that orders ``(value, name)`` pairs as bytes: 8 bytes of value, then the name's UTF-8.

    Names longer than 1,016 bytes are cut (the rare ties that makes are
    ordered by the reader, see :meth:`kydb_dynamodb.DynamoDBStore.kydb_query`).
    """
    return (value + _OFFSET).to_bytes(8, "big") + name.encode()[:_ORDERED_NAME_BYTES]


def from_ordered(key: bytes) -> int:
    """The value an :func:`ordered` key starts with."""
    return int.from_bytes(key[:8], "big") - _OFFSET


def is_cut(key: bytes) -> bool:
    """Whether an :func:`ordered` key holds only the start of its name."""
    return len(key) >= 8 + _ORDERED_NAME_BYTES


def new_version() -> str:
    """A fresh version: the write's clock reading in hex, then random bits (unique across writers)."""
    return f"{time.time_ns():016x}{secrets.token_hex(6)}"


def version_time_ns(version: str) -> int:
    """When the write that made ``version`` began (0 for a version kydb did not make)."""
    try:
        return int(version[:16], 16)
    except ValueError:
        return 0


def _digest(name: str) -> str:
    return hashlib.blake2b(name.encode(), digest_size=16).hexdigest()


def head_key(path: str) -> Key:
    """The key of the head of the object at ``path`` (``/a/b``)."""
    folder, name = split_path(path)
    return {PARTITION: S(folder), SORT: S(name)}


def data_key(path: str) -> Key:
    """The key of the data item of the object at ``path``."""
    folder, name = split_path(path)
    return {PARTITION: S(folder), SORT: S(DATA + name)}


def part_key(path: str, version: str, number: int) -> Key:
    """The key of part ``number`` (from 0) of version ``version`` of the object at ``path``."""
    folder, name = split_path(path)
    return {PARTITION: S(folder), SORT: S(f"{PART}{_digest(name)}{version}{number:06d}")}


def marker_prefix(path: str) -> str:
    """The sort-key prefix of every marker of the object at ``path`` (they share its folder's partition)."""
    return MARKER + _digest(split_path(path)[1])


def marker_key(path: str, version: str) -> Key:
    """The key of the marker of the parts of version ``version`` of the object at ``path``."""
    return {PARTITION: S(split_path(path)[0]), SORT: S(marker_prefix(path) + version)}


def folder_entry_key(folder: str) -> Key:
    """The key of the entry that lists ``folder`` (``/a/b/``, not the root) in its parent."""
    parent, name = split_path(folder)
    return {PARTITION: S(parent), SORT: S(name)}


def index_partition(folder: str, index: str) -> str:
    """The partition holding the values of user index ``index`` of the objects directly in ``folder``."""
    return folder + _INDEX_SEPARATOR + index


def index_item_key(path: str, index: str) -> Key:
    """The key of the item holding the value of user index ``index`` of the object at ``path``."""
    folder, name = split_path(path)
    return {PARTITION: S(index_partition(folder, index)), SORT: S(name)}


def index_attribute(index: str) -> str:
    """The head attribute holding the object's value of user index ``index``."""
    return "x_" + index


def index_values(head: Mapping[str, Any]) -> dict[str, int]:
    """The user index values in a head item (as boto3 returns it)."""
    return {name[2:]: int(value["N"]) for name, value in head.items() if name.startswith("x_")}


def object_items(path: str, blob: bytes, mtime_ns: int, version: str | None = None) -> list[Item]:
    """The items a new object of up to :data:`INLINE_LIMIT` bytes is stored as: its head, its data item, and
    the entries of the folders above it (for writing objects behind kydb's back, in tests and benchmarks).

    kydb itself writes them in one transaction, an update of the head that
    keeps the creation time and index values of an object written before.
    """
    if len(blob) > INLINE_LIMIT:
        raise ValueError(f"{path}: {len(blob)} bytes do not fit in one data item ({INLINE_LIMIT} at most)")
    version = version or new_version()
    order = B(ordered(mtime_ns, split_path(path)[1]))
    head: Item = {**head_key(path), VERSION: S(version), MTIME: N(mtime_ns), CTIME: N(mtime_ns),
                  SIZE: N(len(blob)), ORDER: order, CREATED_ORDER: order}  # fmt: skip
    data: Item = {**data_key(path), VERSION: S(version), BLOB: B(blob)}
    return [head, data, *(folder_entry_key(folder) for folder in ancestors(path))]


def table_definition(table: str) -> dict[str, Any]:
    """CreateTable's parameters for a kydb table: the key schema, both indexes, on-demand billing."""

    def key_schema(partition: str, sort: str) -> list[dict[str, str]]:
        return [{"AttributeName": partition, "KeyType": "HASH"}, {"AttributeName": sort, "KeyType": "RANGE"}]

    def index(name: str, sort: str) -> dict[str, Any]:
        return {
            "IndexName": name,
            "KeySchema": key_schema(PARTITION, sort),
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": [MTIME, CTIME]},
        }

    return {
        "TableName": table,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": PARTITION, "AttributeType": "S"},
            {"AttributeName": SORT, "AttributeType": "S"},
            {"AttributeName": ORDER, "AttributeType": "B"},
            {"AttributeName": CREATED_ORDER, "AttributeType": "B"},
        ],
        "KeySchema": key_schema(PARTITION, SORT),
        "GlobalSecondaryIndexes": [index(ORDER_INDEX, ORDER), index(CREATED_INDEX, CREATED_ORDER)],
    }


def _keys(schema: Sequence[Mapping[str, Any]], types: Mapping[str, str]) -> str:
    return ", ".join(f"{k['AttributeName']} {k['KeyType']} {types.get(k['AttributeName'], '?')}" for k in schema)


def layout_problems(description: TableDescriptionTypeDef) -> list[str]:
    """What keeps the described table from holding kydb's layout (empty: it can).

    The key schema and the two global secondary indexes must be as
    :func:`table_definition` makes them; other indexes are allowed.
    """
    wanted = table_definition("")
    types = {d["AttributeName"]: d["AttributeType"] for d in description.get("AttributeDefinitions", [])}
    wanted_types = {d["AttributeName"]: d["AttributeType"] for d in wanted["AttributeDefinitions"]}
    problems = []
    have = _keys(description.get("KeySchema", []), types)
    need = _keys(wanted["KeySchema"], wanted_types)
    if have != need:
        problems.append(f"its primary key is [{have}], kydb's is [{need}]")
    indexes = {i["IndexName"]: i for i in description.get("GlobalSecondaryIndexes", [])}
    for index in wanted["GlobalSecondaryIndexes"]:
        name = index["IndexName"]
        need = _keys(index["KeySchema"], wanted_types)
        found = indexes.get(name)
        if found is None:
            problems.append(f"it has no global secondary index {name!r} [{need}]")
            continue
        have = _keys(found.get("KeySchema", []), types)
        if have != need:
            problems.append(f"its global secondary index {name!r} is keyed [{have}], kydb's is [{need}]")
        projection = found.get("Projection", {})
        projected = set(projection.get("NonKeyAttributes", []))
        if projection.get("ProjectionType") != "ALL" and not {MTIME, CTIME} <= projected:
            problems.append(f"its global secondary index {name!r} does not project {MTIME!r} and {CTIME!r}")
    return problems
