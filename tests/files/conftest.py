"""What the kydb-files tests share: where an object's file is, worked out from the documented layout."""

from __future__ import annotations

from pathlib import Path

import kydb
from kydb_files import layout


def object_file(db: kydb.DB, path: str) -> Path:
    """The file holding the object at the absolute ``path`` (base path included): beside a folder of its name if any."""
    folders, entry = layout.object_entries(path)
    directory = Path(db.store.root, *folders)
    if (directory / entry).is_dir():
        return directory / layout.SAME_NAME_DIR / entry
    return directory / entry
