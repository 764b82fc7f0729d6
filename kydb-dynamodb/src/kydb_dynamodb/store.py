"""The DynamoDB store: kydb's blob hooks as DynamoDB requests (the layout is :mod:`kydb_dynamodb.layout`).

**Objects.**  An object is a head (in the listing range of its folder's
partition: version, times, size, index values) and a data item (the blob,
or how many parts hold it).  Every write of an object changes both, its
ancestors' folder entries and any index items it sets, in one
``TransactWriteItems``; a delete removes head, data item and index items in
one.  So a reader never sees half a write, and a failed write changes
nothing.  Reads fetch the data item alone (``GetItem``/``BatchGetItem``).

**Large objects.**  A blob over :data:`~kydb_dynamodb.layout.INLINE_LIMIT`
goes in parts of that size, under the new version, beside the object
(``BatchWriteItem``), after a *pending* marker that records them; then one
transaction switches the head and the data item to the new version and
removes the pending marker (on the condition that it is still pending).
Until that switch readers see the old object; after it, the new one whole.
The switch also writes an *obsolete* marker for the old version's parts,
which are deleted next, then their marker.  A write that fails turns its
marker obsolete (only if it is still pending: from then on no switch can
happen), then deletes its parts and the marker.  Parts are never left
without a marker recording them, whichever request fails or loses its
answer: the next large write or delete of that name removes obsolete parts,
and pending ones older than :data:`ORPHAN_GRACE_S`; ``rm_tree`` removes
them all.

**Versions** are fresh for every write (the write's clock and random bits)
and kept on the head and the data item; a conditional write puts its
condition on the head's update or delete in the transaction, and
``ConditionalCheckFailed`` becomes :class:`kydb.Conflict`.

**Costs, in requests** (each a DynamoDB API call; botocore's retries
aside): put of a value up to 384 KiB: 1 ``TransactWriteItems`` (1 + 1 +
depth actions, plus one per index value given); ``set_many``: one
transaction per up to 100 actions and 3.5 MB; get, exists, stat: 1;
``get_many``/``stat_many``: 1 ``BatchGetItem`` per 100 keys (run 16 at a
time); delete: 1 transaction per up to 50 objects (a second for objects
that have parts or index values); ``ls``: 1 ``Query`` per page; ``is_dir``:
1; ``mkdir``: 1 ``BatchWriteItem`` per 25 levels; ``recent``/``by('mtime')``/
``by('ctime')``: 1 ``Query`` per page; ``by(index)``: 1 ``Query`` plus 1
``BatchGetItem`` per 100 entries per page (the entries' times and a check
that each value is current); ``rm_tree``: 1 ``Query`` per folder and per
1 MB of its heads and entries, 1 transaction per 50 objects, 1
``BatchWriteItem`` per 25 folder entries.  A put of a large blob of *n*
parts: *n*/25 + 4 requests (a ``GetItem`` of the head, a ``BatchWriteItem`` of the
pending marker and the folder entries, the parts, the transaction, a ``Query``
for leftovers); a get of it *n*/32 + 1.  The first request of a
store is preceded by one ``DescribeTable``.

**Failures.**  botocore retries in its ``standard`` mode (throttling, 5xx,
timeouts and connection errors, with backoff; ``AWS_MAX_ATTEMPTS`` sets the
budget, 4 attempts by default for DynamoDB); what survives is translated
in :meth:`kydb_dynamodb.connection.Table.failure`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kydb
from kydb.keys import ancestors, split_path
from kydb.url import StoreURL

from .connection import CLIENTS, Table, acquire_connection, parse_settings
from .errors import TableNotFound
from .layout import (
    BLOB,
    CREATED_INDEX,
    CREATED_ORDER,
    CTIME,
    DATA,
    INDEX_NAMES,
    INLINE_LIMIT,
    MARKER,
    MTIME,
    NAMES_FROM,
    OBSOLETE,
    ORDER,
    ORDER_INDEX,
    PART,
    PART_SIZE,
    PARTITION,
    PARTS,
    PARTS_PER_GET,
    PENDING,
    SIZE,
    SORT,
    STATE,
    TRANSACTION_ACTIONS,
    TRANSACTION_BYTES,
    VERSION,
    B,
    Item,
    Key,
    N,
    S,
    data_key,
    folder_entry_key,
    from_ordered,
    head_key,
    index_attribute,
    index_item_key,
    index_partition,
    index_values,
    is_cut,
    marker_key,
    marker_prefix,
    new_version,
    ordered,
    part_key,
    version_time_ns,
)

__all__ = ["ORPHAN_GRACE_S", "DynamoDBStore"]

log = logging.getLogger("kydb_dynamodb")

#: Seconds after which the parts of a large write that never finished are removed by the next large
#: write or delete of the same name (``rm_tree`` removes them at once).  A write still uploading then
#: finds its marker obsolete and fails cleanly, publishing nothing.
ORPHAN_GRACE_S = 3600
#: Times a transaction is rebuilt because the objects it changes changed meanwhile, and times a read
#: of a large object starts again because it was replaced while its parts were read.
_RETRIES = 8
_NO_EXPECTATION = object()


@dataclass(frozen=True)
class _Seen:
    """What a head held when last seen: its version, its part count (0: none), the index names it was given."""

    version: str
    parts: int
    indexes: frozenset[str]

    @classmethod
    def of(cls, head: Mapping[str, Any] | None) -> _Seen | None:
        if head is None:
            return None
        parts = int(head[PARTS]["N"]) if PARTS in head else 0
        return cls(str(head[VERSION]["S"]), parts, frozenset(head.get(INDEX_NAMES, {}).get("SS", [])))


class _Conflict(Exception):
    """A unit's expectation failed: the transaction must not be tried again."""


