"""A store's first use on a SQLite file, PostgreSQL and MariaDB: reads create nothing, names never collide.

Reading a store whose SQLite file or table does not exist yet answers as an
empty store and creates nothing; the first write creates the file, its
folder and the table.  A table whose name, or a name it derives (its user
index table ``<table>_idx``, its indexes where index names share the
schema's names), belongs to something else is refused with
:class:`kydb_sql.TableLayoutError` naming both, before anything is created.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import kydb
from kydb_sql import TableLayoutError
from kydb_sql.layout import LAYOUT_VERSION, make_table

from .conftest import Database, table_name

# ---------------------------------------------------------------------------- reading creates nothing


def read_everything(db: Any) -> None:
    """Every read (and delete) a user may try first, each answered as by an empty store."""
    assert db.ls("/") == [] and list(db.list_dir("/", page_size=10)) == []
    assert db.get("/books/b1") is None and db.get_many(["/books/b1", "/b2"]) == {}
    with pytest.raises(kydb.NotFound):
        db.read("/books/b1", reload=True)
    with pytest.raises(kydb.NotFound):
        db.stat("/books/b1")
    assert not db.exists("/books/b1") and not db.is_dir("/books") and db.is_dir("/")
    assert db.recent("/books") == [] and list(db.folder("/books").by("rank")) == []
    db.delete_many(["/books/b1"])  # nothing to delete
    assert db.rm_tree("/") == 0


def test_reading_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "nonexistent_dir"
    for url in (f"sqlite:///{folder}/x.db", f"sqlite:///{folder}/y.db?base=/team"):
        db = kydb.connect(url)
        try:
            read_everything(db)
            assert not folder.exists(), f"reading {url} created {sorted(folder.rglob('*'))}"
        finally:
            db.close()
    db = kydb.connect(f"sqlite:///{folder}/x.db")
    try:
        db["/books/b1"] = 1  # the first write creates the folder, the file and the table
        assert (folder / "x.db").is_file() and db.read("/books/b1", reload=True) == 1
    finally:
        db.close()


def test_the_cli_listing_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kydb", "-u", f"sqlite:///{tmp_path}/nonexistent_dir/x.db", "ls"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_file_another_process_creates_later_is_seen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/later.db"
    db = kydb.connect(url)
    try:
        assert db.ls("/") == [] and not (tmp_path / "later.db").exists()
        program = f"import kydb; db = kydb.connect({url!r}); db['/made/by'] = 'another process'; db.close()"
        subprocess.run([sys.executable, "-c", program], check=True)
        assert db.ls("/") == ["made/"] and db.read("/made/by", reload=True) == "another process"
    finally:
        db.close()


def has_table(database: Database, name: str) -> bool:
    engine = database.engine()
    try:
        return sa.inspect(engine).has_table(name)
    finally:
        engine.dispose()


def test_reading_a_missing_table_creates_nothing(database: Database, connect: Callable[[str], Any]) -> None:
    name = table_name()
    db = connect(database.url(table=name, base="/team"))
    read_everything(db)
    assert not has_table(database, name) and not has_table(database, f"{name}_idx")
    db.set("/books/b1", 1, index={"rank": 1})  # the first write creates the table and its index table
    assert has_table(database, name) and has_table(database, f"{name}_idx")
    assert list(db.folder("/books").by("rank")) == ["b1"]


# ---------------------------------------------------------------------------- names kydb tables derive


def refused(db: Any, *names: str) -> str:
    """The message of the TableLayoutError the first read of ``db`` raises; it names each of ``names``."""
    with pytest.raises(TableLayoutError) as info:
        db.ls("/")
    message = str(info.value)
    for name in names:
        assert repr(name) in message, message
    assert "?table=" in message, message  # what to do
    return message


def test_a_table_named_like_a_kydb_tables_index_table_is_refused(
    database: Database, connect: Callable[[str], Any]
) -> None:
    owner = table_name()
    first = connect(database.url(table=owner))
    first.set("/k", 1, index={"rank": 1})
    refused(connect(database.url(table=f"{owner}_idx")), f"{owner}_idx", owner)
    assert first.stat("/k").indexes == {"rank": 1}  # left alone


def test_a_table_whose_index_table_name_is_another_kydb_table_is_refused(
    database: Database, connect: Callable[[str], Any]
) -> None:
    name = table_name()
    squatter = connect(database.url(table=f"{name}_idx"))
    squatter["/x"] = 1
    db = connect(database.url(table=name))
    refused(db, name, f"{name}_idx")
    with pytest.raises(TableLayoutError, match=f"{name}_idx"):
        db.set("/y", 1, index={"rank": 1})
    with pytest.raises(TableLayoutError, match=f"{name}_idx"):
        db.stat("/y")
    assert not has_table(database, name)  # nothing created
    assert squatter.read("/x", reload=True) == 1  # left alone


def test_a_kydb_table_whose_index_table_is_another_kydb_table_is_refused(
    database: Database, connect: Callable[[str], Any]
) -> None:
    """A kydb table made while another kydb table had its index table's name (as kydb-sql once allowed)."""
    name = table_name()
    squatter = connect(database.url(table=f"{name}_idx"))
    squatter["/x"] = 1
    table = make_table(name, database.kind)
    engine = database.engine()
    with engine.begin() as conn:
        table.create(conn)
        layout = str(LAYOUT_VERSION).encode()
        layout_row = {"path": "kydb:layout", "parent": "kydb:", "name": "layout", "kind": "m", "data": layout}
        conn.execute(table.insert().values(**layout_row, mtime=0, ctime=0))
    engine.dispose()
    refused(connect(database.url(table=name)), name, f"{name}_idx")
    assert squatter.read("/x", reload=True) == 1


def test_a_plain_table_with_the_index_table_name_is_refused(database: Database, connect: Callable[[str], Any]) -> None:
    name = table_name()
    engine = database.engine()
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name}_idx (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    database.made.add(f"{name}_idx")
    message = refused(connect(database.url(table=name)), name, f"{name}_idx")
    assert "kydb did not create" in message


def test_a_table_named_like_another_tables_index(database: Database, connect: Callable[[str], Any]) -> None:
    """PostgreSQL and SQLite keep index names among table names; MariaDB keeps them per table."""
    owner = table_name()
    connect(database.url(table=owner))["/x"] = 1  # its indexes: <owner>_parent_name, <owner>_recent...
    db = connect(database.url(table=f"{owner}_recent"))
    if database.kind == "mariadb":
        db["/y"] = 2
        assert db.read("/y", reload=True) == 2
    else:
        message = refused(db, f"{owner}_recent", owner)
        assert "index" in message


def test_a_table_whose_index_name_is_another_kydb_table(database: Database, connect: Callable[[str], Any]) -> None:
    name = table_name()
    squatter = connect(database.url(table=f"{name}_recent"))  # the name of an index <name> would create
    squatter["/x"] = 1
    db = connect(database.url(table=name))
    if database.kind == "mariadb":
        db["/y"] = 2
        assert db.read("/y", reload=True) == 2
    else:
        refused(db, name, f"{name}_recent")
        with pytest.raises(TableLayoutError):
            db["/y"] = 2
        assert not has_table(database, name)
    assert squatter.read("/x", reload=True) == 1
