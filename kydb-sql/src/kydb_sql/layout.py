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
version   the object's version: a random 63-bit write id that every write of
          the object replaces (0 for folders, and for objects not written
          since their table was upgraded to this layout)
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
or by something else, is refused rather than misread.  A table of layout 3,
which has no ``version`` column, is refused until :func:`upgrade_layout`
(``python -m kydb_sql upgrade URL``) adds it: a process running the kydb-sql
that wrote it would go on overwriting objects without changing their
versions, so the upgrade waits until those are stopped.

The table ``T`` derives names: ``T_idx`` for its user index table, and its
indexes' (``T_parent_name``, ``T_recent``, ``T_created``, ``T_idx_query``),
which PostgreSQL and SQLite keep among the schema's table names.
:func:`check_layout` refuses a table one of whose names is taken by
something else — another kydb table, its index table, an index — before
creating anything, whichever of the two came first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
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
    "check_layout",
    "index_table",
    "make_table",
    "range_of",
    "upgrade_layout",
]

#: The version of the layout described above, stored in the layout row.
#: 2 added the recency indexes and the user index table; 3 made index names
#: compare bytewise and tied index values to their object (``ON DELETE CASCADE``);
#: 4 added the ``version`` column (:func:`upgrade_layout` upgrades a table of layout 3).
LAYOUT_VERSION = 4
#: The layout :func:`upgrade_layout` upgrades from.
_UPGRADABLE = 3
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
    """The kydb table ``name`` and, in its metadata, its user index table (created by :func:`check_layout`).

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
        sa.Column("mtime", sa.BigInteger(), nullable=False),
        sa.Column("ctime", sa.BigInteger(), nullable=False),
        # With a default: what upgrade_layout adds (after ctime) to a table of layout 3.
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
        # Last: SQLite then lays out a large value's room without holding it (see kydb_sql.store).
        sa.Column("data", sa.LargeBinary(_BLOB_BYTES), nullable=True),
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


# The columns of a kydb table, those that tell it from others, and those of a user index table.
_COLUMNS = frozenset({"path", "parent", "name", "kind", "data", "mtime", "ctime", "version"})
_MARKS = frozenset({"path", "kind", "data"})  # every layout's, so the version row can be read
_INDEX_COLUMNS = frozenset({"path", "index_name", "parent", "name", "value"})


@dataclass(frozen=True)
class _Taken:
    """A name the database's schema already uses: what for, and for an index, its table."""

    what: str  # 'table', 'index', 'view', 'sequence', ...
    table: str | None = None


def _fold(conn: Connection) -> Callable[[str], str]:
    """How the database compares names: SQLite ignores the case of ASCII letters; the others are exact."""
    return str.lower if conn.dialect.name == "sqlite" else str


def _taken(conn: Connection, names: Sequence[str]) -> dict[str, _Taken]:
    """The names of ``names`` the current schema uses (keyed by their folded form), and what for."""
    fold = _fold(conn)
    dialect = conn.dialect.name
    wanted: sa.BindParameter[list[str]] = sa.bindparam("names", [fold(n) for n in names], expanding=True)
    found: dict[str, _Taken] = {}
    if dialect == "postgresql":
        kinds = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "i": "index", "I": "index"}
        kinds |= {"S": "sequence", "f": "foreign table", "c": "composite type"}
        query = sa.text(
            "SELECT c.relname, c.relkind, t.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE n.nspname = current_schema() AND c.relname IN :names"
        ).bindparams(wanted)
        for name, kind, owner in conn.execute(query):
            found[fold(name)] = _Taken(kinds.get(kind, "relation"), owner)
    elif dialect == "sqlite":
        query = sa.text(
            "SELECT name, type, tbl_name FROM sqlite_master "
            "WHERE type IN ('table', 'index', 'view') AND lower(name) IN :names"
        ).bindparams(wanted)
        for name, kind, owner in conn.execute(query):
            found[fold(name)] = _Taken(kind, owner if kind == "index" else None)
    else:  # MySQL/MariaDB: index names belong to their table, only tables and views share the schema's names
        query = sa.text(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name IN :names"
        ).bindparams(wanted)
        for raw_name, raw_kind in conn.execute(query):
            kind = _text(raw_kind)
            found[fold(_text(raw_name))] = _Taken("table" if kind == "BASE TABLE" else kind.lower())
    return found


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _columns(conn: Connection, name: str) -> frozenset[str]:
    """The column names of table ``name`` (one statement that reads no row)."""
    probe = sa.select(sa.text("*")).select_from(sa.table(name)).where(sa.false())
    return frozenset(str(column).lower() for column in conn.execute(probe).keys())  # noqa: SIM118 - no rows


