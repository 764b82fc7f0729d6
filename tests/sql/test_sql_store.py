"""What kydb-sql promises beyond the conformance suite, on a SQLite file, PostgreSQL and MariaDB."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import kydb
from kydb.testing import _child, unique_name
from kydb_sql import SQLStore, TableLayoutError, ValueTooLarge
from kydb_sql.layout import LAYOUT_VERSION, make_table, range_of

from .conftest import Database, table_name

# ---------------------------------------------------------------------------- helpers


@pytest.fixture
def db(database: Database, connect: Callable[[str], Any]) -> Any:
    return connect(database.fresh_url())


@contextmanager
def statements(db: Any) -> Iterator[list[str]]:
    """The SQL statements ``db`` sends inside the block (the pool's pings are not statements)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    sa.event.listen(db.store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(db.store.engine, "before_cursor_execute", record)


def rows(db: Any, folder: str = "/") -> dict[str, tuple[str, int, int]]:
    """``{path: (kind, mtime, ctime)}`` of every row at or below ``folder`` of ``db``, read with plain SQL."""
    table = db.store.table
    low, high = range_of(db.base_path + folder)
    with db.store.engine.connect() as conn:
        found = conn.execute(
            sa.select(table.c.path, table.c.kind, table.c.mtime, table.c.ctime).where(
                table.c.path >= low, table.c.path < high
            )
        ).all()
    return {path[len(db.base_path) :]: (kind, mtime, ctime) for path, kind, mtime, ctime in found}


def index_rows(db: Any) -> dict[str, dict[str, int]]:
    """``{path: {index_name: value}}`` of every user index row of ``db``, read with plain SQL."""
    ix = db.store.index_table
    low, high = range_of(db.base_path + "/")
    found: dict[str, dict[str, int]] = {}
    with db.store.engine.connect() as conn:
        for path, index_name, value in conn.execute(
            sa.select(ix.c.path, ix.c.index_name, ix.c.value).where(ix.c.path >= low, ix.c.path < high)
        ):
            found.setdefault(path[len(db.base_path) :], {})[index_name] = value
    return found


# ---------------------------------------------------------------------------- keys


def test_keys_differing_in_case_accents_or_trailing_spaces_are_distinct(db: Any) -> None:
    names = ["e", "é", "e\u0301", "E", "É", "a", "a ", "a  ", "ss", "ß", "i", "ı", "A", "Z", "z", "~", "😀", "ａ"]
    db.set_many({f"/k/{name}": name for name in names})
    db.refresh()
    assert db.get_many([f"/k/{name}" for name in names]) == {f"/k/{name}": name for name in names}
    assert db.ls("/k") == sorted(names)  # code-point order, whatever the database's collation
    assert list(db.list_dir("/k", page_size=2)) == sorted(names)
    db.delete("/k/a ")
    assert db.read("/k/a", reload=True) == "a" and db.read("/k/a  ", reload=True) == "a  "


def test_rm_tree_range_stops_at_the_folder_whatever_its_neighbours(db: Any) -> None:
    # '.' sorts just before '/', '0' just after it; '%' and '_' are LIKE wildcards.
    neighbours = ["a.b", "a-", "a0", "a0/x", "a_", "a%", "ab", "a b", "aa"]
    for name in neighbours:
        db[f"/w/{name}/leaf"] = name
        db[f"/w/{name}"] = name
    db["/w/a/deep/er/leaf"] = "victim"
    db["/w/a"] = "the object a"
    db.rm_tree("/w/a")
    assert not db.is_dir("/w/a") and not db.exists("/w/a/deep/er/leaf")
    for name in neighbours:
        assert db.read(f"/w/{name}/leaf", reload=True) == name
    assert db.read("/w/a", reload=True) == "the object a"  # the object named like the folder stays
    for victim in ("a_", "a%"):
        db.rm_tree(f"/w/{victim}")
        assert not db.exists(f"/w/{victim}/leaf") and db.read(f"/w/{victim}", reload=True) == victim
        assert db.is_dir("/w/ab") and db.read("/w/ab/leaf", reload=True) == "ab"


# ---------------------------------------------------------------------------- statements


def test_each_operation_is_a_fixed_number_of_statements(db: Any) -> None:
    db["/warm"] = 0  # the table's check on first use is not counted below
    with statements(db) as put:
        db["/s/deep/er/obj"] = 1
    assert put == ["BEGIN", "INSERT", "COMMIT"], "a put is one upsert of the object and its ancestor folders"
    with statements(db) as many:
        db.set_many({f"/s/m{i}/o": i for i in range(1200)})
    assert many == ["BEGIN", "INSERT", "COMMIT"]  # 2,400 rows with their folders: one executemany
    assert len(db.ls("/s")) == 1201
    db.set_many({f"/s/b/o{i}": i for i in range(1200)})
    with statements(db) as listing:
        assert len(list(db.list_dir("/s/b", page_size=500))) == 1200
    assert listing == ["SELECT"] * 3, "one query per page"
    db.refresh()
    with statements(db) as gets:
        assert len(db.get_many(f"/s/b/o{i}" for i in range(1200))) == 1200
    assert gets == ["SELECT"] * 3
    with statements(db) as checks:
        assert db.exists("/s/b/o1") and db.is_dir("/s/b") and not db.exists("/s/b")
    assert checks == ["SELECT"] * 3
    db.set("/s/b/o0", 0, index={"rank": 1})
    with statements(db) as delete:
        db.delete("/s/b/o0")
    # the existence check, then one DELETE: the database deletes the index values with the object
    assert delete == ["SELECT", "DELETE"]
    with statements(db) as few:
        db.delete_many([f"/s/b/o{i}" for i in range(1, 500)])
    assert few == ["DELETE"], "up to 500 keys: one statement, no transaction"
    with statements(db) as many:
        db.delete_many([f"/s/b/o{i}" for i in range(500, 1200)])
    assert many == ["BEGIN", "DELETE", "DELETE", "COMMIT"]
    assert db.ls("/s/b") == [] and index_rows(db) == {}


def test_operations_send_only_their_statements(mariadb_database: Database, connect: Callable[[str], Any]) -> None:
    """No ping before an operation, no ROLLBACK after it: counted by the server, on kydb's own connection."""
    db = connect(mariadb_database.fresh_url())
    db["/warm"] = 0
    counters = sa.text("SHOW SESSION STATUS WHERE Variable_name IN ('Questions', 'Com_rollback', 'Com_admin_commands')")

    def count() -> dict[str, int]:
        with db.store.engine.connect() as conn:  # the pool's one connection, which kydb uses too
            return {name: int(value) for name, value in conn.execute(counters)}

    before = count()
    for i in range(10):
        db.read("/warm", reload=True)  # one SELECT
        db[f"/k{i}"] = i  # BEGIN, INSERT, COMMIT
    after = count()
    assert after["Questions"] - before["Questions"] == 10 * 4 + 1  # + the SHOW that reads the counters
    assert after["Com_rollback"] == before["Com_rollback"]
    assert after["Com_admin_commands"] == before["Com_admin_commands"]  # COM_PING


def test_timeouts_come_from_the_url_or_their_defaults(server_database: Database, connect: Callable[[str], Any]) -> None:
    default = connect(server_database.fresh_url())
    custom = connect(server_database.url(base=f"/{unique_name('t')}", connect_timeout="3", read_timeout="7.5"))
    for db, connect_timeout, read_timeout in ((default, 10, 300), (custom, 3, 7.5)):
        db["/x"] = 1
        with db.store.engine.connect() as conn:
            driver = conn.connection.dbapi_connection
            if server_database.kind == "postgresql":
                assert driver.info.get_parameters()["connect_timeout"] == str(connect_timeout)
                assert db.store._engine.read_timeout == read_timeout  # kept by kydb's watchdog
            else:
                assert driver.connect_timeout == connect_timeout
                assert driver._read_timeout == driver._write_timeout == read_timeout


def test_rm_tree_costs_the_same_statements_for_10_or_3000_objects(db: Any, database: Database) -> None:
    counts = []
    for size in (10, 3000):
        db.set_many({f"/t{size}/d{i % 10}/o{i}": i for i in range(size)})
        with statements(db) as issued:
            db.rm_tree(f"/t{size}")
        counts.append(issued)
        assert not db.is_dir(f"/t{size}") and db.ls("/") == []
    # is_dir, then the range: objects (counted), then folders; index values go with their objects.  The
    # servers lock the folder (PostgreSQL) or the range (MariaDB) first, in path order; SQLite has one writer.
    lock = [] if database.kind == "sqlite" else ["SELECT"]
    assert counts[0] == counts[1] == ["SELECT", "BEGIN", *lock, "DELETE", "DELETE", "COMMIT"]


def test_index_values_are_deleted_with_their_object_and_kept_by_overwrites(db: Any) -> None:
    """The database deletes an object's index rows with it (ON DELETE CASCADE); an overwrite updates in place."""
    both = {"rank": 1, "Rank": 2}
    for key in ("/i/one", "/i/many/a", "/i/many/b", "/i/tree/d/a", "/i/kept"):
        db.set(key, 1, index=both)
    assert len(index_rows(db)) == 5
    db.delete("/i/one")
    db.delete_many(["/i/many/a", "/i/many/b"])
    db.rm_tree("/i/tree")
    assert index_rows(db) == {"/i/kept": both}
    db["/i/kept"] = 2  # no index mentioned: an upsert that must not delete (and so cascade) the row
    db.set_many({"/i/kept": 3, "/i/other": 4})
    db.set("/i/kept", 5, index={"other": 7})
    assert index_rows(db) == {"/i/kept": {**both, "other": 7}}
    table = db.store.table
    with db.store.engine.connect() as conn:  # behind kydb's back: the cascade is the schema's
        conn.execute(sa.delete(table).where(table.c.path == db.base_path + "/i/kept"))
    assert index_rows(db) == {}


def test_recent_and_index_queries_are_one_statement_per_page(db: Any) -> None:
    db.set_many({f"/r/o{i:03d}": i for i in range(300)})
    db.set("/r/o007", 7, index={"rank": 1})
    with statements(db) as issued:
        assert db.recent("/r", limit=10)[0] == "o007"
        assert list(db.folder("/r").by("rank")) == ["o007"]
    assert issued == ["SELECT", "SELECT"]
    with statements(db) as issued:
        assert len(list(db.folder("/r"))) == 300  # pages of 200: two keyset queries
    assert issued == ["SELECT", "SELECT"]


def test_mtime_and_ctime_are_nanoseconds_and_ctime_survives_overwrite(db: Any) -> None:
    db["/t/obj"] = 1
    kind, mtime, ctime = rows(db)["/t/obj"]
    assert kind == "o" and mtime == ctime and abs(mtime - time.time_ns()) < 60 * 10**9
    folder_before = rows(db)["/t/"]
    db["/t/obj"] = 2
    _, mtime2, ctime2 = rows(db)["/t/obj"]
    assert ctime2 == ctime and mtime2 > mtime
    assert rows(db)["/t/"] == folder_before  # writing into a folder leaves its row alone
    assert folder_before[0] == "f"


# ---------------------------------------------------------------------------- the table


def column_info(conn: sa.Connection, table: str, field: str) -> dict[str, str]:
    """``{column: its field}`` for the columns of ``table`` where information_schema.columns sets ``field``."""
    schema = "current_schema()" if conn.dialect.name == "postgresql" else "DATABASE()"
    query = sa.text(
        f"SELECT column_name, {field} FROM information_schema.columns WHERE table_schema = {schema} AND table_name = :t"
    )
    return {column: value for column, value in conn.execute(query, {"t": table}) if value}


def test_table_layout_per_database(db: Any, database: Database) -> None:
    db["/x"] = 1
    table = db.store.table.name
    inspector = sa.inspect(db.store.engine)
    columns = {c["name"]: c for c in inspector.get_columns(table)}
    assert list(columns) == ["path", "parent", "name", "kind", "mtime", "ctime", "version", "data"]
    assert inspector.get_pk_constraint(table)["constrained_columns"] == ["path"]
    assert sorted(ix["column_names"] for ix in inspector.get_indexes(table)) == [
        ["parent", "kind", "ctime", "name"],
        ["parent", "kind", "mtime", "name"],
        ["parent", "name"],
    ]
    assert sorted(ix["column_names"] for ix in inspector.get_indexes(f"{table}_idx")) == [
        ["parent", "index_name", "value", "name"]
    ]
    assert inspector.get_pk_constraint(f"{table}_idx")["constrained_columns"] == ["path", "index_name"]
    (foreign_key,) = inspector.get_foreign_keys(f"{table}_idx")
    assert foreign_key["constrained_columns"] == foreign_key["referred_columns"] == ["path"]
    assert foreign_key["referred_table"] == table and foreign_key["options"]["ondelete"] == "CASCADE"
    with db.store.engine.connect() as conn:
        if database.kind == "postgresql":
            assert column_info(conn, table, "collation_name") == {"path": "C", "parent": "C", "name": "C"}
            assert column_info(conn, f"{table}_idx", "collation_name") == {
                "path": "C",
                "parent": "C",
                "name": "C",
                "index_name": "C",
            }
        elif database.kind == "mariadb":
            types = column_info(conn, table, "column_type")
            assert types["path"] == types["parent"] == types["name"] == "varbinary(1025)"
            assert types["data"] == "longblob"
            types = column_info(conn, f"{table}_idx", "column_type")
            assert types["path"] == types["parent"] == types["name"] == "varbinary(1025)"
            assert types["index_name"] == "varbinary(64)"  # bytewise: 'rank' and 'Rank' are two names
            engines = conn.execute(
                sa.text(
                    "SELECT table_name, engine FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_name IN (:t, :i)"
                ),
                {"t": table, "i": f"{table}_idx"},
            ).all()
            assert sorted(engines) == [(table, "InnoDB"), (f"{table}_idx", "InnoDB")]
        else:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_the_longest_table_name_leaves_room_for_the_names_the_database_derives(
    database: Database, connect: Callable[[str], Any]
) -> None:
    name = table_name().ljust(48, "x")  # its indexes', its index table's and that table's foreign key's
    db = connect(database.url(table=name))
    db.set("/k/a", 1, index={"rank": 1})
    assert list(db.folder("/k").by("rank")) == ["a"]
    db.delete("/k/a")
    assert index_rows(db) == {}


def test_a_table_of_another_layout_version_is_refused(database: Database, connect: Callable[[str], Any]) -> None:
    url = database.url(table=table_name())
    connect(url)["/x"] = 1
    table = make_table(sa.make_url(url).query["table"], database.kind)  # type: ignore[arg-type]
    engine = database.engine()
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.path == "kydb:layout").values(data=b"7"))
    engine.dispose()
    # Stores on the first one's engine found the table checked: another engine (other settings) checks it.
    other = SQLStore(kydb.url.parse_store_url(f"{url}&pool_timeout=27", path_is_base=False))
    with pytest.raises(TableLayoutError, match=rf"layout '7'.* reads layout {LAYOUT_VERSION}"):
        other.kydb_get(["/x"])
    other.kydb_close()


