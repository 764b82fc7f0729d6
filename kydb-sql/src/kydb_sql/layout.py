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
indexed range per page too.  Keys compare bytewise everywhere — ``COLLATE "C"`` on
PostgreSQL, ``VARBINARY`` holding UTF-8 on MySQL/MariaDB (whose default
collations ignore case, accents and trailing spaces, and would make ``/e`` and
``/é`` one primary key), SQLite's default ``BINARY`` — so distinct keys are
distinct rows and every database lists in code-point order.

A row outside the key space (``path = 'kydb:layout'``; kydb paths all start
with ``/``) records the layout version, so a table written by another layout,
or by something else, is refused rather than misread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Connection, Dialect

from .errors import TableLayoutError

__all__ = [
    "INDEX_NAME_LENGTH",
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
#: 2 added the recency indexes and the user index table.
LAYOUT_VERSION = 2
INDEX_NAME_LENGTH = 64
KIND_OBJECT = "o"
KIND_FOLDER = "f"
_KIND_LAYOUT = "m"
_LAYOUT_PATH = "kydb:layout"

# A full path is at most 1,024 bytes of UTF-8 without its trailing '/', so a
# folder path is at most 1,025 (and so many characters).  1,025 bytes fit
# InnoDB's 3,072-byte index limit, twice over for the (parent, name) index.
_KEY_BYTES = 1025
_MYSQL = ("mysql", "mariadb")


class KeyText(sa.types.TypeDecorator[str]):
    """A path or name that compares bytewise (code-point order) on every database."""

    impl = sa.String(_KEY_BYTES)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.VARCHAR(_KEY_BYTES, collation="C"))
        if dialect.name in _MYSQL:
            return dialect.type_descriptor(mysql.VARBINARY(_KEY_BYTES))
        return dialect.type_descriptor(sa.String(_KEY_BYTES))

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is not None and dialect.name in _MYSQL:
            return value.encode("utf-8")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).decode("utf-8")
        return value  # type: ignore[no-any-return]


def make_table(name: str) -> sa.Table:
    """The kydb table ``name`` and, in its metadata, its user index table (created by :func:`ensure_layout`)."""
    metadata = sa.MetaData()
    sa.Table(
        f"{name}_idx",
        metadata,
        sa.Column("path", KeyText(), primary_key=True),
        sa.Column("index_name", sa.String(INDEX_NAME_LENGTH), primary_key=True),
        sa.Column("parent", KeyText(), nullable=False),
        sa.Column("name", KeyText(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Index(f"{name}_idx_query", "parent", "index_name", "value", "name"),
        mysql_engine="InnoDB",
    )
    return sa.Table(
        name,
        metadata,
        sa.Column("path", KeyText(), primary_key=True),
        sa.Column("parent", KeyText(), nullable=False),
        sa.Column("name", KeyText(), nullable=False),
        sa.Column("kind", sa.String(1), nullable=False),
        sa.Column("data", sa.LargeBinary().with_variant(mysql.LONGBLOB(), *_MYSQL), nullable=True),
        sa.Column("mtime", sa.BigInteger(), nullable=False),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        sa.Index(f"{name}_parent_name", "parent", "name"),
        sa.Index(f"{name}_recent", "parent", "kind", "mtime", "name"),
        sa.Index(f"{name}_created", "parent", "kind", "ctime", "name"),
        mysql_engine="InnoDB",
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
    """Create ``table`` and its index if missing, or check that it has this layout.

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
