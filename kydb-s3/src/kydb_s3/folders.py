"""Folders on S3: listings as kydb names, and the zero-byte markers that keep folders.

**Folders are key prefixes.**  An object implies every folder above it, so
writing one costs one ``PutObject`` and nothing else.  ``mkdir`` makes
folders the way the S3 console does, with zero-byte marker objects
``folder/`` (for the folder and each of its ancestors, so ``rmdir`` of a
subfolder never takes its parent with it).  A bucket written by kydb
therefore looks natural to other S3 tools, and kydb reads a bucket whose
folders are only key prefixes.

**Folders emptied by a delete stay** until ``rmdir`` or ``rm_tree`` removes
them, as on every kydb store.  Before a delete, each folder that holds a
deleted path is looked at with one ``ListObjectsV2`` of one key: a folder
with nothing under it does not exist (and no delete gives it one), one whose
first key is its own marker is kept already, and any other gets its marker
(one ``PutObject``, once in the folder's life) before the delete runs — so
the folder never disappears, not even while two clients delete its last two
objects at once.  ``rmdir`` and ``rm_tree`` do the same for the folder above
the one they remove.  A marker written while another writer adds or removes
objects is harmless: it only says the folder exists, which it does.  The
store's root (its base path) always exists and gets no marker.  A client
allowed to delete but not to write there gets a warning (logger
``kydb_s3``), and the delete goes ahead without the marker.

**Names kydb cannot represent.**  Other tools may write keys that make no
kydb name: ``f//x`` (an empty path component, listed as the folder ``/``),
a control character or U+FFFE/U+FFFF in a name, ``.`` or ``..``, a key of
1,024 bytes (its kydb path would be one byte over the limit).  Listings,
walks and scans skip them, never returning a name kydb's key rules refuse,
and each listing page that skipped some logs one warning naming them
(logger ``kydb_s3``).  ``rm_tree`` deletes them with the rest of the tree.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import kydb
from kydb.keys import ancestors, folder_of, normalize_folder, normalize_key

from .errors import AccessDenied
from .index_sidecars import in_index_folder, sidecar_prefix
from .requests import S3_BATCH, BucketRequests

__all__ = ["Folders", "logger", "representable"]

#: Where kydb-s3 reports keys it skipped.
logger = logging.getLogger("kydb_s3")
#: Skipped keys a warning names; it counts the rest.
_NAMED = 20


def representable(folder: str, name: str) -> bool:
    """Whether ``name`` (an object's name, or a subfolder's with its ``/``) in ``folder`` is a valid kydb name."""
    path = folder + name
    try:
        if name.endswith("/"):
            return normalize_folder(path, system=True) == path
        return normalize_key(path, system=True) == path
    except kydb.InvalidKey:
        return False


class Folders:
    """Listings and folder markers of one bucket; ``root`` is the store's root folder (its base path)."""

    def __init__(self, requests: BucketRequests, root: str) -> None:
        self._requests = requests
        self._root = root

    def _kept(self, folder: str, names: Iterable[str]) -> list[str]:
        """``names`` of ``folder`` that kydb can name; one warning naming the S3 keys of the others."""
        kept: list[str] = []
        skipped: list[str] = []
        for name in names:
            (kept if representable(folder, name) else skipped).append(name)
        if skipped:
            keys = [folder[1:] + name for name in skipped]
            more = f" and {len(keys) - _NAMED} more" if len(keys) > _NAMED else ""
            logger.warning(
                "skipped %d key(s) under %r in %s that kydb cannot name (an empty path component, a control "
                "character or non-character, '.' or '..', or a path over 1,024 bytes): %s%s",
                len(keys),
                folder[1:],
                self._requests.where(),
                ", ".join(repr(key) for key in keys[:_NAMED]),
                more,
            )
        return kept

    def list_page(self, folder: str, include_dirs: bool, page_size: int, cursor: str | None) -> kydb.ListPage:
        """One ``ListObjectsV2`` page of ``folder``'s children; a reserved sidecar folder lists as empty."""
        if in_index_folder(folder):
            return kydb.ListPage([], None)
        prefix = folder[1:]
        params: dict[str, Any] = {"Prefix": prefix, "Delimiter": "/", "MaxKeys": min(page_size, S3_BATCH)}
        if cursor is not None:
            params["ContinuationToken"] = cursor
        elif prefix:
            params["StartAfter"] = prefix  # the folder's own marker object, which sorts first
        page = self._requests.list_page(**params)
        cut = len(prefix)
        names = [c["Key"][cut:] for c in page.get("Contents", [])]
        if include_dirs:
            hidden = sidecar_prefix(prefix)
            names += [p["Prefix"][cut:] for p in page.get("CommonPrefixes", []) if p["Prefix"] != hidden]
        # S3 lists in UTF-8 byte order, which is code-point order: sorting the merged page keeps it.
        names = sorted(self._kept(folder, names))
        return kydb.ListPage(names, page.get("NextContinuationToken") if page.get("IsTruncated") else None)

    def object_names(self, folder: str) -> list[str]:
        """The names of every object directly in ``folder`` that kydb can name (one listing page per 1,000)."""
        prefix = folder[1:]
        params: dict[str, Any] = {"Prefix": prefix, "Delimiter": "/"}
        if prefix:
            params["StartAfter"] = prefix  # the folder's own marker object
        return self._kept(folder, [key[len(prefix) :] for key in self._requests.listed_keys(**params)])

    def is_dir(self, folder: str) -> bool:
        """One ``ListObjectsV2`` of one key; ``False`` without a request for a reserved sidecar folder."""
        if in_index_folder(folder):
            return False
        return int(self._requests.list_page(Prefix=folder[1:], MaxKeys=1).get("KeyCount", 0)) > 0

    def mkdir(self, folder: str) -> None:
        """Markers for ``folder`` and its ancestors, concurrently (one ``PutObject`` each)."""
        markers = [path[1:] for path in [*ancestors(folder), folder]]
        self._requests.connection.each(self._requests.put_marker, markers)

    def keep(self, folders: Iterable[str]) -> None:
        """Give each existing folder of ``folders`` its marker, if it has none, so that it outlives its contents.

        One ``ListObjectsV2`` of one key per folder (concurrently), and one
        ``PutObject`` for each that exists without a marker.  The root and
        reserved sidecar folders (and anything outside the root) are left alone.
        """
        root = self._root
        wanted = sorted({f for f in folders if f.startswith(root) and f != root and not in_index_folder(f)})
        self._requests.connection.each(self._keep, wanted)

    def _keep(self, folder: str) -> None:
        prefix = folder[1:]
        first = [c["Key"] for c in self._requests.list_page(Prefix=prefix, MaxKeys=1).get("Contents", [])]
        if first and first[0] != prefix:  # it exists, and its marker, which would sort first, is not there
            try:
                self._requests.put_marker(prefix)
            except AccessDenied as exc:  # allowed to delete, not to write: the delete still goes ahead
                logger.warning("%s; without its marker, %s disappears once nothing is left in it", exc, folder)

    def keep_parent(self, folder: str) -> None:
        """:meth:`keep` the folder holding ``folder``, before ``folder`` is removed."""
        self.keep([folder_of(folder)])
