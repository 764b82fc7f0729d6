"""The table kydb keeps in a SQL database, and how it is created and recognised.

One row per object and per folder:

========  =====================================================================
path      primary key: ``/a/b`` for an object, ``/a/b/`` for a folder, so an
          object and a folder of the same name are two rows
parent    the folder holding the row: ``/a/``
name      the last component as listed: ``b`` for an object, ``b/`` for a folder
kind      ``'o'`` object, ``'f'`` folder (``'m'``: the layout row below)
data      the blob (``NULL`` for folders); ``LONGBLOB`` on MySQL/MariaDB
mtime     last write, integer nanoseconds since the epoch
ctime     first write, integer nanoseconds; kept when an object is overwritten
========  =====================================================================

An index on ``(parent, name)`` serves listings: one indexed range per page,
in listing order; indexes on ``(parent, kind, mtime, name)`` and ``(parent,
kind, ctime, name)`` serve recency queries the same way.

User index values live in a side table ``<table>_idx``: one row per object
and index name — ``path``, ``parent``, ``name``, ``index_name``, ``value``
(a 64-bit integer) — primary key ``(path, index_name)``, with an index on
``(parent, index_name, value, name)`` so a query by a user index is one
indexed range per page too.  Its ``path`` is a foreign key to the object's
row, ``ON DELETE CASCADE``: deleting an object deletes its index values in
the same statement, on every database (SQLite connections turn
``foreign_keys`` on).  Writes insert the object's row before its index rows,
and overwrite it with an upsert that updates the row in place (never a
delete and insert, which would cascade).

Paths, names and index names compare bytewise everywhere — ``COLLATE "C"`` on
PostgreSQL, ``VARBINARY`` holding UTF-8 on MySQL/MariaDB (whose default
collations ignore case, accents and trailing spaces, and would make ``/e`` and
``/é``, or the index names ``rank`` and ``Rank``, one primary key), SQLite's
default ``BINARY`` — so distinct keys are distinct rows and every database
lists in code-point order.

A row outside the key space (``path = 'kydb:layout'``; kydb paths all start
with ``/``) records the layout version, so a table written by another layout,
or by something else, is refused rather than misread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from kydb.keys import MAX_PATH_BYTES
from kydb.query import MAX_INDEX_NAME_CHARS

from .errors import TableLayoutError

__all__ = [
    "KIND_FOLDER",
    "KIND_OBJECT",
    "LAYOUT_VERSION",
    "KeyText",
    "ancestors",
    "ensure_layout",
    "index_table",
    "make_table",
    "range_of",
]

#: The version of the layout described above, stored in the layout row.
#: 2 added the recency indexes and the user index table; 3 made index names
#: compare bytewise and tied index values to their object (``ON DELETE CASCADE``).
LAYOUT_VERSION = 3
KIND_OBJECT = "o"
KIND_FOLDER = "f"
_KIND_LAYOUT = "m"
_LAYOUT_PATH = "kydb:layout"

# A full path is at most MAX_PATH_BYTES (1,024) bytes of UTF-8 without its trailing
# '/', so a folder path is at most 1,025 (and so many characters).  1,025 bytes fit
# InnoDB's 3,072-byte index limit, twice over for the (parent, name) index.
_KEY_BYTES = MAX_PATH_BYTES + 1
# MySQL/MariaDB make a BLOB of this length a LONGBLOB (a plain BLOB stops at 64 kB).
_BLOB_BYTES = 2**32 - 1
_MYSQL = ("mysql", "mariadb")


class KeyText(sa.types.TypeDecorator[str]):
    """Text of at most ``length`` bytes of UTF-8 that compares bytewise (code-point order) on every database.

    For paths, names (the default length: a folder path's) and index names.
    """

    impl = sa.String
    cache_ok = True

    def __init__(self, length: int = _KEY_BYTES) -> None:
        super().__init__(length)
        self.length = length

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.String(self.length, collation="C"))
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(sa.VARBINARY(self.length))
        return dialect.type_descriptor(sa.String(self.length))

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is not None and dialect.name in _MYSQL:
            return value.encode("utf-8")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).decode("utf-8")
        return value  # type: ignore[no-any-return]


def make_table(name: str, dialect: str) -> sa.Table:
    """The kydb table ``name`` and, in its metadata, its user index table (created by :func:`ensure_layout`).

    ``dialect`` (an engine's ``dialect.name``) says whether the tables carry
    MySQL's options, which would import MySQL's dialect for every store.
    """
    # InnoDB, whatever the server's default engine: transactions, row locks and foreign keys.
    options: dict[str, Any] = {"mysql_engine": "InnoDB"} if dialect in _MYSQL else {}
    metadata = sa.MetaData()
    sa.Table(
        f"{name}_idx",
        metadata,
        sa.Column("path", KeyText(), sa.ForeignKey(f"{name}.path", ondelete="CASCADE"), primary_key=True),
        sa.Column("index_name", KeyText(MAX_INDEX_NAME_CHARS), primary_key=True),  # ASCII: characters are bytes
        sa.Column("parent", KeyText(), nullable=False),
        sa.Column("name", KeyText(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Index(f"{name}_idx_query", "parent", "index_name", "value", "name"),
        **options,
    )
    return sa.Table(
        name,
        metadata,
        sa.Column("path", KeyText(), primary_key=True),
        sa.Column("parent", KeyText(), nullable=False),
        sa.Column("name", KeyText(), nullable=False),
        sa.Column("kind", sa.String(1), nullable=False),
        sa.Column("data", sa.LargeBinary(_BLOB_BYTES), nullable=True),
        sa.Column("mtime", sa.BigInteger(), nullable=False),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.Index(f"{name}_parent_name", "parent", "name"),
        sa.Index(f"{name}_recent", "parent", "kind", "mtime", "name"),
        sa.Index(f"{name}_created", "parent", "kind", "ctime", "name"),
        **options,
    )


def index_table(table: sa.Table) -> sa.Table:
    """The user index table that goes with ``table``."""
    return table.metadata.tables[f"{table.name}_idx"]


def ancestors(path: str) -> Iterator[str]:
    """The folders above ``path`` (an object or a folder), root excluded: ``/a/b/c`` -> ``/a/``, ``/a/b/``."""
    end = path.find("/", 1)
    while 0 < end < len(path) - 1:
        yield path[: end + 1]
        end = path.find("/", end + 1)


def range_of(folder: str) -> tuple[str, str]:
    """``(low, high)`` with ``low <= path < high`` exactly for ``folder`` and everything below it.

    Every such path starts with ``folder`` (which ends with ``/``); ``'0'``
    is the character after ``'/'``, so ``/a/b0`` bounds ``/a/b/...`` from
    above under a bytewise comparison.  No ``LIKE``, so ``%`` and ``_`` in
    names are plain characters.  The root's range is every kydb path.
    """
    return folder, folder[:-1] + "0"


def ensure_layout(conn: Connection, table: sa.Table, now: int) -> None:
    """Create ``table``, its indexes and its user index table if missing, or check that it has this layout.

    The caller holds a lock on this table's creation (concurrent first
    connects must not both create it): a transaction with an advisory lock
    on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite, ``GET_LOCK`` on MySQL.  A
    creation interrupted before the layout row was written (MySQL commits
    DDL at once) is finished.  Raises :class:`TableLayoutError` for a table
    of another layout version or one kydb did not create.
    """
    name = table.name
    if sa.inspect(conn).has_table(name):
        try:
            version = conn.execute(
                sa.select(table.c.data).where(table.c.path == _LAYOUT_PATH, table.c.kind == _KIND_LAYOUT)
            ).scalar()
        except sa.exc.DBAPIError as exc:  # a missing column: not one of ours
            if exc.connection_invalidated:
                raise
            raise TableLayoutError(
                f"table {name!r} exists but is not a kydb table ({exc.orig}); name another one with ?table=NAME"
            ) from None
        if version is not None:
            found = bytes(version).decode("ascii", "replace")
            if found != str(LAYOUT_VERSION):
                raise TableLayoutError(
                    f"table {name!r} has kydb-sql layout {found!r}, and this kydb-sql reads layout "
                    f"{LAYOUT_VERSION}: use the kydb-sql version that wrote it, or name another table with ?table=NAME"
                )
            return
        if conn.execute(sa.select(table.c.path).limit(1)).first() is not None:
            raise TableLayoutError(
                f"table {name!r} holds rows but no kydb layout row: it was not created by kydb-sql; "
                "name another table with ?table=NAME"
            )
    table.metadata.create_all(conn, checkfirst=True)
    conn.execute(
        table.insert().values(
            path=_LAYOUT_PATH,
            parent="kydb:",
            name="layout",
            kind=_KIND_LAYOUT,
            data=str(LAYOUT_VERSION).encode("ascii"),
            mtime=now,
            ctime=now,
        )
    )
