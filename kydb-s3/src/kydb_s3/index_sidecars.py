"""User index values on S3: one small JSON sidecar object beside each indexed object, and its upkeep.

The values of ``db.set(key, value, index={...})`` for the object with S3 key
``books/B1`` live in the object ``books/.kydb-index/B1``, a JSON mapping of
index name to int (``{"class_date": 20260905}``).

Why not the object's own metadata: ``PutObject`` replaces an object's
metadata, so values kept there would vanish on every rewrite that does not
repeat them, and a plain ``db[key] = value`` knows nothing of them without
first reading them back (a second request per put).  A sidecar is written
only by puts that carry index values, so a plain rewrite stays one
``PutObject`` and leaves the values alone.  S3 metadata names are also
case-insensitive (``classDate`` and ``classdate`` would be one header),
which index names are not; JSON keeps them as given.

``.kydb-index`` is a dot-name, which kydb keys cannot use outside system
objects.  kydb-s3 reserves it everywhere: to every read (listing,
``is_dir``, ``exists``, get, stat, query) a reserved folder and everything
in it is absent, and every write or delete inside it (put, ``mkdir``,
delete, ``rmdir``, ``rm_tree``) raises :class:`kydb.InvalidKey`.  Sidecars
go only with their objects.

:class:`IndexSidecars` reads and writes them.  An update reads the sidecar,
merges, and writes it back conditionally (``If-Match``/``If-None-Match``),
or deletes it conditionally (``DeleteObject`` with ``If-Match``) when no
value is left: a concurrent index update makes it merge again, so no value
is lost to a race.  The value and its index values are two writes: the
object first, then its sidecar; a put that creates a sidecar then checks
(``HeadObject``) that its object is still there, and removes the sidecar if
a delete got in between (see the README for what can still leave one).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import kydb
from kydb.keys import MAX_PATH_BYTES, folder_of, split_path

from .requests import S3_BATCH, BucketRequests

__all__ = [
    "INDEX_FOLDER",
    "INDEX_UPDATE_TRIES",
    "IndexSidecars",
    "decode_index_values",
    "encode_index_values",
    "fitting_sidecar_key",
    "in_index_folder",
    "owner_key",
    "sidecar_key",
    "sidecar_prefix",
]

#: The hidden folder, in every folder holding indexed objects, that holds their sidecars.
INDEX_FOLDER = ".kydb-index"

#: Tries of an index update that other writers keep changing under it.
INDEX_UPDATE_TRIES = 8

_INT64 = (-(2**63), 2**63 - 1)


def sidecar_prefix(folder_prefix: str) -> str:
    """The key prefix of the sidecars of the objects directly under ``folder_prefix`` (``''`` or ``'a/b/'``)."""
    return f"{folder_prefix}{INDEX_FOLDER}/"


def sidecar_key(key: str) -> str:
    """The key of the sidecar holding the index values of the object with S3 key ``key``.

    It is 12 bytes longer than ``key``: a key within 12 bytes of S3's
    1,024-byte limit can have no sidecar (see :func:`fitting_sidecar_key`).
    """
    folder, name = split_path("/" + key)
    return sidecar_prefix(folder[1:]) + name


def fitting_sidecar_key(key: str) -> str | None:
    """:func:`sidecar_key` of ``key``, or ``None`` when it would be over S3's key limit.

    S3 keys are at most :data:`kydb.keys.MAX_PATH_BYTES` (1,024) bytes of
    UTF-8; an object whose sidecar key would be longer has no sidecar.
    """
    sidecar = sidecar_key(key)
    return sidecar if len(sidecar.encode()) <= MAX_PATH_BYTES else None


def owner_key(sidecar: str) -> str:
    """The key of the object whose index values the sidecar ``sidecar`` holds (the inverse of :func:`sidecar_key`)."""
    index_folder, name = split_path("/" + sidecar)
    return folder_of(index_folder)[1:] + name


def in_index_folder(path: str) -> bool:
    """Whether ``path`` (a kydb path, object or folder, or an S3 key) lies in a reserved sidecar folder."""
    return f"/{INDEX_FOLDER}/" in f"/{path.strip('/')}/"


def encode_index_values(values: Mapping[str, int]) -> bytes:
    """A sidecar's body: the values as a JSON object, names sorted."""
    return json.dumps(dict(sorted(values.items())), separators=(",", ":")).encode()


def decode_index_values(body: bytes) -> dict[str, int]:
    """The values in a sidecar's body; ``ValueError`` if it is not a JSON object of names to 64-bit ints."""
    try:
        values = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(values, dict):
        raise ValueError(f"a JSON {type(values).__name__}, not an object of index names to ints")
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"index {name!r} has the value {value!r}, not a 64-bit int")
    return values


