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
a put sets the object and lists it (and any ancestor not listed yet) in one
command and one round trip whatever the depth; a delete unlinks the object and
removes its folder entry together.  The scripts keep one invariant: a
non-empty folder is listed in its parent.  They receive object and folder
paths in ``KEYS`` and derive the folder keys above them from the paths, which
keeps a put's request as small as a ``SET``; so they need a single Redis node
(one database), not a Redis Cluster, whose hash slots would split a path from
its ancestors.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

__all__ = ["DELETE", "PUT", "LuaScript", "split_path"]


class LuaScript(NamedTuple):
    """A script's source and the SHA-1 ``EVALSHA`` knows it by."""

    body: str
    sha: str


def _script(body: str) -> LuaScript:
    return LuaScript(body, hashlib.sha1(body.encode()).hexdigest())


# In the scripts, string.match(path, '^(.*/)([^/]+/?)$') is the folder holding
# a path and the path's name there: '/a/b/c' -> '/a/b/', 'c'; the folder
# '/a/b/' -> '/a/', 'b/'; nil for the root.  (Written out each time: a Lua
# helper function would be created again on every call.)

#: Write objects, create folders.  ``KEYS[1..n]`` are object paths and
#: ``ARGV[1..n]`` their blobs (n = ``#ARGV``); further ``KEYS`` are folder
#: paths to create (``mkdir`` is a call with no ``ARGV``).  Each path is then
#: added to its folder, that folder to its parent and so on up to the root,
#: stopping at the first entry that was already there: a folder with an entry
#: in it is non-empty, and a non-empty folder is always listed in its parent
#: (every script keeps that true), so everything above is listed too.  A put
#: into an existing folder therefore runs one SET and one or two ZADDs
#: whatever the depth.  The folder keys are derived from the path here rather
#: than sent in ``KEYS``, which keeps the request as small as a ``SET``.
#: Returns n.
PUT = _script(
    """
local n = #ARGV
for i = 1, #KEYS do
  local path = KEYS[i]
  if i <= n then
    redis.call('SET', path, ARGV[i])
  end
  local folder, name = string.match(path, '^(.*/)([^/]+/?)$')
  while folder and redis.call('ZADD', folder, 0, name) == 1 do
    folder, name = string.match(folder, '^(.*/)([^/]+/?)$')
  end
end
return n
"""
)

#: Delete objects, then remove empty folders.  ``ARGV[1]`` = n:
#: ``KEYS[1..n]`` are object paths, unlinked with their folder entries;
#: further ``KEYS`` are folder paths, deepest first, whose entries in their
#: parents go only if the folder is empty (its key does not exist), so a
#: folder a concurrent writer has just filled stays listed.  Returns the
#: number of objects that existed.
DELETE = _script(
    """
local n = tonumber(ARGV[1])
local deleted = 0
for i = 1, #KEYS do
  local path = KEYS[i]
  if i <= n then
    deleted = deleted + redis.call('UNLINK', path)
  end
  if i <= n or redis.call('EXISTS', path) == 0 then
    redis.call('ZREM', string.match(path, '^(.*/)([^/]+/?)$'))
  end
end
return deleted
"""
)


def split_path(path: str) -> tuple[str, str]:
    """The folder holding ``path`` and its name there.

    ``/a/b/c`` -> ``('/a/b/', 'c')``; the folder ``/a/b/`` -> ``('/a/', 'b/')``.
    """
    cut = path.rfind("/", 0, len(path) - 1) + 1
    return path[:cut], path[cut:]
