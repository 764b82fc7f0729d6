"""kydb-sql against the whole conformance suite: a SQLite file, in-memory SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

import kydb
from kydb.testing import StoreConformance, unique_name

from .conftest import Database


class SQLConformance(StoreConformance):
    @pytest.fixture
    def new_url(self, database: Database) -> Callable[[], str]:
        return database.fresh_url

    def raw_get(self, db: kydb.DB, path: str) -> bytes | None:
        table = db.store.table
        with db.store.engine.connect() as conn:
            data = conn.execute(sa.select(table.c.data).where(table.c.path == path)).scalar()
        return None if data is None else bytes(data)

    def raw_put(self, db: kydb.DB, path: str, blob: bytes) -> None:
        db.store.kydb_put(items={path: blob}, mtime_ns=time.time_ns(), indexes={}, expect={})


class TestSQLite(SQLConformance):
    @pytest.fixture
    def database(self, sqlite_database: Database) -> Database:
        return sqlite_database


class TestSQLiteInMemory(SQLConformance):
    @pytest.fixture
    def new_url(self) -> Callable[[], str]:
        return lambda: f"sqlite://?base=/{unique_name('t')}"


class TestPostgreSQL(SQLConformance):
    @pytest.fixture
    def database(self, postgresql_database: Database) -> Database:
        return postgresql_database


class TestMariaDB(SQLConformance):
    @pytest.fixture
    def database(self, mariadb_database: Database) -> Database:
        return mariadb_database