def _describe(conn: Connection, name: str, taken: _Taken) -> str:
    """What holds the name ``name``, for a message: ``"the kydb table 'x'"``, ``"index 'x' of table 'y'"``..."""
    if taken.what == "index":
        return f"index {name!r} of table {taken.table!r}"
    if taken.what != "table":
        return f"the {taken.what} {name!r}"
    columns = _columns(conn, name)
    if columns == _INDEX_COLUMNS and name.endswith("_idx"):
        return f"the table {name!r} of the user index values of the kydb table {name[:-4]!r}"
    if columns >= _MARKS:
        return f"the kydb table {name!r}"
    return f"the table {name!r}, which kydb did not create"


def _its_own(conn: Connection, table: sa.Table, derived: str, holder: _Taken) -> bool:
    """Whether ``derived``, a name existing ``table`` derives, is held by what ``table`` made it for."""
    side = index_table(table)
    if derived == side.name:
        return holder.what == "table" and _columns(conn, derived) == _INDEX_COLUMNS
    fold = _fold(conn)
    return holder.what == "index" and fold(holder.table or "") in (fold(table.name), fold(side.name))


def check_layout(conn: Connection, table: sa.Table, create: bool, now: int, upgrade: str = "") -> bool:
    """Check that ``table`` has this layout and its names are its own; create it if missing and ``create``.

    Returns whether the table is there to use: ``False`` only when it does
    not exist (or is an empty table whose creation was cut short) and not
    ``create`` — an empty store, for reads; nothing is created then.

    Raises :class:`TableLayoutError`, before creating anything, for a table
    of another layout version (for layout 3, naming ``upgrade``, the command
    that upgrades it) or one kydb did not create, for a table that
    holds another kydb table's user index values, and when a name the table
    needs — its own, its user index table's (``<table>_idx``) or, where index
    names share the schema's names (PostgreSQL, SQLite), its indexes' — is
    taken by something else (another kydb table, an index of another table,
    a view...).

    With ``create``, the caller holds a lock on this table's creation
    (concurrent first writers must not both create it): a transaction with
    an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite,
    ``GET_LOCK`` on MySQL.  A creation interrupted before the layout row was
    written (MySQL commits DDL at once) is finished.
    """
    name = table.name
    side = index_table(table)
    fold = _fold(conn)
    indexes = [] if conn.dialect.name in _MYSQL else [i.name for t in (table, side) for i in t.indexes if i.name]
    taken = _taken(conn, [name, side.name, *indexes])
    other = "name this store's table something else with ?table=NAME"

    main = taken.get(fold(name))
    if main is not None and main.what != "table":
        raise TableLayoutError(
            f"the name {name!r} is taken by {_describe(conn, name, main)}, so no kydb table can have it; {other}"
        )
    laid_out = False
    if main is not None:
        columns = _columns(conn, name)
        if columns == _INDEX_COLUMNS:
            owner = f" of the kydb table {name[:-4]!r}" if name.endswith("_idx") else ""
            raise TableLayoutError(
                f"table {name!r} holds the user index values{owner}, it cannot be a kydb table itself; {other}"
            )
        if not columns >= _MARKS:
            raise TableLayoutError(
                f"table {name!r} exists but is not a kydb table (its columns: {', '.join(sorted(columns))}); {other}"
            )
        found = _layout_version(conn, table)
        if found is not None:
            if found == str(_UPGRADABLE):
                raise TableLayoutError(
                    f"table {name!r} has kydb-sql layout {found!r}, written by an earlier kydb-sql, without the "
                    f"object versions this kydb-sql keeps (layout {LAYOUT_VERSION}). Once no process runs the earlier "
                    f"kydb-sql on it, upgrade it in place with: {upgrade or 'python -m kydb_sql upgrade URL'} "
                    "(it adds a version column; every object, folder and index value stays as it is)"
                )
            if found != str(LAYOUT_VERSION):
                raise TableLayoutError(
                    f"table {name!r} has kydb-sql layout {found!r}, and this kydb-sql reads layout "
                    f"{LAYOUT_VERSION}: use the kydb-sql version that wrote it, or {other}"
                )
            laid_out = True
        elif conn.execute(sa.select(table.c.path).limit(1)).first() is not None:
            raise TableLayoutError(
                f"table {name!r} holds rows but no kydb layout row: it was not created by kydb-sql; {other}"
            )

    # The names the table derives: its user index table's and its indexes'.  Its own when the table
    # exists (an index of it, its index table); anything else's is a collision, whichever came first.
    for derived in [side.name, *indexes]:
        holder = taken.get(fold(derived))
        if holder is None or (main is not None and _its_own(conn, table, derived, holder)):
            continue
        purpose = "its user index values" if derived == side.name else "one of its indexes"
        raise TableLayoutError(
            f"kydb table {name!r} needs the name {derived!r} for {purpose}, but it is taken by "
            f"{_describe(conn, derived, holder)}; {other}"
        )

    if laid_out:
        if fold(side.name) in taken:
            return True
        if not create:
            raise TableLayoutError(
                f"kydb table {name!r} has lost its user index table {side.name!r}; a write to the store creates it "
                "again (empty)"
            )
        side.create(conn)
        return True
    if not create:
        return False
    table.metadata.create_all(conn, checkfirst=True)
    conn.execute(
        sa.insert(table).values(
            path=_LAYOUT_PATH,
            parent="kydb:",
            name="layout",
            kind=_KIND_LAYOUT,
            data=str(LAYOUT_VERSION).encode("ascii"),
            mtime=now,
            ctime=now,
        )
    )
    return True


