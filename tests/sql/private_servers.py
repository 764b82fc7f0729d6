"""Database servers of a test's own, on a free loopback port, that the test may crash and restart.

The shared servers on 5432/3306 serve other suites at the same time and are
never stopped; a restart test starts one of these instead.  Each lives in a
temporary folder (removed by :meth:`PrivateServer.close`), runs as the
``postgres``/``mysql`` OS user when the tests run as root (the servers refuse
to run as root), and trusts loopback connections without a password.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

import sqlalchemy as sa

__all__ = ["PrivateServer", "ServerUnavailable"]

_START_TIMEOUT = 60.0


class ServerUnavailable(Exception):
    """A private server cannot run here (no binaries, no OS user); the message says why."""


def _free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary(*candidates: str) -> str:
    """The first of ``candidates`` installed: a name on PATH, or a glob pattern (its highest match)."""
    for pattern in candidates:
        found = sorted(glob.glob(pattern)) if "*" in pattern else [shutil.which(pattern) or ""]
        for path in reversed(found):
            if path and os.access(path, os.X_OK):
                return path
    raise ServerUnavailable(f"none of {', '.join(candidates)} is installed")


class PrivateServer:
    """A server process of one kind (``postgresql`` or ``mariadb``) in its own folder."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._bin = self._mariadbd = ""
        self._os_user: str | None = None
        account = None
        if os.geteuid() == 0:  # the servers refuse to run as root
            self._os_user = "postgres" if kind == "postgresql" else "mysql"
            try:
                account = pwd.getpwnam(self._os_user)
            except KeyError:
                raise ServerUnavailable(f"the {self._os_user!r} OS user does not exist") from None
        self.folder = tempfile.mkdtemp(prefix=f"kydb-{kind}-")
        self.data = os.path.join(self.folder, "data")
        try:
            if account is not None:
                os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._create()
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        if self.kind == "postgresql":
            self._bin = os.path.dirname(_binary("/usr/lib/postgresql/*/bin/initdb", "initdb"))
            self._run(
                os.path.join(self._bin, "initdb"),
                "-D",
                self.data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            )
            self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        else:
            self._mariadbd = _binary("mariadbd", "/usr/sbin/mariadbd")
            install = _binary("mariadb-install-db", "/usr/bin/mariadb-install-db")
            user = [f"--user={self._os_user}"] if self._os_user else []
            self._run(
                install,
                "--no-defaults",
                f"--datadir={self.data}",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
                *user,
                as_user=False,
            )
            self.url = f"mysql+pymysql://root@127.0.0.1:{self.port}/test"
        self.start()
        if self.kind == "mariadb":
            self.execute("CREATE DATABASE test", database="mysql")

    def _run(self, *command: str, as_user: bool = True) -> None:
        result = subprocess.run(
            command,
            user=self._os_user if as_user else None,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            cwd=self.folder,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr or result.stdout}")

    def start(self) -> None:
        """Start the server on its port and wait until it answers."""
        if self.kind == "postgresql":
            options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
            self._run(
                os.path.join(self._bin, "pg_ctl"),
                "-D",
                self.data,
                "-o",
                options,
                "-l",
                os.path.join(self.folder, "server.log"),
                "-w",
                "-t",
                str(int(_START_TIMEOUT)),
                "start",
            )
        else:
            user = [f"--user={self._os_user}"] if self._os_user else []
            log = open(os.path.join(self.folder, "server.log"), "ab")  # noqa: SIM115 - the server's output, kept open
            self._process = subprocess.Popen(
                [
                    self._mariadbd,
                    "--no-defaults",
                    f"--datadir={self.data}",
                    f"--port={self.port}",
                    f"--socket={os.path.join(self.folder, 'mysqld.sock')}",
                    "--bind-address=127.0.0.1",
                    "--skip-log-bin",
                    "--innodb-buffer-pool-size=32M",
                    *user,
                ],
                stdout=log,
                stderr=log,
            )
            log.close()
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        database = "postgres" if self.kind == "postgresql" else "mysql"
        while True:
            try:
                self.execute("SELECT 1", database=database)
                return
            except sa.exc.DBAPIError:
                if time.monotonic() > deadline:
                    raise
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(f"the private {self.kind} server exited: see {self.folder}/server.log") from None
                time.sleep(0.1)

    def crash(self) -> None:
        """End the server at once, as a crash would (no clean shutdown: it recovers on the next start)."""
        if self.kind == "postgresql":
            self._run(os.path.join(self._bin, "pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop")
        elif self._process is not None:
            self._process.kill()
            self._process.wait(timeout=60)
            self._process = None

    def execute(self, statement: str, database: str | None = None) -> list[Any]:
        """Run one statement on the server (on ``database`` if given) and return its rows, if any."""
        url = sa.make_url(self.url)
        if database:
            url = url.set(database=database)
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                result = conn.execute(sa.text(statement))
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()

    def close(self) -> None:
        """Stop the server and remove its folder."""
        with contextlib.suppress(Exception):
            self.crash()
        shutil.rmtree(self.folder, ignore_errors=True)
