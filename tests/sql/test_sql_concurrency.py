"""Concurrent writers on a SQLite file, PostgreSQL and MariaDB: no deadlock escapes, nothing is left inconsistent.

Writers that touch the same rows take their row locks in one order (path
order); a deadlock or serialization failure the database reports anyway is
retried.  If one still outlasts the retries, it is a
:class:`kydb_sql.WriteConflict` saying so — never an unreachable server.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import pytest
import sqlalchemy as sa

import kydb
from kydb.testing import unique_name
from kydb_sql import WriteConflict

from .conftest import Database

THREADS = 8
OPERATIONS = 250  # per thread and round
ROUNDS = 4
KEYS = [f"/f/k{i}" for i in range(4)]


def _mixed_writes(db: Any, seed: int, start: threading.Barrier, failures: list[str]) -> None:
    """``OPERATIONS`` random ``set_many``/``set``/``delete_many``/``rm_tree`` calls on ``KEYS``."""
    rng = random.Random(seed)
    start.wait()
    for step in range(OPERATIONS):
        roll = rng.random()
        chosen = rng.sample(KEYS, rng.randint(1, len(KEYS)))
        try:
            if roll < 0.35:
                db.set_many({key: (key, seed, step) for key in chosen})
            elif roll < 0.5:
                db.set(chosen[0], (chosen[0], seed, step), index={"rank": step})
            elif roll < 0.8:
                db.delete_many(chosen)
            else:
                # another writer may have removed the folder first: NotFound is what rm_tree then says
                with suppress(kydb.NotFound):
                    db.rm_tree("/f")
        except Exception as exc:  # every error counts: the test says which
            failures.append(f"{type(exc).__name__}: {exc}")


def _check_consistent(db: Any) -> None:
    """What a user would check after the writers stopped: existing keys read back and are listed, nothing else."""
    db.refresh()
    present = [key for key in KEYS if db.exists(key)]
    for key in present:
        value = db.read(key, reload=True)
        assert value[0] == key, f"{key} reads back {value!r}"
    names = sorted(key.rsplit("/", 1)[1] for key in present)
    if present:
        assert db.is_dir("/f")
    if db.is_dir("/f"):
        assert db.ls("/f") == names
        assert set(db.folder("/f").by("rank")) <= set(names), "index values outlived their object"
    assert set(db.ls("/")) <= {"f/"}
    assert db.get_many(KEYS).keys() == set(present)


def test_concurrent_set_delete_many_and_rm_tree_on_one_folder(
    database: Database, connect: Callable[[str], Any]
) -> None:
    for round_ in range(ROUNDS):
        db = connect(database.url(base=f"/{unique_name('race')}"))
        db["/f/k0"] = ("/f/k0", -1, -1)  # the table exists before the writers start
        start = threading.Barrier(THREADS)
        failures: list[str] = []
        threads = [
            threading.Thread(target=_mixed_writes, args=(db, round_ * THREADS + i, start, failures))
            for i in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == [], f"round {round_}: {len(failures)} failed operations, first: {failures[0]}"
        _check_consistent(db)


def test_a_deadlock_that_outlasts_the_retries_says_so(
    server_database: Database, connect: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every try deadlocks: the error names the conflict and the tries, not an unreachable server."""
    db = connect(server_database.fresh_url())
    db["/a/one"] = 1
    tries: list[int] = []

    def deadlock(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.startswith("INSERT"):
            tries.append(1)
            # the database's own deadlock error, raised where the upsert would run
            conn.exec_driver_sql(DEADLOCK[server_database.kind])

    sa.event.listen(db.store.engine, "before_cursor_execute", deadlock)
    try:
        with pytest.raises(WriteConflict) as info:
            db["/a/one"] = 2
    finally:
        sa.event.remove(db.store.engine, "before_cursor_execute", deadlock)
    message = str(info.value)
    assert isinstance(info.value, kydb.StoreUnavailable)  # code that retries unavailable stores retries this too
    assert "deadlock" in message.lower() and "concurrent writers" in message
    assert f"{len(tries)} tries" in message and len(tries) > 4
    assert "running and reachable" not in message
    assert db.read("/a/one", reload=True) == 1  # rolled back every time


#: A statement that fails with the database's deadlock error (PostgreSQL 40P01, MariaDB 1213).
DEADLOCK = {
    "postgresql": "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$",
    "mariadb": "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'Deadlock found when trying to lock'",
}
