"""Upgrading a table an earlier kydb-sql wrote: ``python -m kydb_sql upgrade URL``, or :func:`upgrade_table`.

kydb-sql refuses a table of layout 3 (written by kydb-sql before object
versions) with :class:`kydb_sql.TableLayoutError` naming this command,
rather than upgrading it on its own: a process still running the earlier
kydb-sql on the table would go on overwriting objects without changing
their versions, and a conditional write would then overwrite its changes.
So the upgrade is an explicit step, run once those processes are stopped.
It adds the ``version`` column in place (see
:func:`kydb_sql.layout.upgrade_layout`); running it again does nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import kydb
from kydb.url import parse_store_url

from .errors import TableLayoutError
from .store import SQLStore

__all__ = ["main", "upgrade_table"]


def upgrade_table(url: str) -> str:
    """Upgrade the table of the kydb URL ``url`` (``?table=``, default ``kydb``) in place; say what was done.

    Raises :class:`kydb_sql.TableLayoutError` when there is no table to
    upgrade or it has a layout this kydb-sql does not upgrade,
    ``ValueError`` for a malformed URL, :class:`kydb.StoreUnavailable` or
    ``PermissionError`` when the database cannot be reached or refuses.
    """
    store = SQLStore(parse_store_url(url, path_is_base=False))
    try:
        return store.upgrade()
    finally:
        store.kydb_close()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``python -m kydb_sql upgrade URL``; 0 when done, 1 (with the reason) when not."""
    parser = argparse.ArgumentParser(prog="python -m kydb_sql", description="kydb-sql's maintenance commands.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    upgrade = commands.add_parser(
        "upgrade",
        help="upgrade a table an earlier kydb-sql wrote to this version's layout, in place",
        description=(
            "Upgrade the table of URL (its ?table=, default kydb), written by an earlier kydb-sql, to this "
            "version's layout, in place: every object, folder and index value stays. Stop every process that "
            "runs the earlier kydb-sql on the table first. Running it again does nothing."
        ),
    )
    upgrade.add_argument("url", metavar="URL", help="the store's kydb URL, e.g. postgresql://me@db-host/research")
    args = parser.parse_args(argv)
    try:
        print(upgrade_table(args.url))
    except (TableLayoutError, kydb.StoreUnavailable, ValueError, ImportError, PermissionError) as exc:
        print(f"python -m kydb_sql upgrade: error: {exc}", file=sys.stderr)
        return 1
    return 0
