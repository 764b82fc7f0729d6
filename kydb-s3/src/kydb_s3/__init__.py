"""kydb's S3 backend: ``s3://BUCKET[/base/path][?endpoint_url=...&region=...&profile=...]``.

Works with Amazon S3 and S3-compatible stores (MinIO, Ceph, moto, ...).  See
:class:`S3Store` for the layout in the bucket and what each operation costs.
This package imports boto3; kydb imports it only when an ``s3://`` URL is
connected.
"""

from __future__ import annotations

from .errors import AccessDenied, BucketNotFound, S3RequestError
from .store import CONCURRENCY, MTIME_METADATA, MULTIPART_CHUNKSIZE, MULTIPART_THRESHOLD, S3Store

__all__ = [
    "CONCURRENCY",
    "MTIME_METADATA",
    "MULTIPART_CHUNKSIZE",
    "MULTIPART_THRESHOLD",
    "AccessDenied",
    "BucketNotFound",
    "S3RequestError",
    "S3Store",
]
__version__ = "0.1.0"
