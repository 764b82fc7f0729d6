"""How a kydb store is laid out in Redis (layout 2), and the Lua scripts that keep it consistent.

Every key lives under the path it serves, so a user whose ACL allows only
``~/tenant-a*`` can use a store whose base path is ``/tenant-a``, and every
key of one folder carries the same hash tag, so the folder is one Redis
Cluster hash slot.  For a folder ``F`` (a path ending with ``/``, such as
``/tenant-a/x/``) let ``T`` be ``{hhhh}``: four hex digits of the CRC-32 of
``F``'s UTF-8 bytes, in braces.  Then:

=============================  ==================  ==================================================
key                            type                what
=============================  ==================  ==================================================
``F`` + ``T``                  sorted set          the folder: its listing, its indexes, its marker
``F`` + ``T`` + name           string              an object: a 40-byte header, then the blob
``F`` + ``T`` + name + ``\\0i``  hash                the object's user index values (only if it has some)
=============================  ==================  ==================================================

So ``/tenant-a/x/y`` is the string ``/tenant-a/x/{8c1e}y``, listed in the
sorted set ``/tenant-a/x/{8c1e}``.  Object names are non-empty and hold no
``/`` and no control character, so the three forms never collide: a
folder's key ends with ``}``, only index hashes hold ``\\0``, and the last
``/`` of any key ends its folder.

**Hash tags.**  Redis Cluster hashes only what lies between a key's first
``{`` and the first ``}`` after it.  When ``F`` holds no ``{``, that is
``hhhh``.  When it does, the tag starts inside ``F`` and ends at the first
``}`` after it — inside ``F`` or at the end of ``T`` — which is the same for
every key of the folder, because they all start with ``F`` + ``T``.  The one
exception is a folder whose first ``{`` is directly followed by ``}``
(``/a{}b/``): Redis then hashes whole keys, so on a cluster such a path is
refused with a ``ValueError`` (a single server takes it).

**The folder's sorted set** has every score 0, so Redis orders its members
by their bytes, and it holds, each kind under its own first letter:

* ``D`` — the marker: the folder exists (made by ``mkdir`` or by a put below
  it).  It is only ever added after the folder's entry in its parent, and a
  put adds an object only to a folder that has it, so a listed object's
  folder is always listed.  Deleting objects leaves folders (and markers)
  in place; ``rmdir`` and ``rm_tree`` remove them.
* ``L`` + name + ``/`` — a subfolder; ``L`` + name + ``\\0`` + ctime — an
  object and its creation time.  ``\\0`` sorts before every character a name
  may hold, so members order exactly as names do: ``ls`` is one
  ``ZRANGEBYLEX [L (M LIMIT`` per page.  (An object some other tool wrote
  may be listed as plain ``L`` + name.)
* ``M`` + mtime + ``:`` + name and ``C`` + ctime + ``:`` + name — the
  modification- and creation-time indexes;  ``I`` + index name + ``:`` +
  value + ``:`` + name — a user index (index names match
  ``[A-Za-z][A-Za-z0-9_]*``, so the first ``:`` ends the name).

Values are in their *sortable form*: the 20 decimal digits of
``value + 2**63``, which order as text exactly as the signed 64-bit integers
do and never pass through a Lua number or a score (doubles, which cannot
hold nanosecond times exactly).  A query page is one ``ZRANGEBYLEX`` over
one kind's members, bounded by sortable values and resumed after the last
member returned.

**The object header** is ``\\0kv2`` + mtime (20 digits) + version (16 hex
digits), before the blob: a plain ``GET`` returns blob, time and version
together (one command for a cold read and for a versioned read), and a put
learns the time it replaces from ``SET ... GET``.  The version is a random
token chosen for each write.  A value without the header was written by
another tool: it reads as its bytes, has no times, and its version is
``raw:`` + the SHA-1 of its bytes.

**Costs.**  Every write is one script call touching one folder's slot.  A
put of an existing object runs ``SET ... GET`` and, when its mtime moves,
``ZREM``/``ZADD`` of its mtime member; a new object ``SET ... GET``, a
``ZSCORE`` of the folder's marker and one ``ZADD`` of its listing entry and
both time members — the script call plus at most three commands either way.
A put into a folder that does not exist yet fails without writing; kydb then
adds the missing folders' entries to their parents and their markers, top
down, and sends the put again: on a single server one :data:`REGISTER` call
followed by the put in one round trip; on a cluster, whose folders lie in
several slots, the entries (pipelined to every master), then the markers
with the put.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import threading
import zlib
from collections.abc import Iterable
from typing import NamedTuple

from kydb.keys import split_path  # re-exported: the store and the migration split paths by kydb's rule

__all__ = [
    "CONFLICT",
    "DELETE",
    "FOLDER_MISSING",
    "HEADER_BYTES",
    "MAGIC",
    "MARKER",
    "PUT",
    "PUT_ONE",
    "QUERY",
    "REGISTER",
    "RMDIR",
    "SORTABLE_WIDTH",
    "LuaScript",
    "folder_key",
    "from_sortable",
    "header",
    "index_hash_key",
    "new_version",
    "object_key",
    "object_keys",
    "refuse_on_cluster",
    "sortable",
    "split_path",
]


class LuaScript(NamedTuple):
    """A script's source and the SHA-1 ``EVALSHA`` knows it by (hex digits, as bytes: sent as they are)."""

    body: str
    sha: bytes


