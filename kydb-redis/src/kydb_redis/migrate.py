"""Move a store from kydb-redis's first layout into the current one, in place.

    python -m kydb_redis.migrate 'redis://[user:password@]host[:port]/base/path[?db=N...]'

The first layout kept an object ``/a/b`` in the string ``/a/b``, a folder in
the sorted set ``/a/``, times in ``meta:/a/b`` and indexes in
``index:<name>:/a/``; the current one is :mod:`kydb_redis.layout`.  The two
never share a key, so the migration writes every object of the base path in
the new layout beside the old keys — its blob, modification time, creation
time and index values kept exactly — and creates every folder, empty ones
included; then it removes the old keys, and the base folder's entry in the
old folders above it (where the user may write them; it says so when it may
not).  Run it once per base path, while nothing writes there; running it
again after an interruption finishes the job (an object already copied is
copied again, with the same times).

Cost: two script calls per object (one at its creation time, one at its
modification time), one round trip per folder for the walk, one pipelined
round trip per 500 objects read and per 500 keys removed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import NoPermissionError, RedisError

import kydb
from kydb.url import parse_store_url

from .layout import from_sortable, split_path
from .store import RedisStore

__all__ = ["Migrated", "main", "migrate"]

READ_BATCH = 500


class Migrated:
    """What :func:`migrate` moved: objects, folders, old keys removed, and notes on what it could not do."""

    def __init__(self) -> None:
        self.objects = 0
        self.folders = 0
        self.removed = 0
        self.notes: list[str] = []

    def __str__(self) -> str:
        text = f"migrated {self.objects} objects and {self.folders} folders; removed {self.removed} old keys"
        return "\n".join([text, *self.notes])


def _walk(client: Any, top: str) -> tuple[list[str], list[str]]:
    """Every object and folder (``top`` included) of the old layout below ``top``, breadth first."""
    objects: list[str] = []
    folders: list[str] = []
    level = [top]
    while level:
        folders += level
        pipe = client.pipeline(transaction=False)
        for folder in level:
            pipe.zrange(folder, 0, -1)
        below: list[str] = []
        for folder, names in zip(level, pipe.execute(), strict=True):
            for raw in names:
                name = raw.decode()
                (below if name.endswith("/") else objects).append(folder + name)
        level = below
    return objects, folders


def migrate(url: str, report: Callable[[str], None] = lambda line: None) -> Migrated:
    """Move the layout-1 store at ``url``'s base path into the current layout; see the module's docstring.

    Raises ``ValueError`` for a cluster URL (the first layout never ran on a
    cluster), ``PermissionError`` when the user may not read or write the base
    path, :class:`kydb.StoreUnavailable` when the server is unreachable.
    """
    parsed = parse_store_url(url)
    store = RedisStore(parsed, check_layout=False)
    if store.options.cluster:
        raise ValueError(f"{parsed.masked}: the first layout never ran on a Redis Cluster; there is nothing to move")
    done = Migrated()
    top = store.base_folder
    client = store.client
    try:
        if not client.exists(top):
            report(f"{parsed.masked}: no layout-1 store at {top!r}")
            return done
        objects, folders = _walk(client, top)
        indexes: set[str] = {"mtime", "ctime"}
        for start in range(0, len(objects), READ_BATCH):
            batch = objects[start : start + READ_BATCH]
            pipe = client.pipeline(transaction=False)
            for path in batch:
                pipe.get(path)
                pipe.hgetall("meta:" + path)
            replies = pipe.execute()
            for i, path in enumerate(batch):
                blob, meta = replies[2 * i], replies[2 * i + 1]
                if blob is None:
                    continue
                values = {field.decode(): from_sortable(value) for field, value in meta.items()}
                indexes.update(values)
                mtime = values.pop("mtime", None)
                ctime = values.pop("ctime", mtime)
                if ctime is None or mtime is None:  # written by another tool: no times to keep
                    mtime = ctime = time.time_ns()
                blob = bytes(blob)  # a large value arrives as a bytearray (see kydb_redis.replies)
                store.kydb_put({path: blob}, ctime, {path: values} if values else {}, {})
                if mtime != ctime:
                    store.kydb_put({path: blob}, mtime, {}, {})
                done.objects += 1
            report(f"copied {done.objects} of {len(objects)} objects")
        for folder in folders:
            if folder != "/":
                store.kydb_mkdir(folder)  # the empty ones too; kept ones are left as they are
                done.folders += 1
        old = [*objects, *("meta:" + path for path in objects), *folders]
        old += [f"index:{name}:{folder}" for name in indexes for folder in folders]
        for start in range(0, len(old), READ_BATCH):
            done.removed += int(client.unlink(*old[start : start + READ_BATCH]))
        _unlist(client, top, done)
    except RedisError as exc:
        raise store.error(exc, f"migrating {top!r}") from exc
    finally:
        store.kydb_close()
    report(str(done))
    return done


def _unlist(client: Any, folder: str, done: Migrated) -> None:
    """Remove the migrated base folder's entry from the old folders above it, as the old layout did."""
    while folder != "/":
        parent, name = split_path(folder)
        try:
            client.zrem(parent, name)
        except NoPermissionError:
            done.notes.append(
                f"note: the old folder {parent!r} still lists {name!r} (this user may not change it); an "
                "administrator migrates or removes it"
            )
            return
        if client.exists(parent):
            return
        folder = parent


def main(argv: list[str] | None = None) -> int:
    """The command line: ``python -m kydb_redis.migrate URL``; exit status 0 on success, 1 on error."""
    parser = argparse.ArgumentParser(
        prog="python -m kydb_redis.migrate", description="Move a kydb-redis layout-1 store into the current layout."
    )
    parser.add_argument("url", help="the store's URL, as you connect to it (redis://host:port/base/path)")
    args = parser.parse_args(argv)
    try:
        migrate(args.url, report=print)
    except (kydb.KydbError, PermissionError, ValueError) as exc:
        print(f"kydb_redis.migrate: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