def test_a_foreign_table_is_refused_and_left_alone(database: Database, connect: Callable[[str], Any]) -> None:
    name = table_name()
    url = database.url(table=name)
    engine = database.engine()
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, note VARCHAR(20))"))
        conn.execute(sa.text(f"INSERT INTO {name} VALUES (1, 'precious')"))
    with pytest.raises(TableLayoutError, match=name):
        connect(url)["/x"] = 1
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT id, note FROM {name}")).all() == [(1, "precious")]
    engine.dispose()


def test_rm_tree_of_the_root_keeps_the_table_usable(database: Database, connect: Callable[[str], Any]) -> None:
    url = database.url(table=table_name())
    db = connect(url)
    db.set_many({"/a/b": 1, "/c": 2})
    db.rm_tree("/")
    assert db.ls("/") == []
    again = SQLStore(kydb.url.parse_store_url(f"{url}&pool_timeout=27", path_is_base=False))  # another engine
    assert again.kydb_list("/", True, 10, None) == kydb.ListPage([], None)
    again.kydb_close()


def test_an_interrupted_table_creation_is_finished(database: Database, connect: Callable[[str], Any]) -> None:
    url = database.url(table=table_name())
    table = make_table(sa.make_url(url).query["table"], database.kind)  # type: ignore[arg-type]
    engine = database.engine()
    with engine.begin() as conn:
        table.create(conn)  # created, but the process died before the layout row
    engine.dispose()
    db = connect(url)
    db["/x"] = 1
    assert db.read("/x", reload=True) == 1


