"""The S3 store: kydb's blob hooks as S3 requests, one boto3 client per store.

**Layout.**  The object at kydb path ``/base/a/b`` is the S3 object with key
``base/a/b`` (no leading slash).  Folders are key prefixes: an object implies
every folder above it, so writing one costs one ``PutObject`` and nothing
else.  ``mkdir`` makes folders that outlive their contents the way the S3
console does, with zero-byte marker objects ``folder/`` (for the folder and
each of its ancestors, so ``rmdir`` of a subfolder never takes its parent
with it).  A bucket written by kydb therefore looks natural to other S3
tools, and kydb reads a bucket whose folders are only key prefixes.

**Folders that disappear.**  A folder that only existed because of objects
below it disappears with the last of them, as on S3 itself; folders made
with ``mkdir`` stay until ``rmdir``/``rm_tree``.

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

**User indexes** live in a small JSON sidecar object per indexed key,
``folder/.kydb-index/name`` (see :mod:`kydb_s3.index_sidecars`), written only
by puts that carry index values and deleted in the same ``DeleteObjects`` as
its object.  The reserved ``.kydb-index`` folders are absent to every read
hook and refused by every write hook, so listings, walks, ``rm_tree``'s count
and ``kydb cp`` never see a sidecar.  An update reads the sidecar, merges,
and writes it back conditionally (``If-Match``/``If-None-Match``), or
deletes it conditionally (``DeleteObject`` with ``If-Match``) when no value
is left: a concurrent index update makes it merge again, so no value is lost
to a race.  The value and its index values are two writes: the object
first, then its sidecar; a put that creates a sidecar then checks
(``HeadObject``) that its object is still there, and removes the sidecar if
a delete got in between (see the README for what can still leave one).

**Queries.**  S3 has no server-side ordering, so folder queries are refused
(:class:`kydb.IndexNotSupported`) unless ``allow_scan=True``; a scan lists
the folder and reads every candidate's metadata once per query, and later
pages come from that first scan (see :meth:`S3Store.kydb_query`).

**Costs.**  put, get, exists: one request each (``put`` of a blob of
:data:`MULTIPART_THRESHOLD` bytes or more is a multipart upload: one request
per :data:`MULTIPART_CHUNKSIZE` part plus two); a put with index values adds
a ``GetObject`` of the sidecar and, when the values change, a ``PutObject``
of it (a ``DeleteObject`` when none is left), plus a ``HeadObject`` of the
object when that ``PutObject`` created the sidecar.  ``get_many``/``set_many``:
one request per key, :data:`CONCURRENCY` at a time.  ``delete``/``delete_many``:
one ``DeleteObjects`` per 500 keys (each with its sidecar).  ``stat``: one
``HeadObject`` per key, then, for those that exist: a key alone in its folder,
one ``GetObject`` of its sidecar whether it has one or not; several keys of
one folder, a listing of the folder's sidecars from the first of them, at
most one page per 1,000 of them, then one ``GetObject`` per key listed with a
sidecar or left past the last page.  ``ls``: one ``ListObjectsV2`` per page.
``is_dir``: one ``ListObjectsV2``.  ``mkdir`` at depth *d*: *d* zero-byte
puts, concurrently.  ``rm_tree``: one listing page and one ``DeleteObjects``
per 1,000 keys.

**Failures.**  botocore retries in its ``standard`` mode (throttling, 5xx,
timeouts and connection errors, with backoff; ``AWS_MAX_ATTEMPTS`` or
``max_attempts`` in ``~/.aws/config`` sets the budget, default 3 attempts;
``?connect_timeout=`` and ``?read_timeout=`` in the URL set botocore's
timeouts, in seconds).  What survives the retries is translated:
throttling, 5xx and network errors to :class:`kydb.StoreUnavailable`,
access problems to :class:`~kydb_s3.AccessDenied` (a ``PermissionError``),
a missing bucket to :class:`~kydb_s3.BucketNotFound`, anything else S3
rejects to :class:`~kydb_s3.S3RequestError`.  Every message names the
bucket, the key and the store's URL with secrets masked.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
from botocore.config import Config
from botocore.endpoint import DEFAULT_TIMEOUT
from botocore.exceptions import BotoCoreError, ClientError
from botocore.retries.standard import DEFAULT_MAX_ATTEMPTS
from s3transfer.manager import TransferConfig, TransferManager

import kydb
from kydb.keys import MAX_PATH_BYTES, folder_of
from kydb.url import StoreURL

from .errors import AccessDenied, BucketNotFound, S3RequestError
from .index_sidecars import (
    INDEX_FOLDER,
    decode_index_values,
    encode_index_values,
    fitting_sidecar_key,
    in_index_folder,
    owner_key,
    sidecar_key,
    sidecar_prefix,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef, ListObjectsV2OutputTypeDef

__all__ = ["CONCURRENCY", "MTIME_METADATA", "MULTIPART_CHUNKSIZE", "MULTIPART_THRESHOLD", "SCANS_KEPT", "S3Store"]

#: Requests one store runs at once for a batch (get_many, set_many, mkdir, rm_tree's deletes).
CONCURRENCY = 16
#: Blobs this large or larger are uploaded in parts: the parts go up in parallel, and one ``PutObject``
#: takes at most 5 GB.
MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNKSIZE = 8 * 1024 * 1024
_PART_CONCURRENCY = CONCURRENCY // 2
#: ``DeleteObjects`` takes at most 1,000 keys, and ``ListObjectsV2`` returns at most 1,000 per page.
S3_BATCH = 1000
#: Objects per ``DeleteObjects`` when each goes with its index sidecar.
_DELETE_BATCH = S3_BATCH // 2
#: The object metadata (``x-amz-meta-kydb-mtime``) holding kydb's modification time, in nanoseconds.
MTIME_METADATA = "kydb-mtime"
#: Tries of an index update that other writers keep changing under it.
_INDEX_UPDATE_TRIES = 8
#: Scans per store whose later pages may still be asked for (each holds its folder's sort keys in memory).
SCANS_KEPT = 8

_OPTIONS = ("endpoint_url", "region", "profile", "connect_timeout", "read_timeout")
_TIMEOUTS = ("connect_timeout", "read_timeout")
# botocore's own check (botocore.handlers.VALID_BUCKET), applied at connect time for a clear message.
_BUCKET_NAME = re.compile(r"^[a-zA-Z0-9.\-_]{1,255}$")
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
    }
)
_UNAVAILABLE_CODES = frozenset(
    {"InternalError", "RequestTimeout", "ServiceUnavailable", "SlowDown", "Throttling", "ThrottlingException"}
)
_CREDENTIAL_ERRORS = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
)
_NETWORK_ERRORS = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.IncompleteReadError,
)
# Errors while reading a response body: botocore retries requests, not the reading of their bodies.
_BODY_ERRORS = (
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ReadTimeoutError,
)

# Answers to a conditional put or delete whose condition no longer holds: another writer got there
# first.  ``If-Match`` on a key that is gone answers 404 ``NoSuchKey``.
_CONDITION_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})

_T = TypeVar("_T")
_R = TypeVar("_R")

# One boto3 session per (profile, region), shared by the process's stores: making a session loads
# botocore's models again (~75 ms), a client from a loaded one takes ~4 ms.  Sessions are not
# thread-safe, so clients are made under the lock.
_sessions: dict[tuple[str | None, str | None], boto3.session.Session] = {}
_sessions_lock = threading.Lock()


def _forget_sessions_in_child() -> None:
    global _sessions_lock
    _sessions_lock = threading.Lock()  # another thread of the parent may have held it at fork time
    _sessions.clear()


os.register_at_fork(after_in_child=_forget_sessions_in_child)


def _new_client(
    profile: str | None, region: str | None, endpoint_url: str | None, timeouts: Mapping[str, float]
) -> S3Client:
    """A client of the shared session for ``(profile, region)``; ``timeouts`` in seconds, botocore's 60 otherwise."""
    with _sessions_lock:
        session = _sessions.get((profile, region))
        if session is None:
            session = boto3.session.Session(profile_name=profile, region_name=region)
            _sessions[(profile, region)] = session
        return session.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                retries={"mode": "standard"},
                # The pool's workers plus the transfer manager's, so neither waits for a connection.
                max_pool_connections=CONCURRENCY + _PART_CONCURRENCY,
                connect_timeout=timeouts.get("connect_timeout", DEFAULT_TIMEOUT),
                read_timeout=timeouts.get("read_timeout", DEFAULT_TIMEOUT),
            ),
        )


