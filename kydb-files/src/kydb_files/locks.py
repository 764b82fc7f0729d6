"""Folder locks: ``flock`` on each folder's ``.kydb-lock``, across threads and processes of one machine.

Every write to a folder's entries — an object put or deleted, a subfolder
made where an object of its name was, the folder removed — holds the
folder's lock exclusively, so a conditional write's check and its write are
one step for every kydb writer.  ``flock`` locks belong to an open file
description: each acquisition opens the lock file again, so threads of one
process exclude each other as processes do, and a process that dies
releases its locks with it.  They work on local filesystems; over NFS,
Linux emulates them with byte-range locks, which the NFS server must
support.

A lock file can be removed while someone waits for it (``rmdir`` and
``rm_tree`` remove a folder with its lock file, holding it): after getting
the lock, :func:`folder_lock` checks that the file it locked is still the
folder's lock file, and starts again otherwise.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .layout import LOCK_NAME

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderVanished", "folder_lock", "locks_available", "try_lock_fd"]


class FolderVanished(FileNotFoundError):
    """The folder's directory went away (removed by another writer) before its lock was taken."""


def locks_available() -> bool:
    """Whether this platform has ``flock`` (POSIX systems do; Windows does not)."""
    return fcntl is not None


def _same_file(fd: int, path: str) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_ino, on_disk.st_dev) == (held.st_ino, held.st_dev)


@contextlib.contextmanager
def folder_lock(directory: str, *, shared: bool = False, create: bool = True) -> Iterator[bool]:
    """Hold the lock of the folder ``directory`` (exclusive, or ``shared`` for a consistent read).

    Yields ``True`` while the lock is held.  With ``create`` false a missing
    lock file is not made (readers never write): the block then runs
    unlocked and gets ``False`` — no kydb writer has written there.  Raises
    :class:`FolderVanished` if the directory does not exist (with
    ``create``), and the ``OSError`` of the lock file otherwise.  Blocks
    until the lock is free.
    """
    assert fcntl is not None, "folder locks need fcntl.flock (POSIX)"
    path = os.path.join(directory, LOCK_NAME)
    flags = (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY) | os.O_CLOEXEC
    while True:
        try:
            fd = os.open(path, flags, 0o666)
        except (FileNotFoundError, NotADirectoryError):
            if create:
                raise FolderVanished(directory) from None
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            if _same_file(fd, path):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # locked a lock file that was removed meanwhile: lock the current one
    try:
        yield True
    finally:
        os.close(fd)  # releases the lock


def try_lock_fd(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` without waiting: ``False`` if someone holds it."""
    assert fcntl is not None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
