"""How a kydb store is laid out in Redis, and the Lua scripts that keep it consistent.

The layout mirrors kydb's paths (base path included), so ``redis-cli`` reads
it directly:

* **An object** ``/books/MYBOOK`` is the Redis string ``/books/MYBOOK``
  holding the blob.  Object paths never end with ``/``.
* **A folder** ``/books/`` is a sorted set at key ``/books/`` whose members
  are its children's names — ``MYBOOK`` for an object, ``sub/`` for a
  subfolder — all with score 0, so Redis orders them by their UTF-8 bytes,
  which is code-point order: exactly the order ``ls`` promises.  The root is
  the sorted set ``/``.  Folder keys always end with ``/``, so they never
  collide with objects; an object and a folder may share a name (``a`` and
  ``a/`` are different members).  ``ls`` is one ``ZRANGEBYLEX ... LIMIT``
  per page (O(log n + page)); ``is_dir`` is one ``ZSCORE`` in the parent.
* **An empty folder** made by ``mkdir`` is just its entry in its parent: Redis
  deletes a sorted set with its last member, so "the folder's key does not
  exist" means "the folder is empty".
* Keys that do not start with ``/`` are never kydb paths; later indexes
  (recency, user indexes) live there, named ``<kind>:<folder>``, and the
  scripts below update them in the same call.

Every change goes through one Lua script call, which Redis runs atomically:
a put sets the object *and* adds it and every ancestor to their folders in one
command and one round trip, whatever the depth; a delete unlinks the object
and removes its folder entry together.  The scripts name every key they touch
in ``KEYS``.  They assume a single Redis node (one database), not a Redis
Cluster, whose slots would split a path's ancestors.
"""

from __future__ import annotations

import functools
import hashlib
from typing import NamedTuple

__all__ = ["DELETE", "PUT", "LuaScript", "ancestry", "split_path"]


class LuaScript(NamedTuple):
    """A script's source and the SHA-1 ``EVALSHA`` knows it by."""

    body: str
    sha: str


def _script(body: str) -> LuaScript:
    return LuaScript(body, hashlib.sha1(body.encode()).hexdigest())


#: Write objects and folder entries.
#: ``ARGV[1]`` = n, the number of objects; ``KEYS[1..n]`` are object keys and
#: ``ARGV[2..n+1]`` their blobs; every further key ``KEYS[i]`` (i > n) is a
#: folder that gets the member ``ARGV[i+1]`` (a child's name).  ``mkdir`` is
#: a call with n = 0.  Returns n.
PUT = _script(
    """
local n = tonumber(ARGV[1])
for i = 1, n do
  redis.call('SET', KEYS[i], ARGV[i + 1])
end
for i = n + 1, #KEYS do
  redis.call('ZADD', KEYS[i], 0, ARGV[i + 1])
end
return n
"""
)

#: Delete objects, then remove empty folders from their parents.
#: ``ARGV[1]`` = n objects, ``ARGV[2]`` = m folders.  For object i:
#: ``KEYS[i]`` is the object, ``KEYS[n+i]`` its folder and ``ARGV[2+i]`` its
#: name there.  For folder j (deepest first): ``KEYS[2n+j]`` is the folder,
#: ``KEYS[2n+m+j]`` its parent and ``ARGV[2+n+j]`` its name (``x/``) there;
#: its entry goes only if the folder is empty (its key does not exist), so a
#: folder that a concurrent writer has just filled stays listed.
#: Returns the number of objects that existed.
DELETE = _script(
    """
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local deleted = 0
for i = 1, n do
  deleted = deleted + redis.call('UNLINK', KEYS[i])
  redis.call('ZREM', KEYS[n + i], ARGV[2 + i])
end
for j = 1, m do
  if redis.call('EXISTS', KEYS[2 * n + j]) == 0 then
    redis.call('ZREM', KEYS[2 * n + m + j], ARGV[2 + n + j])
  end
end
return deleted
"""
)


def split_path(path: str) -> tuple[str, str]:
    """``/a/b/c`` -> ``('/a/b/', 'c')``; ``/a/b/`` -> ``('/a/', 'b/')``: the folder holding a path and its name there."""
    cut = path.rfind("/", 0, len(path) - 1) + 1
    return path[:cut], path[cut:]


@functools.lru_cache(maxsize=4096)
def ancestry(folder: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The folder entries that make ``folder`` visible, from the root down.

    ``ancestry('/a/b/')`` is ``(('/', '/a/'), ('a/', 'b/'))``: member ``a/``
    in the sorted set ``/`` and member ``b/`` in ``/a/``.  The root has none.
    Cached: writes into one folder reuse the tuples.
    """
    keys: list[str] = []
    names: list[str] = []
    start = 1
    while start < len(folder):
        end = folder.index("/", start) + 1
        keys.append(folder[:start])
        names.append(folder[start:end])
        start = end
    return tuple(keys), tuple(names)
