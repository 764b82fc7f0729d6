"""The errors kydb-s3 raises besides kydb's own.

Each names the bucket, the key where there is one, and the store's URL
(secrets masked).  None of them is a ``KeyError``: only a key that is
genuinely absent reads as missing.  Network failures, throttling and 5xx
answers that survive botocore's retries are plain :class:`kydb.StoreUnavailable`.
"""

from __future__ import annotations

import kydb

__all__ = ["AccessDenied", "BucketNotFound", "S3RequestError"]


class AccessDenied(kydb.KydbError, PermissionError):
    """S3 refused the request: no credentials, bad or expired ones, or a policy that denies it."""


class BucketNotFound(kydb.StoreUnavailable):
    """The URL's bucket does not exist at the endpoint in use."""


class S3RequestError(kydb.KydbError):
    """S3 rejected a request for another reason (its error code is in the message)."""
