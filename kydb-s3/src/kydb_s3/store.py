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

**Costs.**  put, get, exists: one request each (``put`` of a blob of
:data:`MULTIPART_THRESHOLD` bytes or more is a multipart upload: one request
per :data:`MULTIPART_CHUNKSIZE` part plus two).  ``get_many``/``set_many``:
one request per key, :data:`CONCURRENCY` at a time.  ``delete_many``:
one ``DeleteObjects`` per 1,000 keys.  ``ls``: one ``ListObjectsV2`` per page.
``is_dir``: one ``ListObjectsV2``.  ``mkdir`` at depth *d*: *d* zero-byte
puts, concurrently.  ``rm_tree``: one listing page and one ``DeleteObjects``
per 1,000 objects.

**Failures.**  botocore retries in its ``standard`` mode (throttling, 5xx,
timeouts and connection errors, with backoff; ``AWS_MAX_ATTEMPTS`` or
``max_attempts`` in ``~/.aws/config`` sets the budget, default 3 attempts).
What survives the retries is translated: throttling, 5xx and network errors
to :class:`kydb.StoreUnavailable`, access problems to
:class:`~kydb_s3.AccessDenied` (a ``PermissionError``), a missing bucket to
:class:`~kydb_s3.BucketNotFound`, anything else S3 rejects to
:class:`~kydb_s3.S3RequestError`.  Every message names the bucket, the key
and the store's URL with secrets masked.
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.retries.standard import DEFAULT_MAX_ATTEMPTS
from s3transfer.manager import TransferConfig, TransferManager

import kydb
from kydb.keys import folder_of
from kydb.url import StoreURL

from .errors import AccessDenied, BucketNotFound, S3RequestError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import ListObjectsV2OutputTypeDef

__all__ = ["CONCURRENCY", "MULTIPART_CHUNKSIZE", "MULTIPART_THRESHOLD", "S3Store"]

#: Requests one store runs at once for a batch (get_many, set_many, mkdir, rm_tree's deletes).
CONCURRENCY = 16
#: Blobs this large or larger are uploaded in parts, so a failure never leaves half an object.
MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNKSIZE = 8 * 1024 * 1024
_PART_CONCURRENCY = CONCURRENCY // 2
#: ``DeleteObjects`` takes at most 1,000 keys, and ``ListObjectsV2`` returns at most 1,000 per page.
S3_BATCH = 1000

_OPTIONS = ("endpoint_url", "region", "profile")
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


def _new_client(profile: str | None, region: str | None, endpoint_url: str | None) -> S3Client:
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
            ),
        )


