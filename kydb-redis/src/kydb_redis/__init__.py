"""kydb's Redis backend: ``redis://[user:password@]host[:port][/base/path][?db=N&...]``, ``rediss://`` (TLS),
and a Redis Cluster through ``redis+cluster://host:port[/base/path]`` (``rediss+cluster://``).

One Redis string per object and one sorted set per folder — its listing,
its time and index members — every key under the store's base path and
every key of a folder in one hash slot (see :mod:`kydb_redis.layout`); a put
into an existing folder is one atomic Lua script call, one round trip
whatever its depth.  Every store of a process on one server shares one
connection pool (:data:`POOLS`).  Installing this distribution registers the
schemes with kydb::

    import kydb
    db = kydb.connect('redis://127.0.0.1:6379/books?db=0')
"""

from __future__ import annotations

from .store import MAX_VALUE_BYTES, POOLS, LayoutError, NotReplicated, RedisCommandError, RedisStore

__all__ = ["MAX_VALUE_BYTES", "POOLS", "LayoutError", "NotReplicated", "RedisCommandError", "RedisStore"]
__version__ = "0.1.0"
