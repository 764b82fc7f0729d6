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

Keys that do not start with ``/`` are never kydb paths; times and indexes
live there:

* **An object's metadata** is the hash ``meta:/books/MYBOOK``: field
  ``mtime`` (modification time), ``ctime`` (creation time) and one field per
  user index the object has, each holding the value in its *sortable form*.
* **An ordered index** of the objects directly in a folder is the sorted set
  ``index:<name>:/books/`` (``index:mtime:/books/``, ``index:ctime:/books/``,
  ``index:class_date:/books/``), every score 0, whose members are
  ``<sortable value>:<object name>``.  Index names match
  ``[A-Za-z][A-Za-z0-9_]*``, so the first ``:`` ends the name.

The sortable form of a value (a signed 64-bit integer: nanoseconds since the
epoch, or a user index value) is the 20 decimal digits of ``value + 2**63``.
Fixed width and non-negative, it orders as text exactly as the integers
order, and it is text all the way: Lua numbers are doubles, which cannot
hold nanosecond times (above 2**53) exactly, so the scripts never convert a
value to a number.  Members of one index then sort by ``(value, name)`` —
the order queries promise, ties by name — and a query page is one
``ZRANGEBYLEX``/``ZREVRANGEBYLEX ... LIMIT`` whose bounds are the sortable
values and whose cursor is the last member returned (O(log n + page),
whatever the folder's size).  A sorted set of one folder disappears with its
last member, like a folder's listing.

Every change goes through one Lua script call, which Redis runs atomically:
a put sets the object, its times and indexes and lists it (and any ancestor
not listed yet) in one command and one round trip whatever the depth; a
delete unlinks the object and removes its folder entry, metadata and index
members together.  The scripts keep two invariants: a non-empty folder is
listed in its parent, and an object's index members are exactly the values
in its metadata hash.  They receive object and folder paths in ``KEYS`` and
derive every other key (folders above, metadata, indexes) from the paths,
which keeps a put's request as small as a ``SET``; so they need a single
Redis node (one database), not a Redis Cluster, whose hash slots would split
a path from its folders and indexes.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

__all__ = [
    "DELETE",
    "PUT",
    "QUERY",
    "SORTABLE_WIDTH",
    "LuaScript",
    "from_sortable",
    "index_key",
    "meta_key",
    "sortable",
    "split_path",
]


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

#: Write objects with their times and index values, create folders.
#: ``ARGV[1]`` = n, ``ARGV[2]`` = the write's time (sortable form);
#: ``KEYS[1..n]`` are object paths and ``ARGV[3..n+2]`` their blobs; further
#: ``KEYS`` are folder paths to create (``mkdir`` is a call with n = 0).  Then
#: ``ARGV`` holds triples ``(i, index name, sortable value or '' to clear)``
#: for the object at ``KEYS[i]``.
#:
#: An object's mtime becomes the write's time, and so does its ctime when it
#: has no metadata yet (it is new); each index member moves from the old
#: value (read from the metadata hash) to the new one.  Each new object or
#: folder is then added to its folder, that folder to its parent and so on up
#: to the root, stopping at the first entry that was already there: a folder
#: with an entry in it is non-empty, and a non-empty folder is always listed
#: in its parent (every script keeps that true), so everything above is
#: listed too.  An object that has metadata already is listed already (only
#: the delete script removes either, both at once), so an overwrite runs one
#: ``SET``, one ``HGET``, one ``HSET``, one ``ZREM`` and one ``ZADD`` whatever
#: the depth.  Returns n.
PUT = _script(
    """
local n = tonumber(ARGV[1])
local mtime = ARGV[2]
for i = 1, #KEYS do
  local path = KEYS[i]
  local folder, name = string.match(path, '^(.*/)([^/]+/?)$')
  if i <= n then
    redis.call('SET', path, ARGV[i + 2])
    local meta = 'meta:' .. path
    local old = redis.call('HGET', meta, 'mtime')
    local by_mtime = 'index:mtime:' .. folder
    if old then
      redis.call('ZREM', by_mtime, old .. ':' .. name)  -- before the ZADD: old may equal mtime
      redis.call('HSET', meta, 'mtime', mtime)
      folder = nil  -- an object with metadata is listed in its folder already
    else
      redis.call('HSET', meta, 'mtime', mtime, 'ctime', mtime)
      redis.call('ZADD', 'index:ctime:' .. folder, 0, mtime .. ':' .. name)
    end
    redis.call('ZADD', by_mtime, 0, mtime .. ':' .. name)
  end
  while folder and redis.call('ZADD', folder, 0, name) == 1 do
    folder, name = string.match(folder, '^(.*/)([^/]+/?)$')
  end
end
for j = n + 3, #ARGV, 3 do
  local path, index, value = KEYS[tonumber(ARGV[j])], ARGV[j + 1], ARGV[j + 2]
  local folder, name = string.match(path, '^(.*/)([^/]+/?)$')
  local meta, ordered = 'meta:' .. path, 'index:' .. index .. ':' .. folder
  local old = redis.call('HGET', meta, index)
  if old then
    redis.call('ZREM', ordered, old .. ':' .. name)
  end
  if value == '' then
    redis.call('HDEL', meta, index)
  else
    redis.call('HSET', meta, index, value)
    redis.call('ZADD', ordered, 0, value .. ':' .. name)
  end
end
return n
"""
)

#: Delete objects, then remove empty folders.  ``ARGV[1]`` = n:
#: ``KEYS[1..n]`` are object paths, unlinked with their folder entries, their
#: metadata hashes and their members in every index; further ``KEYS`` are
#: folder paths, deepest first, whose entries in their parents go only if the
#: folder is empty (its key does not exist), so a folder a concurrent writer
#: has just filled stays listed.  Returns the number of objects that existed.
DELETE = _script(
    """
local n = tonumber(ARGV[1])
local deleted = 0
for i = 1, #KEYS do
  local path = KEYS[i]
  local folder, name = string.match(path, '^(.*/)([^/]+/?)$')
  if i <= n then
    deleted = deleted + redis.call('UNLINK', path)
    local meta = 'meta:' .. path
    local fields = redis.call('HGETALL', meta)
    for j = 1, #fields, 2 do
      redis.call('ZREM', 'index:' .. fields[j] .. ':' .. folder, fields[j + 1] .. ':' .. name)
    end
    if #fields > 0 then
      redis.call('DEL', meta)
    end
  end
  if i <= n or redis.call('EXISTS', path) == 0 then
    redis.call('ZREM', folder, name)
  end
end
return deleted
"""
)

#: One page of a folder query.  ``KEYS[1]`` is the index's sorted set;
#: ``ARGV`` = the two lex bounds in the order the range command takes them,
#: the page size, ``'desc'`` for newest/largest first (else ascending), and
#: the folder.  Fetches one member more than the page, so the caller knows
#: whether another page follows.  Returns a flat list: per member, the member
#: and the object's mtime and ctime from its metadata (sortable form); the
#: extra member comes without times.
QUERY = _script(
    """
local limit = tonumber(ARGV[3])
local range = ARGV[4] == 'desc' and 'ZREVRANGEBYLEX' or 'ZRANGEBYLEX'
local members = redis.call(range, KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, limit + 1)
local out = {}
for i, member in ipairs(members) do
  out[#out + 1] = member
  if i <= limit then
    local times = redis.call('HMGET', 'meta:' .. ARGV[5] .. string.sub(member, 22), 'mtime', 'ctime')
    out[#out + 1] = times[1]
    out[#out + 1] = times[2]
  end
end
return out
"""
)

_OFFSET = 2**63
SORTABLE_WIDTH = 20


def sortable(value: int) -> bytes:
    """The sortable form of a signed 64-bit ``value``: 20 digits of ``value + 2**63``."""
    return b"%020d" % (value + _OFFSET)


def from_sortable(text: bytes) -> int:
    """The value whose :func:`sortable` form is ``text``; ``ValueError`` if it is not one."""
    if len(text) != SORTABLE_WIDTH or not text.isdigit():
        raise ValueError(f"{text!r} is not a 20-digit sortable value")
    return int(text) - _OFFSET


def meta_key(path: str) -> str:
    """The hash holding an object's times and index values."""
    return "meta:" + path


def index_key(index: str, folder: str) -> str:
    """The sorted set ordering the objects directly in ``folder`` by ``index``."""
    return f"index:{index}:{folder}"


def split_path(path: str) -> tuple[str, str]:
    """The folder holding ``path`` and its name there.

    ``/a/b/c`` -> ``('/a/b/', 'c')``; the folder ``/a/b/`` -> ``('/a/', 'b/')``.
    """
    cut = path.rfind("/", 0, len(path) - 1) + 1
    return path[:cut], path[cut:]