def _script(body: str) -> LuaScript:
    return LuaScript(body, hashlib.sha1(body.encode()).hexdigest().encode())


MAGIC = b"\x00kv2"
HEADER_BYTES = 40  # MAGIC, 20 digits of mtime, 16 hex digits of version
MARKER = "D"
#: What the put script returns when the folder has no marker (nothing was written).
FOLDER_MISSING = -1
#: A put/delete script returns ``CONFLICT - i`` when the i-th object's version is not the expected one.
CONFLICT = -1000

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


def header(mtime: bytes, version: bytes) -> bytes:
    """The 40 bytes kydb stores before a blob: :data:`MAGIC`, the sortable mtime and the version."""
    return MAGIC + mtime + version


class Versions:
    """Fresh version tokens: 16 hex digits, a random prefix per process and a counter (no syscall per write).

    A forked child, and a process whose counter wraps, draws a new prefix.
    """

    def __init__(self) -> None:
        self._draw()
        os.register_at_fork(after_in_child=self._draw)

    def _draw(self) -> None:
        self._lock = threading.Lock()  # new in a forked child too: another thread may have held it at fork time
        self._prefix = int.from_bytes(os.urandom(4), "big")
        self._next = itertools.count()

    def __call__(self) -> bytes:
        with self._lock:
            number = next(self._next)
            if number > 0xFFFFFFFF:
                self._prefix, self._next = int.from_bytes(os.urandom(4), "big"), itertools.count(1)
                number = 0
            return b"%08x%08x" % (self._prefix, number)


new_version = Versions()


@functools.lru_cache(maxsize=4096)  # a put's hot path: folders are written again and again
def folder_key(folder: str) -> str:
    """The sorted set of ``folder`` (a path ending with ``/``): the folder's path, then its hash tag."""
    return f"{folder}{{{zlib.crc32(folder.encode()) & 0xFFFF:04x}}}"


def object_key(path: str) -> str:
    """The string holding the object at ``path``: its folder's key, then its name."""
    folder, name = split_path(path)
    return folder_key(folder) + name


def object_keys(paths: Iterable[str]) -> list[bytes]:
    """:func:`object_key` of each of ``paths``, UTF-8 encoded (as redis-py would send them, but cheaper in bulk).

    A folder's key is worked out once for a run of paths in that folder.
    """
    keys: list[bytes] = []
    append = keys.append
    folder: str | None = None
    prefix = b""
    for path in paths:
        cut = path.rfind("/") + 1  # split_path's rule for an object (no trailing '/'), inlined: a batch's hot loop
        if path[:cut] != folder:
            folder = path[:cut]
            prefix = folder_key(folder).encode()
        append(prefix + path[cut:].encode())
    return keys


def index_hash_key(path: str) -> str:
    """The hash of the user index values of the object at ``path``."""
    return object_key(path) + "\x00i"


def refuse_on_cluster(folder: str) -> None:
    """Raise ``ValueError`` if Redis Cluster would spread ``folder``'s keys over several hash slots."""
    brace = folder.find("{")
    if brace >= 0 and folder[brace + 1 : brace + 2] == "}":
        raise ValueError(
            f"{folder!r} cannot be stored on a Redis Cluster: its first '{{' is followed directly by '}}', so "
            "Redis hashes each of its keys whole and one folder would span several hash slots. Rename it, or use "
            "a single Redis server"
        )


# The scripts receive the folder's key as KEYS[1] and its objects' keys after it, so a
# name is string.sub(key, #KEYS[1] + 1); they touch no key outside the folder's slot.
_VERSION_OF = """
local function version_of(key)
  local head = redis.call('GETRANGE', key, 0, 39)
  if string.sub(head, 1, 4) == '\\0kv2' then
    return string.sub(head, 25, 40)
  end
  if head == '' and redis.call('EXISTS', key) == 0 then
    return false
  end
  return 'raw:' .. redis.sha1hex(redis.call('GET', key))
end
"""

