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

A destination inside the source folder (or equal to it) of the same store
is refused before anything is copied (:func:`check_destination`): the copy
would walk into its own output.

With ``delete=True``, once everything is copied, :func:`copy_tree` also
deletes what the destination folder holds and the source folder does not
(objects, and whole folders), as ``rsync --delete`` does.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from .compose import CacheDB, UnionDB
from .db import DB
from .front import BaseDB
from .keys import normalize_folder
from .url import StoreURL

__all__ = ["TransferStats", "check_destination", "copy_objects", "copy_tree", "extraneous", "same_store", "walk"]

BATCH_SIZE = 500
_PAGE = 1000


@dataclass
class TransferStats:
    """Progress and result of one copy."""

    objects: int = 0  # copied (written)
    bytes: int = 0  # written
    skipped: int = 0  # already identical in the destination (sync)
    folders: int = 0  # empty folders created
    deleted: int = 0  # objects deleted from the destination (delete=True)
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
        for name in db.list_dir(root + current + "/", page_size=_PAGE, system=True):
            empty = False
            if name.endswith("/"):
                pending.append(current + "/" + name[:-1])
            else:
                yield current + "/" + name, False
        if empty and current:
            yield current + "/", True


# Options that say how to reach a store, not which store it is.
_CONNECTION_OPTION = re.compile(
    r"timeout|retr|pool|ssl|tls|cert|verify|profile|region|user|pass|secret|token|credential|key$", re.IGNORECASE
)


def same_store(a: StoreURL, b: StoreURL) -> bool:
    """Whether two single-store URLs may name the same store, whatever their base paths.

    Compares the backend, the host, the port (when both URLs give one), the
    URL path where it names a database rather than a base path, and the
    options both URLs give, other than connection settings (timeouts,
    retries, TLS, credentials).  When in doubt the answer is yes: a false
    yes refuses a copy, a false no could let one run into itself.  Two
    spellings of one host or file (``localhost`` and ``127.0.0.1``, a
    relative and an absolute SQLite path) are not recognised.
    """
    if a.backend != b.backend or a.host != b.host:
        return False
    if a.port is not None and b.port is not None and a.port != b.port:
        return False
    if not (a.path_is_base and b.path_is_base) and a.path != b.path:
        return False
    common = {n for n in a.options.keys() & b.options.keys() if not _CONNECTION_OPTION.search(n)}
    return all(a.options[n] == b.options[n] for n in common)


def _stores(db: BaseDB, *, writing: bool) -> Iterator[tuple[StoreURL, str]]:
    """``(store URL, base path)`` of each store ``db`` writes to (``writing``) or reads from."""
    if isinstance(db, DB):
        yield db.store_url, db.base_path
    elif isinstance(db, UnionDB):
        for layer in db.dbs[:1] if writing else db.dbs:  # a union writes its front layer only
            yield from _stores(layer, writing=writing)
    elif isinstance(db, CacheDB):
        for layer in (db.cache_db, db.persist_db):
            yield from _stores(layer, writing=writing)


def check_destination(src: BaseDB, src_folder: str, dst: BaseDB, dst_folder: str, *, delete: bool = False) -> None:
    """Raise ``ValueError``, naming both, if ``dst_folder`` of ``dst`` is ``src_folder`` of ``src`` or inside it.

    Base paths count: ``memory://x/a`` at ``/`` and ``memory://x`` at
    ``/a/sub`` are the same store and overlapping folders.  Every layer of a
    composite DB is checked (the layers a union reads; the layers it, or a
    cache DB, writes).  With ``delete`` (a sync that removes what the source
    lacks), a source inside the destination is refused too: the deletion
    would remove the source.  Touches no store.
    """
    source, target = normalize_folder(src_folder), normalize_folder(dst_folder)
    for src_url, src_base in _stores(src, writing=False):
        for dst_url, dst_base in _stores(dst, writing=True):
            if not same_store(src_url, dst_url):
                continue
            inner, outer = dst_base + target, src_base + source
            if inner.startswith(outer):
                where = "the source itself" if inner == outer else "inside it"
                raise ValueError(
                    f"cannot copy {source} of {src.url} into itself: the destination {target} of {dst.url} is {where}"
                )
            if delete and outer.startswith(inner):
                raise ValueError(
                    f"cannot sync {source} of {src.url} to {target} of {dst.url} deleting what the source lacks: "
                    "the source is inside the destination, so it would be deleted"
                )


