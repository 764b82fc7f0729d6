"""kydb's S3 backend: ``s3://BUCKET[/base/path][?endpoint_url=...&region=...&profile=...]``.

Works with Amazon S3 and S3-compatible stores (MinIO, Ceph, moto, ...).  See
:class:`S3Store` for the layout in the bucket and what each operation costs.
This package imports boto3; kydb imports it only when an ``s3://`` URL is
connected.

Modules, one job each: :mod:`~kydb_s3.options` (the URL),
:mod:`~kydb_s3.errors` (errors and their translation), :mod:`~kydb_s3.client`
(one boto3 client per configuration per process, with its connection slots
and thread pool), :mod:`~kydb_s3.requests` (single requests
on one bucket), :mod:`~kydb_s3.folders` (listings and folder markers),
:mod:`~kydb_s3.index_sidecars` (user index values), :mod:`~kydb_s3.scans`
(scan-based queries), :mod:`~kydb_s3.store` (the hooks) and
:mod:`~kydb_s3.testing` (a fault-injecting proxy for tests).
"""

from __future__ import annotations

from .client import CONCURRENCY, MULTIPART_CHUNKSIZE, MULTIPART_THRESHOLD
from .errors import AccessDenied, BucketNotFound, S3RequestError
from .options import DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT
from .scans import MTIME_METADATA
from .store import S3Store

__all__ = [
    "CONCURRENCY",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_POOL_TIMEOUT",
    "MTIME_METADATA",
    "MULTIPART_CHUNKSIZE",
    "MULTIPART_THRESHOLD",
    "AccessDenied",
    "BucketNotFound",
    "S3RequestError",
    "S3Store",
]
__version__ = "0.1.0"