# ---------------------------------------------------------------------------- failures


@pytest.fixture
def reject_path(database: Database) -> Iterator[Callable[[Any, str], None]]:
    """``reject_path(db, path)``: the database itself fails any insert of ``path`` into db's table."""
    functions: list[str] = []  # PostgreSQL's trigger functions outlive their table

    def install(db: Any, path: str) -> None:
        db["/warm"] = 0
        table = db.store.table.name
        engine = database.engine()
        with engine.begin() as conn:
            if database.kind == "postgresql":
                functions.append(f"{table}_reject")
                conn.execute(
                    sa.text(
                        f"CREATE FUNCTION {table}_reject() RETURNS trigger AS $$ BEGIN "
                        f"RAISE EXCEPTION 'rejected by test trigger'; END $$ LANGUAGE plpgsql"
                    )
                )
                conn.execute(
                    sa.text(
                        f"CREATE TRIGGER {table}_reject BEFORE INSERT ON {table} FOR EACH ROW "
                        f"WHEN (NEW.path = '{path}') EXECUTE FUNCTION {table}_reject()"
                    )
                )
            elif database.kind == "mariadb":
                conn.execute(
                    sa.text(
                        f"CREATE TRIGGER {table}_reject BEFORE INSERT ON {table} FOR EACH ROW "
                        f"IF NEW.path = '{path}' THEN "
                        f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'rejected by test trigger'; END IF"
                    )
                )
            else:
                conn.execute(
                    sa.text(
                        f"CREATE TRIGGER {table}_reject BEFORE INSERT ON {table} WHEN NEW.path = '{path}' "
                        f"BEGIN SELECT RAISE(ABORT, 'rejected by test trigger'); END"
                    )
                )
        engine.dispose()

    yield install
    if functions:
        engine = database.engine()
        with engine.begin() as conn:
            for function in functions:
                conn.execute(sa.text(f"DROP FUNCTION IF EXISTS {function}() CASCADE"))
        engine.dispose()