def _holds(db: BaseDB, path: str) -> bool:
    return db.is_dir(path) if path.endswith("/") else db.exists(path, system_obj=True)


def extraneous(src: BaseDB, src_folder: str, dst: BaseDB, dst_folder: str) -> Iterator[str]:
    """Lazily yield what ``dst_folder`` holds and ``src_folder`` does not, as paths relative to the folders.

    Paths start with ``/``; folders end with ``/`` and are yielded whole, not
    entered.  Both trees are walked folder by folder, merging the sorted
    listings; a name that seems absent from the source is looked up there
    before it is yielded, so a difference in sort order costs requests,
    never a wrong answer.  Memory holds the folders still to visit.
    """
    src_root, dst_root = normalize_folder(src_folder).rstrip("/"), normalize_folder(dst_folder).rstrip("/")
    pending = [""]
    while pending:
        current = pending.pop()
        theirs = iter(src.list_dir(src_root + current + "/", page_size=_PAGE, system=True))
        other = next(theirs, None)
        for name in dst.list_dir(dst_root + current + "/", page_size=_PAGE, system=True):
            while other is not None and other < name:
                other = next(theirs, None)
            rel = current + "/" + name
            if other != name and not _holds(src, src_root + rel):
                yield rel
            elif name.endswith("/"):
                pending.append(rel[:-1])


def _delete_extraneous(
    src: BaseDB,
    src_root: str,
    dst: BaseDB,
    dst_root: str,
    batch_size: int,
    progress: Callable[[TransferStats], None] | None,
    stop: threading.Event | None,
    stats: TransferStats,
) -> None:
    batch: list[str] = []

    def flush() -> None:
        dst.delete_many(batch, system_obj=True)
        stats.deleted += len(batch)
        batch.clear()
        if progress is not None:
            progress(stats)

    for rel in extraneous(src, src_root + "/", dst, dst_root + "/"):
        if rel.endswith("/"):
            stats.deleted += dst.rm_tree(dst_root + rel, system_obj=True)
            continue
        batch.append(dst_root + rel)
        if len(batch) >= batch_size:
            flush()
            if stop is not None and stop.is_set():
                stats.interrupted = True
                return
    if batch:
        flush()


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
    delete: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[TransferStats], None] | None = None,
    stop: threading.Event | None = None,
    stats: TransferStats | None = None,
) -> TransferStats:
    """Copy everything below ``src_folder`` in ``src`` to ``dst_folder`` in ``dst``.

    With ``delete``, once everything is copied, also delete what
    ``dst_folder`` holds and ``src_folder`` does not (objects, and whole
    folders, system objects included; see :func:`extraneous`); nothing is
    deleted if the copy fails or stops.  ``stop`` is checked between
    batches: set it (from a signal handler) to end cleanly after the batch
    in flight — every object is written whole or not at all.  ``progress``
    is called after each batch.  Raises ``ValueError`` before copying
    anything if the destination is inside the source, or with ``delete``
    the source inside the destination (:func:`check_destination`), and what
    the stores raise; objects copied or deleted before an error stay so.
    """
    check_destination(src, src_folder, dst, dst_folder, delete=delete)
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
    if delete:
        if stop is not None and stop.is_set():  # everything is copied; the deletion has not begun
            stats.interrupted = True
            return stats
        _delete_extraneous(src, src_root, dst, dst_root, batch_size, progress, stop, stats)
    return stats
