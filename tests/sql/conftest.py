"""The databases kydb-sql is tested on: a SQLite file, the real PostgreSQL and the real MariaDB.

Each test session works in its own table (dropped at the end) and each test
under its own base path, so suites can run side by side on one server.  An
unreachable server skips its tests, or fails them with KYDB_REQUIRE_SERVICES.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

import kydb
from kydb.testing import unique_name

POSTGRESQL_URL = os.environ.get("KYDB_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("KYDB_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
DIALECTS = ["sqlite", "postgresql", "mariadb"]


def table_name(prefix: str = "kydb_test") -> str:
    """A table name no other test run uses."""
    return unique_name(prefix).replace("-", "_")


@dataclass
class Database:
    """One database under test: its URL (no kydb options) and this session's table."""

    kind: str
    root: str
    table: str = field(default_factory=table_name)
    made: set[str] = field(default_factory=set)

    def url(self, base: str | None = None, table: str | None = None, root: str | None = None, **options: str) -> str:
        """A kydb URL on this database: this session's table unless ``table``, and ``base`` if given.

        ``root`` replaces the database URL (the same database reached another way).
        """
        table = table or self.table
        self.made.add(table)
        query = {"table": table, **options}
        if base:
            query["base"] = base
        return f"{root or self.root}?{urlencode(query, safe='/')}"

    def via(self, port: int) -> str:
        """The database URL (no options) with its server reached at 127.0.0.1:``port``."""
        return sa.make_url(self.root).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)

    def fresh_url(self) -> str:
        """A URL to an empty namespace: a new base path in this session's table."""
        return self.url(base=f"/{unique_name('t')}")

    def engine(self) -> sa.Engine:
        """A plain SQLAlchemy engine on the database, for checks behind kydb's back."""
        from kydb.url import parse_store_url
        from kydb_sql.engines import create_store_engine

        return create_store_engine(parse_store_url(self.root, path_is_base=False)).engine

    def drop_tables(self) -> None:
        engine = self.engine()
        with engine.begin() as conn:
            tables = set(sa.inspect(conn).get_table_names())  # a name refused as a table may be an index's
            # Longest names first: a kydb table named like another's index table (t_idx) goes, with its own
            # index table (t_idx_idx, whose foreign key refers to it), before t would drop it as its index table.
            for table in sorted(self.made, reverse=True):
                for name in (f"{table}_idx", table):  # a kydb table's user index values, then the table
                    if name in tables:
                        conn.execute(sa.text(f"DROP TABLE {name}"))
                        tables.discard(name)
        engine.dispose()


def _reachable(root: str, name: str, missing: Callable[[str, str], None]) -> None:
    from kydb.url import parse_store_url
    from kydb_sql.engines import create_store_engine

    engine = create_store_engine(parse_store_url(root, path_is_base=False)).engine
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        missing(name, f"{parse_store_url(root, path_is_base=False).masked}: {str(exc.orig).strip().splitlines()[0]}")
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    path: Path = tmp_path_factory.mktemp("sqlite") / "kydb.db"
    database = Database("sqlite", f"sqlite:///{path}")
    yield database
    database.drop_tables()


@pytest.fixture(scope="session")
def postgresql_database(skip_or_fail_missing_service: Callable[[str, str], None]) -> Iterator[Database]:
    _reachable(POSTGRESQL_URL, "PostgreSQL", skip_or_fail_missing_service)
    database = Database("postgresql", POSTGRESQL_URL)
    yield database
    database.drop_tables()


@pytest.fixture(scope="session")
def mariadb_database(skip_or_fail_missing_service: Callable[[str, str], None]) -> Iterator[Database]:
    _reachable(MYSQL_URL, "MariaDB", skip_or_fail_missing_service)
    database = Database("mariadb", MYSQL_URL)
    yield database
    database.drop_tables()


@pytest.fixture
def connect() -> Iterator[Callable[[str], Any]]:
    """``connect(url)``; every DB it opened is emptied and closed after the test."""
    from kydb_sql import TableLayoutError

    opened: list[Any] = []

    def _connect(url: str) -> Any:
        db = kydb.connect(url)
        opened.append(db)
        return db

    yield _connect
    for db in opened:
        with suppress(kydb.StoreUnavailable, TableLayoutError):
            db.rm_tree("/")
        db.close()


@pytest.fixture(params=DIALECTS)
def database(request: pytest.FixtureRequest) -> Database:
    """Each database in turn."""
    return request.getfixturevalue(f"{request.param}_database")  # type: ignore[no-any-return]


@pytest.fixture(params=["postgresql", "mariadb"])
def server_database(request: pytest.FixtureRequest) -> Database:
    """Each database behind a server in turn."""
    return request.getfixturevalue(f"{request.param}_database")  # type: ignore[no-any-return]
