"""What the kydb-fsspec tests share: a static web server (``python -m http.server``) on a free loopback port."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Server:
    """``python -m http.server`` serving ``root`` at ``url`` (no trailing slash)."""

    root: Path
    url: str
    process: subprocess.Popen[str]


def serve(root: Path) -> Server:
    """Start ``python -m http.server`` on a free port of 127.0.0.1, serving ``root``; stop it with ``stop``."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    found = re.search(r"port (\d+)", line)
    if found is None:
        process.kill()
        raise RuntimeError(f"python -m http.server did not start: {line!r}")
    return Server(root, f"http://127.0.0.1:{found.group(1)}", process)


def stop(server: Server) -> None:
    server.process.terminate()
    server.process.wait(timeout=30)
    if server.process.stdout is not None:
        server.process.stdout.close()


@pytest.fixture(scope="session")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One static web server for the session, serving a fresh directory."""
    server = serve(tmp_path_factory.mktemp("published"))
    yield server
    stop(server)