def _settings(url: StoreURL) -> tuple[str, dict[str, str]]:
    """The bucket and the query options of an ``s3://`` URL; ``ValueError`` naming what is wrong."""
    problem = None
    masked = url.masked
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
    elif "endpoint_url" in url.options:
        endpoint = urlsplit(url.options["endpoint_url"])
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
            problem = "endpoint_url must be an http:// or https:// URL, e.g. ?endpoint_url=http://127.0.0.1:9000"
        elif "@" in endpoint.netloc:
            problem = "endpoint_url must not hold credentials; they come from boto3's chain"
            masked = masked.replace(endpoint.netloc.rpartition("@")[0], "***")
    if problem:
        raise ValueError(f"invalid kydb URL {masked!r}: {problem}")
    return bucket, dict(url.options)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class S3Store:
    """The hook implementations for one bucket (see the module docstring for layout and costs).

    One boto3 client per store (boto3 clients are thread-safe), a bounded
    thread pool for batches, and an s3transfer manager for multipart
    uploads, made on the first large put.
    """

    url_path_is_base = True

    def __init__(self, url: StoreURL) -> None:
        self.url = url
        self.bucket, options = _settings(url)
        try:
            self.client = _new_client(options.get("profile"), options.get("region"), options.get("endpoint_url"))
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
                    f"attempt(s): {exc}"
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

    def _get_one(self, path: str) -> bytes | None:
        key = path[1:]
        attempt = 1
        while True:
            with self._requests("GetObject", key):
                try:
                    body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
                except ClientError as exc:
                    if _error_code(exc) == "NoSuchKey":
                        return None
                    raise
                try:
                    return body.read()
                except _BODY_ERRORS:
                    # The connection broke mid-body, after botocore's retries were done with this
                    # request: ask again, within the same attempt budget.
                    if attempt >= self.max_attempts:
                        raise
                finally:
                    body.close()
            attempt += 1

    def _put_one(self, item: tuple[str, bytes]) -> None:
        path, blob = item
        key = path[1:]
        if len(blob) < MULTIPART_THRESHOLD:
            with self._requests("PutObject", key):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=blob)
        else:
            # Parts upload concurrently; S3 shows the object only on CompleteMultipartUpload, and
            # s3transfer aborts the upload if a part fails, so readers never see half a blob.
            with self._requests("multipart upload", key):
                self._transfers().upload(io.BytesIO(blob), self.bucket, key).result()

    def _delete_batch(self, keys: list[str]) -> None:
        """One ``DeleteObjects`` request; raises naming every key S3 reports as not deleted."""
        with self._requests("DeleteObjects", keys[0] if len(keys) == 1 else None):
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )
        errors = response.get("Errors", [])
        if not errors:
            return
        codes = {str(e.get("Code", "")) for e in errors}
        failed = ", ".join(f"{e.get('Key')!r} ({e.get('Code')}: {e.get('Message')})" for e in errors[:10])
        more = f" and {len(errors) - 10} more" if len(errors) > 10 else ""
        message = (
            f"DeleteObjects in {self._where(None)} failed for {len(errors)} of {len(keys)} key(s): "
            f"{failed}{more}; the other keys were deleted"
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

    # ------------------------------------------------------------------ hooks

    @kydb.hookimpl
    def kydb_get(self, paths: Sequence[str]) -> Mapping[str, bytes]:
        blobs = self._each(self._get_one, paths)
        return {path: blob for path, blob in zip(paths, blobs, strict=True) if blob is not None}

    @kydb.hookimpl
    def kydb_put(self, items: dict[str, bytes]) -> None:
        self._each(self._put_one, list(items.items()))

    @kydb.hookimpl
    def kydb_delete(self, paths: Sequence[str]) -> None:
        keys = [path[1:] for path in paths]
        self._each(self._delete_batch, [keys[i : i + S3_BATCH] for i in range(0, len(keys), S3_BATCH)])

    @kydb.hookimpl
    def kydb_exists(self, path: str) -> bool:
        key = path[1:]
        with self._requests("HeadObject", key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _http_status(exc) != 404:
                    raise
            else:
                return True
        self._check_bucket()
        return False

    @kydb.hookimpl
    def kydb_list(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
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
            names += [p["Prefix"][cut:] for p in page.get("CommonPrefixes", [])]
        # S3 lists in UTF-8 byte order, which is code-point order: sorting the merged page keeps it.
        names.sort()
        return kydb.ListPage(names, page.get("NextContinuationToken") if page.get("IsTruncated") else None)

    @kydb.hookimpl
    def kydb_mkdir(self, folder: str) -> None:
        markers = []
        while folder != "/":
            markers.append(folder[1:])
            folder = folder_of(folder)
        self._each(self._put_marker, markers)

    @kydb.hookimpl
    def kydb_rmdir(self, folder: str) -> None:
        self._delete_batch([folder[1:]])

    @kydb.hookimpl
    def kydb_is_dir(self, folder: str) -> bool:
        return int(self._list_page(Prefix=folder[1:], MaxKeys=1).get("KeyCount", 0)) > 0

    @kydb.hookimpl
    def kydb_delete_tree(self, folder: str) -> int:
        """List the prefix 1,000 keys a page and delete each page with one ``DeleteObjects``.

        Deletes run on the pool while the next page is listed (at most
        :data:`CONCURRENCY` in flight).  Pages continue after the last key
        listed, so deleting never shifts the listing.
        """
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
                    deleted += sum(1 for k in keys if not k.endswith("/"))
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
