"""Connecting: one DB per URL, thread-safe connects, repr, pickling, child processes and forks.

The behaviour checked here is section 1 of ``docs/contract.md``.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

import kydb

from .. import _child
from .fixtures import Connect, StoreFixtures

__all__ = ["ConnectingTests"]


class ConnectingTests(StoreFixtures):
    """Connecting, identity, pickling, processes (contract §1)."""

    def test_same_url_gives_same_db(self, db: kydb.DB) -> None:
        assert kydb.connect(db.store_url.raw) is db

    def test_connect_is_thread_safe(self, new_url: Callable[[], str], connect: Connect) -> None:
        url = new_url()
        with ThreadPoolExecutor(8) as pool:
            dbs = list(pool.map(lambda _: kydb.connect(url), range(32)))
        connect(url)
        assert all(d is dbs[0] for d in dbs)

    def test_repr_names_class_and_url(self, db: kydb.DB) -> None:
        assert repr(db) == f"<DB {db.url}>"
        if db.store_url.password:
            assert db.store_url.password not in repr(db)

    def test_pickle_reconnects_to_the_same_db(self, db: kydb.DB) -> None:
        assert pickle.loads(pickle.dumps(db)) is db

    def test_pickled_db_reconnects_in_a_child_process(self, db: kydb.DB) -> None:
        import multiprocessing

        db["/shared/value"] = {"from": "parent"}
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            child_repr, child_value = pool.apply(_child.read_in_child, (db, "/shared/value"))
        assert child_repr == repr(db)
        assert child_value == ({"from": "parent"} if db.capabilities.shared_between_processes else None)

    def test_processes_writing_one_folder_lose_nothing(self, db: kydb.DB) -> None:
        """4 processes x 200 writes into one folder (each reconnects from a pickled DB)."""
        import multiprocessing

        db["/procs/parent"] = "parent"
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            pool.starmap(_child.write_in_child, [(db, "/procs", worker, 200) for worker in range(4)])
        written = sorted(f"w{worker}-{i}" for worker in range(4) for i in range(200))
        if db.capabilities.shared_between_processes:
            assert db.ls("/procs") == sorted([*written, "parent"])
            assert db.get_many([f"/procs/{name}" for name in written], reload=True) == {
                f"/procs/w{worker}-{i}": (worker, i) for worker in range(4) for i in range(200)
            }
        else:  # each process has its own store: the children's writes stay there
            assert db.ls("/procs") == ["parent"]

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() does not exist on this platform")
    def test_forked_child_opens_its_own_store(self, db: kydb.DB) -> None:
        db["/forked"] = "before fork"
        parent_store = db.store
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 3
            try:
                fresh = db.store is not parent_store
                code = 0 if fresh and db.read("/forked", reload=True) == "before fork" else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child reused the parent's store or could not read"
        assert db.store is parent_store
        assert db.read("/forked", reload=True) == "before fork"
