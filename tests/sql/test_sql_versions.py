"""Object versions and conditional writes on a SQLite file, PostgreSQL and MariaDB, and upgrading older tables.

The conformance suite (``conditional.py``) checks the contract; these check
what kydb-sql adds: what a version is, that a conflict rolls back the whole
write (ancestor folders too), what each conditional operation sends, and
that a table written by the kydb-sql before versions (layout 3) is refused
until ``python -m kydb_sql upgrade URL`` upgrades it in place.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

import kydb
from kydb_sql import TableLayoutError, upgrade_table
from kydb_sql.layout import LAYOUT_VERSION

from .conftest import Database, table_name
from .test_sql_store import index_rows, rows, statements


@pytest.fixture
def db(database: Database, connect: Callable[[str], Any]) -> Any:
    return connect(database.fresh_url())


def stored_versions(db: Any, folder: str = "/") -> dict[str, int]:
    """``{path: version}`` of every row at or below ``folder``, read with plain SQL."""
    table = db.store.table
    with db.store.engine.connect() as conn:
        prefix = db.base_path + folder
        found = conn.execute(sa.select(table.c.path, table.c.version).where(table.c.path.startswith(prefix)))
        return {path[len(db.base_path) :]: version for path, version in found}


# ---------------------------------------------------------------------------- versions


def test_every_write_gives_a_new_version_and_a_recreated_key_never_gets_an_old_one(db: Any) -> None:
    seen = []
    db["/v/k"] = "same"
    seen.append(db.stat("/v/k").version)
    db["/v/k"] = "same"  # the same bytes again: still a write
    seen.append(db.stat("/v/k").version)
    db.delete("/v/k")
    db["/v/k"] = "same"  # deleted and written again
    seen.append(db.stat("/v/k").version)
    db.set_many({"/v/k": 1, "/v/other": 2})
    seen.append(db.stat("/v/k").version)
    assert len(set(seen)) == 4, seen
    assert all(version.isdigit() and int(version) > 0 for version in seen)
    assert db.read_versioned("/v/k") == (1, seen[-1])
    assert db.get_versioned_blobs(["/v/k"])["/v/k"].version == seen[-1]
    # The version is the row's version column; folders have none of their own (0).
    assert stored_versions(db, "/v/") == {"/v/": 0, "/v/k": int(seen[-1]), "/v/other": int(db.stat("/v/other").version)}


def test_a_version_is_read_with_its_blob_in_one_statement(db: Any) -> None:
    db["/k"] = "value"
    with statements(db) as issued:
        assert db.read_versioned("/k") == ("value", db.stat("/k").version)
    assert issued[0] == "SELECT" and len(issued) == 3  # read_versioned, then stat's sizes and index values


def test_the_version_column(db: Any, database: Database) -> None:
    db["/x"] = 1
    (column,) = [c for c in sa.inspect(db.store.engine).get_columns(db.store.table.name) if c["name"] == "version"]
    assert isinstance(column["type"], sa.BigInteger) and not column["nullable"]
    assert str(column["default"]).split("::")[0].strip("()'") == "0"  # PostgreSQL says '0'::bigint


# ---------------------------------------------------------------------------- conditional writes


def test_a_conflicting_put_writes_nothing_not_even_its_folders(db: Any) -> None:
    db["/x"] = "there"
    with pytest.raises(kydb.Conflict, match=r"/new/deep/k.*absent"):
        db.set("/new/deep/k", 1, if_version="12345")
    with pytest.raises(kydb.Conflict, match="/x"):
        db.set("/x", "again", if_absent=True)
    assert rows(db, "/new/") == {} and db.ls("/") == ["x"] and db.read("/x", reload=True) == "there"
    # several objects, one of them conditional: all or nothing, in one transaction
    store, base, now = db.store, db.base_path, time.time_ns()
    items = {f"{base}/a/one": b"1", f"{base}/b/two": b"2", f"{base}/x": b"3"}
    for expect in ({f"{base}/x": None}, {f"{base}/x": "1"}, {f"{base}/c/unwritten": db.stat("/x").version}):
        with pytest.raises(kydb.Conflict):
            store.kydb_put(items=items, mtime_ns=now, indexes={f"{base}/a/one": {"rank": 1}}, expect=expect)
        assert db.ls("/") == ["x"] and index_rows(db) == {} and db.read("/x", reload=True) == "there"
    # an expectation about an object the write leaves alone holds
    store.kydb_put(items=items, mtime_ns=now, indexes={}, expect={f"{base}/c/unwritten": None})
    assert db.ls("/") == ["a/", "b/", "x"] and not db.is_dir("/c")


def test_conditional_statements(db: Any) -> None:
    db["/warm"] = 0
    db["/s/k"] = 1
    with statements(db) as put_if:
        db.set("/s/k", 2, if_version=db.stat("/s/k").version)
    # the folders' upsert, then the object's compare-and-set, in path order
    assert put_if[-4:] == ["BEGIN", "INSERT", "UPDATE", "COMMIT"]
    with statements(db) as create:
        db.set("/s/new", 1, if_absent=True)
    assert create == ["BEGIN", "INSERT", "INSERT", "COMMIT"]
    db.set("/s/k", 3, index={"rank": 3})
    with statements(db) as delete_if:
        db.delete("/s/k", if_version=db.stat("/s/k").version)
    assert delete_if[-1:] == ["DELETE"]  # one statement; the index values go with the object
    assert index_rows(db) == {}
    with statements(db) as refused, pytest.raises(kydb.Conflict, match=r"/s/new.*nothing was deleted"):
        db.delete("/s/new", if_version="1")
    assert refused == ["DELETE", "SELECT"]  # the current version, for the message
    assert db.read("/s/new", reload=True) == 1


def test_versions_that_no_object_has_are_conflicts(db: Any) -> None:
    db["/k"] = 1
    version = db.stat("/k").version
    for other in (f"0{version}", f"+{version}", f" {version}", f"{version}-stale", "", "-1", "9" * 40):
        with pytest.raises(kydb.Conflict):
            db.set("/k", 2, if_version=other)
        with pytest.raises(kydb.Conflict):
            db.delete("/k", if_version=other)
    assert db.read("/k", reload=True) == 1 and db.stat("/k").version == version


def test_conditional_writes_on_a_store_never_written(database: Database, connect: Callable[[str], Any]) -> None:
    name = table_name()
    db = connect(database.url(table=name))
    with pytest.raises(kydb.Conflict, match="/k"):
        db.delete("/k", if_version="1")  # nothing to delete, and no table created for it
    with pytest.raises(kydb.NotFound):
        db.read_versioned("/k")
    assert not sa.inspect(database.engine()).has_table(name)
    db.set("/k", 1, if_absent=True)  # the first write creates the table
    assert db.read_versioned("/k") == (1, db.stat("/k").version)


# ---------------------------------------------------------------------------- upgrading a table of layout 3


def make_layout_3(database: Database, connect: Callable[[str], Any]) -> str:
    """The URL of a table as the kydb-sql before versions left it: objects, folders, index values, layout row 3."""
    url = database.url(table=table_name())
    db = connect(f"{url}&pool_timeout=26")  # an engine of its own, which remembers this table as checked...
    db.set_many({"/books/b1": {"title": "one"}, "/books/b2": [2]})
    db.set("/books/b1", {"title": "one"}, index={"rank": 7})
    db.mkdir("/empty")
    db.close()  # ...and goes with it: what follows is done behind the back of every engine
    table = db.store.table
    engine = database.engine()
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {table.name} DROP COLUMN version"))
        conn.execute(sa.update(table).where(table.c.path == "kydb:layout").values(data=b"3"))
    engine.dispose()
    return url


def columns_of(database: Database, url: str) -> list[str]:
    engine = database.engine()
    try:
        return [c["name"] for c in sa.inspect(engine).get_columns(sa.make_url(url).query["table"])]  # type: ignore[arg-type]
    finally:
        engine.dispose()


def test_a_layout_3_table_is_refused_naming_the_upgrade_command_until_upgraded(
    database: Database, connect: Callable[[str], Any]
) -> None:
    url = make_layout_3(database, connect)
    before = columns_of(database, url)
    assert "version" not in before
    db = kydb.connect(f"{url}&base=/books")
    for attempt in (lambda: db.ls("/"), lambda: db.read("/b1", reload=True), lambda: db.set("/b3", 3)):
        with pytest.raises(TableLayoutError) as info:
            attempt()
        message = str(info.value)
        assert "layout '3'" in message and f"python -m kydb_sql upgrade '{url}'" in message, message
    db.close()
    assert columns_of(database, url) == before  # refusing changed nothing

    result = subprocess.run(
        [sys.executable, "-m", "kydb_sql", "upgrade", url], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert f"upgraded from kydb-sql layout 3 to {LAYOUT_VERSION}" in result.stdout
    assert columns_of(database, url) == [*before, "version"]

    db = connect(url)
    assert db.read("/books/b1", reload=True) == {"title": "one"} and db.read("/books/b2", reload=True) == [2]
    assert db.ls("/") == ["books/", "empty/"] and db.stat("/books/b1").indexes == {"rank": 7}
    assert db.stat("/books/b1").version == "0"  # until its next write
    db.set("/books/b1", {"title": "new"}, if_version="0")
    assert db.stat("/books/b1").version not in ("0", None)
    with pytest.raises(kydb.Conflict):
        db.set("/books/b2", "lost update", if_version="1")
    assert "nothing to do" in upgrade_table(url)  # a second upgrade leaves it alone
    assert db.read("/books/b1", reload=True) == {"title": "new"}


def test_an_upgrade_cut_short_is_finished(database: Database, connect: Callable[[str], Any]) -> None:
    """MySQL commits DDL at once: the column may be there while the layout row still says 3."""
    url = make_layout_3(database, connect)
    engine = database.engine()
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"ALTER TABLE {sa.make_url(url).query['table']} ADD COLUMN version BIGINT NOT NULL DEFAULT 0")
        )
    engine.dispose()
    db = kydb.connect(url)
    with pytest.raises(TableLayoutError, match="layout '3'"):
        db.ls("/")
    db.close()
    assert "upgraded" in upgrade_table(url)
    assert connect(url).read("/books/b2", reload=True) == [2]


def test_upgrading_what_is_not_a_layout_3_table_is_refused(database: Database, connect: Callable[[str], Any]) -> None:
    missing = database.url(table=table_name())
    with pytest.raises(TableLayoutError, match="nothing to upgrade"):
        upgrade_table(missing)
    result = subprocess.run(
        [sys.executable, "-m", "kydb_sql", "upgrade", missing], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1 and "nothing to upgrade" in result.stderr and result.stdout == ""
    foreign = table_name()
    engine = database.engine()
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {foreign} (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(TableLayoutError, match="no kydb layout row"):
        upgrade_table(database.url(table=foreign))
    assert columns_of(database, database.url(table=foreign)) == ["id"]