class IndexSidecars:
    """Reading and writing the sidecars of one bucket (see the module docstring)."""

    def __init__(self, requests: BucketRequests) -> None:
        self._requests = requests

    def check_writable(self, path: str) -> None:
        """Refuse a write or delete inside a reserved sidecar folder (:class:`kydb.InvalidKey`)."""
        if in_index_folder(path):
            raise kydb.InvalidKey(
                f"{path}: {INDEX_FOLDER!r} is reserved by kydb-s3 for the index values of the objects "
                f"beside it ({self._requests.masked_url}); choose another name"
            )

    def check_fits(self, path: str) -> None:
        """Refuse index values for ``path`` if its sidecar's key would be over S3's limit (:class:`kydb.InvalidKey`)."""
        if fitting_sidecar_key(path[1:]) is None:
            size = len(sidecar_key(path[1:]).encode())
            raise kydb.InvalidKey(
                f"{path}: too long to carry index values on S3 ({self._requests.masked_url}): its index sidecar's "
                f"key would be {size} bytes, over S3's {MAX_PATH_BYTES}; shorten the path by "
                f"{size - MAX_PATH_BYTES} bytes or write it without index="
            )

    def _read(self, key: str) -> tuple[dict[str, int], str | None]:
        """The index values in the sidecar ``key`` and its ETag; ``({}, None)`` if there is no sidecar."""
        found = self._requests.get_object(key)
        if found is None:
            return {}, None
        body, etag = found
        try:
            return decode_index_values(body), etag
        except ValueError as exc:
            raise kydb.CorruptValue(
                f"the index sidecar {key!r} in {self._requests.where()} is not kydb index data: {exc}; "
                "delete it to drop the object's index values"
            ) from None

    def values_of(self, path: str) -> dict[str, int]:
        """The index values of the object at ``path``: one ``GetObject`` of its sidecar, found or not."""
        key = fitting_sidecar_key(path[1:])
        return {} if key is None else self._read(key)[0]

    def update(self, path: str, changes: Mapping[str, int | None]) -> None:
        """Merge ``changes`` (``None`` clears) into the sidecar of ``path``, written only if the values change.

        The write (or, when no value is left, the delete) is conditional on
        the sidecar being as read (its ETag, or absent): if another writer
        changed it in between, read and merge again, up to
        :data:`INDEX_UPDATE_TRIES` times.  A write that created the sidecar
        is followed by a ``HeadObject`` of ``path``: if a delete removed the
        object since it was written, the sidecar is deleted again (unless
        another writer changed it meanwhile).  Only a create needs this: a
        sidecar that already existed when read is gone too once such a
        delete ran, and the conditional write then fails and merges again.
        """
        key = sidecar_key(path[1:])
        requests = self._requests
        for _ in range(INDEX_UPDATE_TRIES):
            current, etag = self._read(key)
            merged = {name: value for name, value in current.items() if changes.get(name, value) is not None}
            merged.update({name: value for name, value in changes.items() if value is not None})
            if merged == current:
                return
            if not merged and etag is not None:  # no value left: no sidecar, rather than an empty one to read
                if requests.delete_object(key, if_match=etag):
                    return
                continue  # another writer updated the values since we read them: merge again
            body = encode_index_values(merged)
            if etag is None:  # only if there is still none
                written = requests.put_object(key, body, if_none_match=True)
            else:  # only if it is still the one read
                written = requests.put_object(key, body, if_match=etag)
            if written is None:
                continue  # another writer updated the values since we read them: merge again
            if etag is None and requests.head(path[1:]) is None:
                requests.delete_object(key, if_match=written)  # the object went before its values arrived
            return
        raise kydb.StoreUnavailable(
            f"the index values of {path} in {requests.where(key)} changed under {INDEX_UPDATE_TRIES} tries to "
            "update them (other writers are updating them too); the value was written, set its index again"
        )

    def indexed_names(self, folder: str) -> Iterator[str]:
        """Names of the objects directly in ``folder`` that have a sidecar (every page of the listing)."""
        prefix = sidecar_prefix(folder[1:])
        for key in self._requests.listed_keys(Prefix=prefix):
            name = key[len(prefix) :]
            if "/" not in name:
                yield name

    def _maybe_indexed(self, folder: str, names: list[str]) -> list[str]:
        """Those of ``names`` (sorted, of ``folder``) that have a sidecar, or may have one.

        Lists the folder's sidecars from the first name on, but no further
        than it would take to list one sidecar per name: at most one page
        per 1,000 names, however many other indexed objects lie between
        them.  A name the listing got past is kept only if its sidecar was
        listed; names beyond the last page are kept, for their sidecars to
        be read one by one.
        """
        prefix = sidecar_prefix(folder[1:])
        # first[:-1] sorts just before first, so the listing starts with first's sidecar.
        params: dict[str, Any] = {"Prefix": prefix, "StartAfter": prefix + names[0][:-1], "MaxKeys": S3_BATCH}
        listed: set[str] = set()
        reached = ""  # the last name listed
        for _ in range(-(-len(names) // S3_BATCH)):
            page = self._requests.list_page(**params)
            found = [c["Key"][len(prefix) :] for c in page.get("Contents", [])]
            listed.update(found)
            reached = max(found, default=reached)
            if not page.get("IsTruncated") or reached >= names[-1]:
                return [name for name in names if name in listed]
            params["ContinuationToken"] = page["NextContinuationToken"]
        return [name for name in names if name in listed or name > reached]

    def values_of_many(self, paths: Sequence[str]) -> dict[str, dict[str, int]]:
        """The index values of the objects at ``paths`` that have any.

        A lone path of its folder: one ``GetObject`` of its sidecar, found
        or not.  Several of one folder: a listing of that folder's sidecars
        (see :meth:`_maybe_indexed`), then one ``GetObject`` per path that
        has or may have one.
        """
        by_folder: dict[str, list[str]] = {}
        for path in paths:
            folder, name = split_path(path)
            by_folder.setdefault(folder, []).append(name)
        wanted: list[str] = []
        for folder, names in by_folder.items():
            maybe = names if len(names) == 1 else self._maybe_indexed(folder, sorted(names))
            wanted += [folder + name for name in maybe]
        found = self._requests.connection.each(self.values_of, wanted)
        return {path: values for path, values in zip(wanted, found, strict=True) if values}
