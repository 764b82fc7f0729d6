"""The S3 store: kydb's hooks as S3 requests on one bucket.

**Layout.**  The object at kydb path ``/base/a/b`` is the S3 object with key
``base/a/b`` (no leading slash).  Folders are key prefixes, kept by zero-byte
markers where they must outlive their contents (see :mod:`kydb_s3.folders`);
user index values live in sidecar objects (see :mod:`kydb_s3.index_sidecars`).

**Times.**  Every put stores kydb's own modification time (the nanosecond
``mtime_ns`` of the write) in the object's metadata,
``x-amz-meta-kydb-mtime``, in the same ``PutObject``.  S3's ``LastModified``
is not used for kydb's objects: it is the server's clock truncated to whole
seconds (in listings and HEAD alike), so it cannot order writes made within
one second and puts an object up to a second before its write began, where
kydb's time agrees with every other backend and survives ``kydb cp``.
Objects written by other tools, without that metadata, report
``LastModified``.  S3 keeps no creation time: ``ctime`` is ``None`` and
ordering by it is refused.

**Versions.**  An object's version is its ETag (an MD5 of its bytes, for a
single-part put): it changes whenever the stored bytes change, and a rewrite
of identical bytes keeps it.  A conditional put is one ``PutObject`` with
``If-Match: <etag>`` or ``If-None-Match: *``, a conditional delete one
``DeleteObject`` with ``If-Match``: S3 checks and writes in one step.  A
condition that fails (412 ``PreconditionFailed``, 409
``ConditionalRequestConflict``, or 404 for an ``If-Match`` on a key that is
gone) raises :class:`kydb.Conflict` naming the key, and nothing is written.

**Queries.**  S3 has no server-side ordering, so folder queries are refused
(:class:`kydb.IndexNotSupported`) unless ``allow_scan=True`` (see
:mod:`kydb_s3.scans`).

**Costs.**  put, get, exists: one request each (``put`` of a blob of
:data:`~kydb_s3.client.MULTIPART_THRESHOLD` bytes or more is a multipart
upload: one request per :data:`~kydb_s3.client.MULTIPART_CHUNKSIZE` part plus
two, unless it is conditional); a put with index values adds a ``GetObject``
of the sidecar and, when the values change, a ``PutObject`` of it (a
``DeleteObject`` when none is left), plus a ``HeadObject`` of the object when
that ``PutObject`` created the sidecar.  ``get_many``/``set_many``: one
request per key, :data:`~kydb_s3.client.CONCURRENCY` at a time.
``delete``/``delete_many``: one ``ListObjectsV2`` of one key per folder
holding a deleted path (plus one ``PutObject`` the first time a folder gets
its marker), then one ``DeleteObjects`` per 500 keys (each with its sidecar).
``stat``: one ``HeadObject`` per key, then, for those that exist: a key alone
in its folder, one ``GetObject`` of its sidecar whether it has one or not;
several keys of one folder, a listing of the folder's sidecars from the first
of them, at most one page per 1,000 of them, then one ``GetObject`` per key
listed with a sidecar or left past the last page.  ``ls``: one
``ListObjectsV2`` per page.  ``is_dir``: one ``ListObjectsV2``.  ``mkdir`` at
depth *d*: *d* zero-byte puts, concurrently.  ``rmdir``: one
``ListObjectsV2`` of the folder above (plus its marker if it has none) and
one ``DeleteObjects``.  ``rm_tree``: the same look at the folder above, then
one listing page and one ``DeleteObjects`` per 1,000 keys.

**Failures.**  botocore retries in its ``standard`` mode (throttling, 5xx,
timeouts and connection errors, with backoff; ``AWS_MAX_ATTEMPTS`` or
``max_attempts`` in ``~/.aws/config`` sets the budget, default 3 attempts;
``?connect_timeout=`` and ``?read_timeout=`` in the URL set botocore's
timeouts, in seconds).  What survives the retries is translated (see
:mod:`kydb_s3.errors`).  Every message names the bucket, the key and the
store's URL with secrets masked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, wait
from typing import Any

import botocore.exceptions

import kydb
from kydb.keys import folder_of
from kydb.url import StoreURL

from .client import MULTIPART_THRESHOLD, ClientKey, acquire, client_key, release
from .errors import ACCESS_CODES, UNAVAILABLE_CODES, AccessDenied, S3RequestError
from .folders import Folders
from .index_sidecars import IndexSidecars, fitting_sidecar_key, in_index_folder, owner_key
from .options import S3Options, parse_options
from .requests import MAX_PUT_BYTES, S3_BATCH, BucketRequests
from .scans import MTIME_METADATA, Scans, mtime_ns

__all__ = ["S3Store"]

#: Objects per ``DeleteObjects`` when each goes with its index sidecar.
_DELETE_BATCH = S3_BATCH // 2
#: ``DeleteObjects`` requests ``rm_tree`` keeps in flight while it lists the next page.
_DELETES_IN_FLIGHT = 16


class S3Store(kydb.Store):
    """The hook implementations for one bucket (see the module docstring for layout and costs).

    The boto3 client, its connection slots and its thread pool are the
    process's for this configuration, shared with every
    other store of it (see :mod:`kydb_s3.client`); ``kydb_close`` gives them
    back.
    """

    # Modification times and user indexes are kept (in metadata and index sidecars) and scanned; S3
    # keeps no creation time, and carrying one over on overwrite would cost a request per write.
    capabilities = kydb.Capabilities(keeps_times=True, conditional_writes=True)

    def __init__(self, url: StoreURL) -> None:
        super().__init__(url)
        #: The bucket and the options of the URL.
        self.options: S3Options = parse_options(url)
        self.bucket = self.options.bucket
        try:
            self._client_key: ClientKey | None = client_key(self.options)
            connection = acquire(self._client_key)
        except botocore.exceptions.ProfileNotFound as exc:
            raise ValueError(f"invalid kydb URL {url.masked!r}: {exc}") from None
        except ValueError as exc:  # botocore's "Invalid endpoint: ..."
            raise ValueError(f"invalid kydb URL {url.masked!r}: {exc}") from None
        #: The process's boto3 client for this configuration (thread-safe, shared).
        self.client = connection.client
        self.requests = BucketRequests(connection, self.bucket, url.masked, self.options.pool_timeout)
        #: Attempts botocore makes per request before an error reaches kydb.
        self.max_attempts = self.requests.max_attempts
        self.sidecars = IndexSidecars(self.requests)
        self.folders = Folders(self.requests, url.base_path + "/")
        self.scans = Scans(self.requests, self.folders, self.sidecars)

    def __repr__(self) -> str:
        return f"<S3Store {self.requests.where()}>"

    # ------------------------------------------------------------------ helpers

    def _check_writable(self, paths: Sequence[str]) -> None:
        for path in paths:
            self.sidecars.check_writable(path)

    def _one_conditional(self, paths: Sequence[str], expect: Mapping[str, Any], doing: str) -> str:
        """The one path of a conditional write; refused (before anything is written) for several at once."""
        if len(paths) != 1 or set(expect) != set(paths):
            raise kydb.ConditionalWritesNotSupported(
                f"S3 checks a condition on one object per request, so a conditional {doing} of several objects "
                f"at once cannot be atomic ({self.url.masked}): {doing} them one at a time"
            )
        return paths[0]

    def _delete_batch(self, keys: list[str]) -> None:
        """Delete ``keys``; raise naming every key S3 reports as not deleted.

        A sidecar that failed on its own (its object went) is asked for once
        more: left behind, it would give its values to the next object of
        that name.  A sidecar that failed along with its object is not named
        again: the count and the names are of the keys asked for, plus any
        sidecar still left behind alone.
        """
        failed = self.requests.delete_objects(keys)
        alone = [key for key in failed if in_index_folder(key) and owner_key(key) not in failed]
        if alone:
            for key in alone:
                del failed[key]
            failed.update(self.requests.delete_objects(alone))
        errors = [e for key, e in failed.items() if not (in_index_folder(key) and owner_key(key) in failed)]
        if not errors:
            return
        codes = {str(e.get("Code", "")) for e in errors}
        listed = ", ".join(f"{e.get('Key')!r} ({e.get('Code')}: {e.get('Message')})" for e in errors[:10])
        more = f" and {len(errors) - 10} more" if len(errors) > 10 else ""
        asked = sum(1 for key in keys if not in_index_folder(key)) or len(keys)
        message = (
            f"DeleteObjects in {self.requests.where()} failed for {len(errors)} of {asked} key(s): "
            f"{listed}{more}; the other keys were deleted"
        )
        if any(in_index_folder(str(e.get("Key"))) for e in errors):
            message += (
                "; an index sidecar left without its object gives its index values to the next object of "
                "that name: delete it too (rm_tree of its folder does)"
            )
        if codes <= ACCESS_CODES:
            raise AccessDenied(message)
        if codes & UNAVAILABLE_CODES:
            raise kydb.StoreUnavailable(message + "; try again later")
        raise S3RequestError(message)

    @staticmethod
    def _with_sidecars(paths: Sequence[str]) -> list[str]:
        keys = []
        for path in paths:
            keys.append(path[1:])
            if (sidecar := fitting_sidecar_key(path[1:])) is not None:
                keys.append(sidecar)
        return keys

    # ------------------------------------------------------------------ objects

    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        """One ``GetObject`` per path; paths in a reserved sidecar folder are absent, without a request."""
        paths = [path for path in paths if not in_index_folder(path)]
        found = self.requests.connection.each(self.requests.get_object, [path[1:] for path in paths])
        return {path: got[0] for path, got in zip(paths, found, strict=True) if got is not None}

    def kydb_get_versioned(self, paths: Sequence[str]) -> Mapping[str, kydb.VersionedBlob]:
        """One ``GetObject`` per path: the body and the ETag it was sent with."""
        paths = [path for path in paths if not in_index_folder(path)]
        found = self.requests.connection.each(self.requests.get_object, [path[1:] for path in paths])
        return {path: kydb.VersionedBlob(*got) for path, got in zip(paths, found, strict=True) if got is not None}

    def kydb_put(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None],
    ) -> None:
        """Each blob in one ``PutObject`` with its mtime in metadata; then the sidecar of those given index values.

        With ``expect`` (one path only): one ``PutObject`` with ``If-Match``
        (or ``If-None-Match: *``), whatever the blob's size up to 5 GiB;
        :class:`kydb.Conflict` if the condition fails.  Unconditional blobs
        of :data:`~kydb_s3.client.MULTIPART_THRESHOLD` bytes or more are
        uploaded one after the other, each in parts sent concurrently; the
        others concurrently.
        """
        self._check_writable(list(items))
        for path in items:
            if indexes.get(path):
                self.sidecars.check_fits(path)
        metadata = {MTIME_METADATA: str(mtime_ns)}
        if expect:
            path = self._one_conditional(list(items), expect, "put")
            self._put_conditionally(path, items[path], metadata, expect[path])
            if changes := indexes.get(path):
                self.sidecars.update(path, changes)
            return

        def write(path: str) -> None:
            self.requests.put_object(path[1:], items[path], metadata)
            if changes := indexes.get(path):
                self.sidecars.update(path, changes)

        small = [path for path, blob in items.items() if len(blob) < MULTIPART_THRESHOLD]
        self.requests.connection.each(write, small)
        for path in items.keys() - set(small):
            write(path)

    def _put_conditionally(self, path: str, blob: bytes, metadata: dict[str, str], version: str | None) -> None:
        if len(blob) > MAX_PUT_BYTES:
            raise kydb.ConditionalWritesNotSupported(
                f"{path}: a conditional write of {len(blob):,} bytes to S3 ({self.url.masked}): S3 checks a "
                f"condition in one PutObject, which takes at most {MAX_PUT_BYTES:,} bytes, and kydb-s3 makes no "
                "conditional multipart uploads; nothing was written. Write it without if_version/if_absent"
            )
        written = self.requests.put_object(path[1:], blob, metadata, if_match=version, if_none_match=version is None)
        if written is None:
            if version is None:
                raise kydb.Conflict(f"{path}: an object already exists there in {self.requests.where()}; not written")
            raise kydb.Conflict(
                f"{path}: its version is no longer {version} in {self.requests.where()} (another writer changed or "
                "deleted it); not written"
            )

    def kydb_delete(self, paths: Sequence[str], expect: Mapping[str, str]) -> None:
        """One ``DeleteObjects`` per 500 paths, each object with its sidecar (absent sidecars cost nothing).

        First, each folder holding a path gets its marker if it has none
        (see :meth:`kydb_s3.folders.Folders.keep`), so that a folder emptied
        by the delete stays.  With ``expect`` (one path only): one
        ``DeleteObject`` with ``If-Match`` (:class:`kydb.Conflict` if it
        fails), then the sidecar.  :class:`kydb.InvalidKey` for a path in a
        reserved sidecar folder, before anything is deleted: sidecars go only
        with their objects.
        """
        self._check_writable(paths)
        if expect:
            path = self._one_conditional(paths, expect, "delete")
            # A marker written before a delete that then conflicts only says the folder exists, which it does.
            self.folders.keep([folder_of(path)])
            if not self.requests.delete_object(path[1:], if_match=expect[path]):
                raise kydb.Conflict(
                    f"{path}: its version is no longer {expect[path]} in {self.requests.where()} (another writer "
                    "changed or deleted it); not deleted"
                )
            if (sidecar := fitting_sidecar_key(path[1:])) is not None:
                self._delete_batch([sidecar])
            return
        self.folders.keep(folder_of(path) for path in paths)
        starts = range(0, len(paths), _DELETE_BATCH)
        batches = [self._with_sidecars(paths[start : start + _DELETE_BATCH]) for start in starts]
        self.requests.connection.each(self._delete_batch, batches)

    def kydb_exists(self, path: str) -> bool:
        """One ``HeadObject``; ``False`` without a request in a reserved sidecar folder."""
        if in_index_folder(path):
            return False
        if self.requests.head(path[1:]) is not None:
            return True
        self.requests.check_bucket()
        return False

    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, kydb.ObjectInfo]:
        """One ``HeadObject`` per path (size, mtime, ETag), then the index values of those that exist.

        Paths in a reserved sidecar folder are absent, without a request.
        """
        paths = [path for path in paths if not in_index_folder(path)]
        found = self.requests.connection.each(self.requests.head, [path[1:] for path in paths])
        heads = {path: head for path, head in zip(paths, found, strict=True) if head is not None}
        if len(heads) < len(paths):
            self.requests.check_bucket()
        indexes = self.sidecars.values_of_many(list(heads))
        return {
            path: kydb.ObjectInfo(head["ContentLength"], mtime_ns(head), None, indexes.get(path, {}), head["ETag"])
            for path, head in heads.items()
        }

    def kydb_query(self, request: kydb.QueryRequest) -> kydb.QueryPage:
        """One page of a folder query, by scanning (see :mod:`kydb_s3.scans`): S3 keeps no ordered index.

        Refused with :class:`kydb.IndexNotSupported` unless ``allow_scan``,
        and always for ``ctime`` (S3 keeps no creation time).
        """
        where = self.requests.where()
        if request.index == "ctime":
            raise kydb.IndexNotSupported(
                f"{request.folder}: S3 keeps no creation times to order by ({where}); order by 'mtime' or a user index"
            )
        if not request.allow_scan:
            raise kydb.IndexNotSupported(
                f"{request.folder}: S3 keeps no ordered index of {request.index!r} ({where}); pass allow_scan=True "
                "to scan the folder: one listing page per 1,000 objects, plus one HEAD per object (mtime) or one "
                "GET per indexed object (a user index)"
            )
        return self.scans.query(request)

    # ------------------------------------------------------------------ folders

    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        """One ``ListObjectsV2`` page; names kydb cannot represent are skipped and logged."""
        return self.folders.list_page(folder, include_dirs, page_size, cursor)

    def kydb_mkdir(self, folder: str) -> None:
        self.sidecars.check_writable(folder)
        self.folders.mkdir(folder)

    def kydb_rmdir(self, folder: str) -> None:
        """The folder above keeps its marker; then one ``DeleteObjects`` of the folder's marker."""
        self.sidecars.check_writable(folder)
        self.folders.keep_parent(folder)
        self._delete_batch([folder[1:]])

    def kydb_is_dir(self, folder: str) -> bool:
        """One ``ListObjectsV2`` of one key; ``False`` without a request for a reserved sidecar folder."""
        return self.folders.is_dir(folder)

    def kydb_delete_tree(self, folder: str) -> int:
        """List the prefix 1,000 keys a page and delete each page with one ``DeleteObjects``.

        The folder above keeps its marker first.  Deletes run on the thread
        pool while the next page is listed (at most 16 in flight).  Pages
        continue after the last key listed, so deleting never shifts the
        listing.  Sidecars, and keys kydb cannot name, go with the rest;
        sidecars are not counted as objects.  A reserved sidecar folder
        itself is refused (:class:`kydb.InvalidKey`).
        """
        self.sidecars.check_writable(folder)
        self.folders.keep_parent(folder)
        prefix = folder[1:]
        deleted = 0
        in_flight: deque[Future[None]] = deque()
        params: dict[str, Any] = {"Prefix": prefix, "MaxKeys": S3_BATCH}
        try:
            while True:
                page = self.requests.list_page(**params)
                keys = [c["Key"] for c in page.get("Contents", [])]
                if keys:
                    if len(in_flight) >= _DELETES_IN_FLIGHT:
                        in_flight.popleft().result()
                    in_flight.append(self.requests.connection.submit(self._delete_batch, keys))
                    deleted += sum(1 for k in keys if not k.endswith("/") and not in_index_folder(k))
                if not page.get("IsTruncated"):
                    break
                params["StartAfter"] = keys[-1]
            while in_flight:
                in_flight.popleft().result()
        finally:
            for future in in_flight:
                future.cancel()
            wait(in_flight)
        return deleted

    def kydb_close(self) -> None:
        """Give back this store's use of the shared client (the last store of its configuration closes it)."""
        key, self._client_key = self._client_key, None
        if key is not None:
            release(key)
