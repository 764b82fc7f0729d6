"""The errors kydb-s3 raises besides kydb's own, and how boto3's failures become them.

Each names the bucket, the key where there is one, and the store's URL
(secrets masked).  None of them is a ``KeyError``: only a key that is
genuinely absent reads as missing.  Network failures, throttling and 5xx
answers that survive botocore's retries are plain :class:`kydb.StoreUnavailable`;
a condition that no longer holds (another writer got there first) is
:class:`kydb.Conflict`.
"""

from __future__ import annotations

import botocore.exceptions
from botocore.exceptions import BotoCoreError, ClientError

import kydb

__all__ = [
    "ACCESS_CODES",
    "CONDITION_FAILED",
    "UNAVAILABLE_CODES",
    "AccessDenied",
    "BucketNotFound",
    "S3RequestError",
    "bucket_not_found",
    "error_code",
    "failure",
    "http_status",
]


class AccessDenied(kydb.KydbError, PermissionError):
    """S3 refused the request: no credentials, bad or expired ones, or a policy that denies it."""


class BucketNotFound(kydb.StoreUnavailable):
    """The URL's bucket does not exist at the endpoint in use."""


class S3RequestError(kydb.KydbError):
    """S3 rejected a request for another reason (its error code is in the message)."""


#: Error codes S3 answers when the caller may not do what it asked.
ACCESS_CODES = frozenset(
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
#: Error codes of an S3 that is busy or failing: worth trying again later.
UNAVAILABLE_CODES = frozenset(
    {"InternalError", "RequestTimeout", "ServiceUnavailable", "SlowDown", "Throttling", "ThrottlingException"}
)
#: Answers to a conditional put or delete whose condition no longer holds: another writer got there
#: first.  412 ``PreconditionFailed``; 409 ``ConditionalRequestConflict`` (a concurrent conditional
#: write of the same key); ``If-Match`` on a key that is gone answers 404 ``NoSuchKey``.
CONDITION_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})

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


def error_code(exc: ClientError) -> str:
    """S3's error code in an error answer (``NoSuchKey``, ``PreconditionFailed``...); ``''`` if none."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    """The HTTP status of an error answer (0 if unknown)."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def bucket_not_found(bucket: str, masked_url: str) -> BucketNotFound:
    """The error for a bucket that does not exist."""
    return BucketNotFound(
        f"S3 bucket {bucket!r} does not exist ({masked_url}); create it, or fix the bucket name or the endpoint"
    )


def failure(
    exc: ClientError | BotoCoreError, operation: str, bucket: str, key: str | None, masked_url: str, attempts: int
) -> Exception:
    """The kydb error for a boto3 failure of ``operation`` that survived botocore's ``attempts`` attempts.

    Missing or unusable credentials and S3's access answers become
    :class:`AccessDenied`; network errors, throttling and 5xx answers
    :class:`kydb.StoreUnavailable`; a missing bucket :class:`BucketNotFound`;
    anything else :class:`S3RequestError`.  The message names ``bucket``,
    ``key`` (when given) and the URL.
    """
    where = f"bucket {bucket!r}" + (f", key {key!r}" if key is not None else "") + f" ({masked_url})"
    if isinstance(exc, ClientError):
        return _rejection(exc, operation, where, bucket, masked_url)
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return AccessDenied(
            f"no usable AWS credentials for {operation} on {where}: {exc}; set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or add ?profile= to the URL"
        )
    if isinstance(exc, _NETWORK_ERRORS):
        return kydb.StoreUnavailable(
            f"S3 is unreachable: {operation} on {where} failed after up to {attempts} "
            f"attempt(s): {exc}; check the endpoint URL and that this host can reach it"
        )
    return S3RequestError(f"{operation} on {where} failed: {exc}")


def _rejection(exc: ClientError, operation: str, where: str, bucket: str, masked_url: str) -> Exception:
    code, status = error_code(exc), http_status(exc)
    message = exc.response.get("Error", {}).get("Message") or "no message"
    attempts = int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1
    if code == "NoSuchBucket":
        return bucket_not_found(bucket, masked_url)
    if status == 403 or code in ACCESS_CODES:
        return AccessDenied(
            f"S3 denied {operation} on {where}: {code or status} ({message}); "
            "check the credentials in use and the bucket's policy"
        )
    if status >= 500 or status == 429 or code in UNAVAILABLE_CODES:
        return kydb.StoreUnavailable(
            f"S3 is unavailable: {operation} on {where} failed with {code or status} (HTTP {status}) "
            f"after {attempts} attempt(s); try again later"
        )
    return S3RequestError(f"S3 rejected {operation} on {where}: {code} (HTTP {status}): {message}")
