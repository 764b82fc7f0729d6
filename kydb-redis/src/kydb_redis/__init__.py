"""kydb's Redis backend: ``redis://[user:password@]host[:port][/base/path][?db=N&...]`` and ``rediss://`` (TLS).

One Redis string per object, one sorted set per folder and, for recency and
user-index queries, one sorted set per folder and index (see
:mod:`kydb_redis.layout`); every write is one atomic Lua script call, so a put
costs one round trip whatever its depth.  Installing this distribution
registers both schemes with kydb::

    import kydb
    db = kydb.connect('redis://127.0.0.1:6379/books?db=0')
"""

from __future__ import annotations

from .store import MAX_VALUE_BYTES, POOLS, LayoutError, RedisCommandError, RedisStore

__all__ = ["MAX_VALUE_BYTES", "POOLS", "LayoutError", "RedisCommandError", "RedisStore"]
__version__ = "0.1.0"