def _rejected(info: pytest.ExceptionInfo[BaseException]) -> bool:
    """Whether the database rejected the write (not an outage: never StoreUnavailable)."""
    return "rejected by test trigger" in str(info.value) and not isinstance(info.value, kydb.StoreUnavailable)


def test_a_failing_put_leaves_no_folder_rows(
    database: Database, connect: Callable[[str], Any], reject_path: Callable[[Any, str], None]
) -> None:
    db = connect(database.url(table=table_name(), base=f"/{unique_name('t')}"))
    reject_path(db, f"{db.base_path}/new/deep/bad")
    with pytest.raises(Exception) as info:
        db["/new/deep/bad"] = 1
    assert _rejected(info)
    assert rows(db, "/new/") == {} and not db.is_dir("/new")
    # set_many across several statements: the first statements' rows are rolled back too
    with pytest.raises(Exception) as info:
        db.set_many({**{f"/new/batch/o{i:04d}": i for i in range(1200)}, "/new/deep/bad": 1})
    assert _rejected(info)
    assert rows(db, "/new/") == {} and db.ls("/") == ["warm"]


def test_a_value_over_max_allowed_packet_is_refused_before_writing(
    mariadb_database: Database, connect: Callable[[str], Any]
) -> None:
    db = connect(mariadb_database.fresh_url())
    db["/warm"] = 0
    limit = db.store._max_packet
    with pytest.raises(ValueTooLarge) as info:
        db["/big/value"] = os.urandom(limit + 1)
    message = str(info.value)
    assert "max_allowed_packet" in message and f"{limit:,}" in message and "/big/value" in message
    assert isinstance(info.value, ValueError) and not isinstance(info.value, KeyError)
    assert not db.is_dir("/big") and rows(db, "/big/") == {}
    # values that fit one at a time are spread over several statements
    values = {f"/big/v{i}": os.urandom(limit // 3) for i in range(4)}
    db.set_many(values)
    db.refresh()
    assert db.get_many(values) == values


@pytest.mark.parametrize("scheme", ["postgresql", "mysql", "mariadb"])
def test_an_unreachable_server_never_shows_the_password(scheme: str) -> None:
    dbname = "kydb_nowhere"
    with socket_port() as port:
        url = f"{scheme}://kydb_user:Secr3t-pw@127.0.0.1:{port}/{dbname}?table=t&base=/b"
    db = kydb.connect(url)
    assert "Secr3t-pw" not in repr(db) and "***" in repr(db)
    with pytest.raises(kydb.StoreUnavailable) as info:
        db.get("/k")
    texts = [str(info.value), str(info.value.__cause__), repr(info.value)]
    assert all("Secr3t-pw" not in text for text in texts)
    assert f"127.0.0.1:{port}" in str(info.value) and repr(dbname) in str(info.value)
    db.close()


@contextmanager
def socket_port() -> Iterator[int]:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port


def test_an_unopenable_sqlite_file_is_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    db = kydb.connect(f"sqlite:///{tmp_path}/dir.db")
    with pytest.raises(kydb.StoreUnavailable, match=f"SQLite file {tmp_path}/dir.db"):
        db.get("/k")
    db.close()


# ---------------------------------------------------------------------------- large values

LARGE = os.urandom(40 * 2**20)  # over the 16 MiB from which values move without extra copies


@pytest.fixture(params=["sqlite", "postgresql"])
def large_db(request: pytest.FixtureRequest, connect: Callable[[str], Any]) -> Any:
    """A DB on a database that takes 40 MB values (MariaDB's max_allowed_packet refuses them: see above)."""
    database: Database = request.getfixturevalue(f"{request.param}_database")
    return connect(database.fresh_url())


def test_large_values_are_written_and_read_whole(large_db: Any) -> None:
    db = large_db
    db["/warm"] = 0
    with statements(db) as put:
        db["/big/v"] = LARGE
    # SQLite: the row with a zeroblob of the value's size, then the value written into it (blob I/O)
    lay_out = ["UPDATE", "SELECT"] if db.store.engine.dialect.name == "sqlite" else []
    assert put == ["BEGIN", "INSERT", *lay_out, "COMMIT"]
    with statements(db) as get:
        assert db.read("/big/v", reload=True) == LARGE
    if db.store.engine.dialect.name == "postgresql":
        # its size first, then three pieces of 16 MiB in one snapshot
        assert get == ["SELECT", "BEGIN", "SELECT", "SELECT", "SELECT", "SELECT", "COMMIT"]
    else:
        assert get == ["SELECT"]
    value, version = db.read_versioned("/big/v")
    assert value == LARGE and version == db.stat("/big/v").version and db.stat("/big/v").size > len(LARGE)
    db.set("/big/v", b"small", if_version=version)
    assert db.read("/big/v", reload=True) == b"small"
    with pytest.raises(kydb.Conflict):
        db.set("/big/v", LARGE, if_version=version)
    db.set("/big/v", LARGE, if_version=db.stat("/big/v").version)
    db.set_many({"/big/w": LARGE[::-1], "/big/x": 1})
    db.refresh()
    assert db.get_many(["/big/v", "/big/w", "/big/x"]) == {"/big/v": LARGE, "/big/w": LARGE[::-1], "/big/x": 1}


def test_postgresql_closes_a_connection_that_carried_a_large_value(postgresql_database: Database, connect: Any) -> None:
    """libpq keeps its buffers as large as the largest message for the connection's life: it goes instead."""
    db = connect(postgresql_database.fresh_url())
    db["/small"] = 1
    opened: list[Any] = []
    sa.event.listen(db.store.engine, "connect", lambda dbapi, record: opened.append(dbapi))
    db["/small"] = 2
    assert db.read("/small", reload=True) == 2 and opened == []  # the pool's connection, again and again
    db["/big"] = LARGE
    db["/small"] = 3
    assert len(opened) == 1  # the put's connection was closed: the next operation opened another
    assert db.read("/big", reload=True) == LARGE
    assert db.read("/small", reload=True) == 3 and len(opened) == 2


def test_postgresql_reads_blobs_in_binary(postgresql_database: Database, connect: Any) -> None:
    """bytea arrives as its bytes, not as hex text twice its size that the driver decodes."""
    db = connect(postgresql_database.fresh_url())
    db.set_many({"/a": b"x" * 1000, "/b": 2})
    formats: list[int] = []

    def data_format(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        # The blob's column (1 in a select of blobs, 0 in a select of a large one's piece): format 1 is binary.
        if statement.startswith("SELECT") and ("octet_length" in statement or "substr" in statement):
            formats.append(cursor.pgresult.fformat(0 if "substr" in statement else 1))

    sa.event.listen(db.store.engine, "after_cursor_execute", data_format)
    db.read("/a", reload=True)
    db.get_many(["/a", "/b"], reload=True)
    db.read_versioned("/b")
    db["/large"] = LARGE
    db.read("/large", reload=True)  # in pieces
    sa.event.remove(db.store.engine, "after_cursor_execute", data_format)
    assert len(formats) == 8 and set(formats) == {1}, formats  # 3 selects of blobs, then 1 + 4 for the large one


def test_a_large_value_is_read_from_one_snapshot(postgresql_database: Database, connect: Any) -> None:
    """An overwrite committed between the pieces of a read is not mixed into it."""
    db = connect(postgresql_database.fresh_url())
    db["/big"] = LARGE
    old_version = db.stat("/big").version
    other = connect(postgresql_database.url(base=db.base_path, application_name="kydb-other-writer"))
    pieces: list[str] = []

    def overwrite_between_pieces(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if "substr" in statement:
            pieces.append(statement)
            if len(pieces) == 2:
                other.set("/big", LARGE[::-1])  # another connection, committed at once

    sa.event.listen(db.store.engine, "after_cursor_execute", overwrite_between_pieces)
    try:
        assert db.read_versioned("/big") == (LARGE, old_version)
    finally:
        sa.event.remove(db.store.engine, "after_cursor_execute", overwrite_between_pieces)
    assert len(pieces) == 3
    assert db.read("/big", reload=True) == LARGE[::-1] and db.stat("/big").version != old_version


# ---------------------------------------------------------------------------- processes and threads


def test_in_memory_sqlite_is_one_database_per_process(connect: Callable[[str], Any]) -> None:
    base = f"/{unique_name('t')}"
    db = connect(f"sqlite://?base={base}")
    db["/x"] = 1
    assert connect("sqlite://").read(f"{base}/x", reload=True) == 1  # every base path and table: one database
    assert connect(f"sqlite:///:memory:?base={base}").ls("/") == []  # another URL, another database
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_child.read_in_child, (db, "/x"))[1] is None  # other processes have their own


# ---------------------------------------------------------------------------- URLs and drivers


def test_plain_schemes_use_the_drivers_kydb_sql_installs() -> None:
    for url, dialect, driver in (
        ("postgresql://u@127.0.0.1/db", "postgresql", "psycopg"),
        ("mysql://u@127.0.0.1/db", "mysql", "pymysql"),
        ("mariadb://u@127.0.0.1/db", "mariadb", "pymysql"),
        ("postgresql+psycopg://u@127.0.0.1/db", "postgresql", "psycopg"),
        ("sqlite:///relative.db", "sqlite", "pysqlite"),
    ):
        db: Any = kydb.connect(f"{url}?table={table_name()}")
        assert (db.store.engine.dialect.name, db.store.engine.dialect.driver) == (dialect, driver), url
        db.close()


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("postgresql://u:Secr3t@127.0.0.1/db", "psycopg", "postgresql"),
        ("postgresql+psycopg://u:Secr3t@127.0.0.1/db", "psycopg", "postgresql"),
        ("mysql://u:Secr3t@127.0.0.1/db", "pymysql", "mysql"),
        ("mariadb+pymysql://u:Secr3t@127.0.0.1/db", "pymysql", "mysql"),
    ],
)
def test_a_missing_driver_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(ImportError) as info:
        kydb.connect(f"{url}?table={table_name()}")
    assert f"pip install 'kydb-sql[{extra}]'" in str(info.value)
    assert "Secr3t" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:Secr3t@127.0.0.1/db?table=bad-name", "plain SQL name"),
        ("postgresql://u:Secr3t@127.0.0.1/db?table=1abc", "plain SQL name"),
        ("postgresql+nodriver://u:Secr3t@127.0.0.1/db", "nodriver"),
        ("sqlite:///x.db?base=/a/../b", "bad base path"),
        ("postgresql://u:Secr3t@127.0.0.1/db?read_timeout=soon", r"\?read_timeout= takes a positive number"),
        ("mysql://u:Secr3t@127.0.0.1/db?connect_timeout=0", r"\?connect_timeout= takes a positive number"),
        ("mariadb://u:Secr3t@127.0.0.1/db?read_timeout=inf", r"\?read_timeout= takes a positive number"),
        ("sqlite:///x.db?read_timeout=5", r"SQLite takes no read_timeout; \?timeout=SECONDS"),
    ],
)
def test_bad_urls_are_value_errors_with_the_password_masked(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        kydb.connect(url)
    assert "Secr3t" not in str(info.value)


def test_kydb_options_are_stripped_and_the_rest_reach_the_driver(
    postgresql_database: Database, connect: Callable[[str], Any]
) -> None:
    db = connect(postgresql_database.url(base="/b", application_name="kydb-options-test"))
    assert set(db.store.engine.url.query) == {"application_name"}
    with db.store.engine.connect() as conn:
        assert conn.execute(sa.text("SHOW application_name")).scalar() == "kydb-options-test"
    assert db.base_path == "/b"


def test_sqlite_paths_are_absolute_and_their_folder_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connect: Callable[[str], Any]
) -> None:
    monkeypatch.chdir(tmp_path)
    db = connect("sqlite:///nested/deeper/kydb.db")
    db["/x"] = 1
    monkeypatch.chdir("/")
    assert db.read("/x", reload=True) == 1
    assert (tmp_path / "nested" / "deeper" / "kydb.db").is_file()


def test_sqlalchemy_is_imported_only_when_a_sql_url_is_used() -> None:
    program = (
        "import sys, kydb\n"
        "kydb.backends(); kydb.default_url()\n"
        "print('sqlalchemy' in sys.modules)\n"
        "kydb.connect('sqlite://')\n"
        "print('sqlalchemy' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]


# ---------------------------------------------------------------------------- the walkthrough


def test_walkthrough(database: Database, check_walkthrough: Callable[[str], None]) -> None:
    check_walkthrough(database.fresh_url())


def test_walkthrough_default_is_a_sqlite_file_that_persists(tmp_path: Path) -> None:
    walkthrough = Path(__file__).resolve().parents[2] / "examples" / "walkthrough.py"
    for _ in range(2):  # a second run finds the file of the first
        result = subprocess.run(
            [sys.executable, str(walkthrough)], capture_output=True, text=True, cwd=tmp_path, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "sqlite:///kydb-demo.db" in result.stdout and result.stdout.rstrip().endswith("removed again.")
    db = kydb.connect(f"sqlite:///{tmp_path}/kydb-demo.db")
    assert db.ls("/") == []  # the walkthrough removed everything it created
    db.close()