def _layout_version(conn: Connection, table: sa.Table) -> str | None:
    """The layout version the existing ``table``'s layout row records, or ``None`` for a table without one."""
    data = conn.execute(
        sa.select(table.c.data).where(table.c.path == _LAYOUT_PATH, table.c.kind == _KIND_LAYOUT)
    ).scalar()
    return None if data is None else bytes(data).decode("ascii", "replace")


def upgrade_layout(conn: Connection, table: sa.Table, now: int) -> str:
    """Upgrade ``table`` from layout 3 to this layout in place; say what was done.

    Adds the ``version`` column (``BIGINT NOT NULL DEFAULT 0``, the last
    column, as a new table has it) and records the new layout; every row
    stays as it is, objects at version 0 until their next write.  A table
    already of this layout is left alone.  Then checks the table as
    :func:`check_layout` does (re-creating a lost user index table).  The
    caller holds the table's creation lock (see :func:`check_layout`).  On
    PostgreSQL and SQLite the upgrade is one transaction; MySQL commits DDL
    at once, so an upgrade cut short after adding the column is finished by
    the next one.

    Raises :class:`TableLayoutError` when there is no such table, or it is
    not a kydb table of layout 3 or of this layout.
    """
    name = table.name
    if not sa.inspect(conn).has_table(name):
        raise TableLayoutError(f"there is no table {name!r}: nothing to upgrade (check the URL's ?table=)")
    columns = _columns(conn, name)
    found = _layout_version(conn, table) if columns >= _MARKS else None
    if found == str(LAYOUT_VERSION):
        check_layout(conn, table, True, now)
        return f"table {name!r} already has kydb-sql layout {LAYOUT_VERSION}: nothing to do"
    if found != str(_UPGRADABLE):
        what = "no kydb layout row" if found is None else f"kydb-sql layout {found!r}"
        raise TableLayoutError(
            f"table {name!r} has {what}; this kydb-sql upgrades layout {_UPGRADABLE} to {LAYOUT_VERSION} only"
        )
    if "version" not in columns:
        quoted = conn.dialect.identifier_preparer.quote(name)
        conn.execute(sa.text(f"ALTER TABLE {quoted} ADD COLUMN version BIGINT NOT NULL DEFAULT 0"))
    conn.execute(
        sa.update(table)
        .where(table.c.path == _LAYOUT_PATH, table.c.kind == _KIND_LAYOUT)
        .values(data=str(LAYOUT_VERSION).encode("ascii"))
    )
    check_layout(conn, table, True, now)
    return f"table {name!r} upgraded from kydb-sql layout {_UPGRADABLE} to {LAYOUT_VERSION}: objects now have versions"