class _Reaped(Exception):
    """A large write's marker was made obsolete (by ``rm_tree`` or cleanup) before its switch."""


@dataclass(eq=False)
class _Change:
    """One object's part of a transaction: a write (:class:`_Put`) or a delete (:class:`_Remove`).

    ``seen`` is what the transaction assumes of the head: ``None`` means it
    has no parts (and, for deletes, no index values) — the common case,
    checked by the head's condition; when that fails, the head as it is
    comes back with the cancellation and the transaction is built again
    knowing it.
    """

    path: str
    expect: Any = _NO_EXPECTATION  # a version, None (must be absent), or no expectation
    seen: _Seen | None = None

    def expectation_fails(self, head: _Seen | None) -> bool:
        if self.expect is _NO_EXPECTATION:
            return False
        if self.expect is None:
            return head is not None
        return head is None or head.version != self.expect

    def conditions(self, names: dict[str, str], values: dict[str, Any]) -> list[str]:
        """The head's condition for the expectation (names ``#v`` when it uses it)."""
        if self.expect is _NO_EXPECTATION:
            return []
        names["#v"] = VERSION
        if self.expect is None:
            return ["attribute_not_exists(#v)"]
        values[":expected"] = S(self.expect)
        return ["#v = :expected"]

    def learn(self, head: _Seen | None) -> bool:
        """Take in the head a cancelled transaction returned; whether the change is still to be made."""
        raise NotImplementedError

    def actions(self) -> list[dict[str, Any]]:
        """The transaction's actions for this change, the head's first."""
        raise NotImplementedError

    def size(self) -> int:
        """The blob bytes the change puts in its transaction."""
        return 0

    def obsolete_marker(self) -> list[dict[str, Any]]:
        """The Put of the obsolete marker of the parts the head owned, if it owned any."""
        if self.seen is None or not self.seen.parts:
            return []
        item: Item = {**marker_key(self.path, self.seen.version), STATE: S(OBSOLETE), PARTS: N(self.seen.parts)}
        return [{"Put": {"Item": item}}]


