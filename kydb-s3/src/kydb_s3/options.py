"""Reading an ``s3://`` URL: the bucket, and the options that say how to reach it.

``s3://BUCKET[/base/path][?endpoint_url=...&region=...&profile=...&connect_timeout=...&read_timeout=...
&pool_size=...&pool_timeout=...]``.  Credentials never go in the URL: they
come from boto3's chain.  Unknown options are rejected, never ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from botocore.endpoint import DEFAULT_TIMEOUT

from kydb.url import StoreURL, positive_int_option, positive_seconds_option

__all__ = ["DEFAULT_POOL_SIZE", "DEFAULT_POOL_TIMEOUT", "DEFAULT_TIMEOUT", "OPTIONS", "S3Options", "parse_options"]

#: Connections one boto3 client keeps to its endpoint (botocore's ``max_pool_connections``): a batch's
#: 16 requests at once (a multipart upload's parts are one), with room for other threads' requests.
DEFAULT_POOL_SIZE = 24
#: Seconds a request waits for a free connection of its client's pool before ``kydb.StoreUnavailable``.
DEFAULT_POOL_TIMEOUT = 30.0

#: Every query option and what it means.
OPTIONS = {
    "endpoint_url": "an S3-compatible endpoint, http:// or https://",
    "region": "the bucket's region",
    "profile": "a profile of ~/.aws/config",
    "connect_timeout": f"seconds one attempt waits to connect (default {DEFAULT_TIMEOUT:g})",
    "read_timeout": f"seconds one attempt waits for more of the answer (default {DEFAULT_TIMEOUT:g})",
    "pool_size": f"connections of the process's client for this endpoint (default {DEFAULT_POOL_SIZE})",
    "pool_timeout": f"seconds to wait for a free connection (default {DEFAULT_POOL_TIMEOUT:g})",
}
# botocore's own check (botocore.handlers.VALID_BUCKET), applied at connect time for a clear message.
_BUCKET_NAME = re.compile(r"^[a-zA-Z0-9.\-_]{1,255}$")


@dataclass(frozen=True)
class S3Options:
    """Where a store's bucket is and how to reach it.

    Everything but ``bucket`` and ``pool_timeout`` picks the boto3 client:
    stores whose options agree there share one client per process (see
    :mod:`kydb_s3.client`), whatever their buckets and base paths.
    """

    bucket: str
    endpoint_url: str | None
    region: str | None
    profile: str | None
    connect_timeout: float
    read_timeout: float
    pool_size: int
    pool_timeout: float


def parse_options(url: StoreURL) -> S3Options:
    """The bucket and options of an ``s3://`` URL; ``ValueError`` naming the masked URL and what is wrong."""
    problem = None
    bucket = url.netloc
    unknown = sorted(set(url.options) - set(OPTIONS))
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
        problem = f"unknown query option(s) {unknown}; s3 URLs take {sorted(OPTIONS)} and base"
    elif any(not value for value in url.options.values()):
        problem = "empty query option value"
    elif "endpoint_url" in url.options:
        endpoint = urlsplit(url.options["endpoint_url"])
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
            problem = "endpoint_url must be an http:// or https:// URL, e.g. ?endpoint_url=http://127.0.0.1:9000"
        elif "@" in endpoint.netloc:
            problem = "endpoint_url must not hold credentials; they come from boto3's chain"
    if problem:
        raise ValueError(f"invalid kydb URL {url.masked!r}: {problem}")
    return S3Options(
        bucket=bucket,
        endpoint_url=url.options.get("endpoint_url"),
        region=url.options.get("region"),
        profile=url.options.get("profile"),
        connect_timeout=_seconds(url, "connect_timeout", DEFAULT_TIMEOUT),
        read_timeout=_seconds(url, "read_timeout", DEFAULT_TIMEOUT),
        pool_size=_count(url, "pool_size", DEFAULT_POOL_SIZE),
        pool_timeout=_seconds(url, "pool_timeout", DEFAULT_POOL_TIMEOUT),
    )


def _seconds(url: StoreURL, name: str, default: float) -> float:
    value = positive_seconds_option(url, name, default)
    assert value is not None  # a default was given
    return value


def _count(url: StoreURL, name: str, default: int) -> int:
    value = positive_int_option(url, name, default)
    assert value is not None  # a default was given
    return value