def _seconds(text: str) -> float | None:
    """``text`` as a positive number of seconds, or ``None`` if it is not one."""
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if 0 < seconds < float("inf") else None


def _settings(url: StoreURL) -> tuple[str, dict[str, str]]:
    """The bucket and the query options of an ``s3://`` URL; ``ValueError`` naming what is wrong."""
    problem = None
    bucket = url.netloc
    unknown = sorted(set(url.options) - set(_OPTIONS))
    if url.username is not None or url.password is not None:
        problem = (
            "credentials do not go in s3 URLs; they come from boto3's chain "
            "(AWS_PROFILE or ?profile=, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, instance roles)"
        )
    elif not bucket:
        problem = "name a bucket: s3://BUCKET[/base/path]"
    elif url.port is not None or ":" in bucket:
        problem = "s3 URLs take no port; give the endpoint with ?endpoint_url=http://host:port"
    elif not _BUCKET_NAME.match(bucket):
        problem = f"{bucket!r} is not a valid bucket name (letters, digits, '.', '-' and '_' only)"
    elif unknown:
        problem = f"unknown query option(s) {unknown}; s3 URLs take {list(_OPTIONS)} and base"
    elif any(not value for value in url.options.values()):
        problem = "empty query option value"
    elif bad := [name for name in _TIMEOUTS if name in url.options and _seconds(url.options[name]) is None]:
        problem = f"{bad[0]} must be a positive number of seconds, e.g. ?{bad[0]}=5"
    elif "endpoint_url" in url.options:
        endpoint = urlsplit(url.options["endpoint_url"])
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
            problem = "endpoint_url must be an http:// or https:// URL, e.g. ?endpoint_url=http://127.0.0.1:9000"
        elif "@" in endpoint.netloc:
            problem = "endpoint_url must not hold credentials; they come from boto3's chain"
    if problem:
        raise ValueError(f"invalid kydb URL {url.masked!r}: {problem}")
    return bucket, dict(url.options)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _ns(moment: datetime.datetime) -> int:
    """An aware datetime as integer nanoseconds since the epoch (exact, no float rounding)."""
    return (moment - _EPOCH) // datetime.timedelta(microseconds=1) * 1000