@dataclass(eq=False)
class _Put(_Change):
    """One object's write: its head updated, its data item replaced, its index items set or removed."""

    blob: bytes = b""
    version: str = ""
    mtime_ns: int = 0
    changes: Mapping[str, int | None] = field(default_factory=dict)
    #: Parts the new version has (0: the blob is in the data item); their pending marker is removed by the switch.
    parts: int = 0
    #: The ancestors whose entries the transaction writes (all of them, unless the path is too deep for that).
    folders: list[str] = field(default_factory=list)

    def size(self) -> int:
        return 0 if self.parts else len(self.blob)

    def actions(self) -> list[dict[str, Any]]:
        """The transaction's actions for this write, the head's update first."""
        name = split_path(self.path)[1]
        names = {"#v": VERSION, "#m": MTIME, "#c": CTIME, "#o": ORDER, "#co": CREATED_ORDER, "#z": SIZE, "#k": PARTS}
        values: dict[str, Any] = {
            ":v": S(self.version),
            ":m": N(self.mtime_ns),
            ":o": B(ordered(self.mtime_ns, name)),
            ":z": N(len(self.blob)),
        }
        conditions = self.conditions(names, values)
        if self.seen is None:
            conditions.append("attribute_not_exists(#k)")
        else:
            conditions.append("#v = :seen")
            values[":seen"] = S(self.seen.version)
        sets = ["#v = :v", "#m = :m", "#c = if_not_exists(#c, :m)", "#o = :o", "#z = :z"]
        sets.append("#co = if_not_exists(#co, :o)")  # a new object's creation time is this write's time
        removes = []
        if self.parts:
            sets.append("#k = :k")
            values[":k"] = N(self.parts)
        else:
            removes.append("#k")
        others: list[dict[str, Any]] = []
        for number, (index, value) in enumerate(sorted(self.changes.items())):
            names[f"#x{number}"] = index_attribute(index)
            key = index_item_key(self.path, index)
            if value is None:
                removes.append(f"#x{number}")
                others.append({"Delete": {"Key": key}})
            else:
                sets.append(f"#x{number} = :x{number}")
                values[f":x{number}"] = N(value)
                others.append({"Put": {"Item": {**key, ORDER: B(ordered(value, name))}}})
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        given = sorted(index for index, value in self.changes.items() if value is not None)
        if given:
            expression += " ADD #xi :xi"
            names["#xi"] = INDEX_NAMES
            values[":xi"] = {"SS": given}
        head: dict[str, Any] = {
            "Update": {
                "Key": head_key(self.path),
                "UpdateExpression": expression,
                "ConditionExpression": " AND ".join(conditions),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        data: Item = {**data_key(self.path), VERSION: S(self.version)}
        if self.parts:
            data[PARTS] = N(self.parts)
        else:
            data[BLOB] = B(self.blob)
        actions: list[dict[str, Any]] = [head, {"Put": {"Item": data}}, *others, *self.obsolete_marker()]
        if self.parts:  # the switch: only while the parts' marker is still pending (see _retire)
            actions.append(
                {
                    "Delete": {
                        "Key": marker_key(self.path, self.version),
                        "ConditionExpression": "#s = :pending",
                        "ExpressionAttributeNames": {"#s": STATE},
                        "ExpressionAttributeValues": {":pending": S(PENDING)},
                    }
                }
            )
        return actions

    def landed(self, head: _Seen | None) -> bool:
        """Whether the head a cancelled transaction returned is this write's own.

        It is when an earlier attempt of the same transaction committed and
        its answer was lost.
        """
        return head is not None and head.version == self.version

    def learn(self, head: _Seen | None) -> bool:
        """Take in the head a cancelled transaction returned; the write is still to be made (true).

        Raises :class:`_Conflict` when the expectation fails.
        """
        if self.expectation_fails(head):
            raise _Conflict(self.path)
        self.seen = head if head is not None and head.parts else None
        return True


@dataclass(eq=False)
class _Remove(_Change):
    """One object's delete: head, data item and index items in one transaction."""

    def actions(self) -> list[dict[str, Any]]:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        conditions = self.conditions(names, values)
        if self.seen is None:  # it has no parts and was never given index values: nothing else to remove
            conditions += ["attribute_not_exists(#k)", "attribute_not_exists(#xi)"]
            names.update({"#k": PARTS, "#xi": INDEX_NAMES})
        else:
            conditions.append("#v = :seen")
            names["#v"] = VERSION
            values[":seen"] = S(self.seen.version)
        head: dict[str, Any] = {
            "Key": head_key(self.path),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if values:
            head["ExpressionAttributeValues"] = values
        indexes = [] if self.seen is None else sorted(self.seen.indexes)
        return [
            {"Delete": head},
            {"Delete": {"Key": data_key(self.path)}},
            *({"Delete": {"Key": index_item_key(self.path, index)}} for index in indexes),
            *self.obsolete_marker(),
        ]

    def learn(self, head: _Seen | None) -> bool:
        """Take in the head a cancelled transaction returned; whether there is still something to delete."""
        if self.expectation_fails(head):
            raise _Conflict(self.path)
        self.seen = head
        return head is not None


def _folders_of(change: _Change) -> list[str]:
    return change.folders if isinstance(change, _Put) else []


def _pack(changes: Sequence[_Change]) -> list[list[_Change]]:
    """``changes`` in transactions of at most 100 actions and 3.5 MB, folder entries counted once each."""
    groups: list[list[_Change]] = []
    group: list[_Change] = []
    folders: set[str] = set()
    actions = size = 0
    for change in changes:
        needed = len(change.actions())
        new_folders = set(_folders_of(change)) - folders
        if group and (
            actions + needed + len(new_folders) > TRANSACTION_ACTIONS or size + change.size() > TRANSACTION_BYTES
        ):
            groups.append(group)
            group, folders, actions, size = [], set(), 0, 0
            new_folders = set(_folders_of(change))
        group.append(change)
        folders |= new_folders
        actions += needed + len(new_folders)
        size += change.size()
    if group:
        groups.append(group)
    return groups


class DynamoDBStore(kydb.Store):
    """The hook implementations for one table (see the module docstring for the design and costs).

    The boto3 client is shared by every store of the process with the same
    endpoint, region, profile, credentials and client settings
    (:data:`kydb_dynamodb.connection.CLIENTS`); connecting makes no request.
    """

    capabilities = kydb.Capabilities(keeps_times=True, keeps_ctime=True, native_queries=True, conditional_writes=True)

    def __init__(self, url: StoreURL) -> None:
        super().__init__(url)
        settings = parse_settings(url)
        self._pool_key, connection = acquire_connection(settings, url)
        self._released = False
        #: The store's table: its requests, batches and transactions.
        self.table = Table(settings.table, url, connection)

    # ------------------------------------------------------------------ the table

    def _present(self) -> bool:
        """Whether the table exists (reads of a missing table see an empty store; nothing creates it)."""
        return self.table.exists()

    def _ready_to_write(self) -> None:
        """Create the table if it is missing (the first write does)."""
        if not self.table.exists():
            self.table.create()

    # ------------------------------------------------------------------ reading blobs

    def _read(self, paths: Sequence[str]) -> dict[str, kydb.VersionedBlob]:
        """Each existing object's blob and version: its data item, then a large one's parts.

        One ``GetItem`` for one path, else one ``BatchGetItem`` per 100.
        """
        if not paths or not self._present():
            return {}
        wanted = list(dict.fromkeys(paths))
        try:
            if len(wanted) == 1:
                found_one = self.table.get_item(data_key(wanted[0]), wanted[0])
                items = [] if found_one is None else [found_one]
            else:
                items = self.table.batch_get([data_key(path) for path in wanted])
        except TableNotFound:
            return {}
        found: dict[str, kydb.VersionedBlob] = {}
        for item in items:
            path = item[PARTITION]["S"] + item[SORT]["S"][len(DATA) :]
            version = str(item[VERSION]["S"])
            if BLOB in item:
                found[path] = kydb.VersionedBlob(bytes(item[BLOB]["B"]), version)
            else:
                large = self._read_large(path, version, int(item[PARTS]["N"]))
                if large is not None:
                    found[path] = large
        return found

    def _read_large(self, path: str, version: str, parts: int) -> kydb.VersionedBlob | None:
        """The blob in ``parts`` parts of ``version``; if it was replaced meanwhile, the version that replaced it."""
        for _ in range(_RETRIES):
            keys = [part_key(path, version, number) for number in range(parts)]
            got = {item[SORT]["S"]: bytes(item[BLOB]["B"]) for item in self.table.batch_get(keys, PARTS_PER_GET)}
            chunks = [got.get(key[SORT]["S"]) for key in keys]
            if all(chunk is not None for chunk in chunks):
                return kydb.VersionedBlob(b"".join(chunk for chunk in chunks if chunk is not None), version)
            # Parts are removed only once a newer version (or a delete) has replaced this one: read again.
            item = self.table.get_item(data_key(path), path)
            if item is None:
                return None
            latest = str(item[VERSION]["S"])
            if BLOB in item:
                return kydb.VersionedBlob(bytes(item[BLOB]["B"]), latest)
            if latest == version:
                missing = sum(chunk is None for chunk in chunks)
                raise kydb.CorruptValue(
                    f"{path}: {missing} of the {parts} parts of its value are missing from {self.table.where()}; "
                    "something other than kydb deleted them: write the value again"
                )
            version, parts = latest, int(item[PARTS]["N"])
        raise kydb.StoreUnavailable(
            f"{path}: replaced {_RETRIES} times while its parts were read ({self.table.where()}); try again"
        )

    @kydb.hookimpl
    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        """One ``GetItem``, or one ``BatchGetItem`` per 100 paths (concurrently); plus the parts of large values."""
        return {path: found.blob for path, found in self._read(paths).items()}

    @kydb.hookimpl
    def kydb_get_versioned(self, paths: Sequence[str]) -> Mapping[str, kydb.VersionedBlob]:
        """As :meth:`kydb_get`: the data item holds the version of the blob it holds."""
        return self._read(paths)

    # ------------------------------------------------------------------ transactions of object changes

    def _commit(self, changes: list[_Change]) -> list[_Change]:
        """Apply ``changes`` (and their folders' entries) in one transaction; the changes that were applied.

        A head whose condition fails comes back as it is: the change learns
        it and the transaction is built again (a delete of an object already
        gone is dropped).  Raises :class:`_Conflict` for a failed expectation
        and :class:`_Reaped` when a large write lost its pending marker;
        nothing was written then.
        """
        changes = list(changes)
        what = changes[0].path if len(changes) == 1 else f"{changes[0].path} and {len(changes) - 1} more"
        for _ in range(_RETRIES):
            actions: list[dict[str, Any]] = []
            spans: list[tuple[int, int]] = []  # where each change's actions start, and how many
            for change in changes:
                mine = change.actions()
                spans.append((len(actions), len(mine)))
                actions += mine
            folders = dict.fromkeys(folder for change in changes for folder in _folders_of(change))
            actions += [{"Put": {"Item": folder_entry_key(folder)}} for folder in folders]
            for action in actions:
                next(iter(action.values()))["TableName"] = self.table.name
            reasons = self.table.transact(actions, what)
            if reasons is None:
                return changes
            failed = [
                (change, reasons[start], reasons[start + count - 1])
                for change, (start, count) in zip(changes, spans, strict=True)
            ]
            for change, head, _ in failed:
                if isinstance(change, _Put) and change.landed(_Seen.of(head.get("Item"))):
                    return changes  # an earlier attempt committed the whole transaction; its answer was lost
            for change, _, last in failed:
                if isinstance(change, _Put) and change.parts and last.get("Code") == "ConditionalCheckFailed":
                    raise _Reaped(change.path)
            changes = [
                change
                for change, head, _ in failed
                if head.get("Code") != "ConditionalCheckFailed" or change.learn(_Seen.of(head.get("Item")))
            ]
            if not changes:
                return []
        raise kydb.StoreUnavailable(
            f"{what}: changed by other writers {_RETRIES} times while it was written ({self.table.where()}); try again"
        )

    def _apply(self, changes: Sequence[_Change]) -> list[_Change]:
        """Apply independent ``changes`` in as few transactions as fit, concurrently; then clear obsolete parts."""
        applied: list[_Change] = []
        for done in self.table.run_each(self._commit, _pack(changes)):
            applied += done
        self._clear_obsolete(applied)
        return applied

    def _clear_obsolete(self, changes: Sequence[_Change]) -> None:
        """Delete the parts the applied ``changes`` made obsolete, then their markers (failures are left to cleanup).

        The transactions wrote an obsolete marker for each, so parts a
        failure here leaves behind are found again by :meth:`_collect` or
        ``rm_tree``.
        """
        owned = [(change.path, change.seen) for change in changes if change.seen is not None and change.seen.parts]
        if not owned:
            return
        try:
            self.table.batch_write(
                [
                    {"DeleteRequest": {"Key": part_key(path, seen.version, number)}}
                    for path, seen in owned
                    for number in range(seen.parts)
                ]
            )
            self.table.batch_write([{"DeleteRequest": {"Key": marker_key(path, seen.version)}} for path, seen in owned])
        except kydb.KydbError as exc:
            log.warning("kydb-dynamodb: obsolete parts left for later cleanup in %s: %s", self.table.where(), exc)
            return
        for path, _ in owned:
            self._collect(path)

    def _collect(self, path: str) -> None:
        """Remove what interrupted writes left of ``path``'s parts (one ``Query`` of its markers; best effort).

        Obsolete parts go at once; parts of a write that never switched go
        once it is :data:`ORPHAN_GRACE_S` old, its pending marker first and
        only if it is still there, so that write can no longer switch to them.
        """
        folder = split_path(path)[0]
        try:
            markers = list(
                self.table.query_all(
                    path,
                    KeyConditionExpression="#p = :p AND begins_with(#n, :prefix)",
                    ExpressionAttributeNames={"#p": PARTITION, "#n": SORT},
                    ExpressionAttributeValues={":p": S(folder), ":prefix": S(marker_prefix(path))},
                    ConsistentRead=True,
                )
            )
            self._clear_markers(markers, grace_ns=ORPHAN_GRACE_S * 1_000_000_000)
        except kydb.KydbError as exc:
            log.warning("kydb-dynamodb: leftover parts of %s not cleared in %s: %s", path, self.table.where(), exc)

    def _retire(self, marker: Key, what: str) -> bool:
        """Turn a pending marker obsolete, if it still is pending; whether it was.

        One conditional ``UpdateItem``.  From then on its write can no longer
        switch to its parts (the switch needs the marker pending), and the
        marker still records them: whether or not this request's answer
        arrives, the parts are never left unrecorded.
        """
        return self.table.update_if(
            marker,
            what,
            "SET #s = :obsolete",
            "#s = :pending",
            ExpressionAttributeNames={"#s": STATE},
            ExpressionAttributeValues={":obsolete": S(OBSOLETE), ":pending": S(PENDING)},
        )

    def _clear_markers(self, markers: Sequence[Item], grace_ns: int) -> None:
        """Delete the parts each marker records, then the marker; pending ones only once ``grace_ns`` old.

        A pending marker is made obsolete first (:meth:`_retire`), so that its
        write can no longer switch to the parts being deleted.
        """
        now = time.time_ns()
        done: list[Key] = []
        parts: list[dict[str, Any]] = []
        for marker in markers:
            folder, sort = marker[PARTITION]["S"], marker[SORT]["S"]
            key: Key = {PARTITION: S(folder), SORT: S(sort)}
            count = int(marker[PARTS]["N"])
            young = now - version_time_ns(sort[-28:]) < grace_ns
            if marker[STATE]["S"] == PENDING and (young or not self._retire(key, sort)):
                continue  # still being written, or its write switched to it meanwhile
            done.append(key)
            parts += [
                {"DeleteRequest": {"Key": {PARTITION: S(folder), SORT: S(f"{PART}{sort[len(MARKER) :]}{number:06d}")}}}
                for number in range(count)
            ]
        self.table.batch_write(parts)
        self.table.batch_write([{"DeleteRequest": {"Key": key}} for key in done])

    # ------------------------------------------------------------------ writes

    @kydb.hookimpl
    def kydb_put(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None],
    ) -> None:
        """Values up to 384 KiB in transactions of up to 100 actions; larger ones in parts (see the module docs).

        ``expect``: the objects it names are written first, in one
        transaction (all of them must fit in one and be at most 384 KiB
        each, unless there is only one); :class:`kydb.Conflict` names the
        first whose version differs, and nothing is written.
        """
        writes = [
            _Put(
                path,
                expect.get(path, _NO_EXPECTATION),
                blob=blob,
                version=new_version(),
                mtime_ns=mtime_ns,
                changes=indexes.get(path, {}),
                parts=0 if len(blob) <= INLINE_LIMIT else -(-len(blob) // PART_SIZE),
                folders=ancestors(path),
            )
            for path, blob in items.items()
        ]
        conditional = [w for w in writes if w.expect is not _NO_EXPECTATION]
        if len(conditional) > 1 and (any(w.parts for w in conditional) or len(_pack(conditional)) > 1):
            raise ValueError(
                f"a conditional write of {len(conditional)} objects must fit in one DynamoDB transaction "
                f"(at most {TRANSACTION_ACTIONS} actions, values up to {INLINE_LIMIT} bytes) in {self.table.where()}; "
                "write them one at a time"
            )
        self._ready_to_write()
        try:
            self._write(writes, conditional)
        except TableNotFound:  # deleted since this store last looked: create it again, once
            self.table.create()
            self._write(writes, conditional)

    def _write(self, writes: list[_Put], conditional: list[_Put]) -> None:
        for write in writes:
            # A path so deep that its folder entries do not fit in one transaction with it: the outer
            # entries are written first (a failure then leaves empty folders, never a value unlisted).
            excess = len(write.actions()) + len(write.folders) - TRANSACTION_ACTIONS
            if excess > 0:
                outer, write.folders = write.folders[:excess], write.folders[excess:]
                self.table.batch_write([{"PutRequest": {"Item": folder_entry_key(f)}} for f in outer])
        large = [w for w in writes if w.parts and w not in conditional]
        small = [w for w in writes if not w.parts and w not in conditional]
        try:
            if len(conditional) == 1 and conditional[0].parts:
                self._put_large(conditional[0])
            elif conditional:
                self._clear_obsolete(self._commit(list(conditional)))
        except _Conflict as conflict:
            raise self._conflict(str(conflict), "written") from None
        for write in large:
            self._put_large(write)
        self._apply(small)

    def _conflict(self, path: str, what: str) -> kydb.Conflict:
        return kydb.Conflict(
            f"{path}: not the version expected in {self.table.where()} (another writer changed it, or it is "
            f"absent / present against the condition); nothing was {what}"
        )

    def _put_large(self, write: _Put) -> None:
        """A large value: pending marker, parts, then the switch (see the module docstring); old parts after.

        The head is read first, so a conditional write that cannot succeed
        uploads nothing, and so the switch knows the old version's parts.
        Requests: ``GetItem``, ``BatchWriteItem`` (the marker and the folder
        entries), one ``BatchWriteItem`` per 25 parts, the transaction, and
        the ``Query`` of :meth:`_collect`.
        """
        path = write.path
        head = _Seen.of(self.table.get_item(head_key(path), path, projection="v, k, xi"))
        if write.expectation_fails(head):
            raise _Conflict(path)
        write.seen = head if head is not None and head.parts else None
        # The pending marker, with the folder entries that lead to it: whatever happens next, rm_tree
        # of an ancestor finds the marker (and the parts it records).  A failure leaves empty folders.
        marker: Item = {**marker_key(path, write.version), STATE: S(PENDING), PARTS: N(write.parts)}
        entries = [{"PutRequest": {"Item": folder_entry_key(folder)}} for folder in ancestors(path)]
        self.table.batch_write([{"PutRequest": {"Item": marker}}, *entries])
        try:
            self.table.batch_write(
                [
                    {"PutRequest": {"Item": {**part_key(path, write.version, number), BLOB: B(chunk)}}}
                    for number, chunk in enumerate(
                        write.blob[start : start + PART_SIZE] for start in range(0, len(write.blob), PART_SIZE)
                    )
                ]
            )
            self._commit([write])
        except _Reaped:
            self._abandon(write)
            raise kydb.StoreUnavailable(
                f"{path}: its parts were claimed for removal (by rm_tree, or by cleanup after {ORPHAN_GRACE_S} s) "
                f"before the write could finish ({self.table.where()}); nothing was written: write it again"
            ) from None
        except BaseException:
            self._abandon(write)
            raise
        self._clear_obsolete([write])
        self._collect(path)

    def _abandon(self, write: _Put) -> None:
        """Remove a failed large write's parts, if its marker is still pending (best effort).

        The marker is made obsolete first (:meth:`_retire`): from then on no
        switch to these parts can happen.  If it was no longer pending, the
        switch did happen (an attempt whose answer was lost) and the parts
        are the object's.  Then the parts go, then the marker; a failure on
        the way leaves them recorded by the obsolete marker, for cleanup.
        """
        marker = marker_key(write.path, write.version)
        try:
            if self._retire(marker, write.path):
                self.table.batch_write(
                    [{"DeleteRequest": {"Key": part_key(write.path, write.version, n)}} for n in range(write.parts)]
                )
                self.table.delete_item(marker, write.path)
        except kydb.KydbError as exc:
            log.warning("kydb-dynamodb: parts of a failed write of %s left for cleanup: %s", write.path, exc)

    @kydb.hookimpl
    def kydb_delete(self, paths: Sequence[str], expect: Mapping[str, str]) -> None:
        """One transaction per up to 50 objects; objects with parts or index values take a second (module docs)."""
        removes = [_Remove(path, expect.get(path, _NO_EXPECTATION)) for path in dict.fromkeys(paths)]
        if not removes or not self._present():
            if expect:
                raise self._conflict(next(iter(expect)), "deleted")
            return
        conditional = [r for r in removes if r.expect is not _NO_EXPECTATION]
        try:
            if conditional:
                if len(_pack(conditional)) > 1:
                    raise ValueError(
                        f"a conditional delete of {len(conditional)} objects must fit in one DynamoDB transaction "
                        f"in {self.table.where()}; delete them one at a time"
                    )
                self._clear_obsolete(self._commit(list(conditional)))
        except _Conflict as conflict:
            raise self._conflict(str(conflict), "deleted") from None
        except TableNotFound:
            raise self._conflict(conditional[0].path, "deleted") from None
        try:
            self._apply([r for r in removes if r.expect is _NO_EXPECTATION])
        except TableNotFound:
            return

    # ------------------------------------------------------------------ metadata

    @kydb.hookimpl
    def kydb_exists(self, path: str) -> bool:
        """One ``GetItem`` of the head (its version only)."""
        if not self._present():
            return False
        try:
            return self.table.get_item(head_key(path), path, projection="v") is not None
        except TableNotFound:
            return False

    @kydb.hookimpl
    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, kydb.ObjectInfo]:
        """One ``BatchGetItem`` of heads per 100 paths: size, times, index values and version."""
        if not paths or not self._present():
            return {}
        try:
            heads = self.table.batch_get([head_key(path) for path in dict.fromkeys(paths)])
        except TableNotFound:
            return {}
        return {
            head[PARTITION]["S"] + head[SORT]["S"]: kydb.ObjectInfo(
                int(head[SIZE]["N"]),
                int(head[MTIME]["N"]),
                int(head[CTIME]["N"]),
                index_values(head),
                str(head[VERSION]["S"]),
            )
            for head in heads
        }

    # ------------------------------------------------------------------ folders

    @kydb.hookimpl
    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        """One ``Query`` of the folder's partition from the first name on, ``page_size`` items a page."""
        if not self._present():
            return kydb.ListPage([], None)
        params: dict[str, Any] = {
            "KeyConditionExpression": "#p = :p AND #n >= :names",
            "ExpressionAttributeNames": {"#p": PARTITION, "#n": SORT},
            "ExpressionAttributeValues": {":p": S(folder), ":names": S(NAMES_FROM)},
            "ProjectionExpression": "#n",
            "Limit": page_size,
            "ConsistentRead": True,
        }
        if not include_dirs:  # heads only: folder entries have no version
            params["FilterExpression"] = "attribute_exists(#v)"
            params["ExpressionAttributeNames"]["#v"] = VERSION
        if cursor is not None:
            params["ExclusiveStartKey"] = {PARTITION: S(folder), SORT: S(cursor)}
        try:
            page = self.table.query(folder, **params)
        except TableNotFound:
            return kydb.ListPage([], None)
        names = [str(item[SORT]["S"]) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return kydb.ListPage(names, None if last is None else str(last[SORT]["S"]))

    @kydb.hookimpl
    def kydb_mkdir(self, folder: str) -> None:
        """One ``BatchWriteItem`` per 25 levels: the entries of ``folder`` and its ancestors."""
        self._ready_to_write()
        entries = [*ancestors(folder), folder]
        self.table.batch_write([{"PutRequest": {"Item": folder_entry_key(f)}} for f in entries])

    @kydb.hookimpl
    def kydb_rmdir(self, folder: str) -> None:
        """One ``DeleteItem`` of the folder's entry."""
        self.table.delete_item(folder_entry_key(folder), folder)

    @kydb.hookimpl
    def kydb_is_dir(self, folder: str) -> bool:
        """One ``GetItem`` of the folder's entry in its parent (the root always exists)."""
        if folder == "/":
            return True
        if not self._present():
            return False
        try:
            return self.table.get_item(folder_entry_key(folder), folder, projection="n") is not None
        except TableNotFound:
            return False

    @kydb.hookimpl
    def kydb_delete_tree(self, folder: str) -> int:
        """Walk the tree one ``Query`` per folder (and per 1 MB), delete each page's objects in transactions.

        Every page of a folder's heads, subfolder entries and markers
        (sort keys from the markers on: data items and parts are not read)
        is deleted before the next is read: its objects in transactions of up
        to 50 (head, data item and index items together, on the condition
        that each head is as read; parts after, recorded by an obsolete
        marker), the parts of its markers after them.  Folder entries go
        last, deepest first, so a failure leaves a tree that ``rm_tree``
        can finish.
        """
        if not self._present():
            return 0
        deleted = 0
        folders: list[str] = []
        pending = [folder]
        while pending:
            current = pending.pop()
            for page in self._tree_pages(current):
                removes: list[_Change] = []
                markers = []
                for item in page:
                    name = str(item[SORT]["S"])
                    if name.startswith(MARKER):
                        markers.append(item)
                    elif name.endswith("/"):
                        pending.append(current + name)
                        folders.append(current + name)
                    else:
                        removes.append(_Remove(current + name, seen=_Seen.of(item)))
                deleted += len(self._apply(removes))
                self._clear_markers(markers, grace_ns=0)
        if folder != "/":
            folders.append(folder)
        by_depth: dict[int, list[str]] = {}
        for found in folders:
            by_depth.setdefault(found.count("/"), []).append(found)
        for depth in sorted(by_depth, reverse=True):
            self.table.batch_write([{"DeleteRequest": {"Key": folder_entry_key(f)}} for f in by_depth[depth]])
        return deleted

    def _tree_pages(self, folder: str) -> Iterator[list[Item]]:
        """The folder's markers, heads and entries, one ``Query`` page (1 MB) at a time."""
        params: dict[str, Any] = {
            "KeyConditionExpression": "#p = :p AND #n >= :markers",
            "ExpressionAttributeNames": {
                "#p": PARTITION,
                "#n": SORT,
                "#v": VERSION,
                "#k": PARTS,
                "#xi": INDEX_NAMES,
                "#s": STATE,
            },
            "ExpressionAttributeValues": {":p": S(folder), ":markers": S(MARKER)},
            "ProjectionExpression": "#p, #n, #v, #k, #xi, #s",
            "ConsistentRead": True,
        }
        while True:
            try:
                page = self.table.query(folder, **params)
            except TableNotFound:
                return
            yield [dict(item) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # ------------------------------------------------------------------ queries

    @kydb.hookimpl
    def kydb_query(self, request: kydb.QueryRequest) -> kydb.QueryPage:
        """One ``Query`` of a global secondary index per page (user indexes: plus the heads, see module docs).

        ``mtime`` reads the ``order`` index in the folder's partition,
        ``ctime`` the ``created`` index, a user index the ``order`` index in
        that index's partition.  A page resumes at its cursor's key,
        inclusive, and drops what it already returned; names cut in the key
        (over 1,016 bytes) are ordered here, reading on while the last key
        read is a cut one.  User index entries are checked against the
        heads: an object deleted, or whose value changed, since the index
        item was read is left out.  Global secondary indexes are eventually
        consistent: a write may reach them a moment after it returns.
        """
        if request.empty_range() or not self._present():
            return kydb.QueryPage([], None)
        folder, index, ascending, limit = request.folder, request.index, request.ascending, request.limit
        user = index not in ("mtime", "ctime")
        sort = CREATED_ORDER if index == "ctime" else ORDER
        low = ordered(request.since, "") if request.since is not None else b"\x00" * 8
        high = (ordered(request.until, "") if request.until is not None else b"\xff" * 8) + b"\xff"
        after = request.after()
        if after is not None:
            cut = ordered(*after)
            low, high = (max(low, cut), high) if ascending else (low, min(high, cut))
        if low > high:
            return kydb.QueryPage([], None)
        params: dict[str, Any] = {
            "IndexName": CREATED_INDEX if index == "ctime" else ORDER_INDEX,
            "KeyConditionExpression": "#p = :p AND #s BETWEEN :low AND :high",
            "ExpressionAttributeNames": {"#p": PARTITION, "#s": sort},
            "ExpressionAttributeValues": {
                ":p": S(index_partition(folder, index) if user else folder),
                ":low": B(low),
                ":high": B(high),
            },
            "ScanIndexForward": ascending,
        }
        found: list[kydb.Entry] = []
        while True:
            params["Limit"] = max(limit + 1 - len(found), 1) + 1  # one more: the cursor's own entry comes back
            try:
                page = self.table.query(folder, **params)
            except TableNotFound:
                return kydb.QueryPage([], None)
            items = page.get("Items", [])
            candidates = []
            for item in items:
                value, name = from_ordered(bytes(item[sort]["B"])), str(item[SORT]["S"])
                if after is not None and ((value, name) <= after if ascending else (value, name) >= after):
                    continue
                candidates.append((value, name, item))
            if user:
                found += self._current_index_entries(folder, index, candidates)
            else:
                found += [kydb.Entry(n, int(i[MTIME]["N"]), int(i[CTIME]["N"]), v) for v, n, i in candidates]
            last = page.get("LastEvaluatedKey")
            if last is None:
                break
            params["ExclusiveStartKey"] = last
            if len(found) > limit and not (items and is_cut(bytes(items[-1][sort]["B"]))):
                break
        found.sort(key=lambda entry: (entry.index_value, entry.key), reverse=not ascending)
        return kydb.QueryPage.of(found[:limit], len(found) > limit or last is not None)

    def _current_index_entries(
        self, folder: str, index: str, candidates: list[tuple[int, str, Item]]
    ) -> list[kydb.Entry]:
        """Entries for index items whose object still has that value, with the object's times (its heads)."""
        if not candidates:
            return []
        keys = [head_key(folder + name) for _, name, _ in candidates]
        heads = {head[SORT]["S"]: head for head in self.table.batch_get(keys)}
        attribute = index_attribute(index)
        entries = []
        for value, name, _ in candidates:
            head = heads.get(name)
            if head is not None and attribute in head and int(head[attribute]["N"]) == value:
                entries.append(kydb.Entry(name, int(head[MTIME]["N"]), int(head[CTIME]["N"]), value))
        return entries

    # ------------------------------------------------------------------ closing

    @kydb.hookimpl
    def kydb_close(self) -> None:
        """Stop the store's threads and release its share of the client (closed with its last store)."""
        self.table.close()
        if not self._released:
            self._released = True
            CLIENTS.release(self._pool_key)
