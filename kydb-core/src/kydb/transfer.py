"""Copying trees of objects between any two DBs, in bounded memory.

:func:`copy_tree` walks the source folder lazily and copies stored blobs
byte for byte in batches (one bulk read and one bulk write per batch), so
values are never unpickled and DbObj classes need not be importable.  With
``sync=True`` it also reads the destination's batch and skips objects that
are already identical (value and index values), which makes an interrupted
copy resumable.  Empty
folders are recreated; folders with content come with their objects.

Blobs are copied as they are, except that a signed blob copied to another
key is verified with the source's signing keys and signed again for its new
key with the destination's (a signature binds a blob to its key; see
SECURITY.md).  User index values come along; modification and creation
times are those of the copy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from .front import BaseDB
from .keys import normalize_folder

__all__ = ["TransferStats", "copy_objects", "copy_tree", "walk"]

BATCH_SIZE = 500
_PAGE = 1000


@dataclass
class TransferStats:
    """Progress and result of one copy."""

    objects: int = 0  # copied (written)
    bytes: int = 0  # written
    skipped: int = 0  # already identical in the destination (sync)
    folders: int = 0  # empty folders created
    total: int | None = None  # objects to visit, when counted beforehand
    interrupted: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def visited(self) -> int:
        return self.objects + self.skipped

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def walk(db: BaseDB, folder: str = "/") -> Iterator[tuple[str, bool]]:
    """Lazily yield ``(path, is_empty_folder)`` for every object below ``folder``, and every empty folder.

    Paths are relative to ``folder`` and start with ``/``; empty folders end
    with ``/``.  Memory holds the folders still to visit, never the objects.
    """
    root = folder.rstrip("/")
    pending = [""]
    while pending:
        current = pending.pop()
        empty = True
        for name in db.list_dir(root + current + "/", page_size=_PAGE):
            empty = False
            if name.endswith("/"):
                pending.append(current + "/" + name[:-1])
            else:
                yield current + "/" + name, False
        if empty and current:
            yield current + "/", True


def count_objects(db: BaseDB, folder: str = "/") -> int:
    """How many objects :func:`walk` will yield (one listing pass)."""
    return sum(1 for _, is_folder in walk(db, folder) if not is_folder)


def copy_objects(
    src: BaseDB, dst: BaseDB, keys: Mapping[str, str], *, sync: bool = False, stats: TransferStats | None = None
) -> TransferStats:
    """Copy the objects at ``keys`` (source key -> destination key): one bulk read, one bulk write.

    Keys the source does not hold are left out (``stats.objects`` says how
    many were written).  With ``sync``, objects already identical in the
    destination (value and index values) are skipped.
    """
    stats = stats or TransferStats()
    blobs = src.get_blobs(keys, system_obj=True)
    # Index values come from metadata; a store without it has none, and its stat would read the blobs again.
    infos = src.stat_many(blobs, system_obj=True) if blobs and src.capabilities.keeps_times else {}
    # A signature binds a blob to its key: one copied to another key is signed again for it.
    reseal = dst.codec.reseal
    items = {keys[k]: reseal(blob, k, keys[k], src.codec) for k, blob in blobs.items()}
    indexes: dict[str, dict[str, int | None]] = {
        keys[k]: dict(info.indexes) for k, info in infos.items() if info.indexes
    }
    keeps_indexes = dst.capabilities.keeps_times
    if sync and items:
        present = dst.get_blobs(items, system_obj=True)
        same = [k for k, blob in items.items() if present.get(k) == blob]
        # Compare index values only where the destination keeps them; otherwise the value decides.
        dst_infos = dst.stat_many(same, system_obj=True) if same and keeps_indexes else {}
        for key in same:
            theirs = dict(dst_infos[key].indexes) if key in dst_infos else {}
            if not keeps_indexes or theirs == indexes.get(key, {}):
                del items[key]
                stats.skipped += 1
            else:  # same value, other index values: rewrite, clearing the ones the source lacks
                mended: dict[str, int | None] = dict.fromkeys(theirs)
                mended.update(indexes.get(key, {}))
                indexes[key] = mended
    if items:
        dst.put_blobs(items, indexes={k: v for k, v in indexes.items() if k in items}, system_obj=True)
        stats.objects += len(items)
        stats.bytes += sum(len(blob) for blob in items.values())
    return stats


def copy_tree(
    src: BaseDB,
    src_folder: str,
    dst: BaseDB,
    dst_folder: str,
    *,
    sync: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[TransferStats], None] | None = None,
    stop: threading.Event | None = None,
    stats: TransferStats | None = None,
) -> TransferStats:
    """Copy everything below ``src_folder`` in ``src`` to ``dst_folder`` in ``dst``.

    ``stop`` is checked between batches: set it (from a signal handler) to
    end cleanly after the batch in flight — every object is written whole or
    not at all.  ``progress`` is called after each batch.  Raises what the
    stores raise; objects copied before the error stay copied.
    """
    stats = stats or TransferStats()
    src_root = normalize_folder(src_folder).rstrip("/")
    dst_root = normalize_folder(dst_folder).rstrip("/")
    batch: list[str] = []

    def flush() -> None:
        copy_objects(src, dst, {src_root + rel: dst_root + rel for rel in batch}, sync=sync, stats=stats)
        batch.clear()
        if progress is not None:
            progress(stats)

    for rel, is_folder in walk(src, src_root + "/"):
        if is_folder:
            folder = dst_root + rel
            if not (sync and dst.is_dir(folder)):
                dst.mkdir(folder, system_obj=True)
                stats.folders += 1
            continue
        batch.append(rel)
        if len(batch) >= batch_size:
            flush()
            if stop is not None and stop.is_set():
                stats.interrupted = True
                return stats
    if batch:
        flush()
    return stats