#: Write objects of one folder with their times, versions and index values.
#: ``KEYS[1]`` = the folder's key, ``KEYS[2..n+1]`` the objects' keys.
#: ``ARGV`` = n, the write's mtime (sortable), ``'m'`` to add the folder's
#: marker if missing (else ``''``), e = the number of expectations, then e
#: pairs (object number i, version or ``''`` for "absent"), then the n values
#: (header + blob), then triples (i, index name, sortable value or ``''`` to
#: clear).  Returns 0, :data:`FOLDER_MISSING` (nothing written) or
#: ``CONFLICT - i`` (nothing written).
PUT = _script(
    _VERSION_OF
    + """
local n, mtime, mark, e = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local folder = KEYS[1]
local cut = #folder + 1
local first = 5 + 2 * e
for j = 5, first - 1, 2 do
  local i, want = tonumber(ARGV[j]), ARGV[j + 1]
  local have = version_of(KEYS[i + 1])
  local mine = string.sub(ARGV[first + i - 1], 25, 40)  -- a retried call finds its own write
  if have ~= mine and ((want == '' and have) or (want ~= '' and have ~= want)) then
    return -1000 - i
  end
end
local listed = false
for i = 1, n do
  local key = KEYS[i + 1]
  local name = string.sub(key, cut)
  local old = redis.call('SET', key, ARGV[first + i - 1], 'GET')
  if old and string.sub(old, 1, 4) == '\\0kv2' then
    local was = string.sub(old, 5, 24)
    if was ~= mtime then
      redis.call('ZREM', folder, 'M' .. was .. ':' .. name)
      redis.call('ZADD', folder, 0, 'M' .. mtime .. ':' .. name)
    end
  else
    if not listed then
      if not redis.call('ZSCORE', folder, 'D') then
        if mark == 'm' then
          redis.call('ZADD', folder, 0, 'D')
        else  -- the folder is not listed in its parent yet: undo, and let the caller list it first
          if old then redis.call('SET', key, old) else redis.call('DEL', key) end
          return -1
        end
      end
      listed = true
    end
    if old then
      redis.call('ZREM', folder, 'L' .. name)  -- another tool's entry
    end
    redis.call('ZADD', folder, 0, 'L' .. name .. '\\0' .. mtime, 0, 'C' .. mtime .. ':' .. name,
               0, 'M' .. mtime .. ':' .. name)
  end
end
for j = first + n, #ARGV, 3 do
  local key, index, value = KEYS[tonumber(ARGV[j]) + 1], ARGV[j + 1], ARGV[j + 2]
  local name, meta = string.sub(key, cut), key .. '\\0i'
  local old = redis.call('HGET', meta, index)
  if old then
    redis.call('ZREM', folder, 'I' .. index .. ':' .. old .. ':' .. name)
  end
  if value == '' then
    redis.call('HDEL', meta, index)
  else
    redis.call('HSET', meta, index, value)
    redis.call('ZADD', folder, 0, 'I' .. index .. ':' .. value .. ':' .. name)
  end
end
return 0
"""
)

#: Write one object, no index values, no expectation: the common put, kept as lean as it can be.
#: ``KEYS`` = the folder's key, the object's key; ``ARGV`` = the value (header + blob), and ``'m'``
#: to add the folder's marker if missing.  Returns 0 or :data:`FOLDER_MISSING` (nothing written).
#: The script call and at most three commands: ``SET ... GET``, then ``ZREM`` and ``ZADD`` of the
#: mtime member (an overwrite) or ``ZSCORE`` of the marker and one ``ZADD`` (a new object).
PUT_ONE = _script(
    """
local folder, key, value = KEYS[1], KEYS[2], ARGV[1]
local old = redis.call('SET', key, value, 'GET')
local mtime, name = string.sub(value, 5, 24), string.sub(key, #folder + 1)
if old and string.sub(old, 1, 4) == '\0kv2' then
  local was = string.sub(old, 5, 24)
  if was ~= mtime then
    redis.call('ZREM', folder, 'M' .. was .. ':' .. name)
    redis.call('ZADD', folder, 0, 'M' .. mtime .. ':' .. name)
  end
  return 0
end
if not redis.call('ZSCORE', folder, 'D') then
  if ARGV[2] ~= 'm' then  -- the folder is not listed in its parent yet: undo, and let the caller list it first
    if old then redis.call('SET', key, old) else redis.call('DEL', key) end
    return -1
  end
  redis.call('ZADD', folder, 0, 'D')
end
if old then
  redis.call('ZREM', folder, 'L' .. name)  -- another tool's entry
end
redis.call('ZADD', folder, 0, 'L' .. name .. '\0' .. mtime, 0, 'C' .. mtime .. ':' .. name,
           0, 'M' .. mtime .. ':' .. name)
return 0
"""
)