def _mtime_ns(head: HeadObjectOutputTypeDef) -> int:
    """kydb's modification time of an object, from its metadata; ``LastModified`` for objects other tools wrote."""
    stamp = head.get("Metadata", {}).get(MTIME_METADATA, "")
    return int(stamp) if stamp.isascii() and stamp.isdigit() else _ns(head["LastModified"])


class _Candidate(NamedTuple):
    """An object a scan found: its value of the queried index, its name, and its mtime once known."""

    value: int
    name: str
    mtime_ns: int | None


@dataclass
class _Scan:
    """A folder query's candidates in query order, and how many of them pages have been served from."""

    candidates: list[_Candidate]
    served: int = 0


class _ScanCache:
    """Scans whose later pages may still be asked for: at most ``size``, least recently used dropped first.

    A query's first page scans the folder; its cursor names the scan, so
    later pages list nothing again.  A scan pushed out (more than ``size``
    queries under way at once) is made again and resumed after the cursor.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._scans: OrderedDict[str, _Scan] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, token: str, scan: _Scan) -> None:
        with self._lock:
            self._scans[token] = scan
            while len(self._scans) > self._size:
                self._scans.popitem(last=False)

    def take(self, token: str) -> _Scan | None:
        with self._lock:
            return self._scans.pop(token, None)


class S3Store(kydb.Store):
    """The hook implementations for one bucket (see the module docstring for layout and costs).

    One boto3 client per store (boto3 clients are thread-safe), a bounded
    thread pool for batches, and an s3transfer manager for multipart
    uploads, made on the first large put.
    """

    # Modification times and user indexes are kept (in metadata and index sidecars) and scanned; S3
    # keeps no creation time, and carrying one over on overwrite would cost a request per write.
    capabilities = kydb.Capabilities(keeps_times=True)

    def __init__(self, url: StoreURL) -> None:
        super().__init__(url)
        self.bucket, options = _settings(url)
        timeouts = {name: float(options[name]) for name in _TIMEOUTS if name in options}
        try:
            self.client = _new_client(
                options.get("profile"), options.get("region"), options.get("endpoint_url"), timeouts
            )
        except botocore.exceptions.ProfileNotFound as exc:
            raise ValueError(f"invalid kydb URL {url.masked!r}: {exc}") from None
        except ValueError as exc:  # botocore's "Invalid endpoint: ..."
            raise ValueError(f"invalid kydb URL {url.masked!r}: {exc}") from None
        retries: Mapping[str, Any] = getattr(self.client.meta.config, "retries", None) or {}
        #: Attempts botocore makes per request before an error reaches kydb.
        self.max_attempts = int(retries.get("total_max_attempts", DEFAULT_MAX_ATTEMPTS))
        self._pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix=f"kydb-s3-{self.bucket}")
        self._lock = threading.Lock()
        self._transfer_manager: TransferManager | None = None
        self._bucket_seen = False
        self._scans = _ScanCache(SCANS_KEPT)

    # ------------------------------------------------------------------ errors

    def _where(self, key: str | None) -> str:
        where = f"bucket {self.bucket!r}"
        if key is not None:
            where += f", key {key!r}"
        return f"{where} ({self.url.masked})"

    def _bucket_not_found(self) -> BucketNotFound:
        return BucketNotFound(
            f"S3 bucket {self.bucket!r} does not exist ({self.url.masked}); create it, "
            "or fix the bucket name or the endpoint"
        )

    def _failure(self, exc: ClientError | BotoCoreError, operation: str, key: str | None) -> Exception:
        """The kydb error for a boto3 failure that survived botocore's retries."""
        where = self._where(key)
        if not isinstance(exc, ClientError):
            if isinstance(exc, _CREDENTIAL_ERRORS):
                return AccessDenied(
                    f"no usable AWS credentials for {operation} on {where}: {exc}; set AWS_PROFILE or "
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or add ?profile= to the URL"
                )
            if isinstance(exc, _NETWORK_ERRORS):
                return kydb.StoreUnavailable(
                    f"S3 is unreachable: {operation} on {where} failed after up to {self.max_attempts} "
                    f"attempt(s): {exc}; check the endpoint URL and that this host can reach it"
                )
            return S3RequestError(f"{operation} on {where} failed: {exc}")
        return self._rejection(exc, operation, where)

    def _rejection(self, exc: ClientError, operation: str, where: str) -> Exception:
        """The kydb error for an error answer from S3."""
        code, status = _error_code(exc), _http_status(exc)
        message = exc.response.get("Error", {}).get("Message") or "no message"
        attempts = int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1
        if code == "NoSuchBucket":
            return self._bucket_not_found()
        if status == 403 or code in _ACCESS_CODES:
            return AccessDenied(
                f"S3 denied {operation} on {where}: {code or status} ({message}); "
                "check the credentials in use and the bucket's policy"
            )
        if status >= 500 or status == 429 or code in _UNAVAILABLE_CODES:
            return kydb.StoreUnavailable(
                f"S3 is unavailable: {operation} on {where} failed with {code or status} (HTTP {status}) "
                f"after {attempts} attempt(s); try again later"
            )
        return S3RequestError(f"S3 rejected {operation} on {where}: {code} (HTTP {status}): {message}")

    @contextmanager
    def _requests(self, operation: str, key: str | None = None) -> Iterator[None]:
        """Translate boto3 failures inside the block (see :meth:`_failure`)."""
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise self._failure(exc, operation, key) from exc

    def _check_bucket(self) -> None:
        """Raise :class:`BucketNotFound` if the bucket is missing; asks S3 once per store.

        Needed where S3's answer cannot tell a missing key from a missing
        bucket: a ``HEAD`` response has no body to carry the error code.
        """
        if self._bucket_seen:
            return
        with self._requests("HeadBucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _http_status(exc) == 404:
                    raise self._bucket_not_found() from exc
                raise
        self._bucket_seen = True

    # ------------------------------------------------------------------ running batches

    def _each(self, work: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``work`` applied to every item, on the pool when there are several; results in order.

        On the first failure the items not yet started are cancelled, the
        requests already under way are waited for, and the failure is raised.
        """
        if len(items) <= 1:
            return [work(item) for item in items]
        futures = [self._pool.submit(work, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            for future in futures:
                future.cancel()
            wait(futures)
            failed.result()  # raises
        return [future.result() for future in futures]

    def _transfers(self) -> TransferManager:
        with self._lock:
            if self._transfer_manager is None:
                config = TransferConfig(
                    multipart_threshold=MULTIPART_THRESHOLD,
                    multipart_chunksize=MULTIPART_CHUNKSIZE,
                    max_request_concurrency=_PART_CONCURRENCY,
                )
                self._transfer_manager = TransferManager(self.client, config)
            return self._transfer_manager

    # ------------------------------------------------------------------ single requests

    def _get_object(self, key: str) -> tuple[bytes, str] | None:
        """The body and ETag of the object at ``key``; ``None`` if there is none."""
        attempt = 1
        while True:
            with self._requests("GetObject", key):
                try:
                    response = self.client.get_object(Bucket=self.bucket, Key=key)
                except ClientError as exc:
                    if _error_code(exc) == "NoSuchKey":
                        return None
                    raise
                body = response["Body"]
                try:
                    return body.read(), response["ETag"]
                except _BODY_ERRORS:
                    # The connection broke mid-body, after botocore's retries were done with this
                    # request: ask again, within the same attempt budget.
                    if attempt >= self.max_attempts:
                        raise
                finally:
                    body.close()
            attempt += 1

    def _get_one(self, path: str) -> bytes | None:
        found = self._get_object(path[1:])
        return None if found is None else found[0]

    def _head(self, path: str) -> HeadObjectOutputTypeDef | None:
        """The ``HeadObject`` answer for the object at ``path``; ``None`` if there is none."""
        key = path[1:]
        with self._requests("HeadObject", key):
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _http_status(exc) != 404:
                    raise
        return None

    def _put_blob(self, key: str, blob: bytes, metadata: dict[str, str]) -> None:
        if len(blob) < MULTIPART_THRESHOLD:
            with self._requests("PutObject", key):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=blob, Metadata=metadata)
        else:
            # Parts upload concurrently; S3 shows the object only on CompleteMultipartUpload, and
            # s3transfer aborts the upload if a part fails, so readers never see half a blob.
            with self._requests("multipart upload", key):
                upload = self._transfers().upload(io.BytesIO(blob), self.bucket, key, extra_args={"Metadata": metadata})
                upload.result()

    def _delete_objects(self, keys: list[str]) -> dict[str, Any]:
        """One ``DeleteObjects`` request; the errors S3 reports, by key."""
        with self._requests("DeleteObjects", keys[0] if len(keys) == 1 else None):
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )
        return {str(e.get("Key")): e for e in response.get("Errors", [])}

    def _delete_batch(self, keys: list[str]) -> None:
        """One ``DeleteObjects`` request; raises naming every key S3 reports as not deleted.

        A sidecar that failed on its own (its object went) is asked for once
        more, in a second ``DeleteObjects``: left behind, it would give its
        values to the next object of that name.  A sidecar that failed along
        with its object is not named again: the count and the names are of
        the keys asked for, plus any sidecar still left behind alone.
        """
        failed = self._delete_objects(keys)
        alone = [key for key in failed if in_index_folder(key) and owner_key(key) not in failed]
        if alone:
            for key in alone:
                del failed[key]
            failed.update(self._delete_objects(alone))
        errors = [e for key, e in failed.items() if not (in_index_folder(key) and owner_key(key) in failed)]
        if not errors:
            return
        codes = {str(e.get("Code", "")) for e in errors}
        listed = ", ".join(f"{e.get('Key')!r} ({e.get('Code')}: {e.get('Message')})" for e in errors[:10])
        more = f" and {len(errors) - 10} more" if len(errors) > 10 else ""
        asked = sum(1 for key in keys if not in_index_folder(key))
        message = (
            f"DeleteObjects in {self._where(None)} failed for {len(errors)} of {asked} key(s): "
            f"{listed}{more}; the other keys were deleted"
        )
        if any(in_index_folder(str(e.get("Key"))) for e in errors):
            message += (
                "; an index sidecar left without its object gives its index values to the next object of "
                "that name: delete it too (rm_tree of its folder does)"
            )
        if codes <= _ACCESS_CODES:
            raise AccessDenied(message)
        if codes & _UNAVAILABLE_CODES:
            raise kydb.StoreUnavailable(message + "; try again later")
        raise S3RequestError(message)

    def _put_marker(self, key: str) -> None:
        with self._requests("PutObject", key):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"")

    def _list_page(self, **params: Any) -> ListObjectsV2OutputTypeDef:
        with self._requests("ListObjectsV2", params.get("Prefix")):
            return self.client.list_objects_v2(Bucket=self.bucket, **params)

    def _listed_keys(self, **params: Any) -> Iterator[str]:
        """The keys of every object ``ListObjectsV2`` lists with ``params``, page after page (1,000 a page)."""
        params["MaxKeys"] = S3_BATCH
        while True:
            page = self._list_page(**params)
            yield from (c["Key"] for c in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    # ------------------------------------------------------------------ index sidecars

    def _check_writable(self, path: str) -> None:
        """Refuse a write or delete inside a reserved sidecar folder (:class:`kydb.InvalidKey`)."""
        if in_index_folder(path):
            raise kydb.InvalidKey(
                f"{path}: {INDEX_FOLDER!r} is reserved by kydb-s3 for the index values of the objects "
                f"beside it ({self.url.masked}); choose another name"
            )

    def _check_sidecar_fits(self, path: str) -> None:
        if fitting_sidecar_key(path[1:]) is None:
            size = len(sidecar_key(path[1:]).encode())
            raise kydb.InvalidKey(
                f"{path}: too long to carry index values on S3 ({self.url.masked}): its index sidecar's key "
                f"would be {size} bytes, over S3's {MAX_PATH_BYTES}; shorten the path by "
                f"{size - MAX_PATH_BYTES} bytes or write it without index="
            )

    def _read_index_values(self, key: str) -> tuple[dict[str, int], str | None]:
        """The index values in the sidecar ``key`` and its ETag; ``({}, None)`` if there is no sidecar."""
        found = self._get_object(key)
        if found is None:
            return {}, None
        body, etag = found
        try:
            return decode_index_values(body), etag
        except ValueError as exc:
            raise kydb.CorruptValue(
                f"the index sidecar {key!r} in {self._where(None)} is not kydb index data: {exc}; "
                "delete it to drop the object's index values"
            ) from None

    def _index_values_of(self, path: str) -> dict[str, int]:
        key = fitting_sidecar_key(path[1:])
        return {} if key is None else self._read_index_values(key)[0]

    def _write_sidecar(self, key: str, body: bytes, etag: str | None) -> str | None:
        """Write the sidecar ``key`` if it is still as read (``etag``, or absent); its new ETag, or ``None`` if not."""
        with self._requests("PutObject", key):
            try:
                if etag is None:  # only if there is still none
                    response = self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
                else:  # only if it is still the one read
                    response = self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfMatch=etag)
            except ClientError as exc:
                if _error_code(exc) in _CONDITION_FAILED:
                    return None
                raise
        return str(response["ETag"])

    def _delete_sidecar(self, key: str, etag: str) -> bool:
        """Delete the sidecar ``key`` if its ETag is still ``etag``; ``False`` if another writer changed it.

        ``DeleteObject`` with ``If-Match`` (S3 since September 2025; a store
        that ignores the header deletes it regardless).
        """
        with self._requests("DeleteObject", key):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
            except ClientError as exc:
                if _error_code(exc) in _CONDITION_FAILED:
                    return False
                raise
        return True

    def _update_index_values(self, path: str, changes: Mapping[str, int | None]) -> None:
        """Merge ``changes`` (``None`` clears) into the sidecar of ``path``, written only if the values change.

        The write (or, when no value is left, the delete) is conditional on
        the sidecar being as read (its ETag, or absent): if another writer
        changed it in between, read and merge again, up to
        :data:`_INDEX_UPDATE_TRIES` times.  A write that created the sidecar
        is followed by a ``HeadObject`` of ``path``: if a delete removed the
        object since it was written, the sidecar is deleted again (unless
        another writer changed it meanwhile).  Only a create needs this: a
        sidecar that already existed when read is gone too once such a
        delete ran, and the conditional write then fails and merges again.
        """
        key = sidecar_key(path[1:])
        for _ in range(_INDEX_UPDATE_TRIES):
            current, etag = self._read_index_values(key)
            merged = {name: value for name, value in current.items() if changes.get(name, value) is not None}
            merged.update({name: value for name, value in changes.items() if value is not None})
            if merged == current:
                return
            if not merged and etag is not None:  # no value left: no sidecar, rather than an empty one to read
                if self._delete_sidecar(key, etag):
                    return
                continue  # another writer updated the values since we read them: merge again
            written = self._write_sidecar(key, encode_index_values(merged), etag)
            if written is None:
                continue  # another writer updated the values since we read them: merge again
            if etag is None and self._head(path) is None:
                self._delete_sidecar(key, written)  # the object went before its values arrived
            return
        raise kydb.StoreUnavailable(
            f"the index values of {path} in {self._where(key)} changed under {_INDEX_UPDATE_TRIES} tries to "
            "update them (other writers are updating them too); the value was written, set its index again"
        )

    def _indexed_names(self, folder: str) -> Iterator[str]:
        """Names of the objects directly in ``folder`` that have a sidecar (every page of the listing)."""
        prefix = sidecar_prefix(folder[1:])
        for key in self._listed_keys(Prefix=prefix):
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
            page = self._list_page(**params)
            found = [c["Key"][len(prefix) :] for c in page.get("Contents", [])]
            listed.update(found)
            reached = max(found, default=reached)
            if not page.get("IsTruncated") or reached >= names[-1]:
                return [name for name in names if name in listed]
            params["ContinuationToken"] = page["NextContinuationToken"]
        return [name for name in names if name in listed or name > reached]

    def _index_values_of_many(self, paths: Sequence[str]) -> dict[str, dict[str, int]]:
        """The index values of the objects at ``paths`` that have any.

        A lone path of its folder: one ``GetObject`` of its sidecar, found
        or not.  Several of one folder: a listing of that folder's sidecars
        (see :meth:`_maybe_indexed`), then one ``GetObject`` per path that
        has or may have one.
        """
        by_folder: dict[str, list[str]] = {}
        for path in paths:
            by_folder.setdefault(folder_of(path), []).append(path)
        wanted: list[str] = []
        for folder, group in by_folder.items():
            if len(group) == 1:
                wanted += group
                continue
            names = self._maybe_indexed(folder, sorted(path[len(folder) :] for path in group))
            wanted += [folder + name for name in names]
        found = self._each(self._index_values_of, wanted)
        return {path: values for path, values in zip(wanted, found, strict=True) if values}

    # ------------------------------------------------------------------ query scans

    def _scan(self, folder: str, index: str, ascending: bool, since: int | None, until: int | None) -> list[_Candidate]:
        """The objects directly in ``folder`` with a value of ``index`` within the bounds, in query order.

        ``mtime``: one listing page per 1,000 objects and one ``HeadObject``
        per object.  A user index: one listing page per 1,000 sidecars and
        one ``GetObject`` per sidecar; the objects' mtimes are read later,
        for the entries a page returns.
        """
        if index == "mtime":
            prefix = folder[1:]
            params: dict[str, Any] = {"Prefix": prefix, "Delimiter": "/"}
            if prefix:
                params["StartAfter"] = prefix  # the folder's own marker object
            names = [key[len(prefix) :] for key in self._listed_keys(**params)]
            heads = self._each(self._head, [folder + name for name in names])
            mtimes = {name: _mtime_ns(head) for name, head in zip(names, heads, strict=True) if head is not None}
            candidates = [_Candidate(mtime, name, mtime) for name, mtime in mtimes.items()]
        else:
            names = list(self._indexed_names(folder))
            values = self._each(self._index_values_of, [folder + name for name in names])
            candidates = [
                _Candidate(found[index], name, None)
                for name, found in zip(names, values, strict=True)
                if index in found
            ]
        candidates = [
            c for c in candidates if (since is None or c.value >= since) and (until is None or c.value <= until)
        ]
        candidates.sort(key=lambda c: (c.value, c.name), reverse=not ascending)
        return candidates

    def _entries(self, folder: str, candidates: list[_Candidate]) -> list[kydb.Entry]:
        """Entries for ``candidates``, reading the mtimes not yet known (objects gone since are left out)."""
        unknown = [c for c in candidates if c.mtime_ns is None]
        heads = dict(zip(unknown, self._each(self._head, [folder + c.name for c in unknown]), strict=True))
        entries = []
        for candidate in candidates:
            if candidate.mtime_ns is not None:
                entries.append(kydb.Entry(candidate.name, candidate.mtime_ns, None, candidate.value))
            elif (head := heads[candidate]) is not None:
                entries.append(kydb.Entry(candidate.name, _mtime_ns(head), None, candidate.value))
        return entries

    # ------------------------------------------------------------------ hooks

    @kydb.hookimpl
    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        """One ``GetObject`` per path; paths in a reserved sidecar folder are absent, without a request."""
        paths = [path for path in paths if not in_index_folder(path)]
        blobs = self._each(self._get_one, paths)
        return {path: blob for path, blob in zip(paths, blobs, strict=True) if blob is not None}

    @kydb.hookimpl
    def kydb_put(
        self,
        items: dict[str, bytes],
        mtime_ns: int,
        indexes: Mapping[str, Mapping[str, int | None]],
        expect: Mapping[str, str | None],
    ) -> None:
        """Each blob in one ``PutObject`` with its mtime in metadata; then the sidecar of those given index values."""
        for path in items:
            self._check_writable(path)
            if indexes.get(path):
                self._check_sidecar_fits(path)
        metadata = {MTIME_METADATA: str(mtime_ns)}

        def write(path: str) -> None:
            self._put_blob(path[1:], items[path], metadata)
            changes = indexes.get(path)
            if changes:
                self._update_index_values(path, changes)

        self._each(write, list(items))

    @kydb.hookimpl
    def kydb_delete(self, paths: Sequence[str], expect: Mapping[str, str]) -> None:
        """One ``DeleteObjects`` per 500 paths, each object with its sidecar (absent sidecars cost nothing).

        :class:`kydb.InvalidKey` for a path in a reserved sidecar folder,
        before anything is deleted: sidecars go only with their objects.
        """
        for path in paths:
            self._check_writable(path)
        batches = []
        for start in range(0, len(paths), _DELETE_BATCH):
            keys = []
            for path in paths[start : start + _DELETE_BATCH]:
                keys.append(path[1:])
                if (sidecar := fitting_sidecar_key(path[1:])) is not None:
                    keys.append(sidecar)
            batches.append(keys)
        self._each(self._delete_batch, batches)

    @kydb.hookimpl
    def kydb_exists(self, path: str) -> bool:
        """One ``HeadObject``; ``False`` without a request in a reserved sidecar folder."""
        if in_index_folder(path):
            return False
        if self._head(path) is not None:
            return True
        self._check_bucket()
        return False

    @kydb.hookimpl
    def kydb_stat(self, paths: Sequence[str]) -> Mapping[str, kydb.ObjectInfo]:
        """One ``HeadObject`` per path (size, mtime), then the index values of those that exist.

        Paths in a reserved sidecar folder are absent, without a request.
        """
        paths = [path for path in paths if not in_index_folder(path)]
        heads = {path: head for path, head in zip(paths, self._each(self._head, paths), strict=True) if head}
        if len(heads) < len(paths):
            self._check_bucket()
        indexes = self._index_values_of_many(list(heads))
        return {
            path: kydb.ObjectInfo(head["ContentLength"], _mtime_ns(head), None, indexes.get(path, {}))
            for path, head in heads.items()
        }

    @kydb.hookimpl
    def kydb_query(self, request: kydb.QueryRequest) -> kydb.QueryPage:
        """One page of a folder query, by scanning: S3 keeps no ordered index.

        Refused with :class:`kydb.IndexNotSupported` unless ``allow_scan``,
        and always for ``ctime`` (S3 keeps no creation time).  The first page
        scans the folder (see :meth:`_scan`); the cursor names that scan, so
        later pages only read the mtimes of the entries they return (user
        indexes) or nothing at all (``mtime``), and see the folder as it was
        at the first page.
        """
        folder, index, ascending, limit, cursor = (
            request.folder, request.index, request.ascending, request.limit, request.cursor
        )  # fmt: skip
        where = self._where(None)
        if index == "ctime":
            raise kydb.IndexNotSupported(
                f"{folder}: S3 keeps no creation times to order by ({where}); order by 'mtime' or a user index"
            )
        if not request.allow_scan:
            raise kydb.IndexNotSupported(
                f"{folder}: S3 keeps no ordered index of {index!r} ({where}); pass allow_scan=True to scan the "
                "folder: one listing page per 1,000 objects, plus one HEAD per object (mtime) or one GET per "
                "indexed object (a user index)"
            )
        if in_index_folder(folder):
            return kydb.QueryPage([], None)
        scan: _Scan | None = None
        if cursor is None:
            token = secrets.token_hex(8)
        else:
            token, *after = json.loads(cursor)
            scan = self._scans.take(token)
        if scan is None:
            scan = _Scan(self._scan(folder, index, ascending, request.since, request.until))
            if cursor is not None:  # the scan was pushed out of the cache: scan again, resume after the cursor
                last = (after[0], after[1])
                done = [(c.value, c.name) <= last if ascending else (c.value, c.name) >= last for c in scan.candidates]
                scan.served = sum(done)
        entries: list[kydb.Entry] = []
        while len(entries) < limit and scan.served < len(scan.candidates):
            chunk = scan.candidates[scan.served : scan.served + limit - len(entries)]
            scan.served += len(chunk)
            entries += self._entries(folder, chunk)
        if scan.served == len(scan.candidates) or not entries:
            return kydb.QueryPage(entries, None)
        self._scans.keep(token, scan)
        return kydb.QueryPage(entries, json.dumps([token, entries[-1].index_value, entries[-1].key]))

    @kydb.hookimpl
    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        """One ``ListObjectsV2`` page; a reserved sidecar folder lists as empty, without a request."""
        if in_index_folder(folder):
            return kydb.ListPage([], None)
        prefix = folder[1:]
        params: dict[str, Any] = {"Prefix": prefix, "Delimiter": "/", "MaxKeys": min(page_size, S3_BATCH)}
        if cursor is not None:
            params["ContinuationToken"] = cursor
        elif prefix:
            params["StartAfter"] = prefix  # the folder's own marker object, which sorts first
        page = self._list_page(**params)
        cut = len(prefix)
        names = [c["Key"][cut:] for c in page.get("Contents", [])]
        if include_dirs:
            hidden = sidecar_prefix(prefix)
            names += [p["Prefix"][cut:] for p in page.get("CommonPrefixes", []) if p["Prefix"] != hidden]
        # S3 lists in UTF-8 byte order, which is code-point order: sorting the merged page keeps it.
        names.sort()
        return kydb.ListPage(names, page.get("NextContinuationToken") if page.get("IsTruncated") else None)

    @kydb.hookimpl
    def kydb_mkdir(self, folder: str) -> None:
        self._check_writable(folder)
        markers = []
        while folder != "/":
            markers.append(folder[1:])
            folder = folder_of(folder)
        self._each(self._put_marker, markers)

    @kydb.hookimpl
    def kydb_rmdir(self, folder: str) -> None:
        self._check_writable(folder)
        self._delete_batch([folder[1:]])

    @kydb.hookimpl
    def kydb_is_dir(self, folder: str) -> bool:
        """One ``ListObjectsV2`` of one key; ``False`` without a request for a reserved sidecar folder."""
        if in_index_folder(folder):
            return False
        return int(self._list_page(Prefix=folder[1:], MaxKeys=1).get("KeyCount", 0)) > 0

    @kydb.hookimpl
    def kydb_delete_tree(self, folder: str) -> int:
        """List the prefix 1,000 keys a page and delete each page with one ``DeleteObjects``.

        Deletes run on the pool while the next page is listed (at most
        :data:`CONCURRENCY` in flight).  Pages continue after the last key
        listed, so deleting never shifts the listing.  Sidecars go with the
        rest, and are not counted as objects.  A reserved sidecar folder
        itself is refused (:class:`kydb.InvalidKey`).
        """
        self._check_writable(folder)
        prefix = folder[1:]
        deleted = 0
        in_flight: deque[Future[None]] = deque()
        params: dict[str, Any] = {"Prefix": prefix, "MaxKeys": S3_BATCH}
        try:
            while True:
                page = self._list_page(**params)
                keys = [c["Key"] for c in page.get("Contents", [])]
                if keys:
                    if len(in_flight) >= CONCURRENCY:
                        in_flight.popleft().result()
                    in_flight.append(self._pool.submit(self._delete_batch, keys))
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

    @kydb.hookimpl
    def kydb_close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._transfer_manager is not None:
            self._transfer_manager.shutdown()
        self.client.close()
