"""Single S3 requests on one bucket, each within a connection slot and with its failures translated.

:class:`BucketRequests` is the only place kydb-s3 calls the boto3 client:
every request holds a slot of its client's pool while it runs (see
:mod:`kydb_s3.client`) and raises kydb's errors (see :mod:`kydb_s3.errors`),
naming the bucket, the key and the store's URL.

**Keys XML cannot carry.**  ``DeleteObjects`` names its keys in an XML body,
and XML 1.0 has no way to write most control characters (U+0000-U+001F but
tab, line feed and carriage return) or the non-characters U+FFFE and U+FFFF;
a carriage return it carries, but S3 reads it back as a line feed (XML's
line-end normalisation), so the request would name another key.  kydb's own
keys have none of these, but other tools may have written such names.  Keys
holding one are deleted by ``DeleteObject`` instead, one request each (the
key travels URL-encoded in the request's path), and a ``DeleteObjects``
that S3 refuses as ``MalformedXML`` is sent again one key at a time, so one
bad name never keeps its batch from being deleted.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, cast

import botocore.exceptions
from botocore.exceptions import BotoCoreError, ClientError

import kydb

from .client import MULTIPART_CHUNKSIZE, MULTIPART_THRESHOLD, S3Connection
from .errors import (
    CONDITION_FAILED,
    AccessDenied,
    S3RequestError,
    bucket_not_found,
    error_code,
    failure,
    http_status,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, HeadObjectOutputTypeDef, ListObjectsV2OutputTypeDef

__all__ = ["MAX_PUT_BYTES", "S3_BATCH", "BucketRequests", "xml_cannot_carry"]

#: ``DeleteObjects`` takes at most 1,000 keys, and ``ListObjectsV2`` returns at most 1,000 per page.
S3_BATCH = 1000
#: The most one ``PutObject`` takes: a conditional put larger than this cannot be made.
MAX_PUT_BYTES = 5 * 1024**3

# Characters outside XML 1.0's Char production (surrogates cannot occur in a key S3 holds), and the
# carriage return, which XML turns into a line feed.
_NOT_IN_XML = re.compile("[\x00-\x08\x0b-\x0d\x0e-\x1f\ufffe\uffff]")

# Errors while reading a response body: botocore retries requests, not the reading of their bodies.
_BODY_ERRORS = (
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ReadTimeoutError,
)


def xml_cannot_carry(key: str) -> bool:
    """Whether ``key`` holds a character an XML request body cannot carry as it is (see the module docstring)."""
    return _NOT_IN_XML.search(key) is not None


class BucketRequests:
    """The requests kydb makes on one bucket through one shared :class:`~kydb_s3.client.S3Connection`.

    ``masked_url`` is the store's URL with secrets masked, for messages;
    ``pool_timeout`` how long a request waits for a free connection slot.
    """

    def __init__(self, connection: S3Connection, bucket: str, masked_url: str, pool_timeout: float) -> None:
        self.connection = connection
        self.client = connection.client
        self.bucket = bucket
        self.masked_url = masked_url
        self.pool_timeout = pool_timeout
        #: Attempts botocore makes per request before an error reaches kydb.
        self.max_attempts = connection.key.max_attempts
        self._bucket_seen = False

    def where(self, key: str | None = None) -> str:
        """``bucket 'b', key 'k' (s3://...)`` for messages."""
        return f"bucket {self.bucket!r}" + (f", key {key!r}" if key is not None else "") + f" ({self.masked_url})"

    @contextmanager
    def request(self, operation: str, key: str | None = None, slots: int = 1) -> Iterator[None]:
        """Run the block holding ``slots`` connection slots, translating boto3 failures.

        :class:`kydb.StoreUnavailable` if no slot comes free within the pool
        timeout; otherwise the errors of :func:`kydb_s3.errors.failure`.
        """
        with self.connection.slots.held(slots, self.pool_timeout) as got:
            if not got:
                size = self.connection.slots.size
                raise kydb.StoreUnavailable(
                    f"the pool of {size} S3 connection(s) is exhausted: {operation} on {self.where(key)} waited "
                    f"{self.pool_timeout:g} s for a free one; other threads hold them all. Raise ?pool_size= "
                    f"(now {size}) or ?pool_timeout= (now {self.pool_timeout:g} s) in the URL"
                )
            try:
                yield
            except (ClientError, BotoCoreError) as exc:
                raise failure(exc, operation, self.bucket, key, self.masked_url, self.max_attempts) from exc

    def check_bucket(self) -> None:
        """Raise :class:`~kydb_s3.BucketNotFound` if the bucket is missing; asks S3 once per store.

        Needed where S3's answer cannot tell a missing key from a missing
        bucket: a ``HEAD`` response has no body to carry the error code.
        """
        if self._bucket_seen:
            return
        with self.request("HeadBucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if http_status(exc) == 404:
                    raise bucket_not_found(self.bucket, self.masked_url) from exc
                raise
        self._bucket_seen = True

    # ------------------------------------------------------------------ reads

    def get_object(self, key: str) -> tuple[bytes, str] | None:
        """The body and ETag of the object at ``key``, from one ``GetObject``; ``None`` if there is none."""
        attempt = 1
        while True:
            with self.request("GetObject", key):
                try:
                    response = self.client.get_object(Bucket=self.bucket, Key=key)
                except ClientError as exc:
                    if error_code(exc) == "NoSuchKey":
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

    def head(self, key: str) -> HeadObjectOutputTypeDef | None:
        """The ``HeadObject`` answer for the object at ``key``; ``None`` if there is none."""
        with self.request("HeadObject", key):
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if http_status(exc) != 404:
                    raise
        return None

    def list_page(self, **params: Any) -> ListObjectsV2OutputTypeDef:
        """One ``ListObjectsV2`` page (botocore asks for URL-encoded keys and decodes them)."""
        with self.request("ListObjectsV2", params.get("Prefix")):
            return self.client.list_objects_v2(Bucket=self.bucket, **params)

    def listed_keys(self, **params: Any) -> Iterator[str]:
        """The keys of every object ``ListObjectsV2`` lists with ``params``, page after page (1,000 a page)."""
        params["MaxKeys"] = S3_BATCH
        while True:
            page = self.list_page(**params)
            yield from (c["Key"] for c in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    # ------------------------------------------------------------------ writes

    def put_object(
        self,
        key: str,
        blob: bytes,
        metadata: dict[str, str] | None = None,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str | None:
        """Write ``blob`` at ``key``; its new ETag, or ``None`` if the condition did not hold.

        ``if_match`` writes only over the object with that ETag,
        ``if_none_match`` only where there is none; either makes it one
        ``PutObject`` whatever its size (S3 checks the condition and writes
        in one step), so at most :data:`MAX_PUT_BYTES`.  An unconditional blob
        of :data:`~kydb_s3.client.MULTIPART_THRESHOLD` bytes or more is a
        multipart upload (:meth:`multipart_upload`): readers never see half a
        blob.  The ETag of a multipart upload is not returned (``''``).
        """
        extra: dict[str, Any] = {"Metadata": metadata} if metadata else {}
        conditional = if_match is not None or if_none_match
        if conditional or len(blob) < MULTIPART_THRESHOLD:
            if if_match is not None:
                extra["IfMatch"] = if_match
            elif if_none_match:
                extra["IfNoneMatch"] = "*"
            with self.request("PutObject", key):
                try:
                    response = self.client.put_object(Bucket=self.bucket, Key=key, Body=blob, **extra)
                except ClientError as exc:
                    if conditional and error_code(exc) in CONDITION_FAILED:
                        return None
                    raise
            return str(response["ETag"])
        self.multipart_upload(key, blob, extra)
        return ""

    def multipart_upload(self, key: str, blob: bytes, extra: dict[str, Any]) -> None:
        """Upload ``blob`` in parts of :data:`~kydb_s3.client.MULTIPART_CHUNKSIZE`, sent concurrently.

        Each part is read straight out of ``blob`` (a :class:`_PartReader`
        over a slice of it), so the upload copies nothing big: a 300 MB put
        holds the value and its blob, not a third copy in part buffers.
        Every part takes a connection slot while it goes up.  If a part
        fails, the upload is aborted — S3 shows the object only on
        ``CompleteMultipartUpload``, so readers never see half a blob — and
        the failure raised.
        """
        # As boto3's own uploads do: where botocore checksums what it sends (its default since 1.36), the upload
        # is declared CRC32 and each part's checksum goes into the completion.
        checksums: dict[str, Any] = {}
        if getattr(self.client.meta.config, "request_checksum_calculation", None) == "when_supported":
            checksums["ChecksumAlgorithm"] = "CRC32"
        with self.request("CreateMultipartUpload", key):
            created = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **extra, **checksums)
        upload_id = created["UploadId"]
        view = memoryview(blob)
        starts = range(0, len(view), MULTIPART_CHUNKSIZE)

        def upload_part(start: int) -> CompletedPartTypeDef:
            number = start // MULTIPART_CHUNKSIZE + 1
            body = cast("IO[Any]", _PartReader(view[start : start + MULTIPART_CHUNKSIZE]))
            with self.request("UploadPart", key):
                response = self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body, **checksums
                )
            part: CompletedPartTypeDef = {"PartNumber": number, "ETag": response["ETag"]}
            if checksums and "ChecksumCRC32" in response:
                part["ChecksumCRC32"] = response["ChecksumCRC32"]
            return part

        try:
            parts = self.connection.each(upload_part, starts)
            with self.request("CompleteMultipartUpload", key):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            with contextlib.suppress(kydb.KydbError), self.request("AbortMultipartUpload", key):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def put_marker(self, key: str) -> None:
        """A zero-byte folder marker ``key`` (ending in ``/``), as the S3 console makes them."""
        self.put_object(key, b"")

    def delete_object(self, key: str, if_match: str | None = None) -> bool:
        """One ``DeleteObject``; with ``if_match``, only if the object's ETag is that: ``False`` if it was not.

        S3 checks ``If-Match`` on ``DeleteObject`` and deletes in one step
        (since September 2025); a store that ignores the header deletes
        regardless.  A key that is gone fails the condition too.
        """
        extra: dict[str, Any] = {"IfMatch": if_match} if if_match is not None else {}
        with self.request("DeleteObject", key):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key, **extra)
            except ClientError as exc:
                if if_match is not None and error_code(exc) in CONDITION_FAILED:
                    return False
                raise
        return True

    def delete_objects(self, keys: list[str]) -> dict[str, Any]:
        """Delete ``keys``; the errors S3 reports, by key.

        One ``DeleteObjects`` for the keys XML can carry, one ``DeleteObject``
        for each other one (see the module docstring); a ``DeleteObjects``
        refused as ``MalformedXML`` is sent again one key at a time.
        """
        batch = [key for key in keys if not xml_cannot_carry(key)]
        alone = [key for key in keys if xml_cannot_carry(key)]
        failed: dict[str, Any] = {}
        if batch:
            found = self._delete_objects(batch)
            if found is None:  # refused as malformed: a name S3 could not read in it
                alone = batch + alone
            else:
                failed = found
        for key in alone:
            try:
                self.delete_object(key)
            except (AccessDenied, S3RequestError) as exc:  # this key's own problem; outages propagate
                cause = exc.__cause__
                code = error_code(cause) if isinstance(cause, ClientError) else "AccessDenied"
                failed[key] = {"Key": key, "Code": code, "Message": str(exc)}
        return failed

    def _delete_objects(self, keys: list[str]) -> dict[str, Any] | None:
        """One ``DeleteObjects``: the errors S3 reports, by key; ``None`` if S3 refused it as ``MalformedXML``."""
        with self.request("DeleteObjects", keys[0] if len(keys) == 1 else None):
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
                )
            except ClientError as exc:
                if error_code(exc) == "MalformedXML":
                    return None
                raise
        return {str(e.get("Key")): e for e in response.get("Errors", [])}


class _PartReader(io.RawIOBase):
    """A seekable, read-only file over a slice of a blob: botocore sends (and checksums) a part from it.

    :meth:`read` hands out views of the blob's memory, not copies: botocore
    hashes and urllib3 sends what it reads, which takes any buffer, and a
    part read in copies would cost a megabyte at a time in each of the
    threads sending parts — memory the allocator keeps after the upload.
    It seeks back when botocore retries the part.
    """

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        origin = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = min(max(origin + offset, 0), len(self._view))
        return self._position

    def read(self, size: int | None = -1) -> memoryview:  # a view, not bytes: see the class docstring
        end = len(self._view) if size is None or size < 0 else min(self._position + size, len(self._view))
        chunk = self._view[self._position : end]
        self._position = end
        return chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def __len__(self) -> int:
        return len(self._view)