#: Delete objects of one folder with their listing entries, index members and
#: index hashes.  ``KEYS`` as for :data:`PUT`; ``ARGV`` = e, then e pairs
#: (i, version).  Returns the number of objects that existed, or
#: ``CONFLICT - i`` (nothing deleted).
DELETE = _script(
    _VERSION_OF
    + """
local e = tonumber(ARGV[1])
local folder = KEYS[1]
local cut = #folder + 1
for j = 2, 1 + 2 * e, 2 do
  local i = tonumber(ARGV[j])
  if version_of(KEYS[i + 1]) ~= ARGV[j + 1] then
    return -1000 - i
  end
end
local deleted = 0
for i = 2, #KEYS do
  local key = KEYS[i]
  local name = string.sub(key, cut)
  local head = redis.call('GETRANGE', key, 0, 39)
  local gone = {'L' .. name}
  if redis.call('UNLINK', key) == 1 then
    deleted = deleted + 1
    local entry = redis.call('ZRANGEBYLEX', folder, '[L' .. name .. '\\0', '(L' .. name .. '\\1', 'LIMIT', 0, 1)[1]
    if entry then
      gone[#gone + 1] = entry
      gone[#gone + 1] = 'C' .. string.sub(entry, #name + 3) .. ':' .. name
    end
    if string.sub(head, 1, 4) == '\\0kv2' then
      gone[#gone + 1] = 'M' .. string.sub(head, 5, 24) .. ':' .. name
    end
    local meta = key .. '\\0i'
    local fields = redis.call('HGETALL', meta)
    for f = 1, #fields, 2 do
      gone[#gone + 1] = 'I' .. fields[f] .. ':' .. fields[f + 1] .. ':' .. name
    end
    if #fields > 0 then
      redis.call('DEL', meta)
    end
  end
  redis.call('ZREM', folder, unpack(gone))
end
return deleted
"""
)

#: List and mark new folders, top down, on a single server (never on a cluster: the folders are in several slots).
#: ``KEYS[1]`` = the base folder's key; then, per folder, its parent's key and its own.  ``ARGV[1]`` =
#: ``'root'`` when the base folder is the root (always there), else ``''``; then each folder's entry
#: (``L`` + name + ``/``).  Writes nothing and returns 0 when the base folder has no marker (the caller
#: creates it first, with the folders above it); returns 1 otherwise.
REGISTER = _script(
    """
if ARGV[1] ~= 'root' and not redis.call('ZSCORE', KEYS[1], 'D') then
  return 0
end
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[2 * i - 2], 0, ARGV[i])
  redis.call('ZADD', KEYS[2 * i - 1], 0, 'D')
end
return 1
"""
)

#: Remove a folder's sorted set if it lists nothing (only its marker and indexes of nothing are left).
#: ``KEYS[1]`` = the folder's key.  Returns 1 if it is gone (or was), 0 if something is listed in it.
RMDIR = _script(
    """
if redis.call('ZLEXCOUNT', KEYS[1], '[L', '(M') > 0 then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""
)

#: One page of a folder query.  ``KEYS[1]`` = the folder's key; ``ARGV`` = the two lex bounds
#: in the order the range command takes them, the page size, ``'desc'`` or ``'asc'``, and the
#: members' prefix (``M``, ``C`` or ``I<name>:``).  Fetches one member more than the page, so
#: the caller knows whether another page follows.  Returns a flat list: per member, the member
#: and the object's mtime and ctime (sortable, or false); the extra member comes alone.
QUERY = _script(
    """
local folder, limit, prefix = KEYS[1], tonumber(ARGV[3]), ARGV[5]
local range = ARGV[4] == 'desc' and 'ZREVRANGEBYLEX' or 'ZRANGEBYLEX'
local members = redis.call(range, folder, ARGV[1], ARGV[2], 'LIMIT', 0, limit + 1)
local out = {}
local skip = #prefix + 22
for i, member in ipairs(members) do
  out[#out + 1] = member
  if i <= limit then
    local name, value = string.sub(member, skip), string.sub(member, #prefix + 1, #prefix + 20)
    local mtime, ctime = false, false
    if prefix == 'M' then
      mtime = value
    else
      local head = redis.call('GETRANGE', folder .. name, 0, 23)
      if string.sub(head, 1, 4) == '\\0kv2' then mtime = string.sub(head, 5, 24) end
    end
    if prefix == 'C' then
      ctime = value
    else
      local entry = redis.call('ZRANGEBYLEX', folder, '[L' .. name .. '\\0', '(L' .. name .. '\\1', 'LIMIT', 0, 1)[1]
      if entry then ctime = string.sub(entry, #name + 3) end
    end
    out[#out + 1] = mtime
    out[#out + 1] = ctime
  end
end
return out
"""
)
