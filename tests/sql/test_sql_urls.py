"""Malformed SQL URLs, base paths written after the file or database, and missing drivers: what a user is told.

Every malformed URL is one ``ValueError`` naming the URL (password masked)
and the form expected; a missing driver is one ``ImportError`` naming what to
install.  Errors a user meets on the command line are one line, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import kydb

from .conftest import Database


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``kydb ARGS`` in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "kydb", *args], capture_output=True, text=True, check=False, env=env)


# ---------------------------------------------------------------------------- malformed URLs


def test_a_sqlite_url_with_a_host_says_how_to_name_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as info:
        kydb.connect("sqlite://relative.db")
    message = str(info.value)
    assert "'sqlite://relative.db'" in message
    assert "sqlite:///relative.db" in message and "sqlite:////abs/path.db" in message
    result = cli("-u", "sqlite://relative.db", "ls")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("kydb: error: invalid kydb URL 'sqlite://relative.db'")
    assert "sqlite:///relative.db" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://host/x.db", r"no host.*sqlite:///host/x\.db"),
        ("sqlite:///x.db?mode=ro", r"SQLite takes no \?mode=.*\?uri=true"),
        ("sqlite:///x.db?timeout=soon", r"refused it .*'soon'"),
        ("sqlite://?timeout=soon", r"refused it .*'soon'"),
        ("mysql://u:Secr3t@127.0.0.1", r"names no database; expected mysql://user:password@host:3306/dbname"),
        ("mariadb://u:Secr3t@127.0.0.1/", r"names no database; expected mariadb://"),
        ("mysql://u:Secr3t@127.0.0.1/db?write_timeout=soon", r"refused it .*'soon'.*expected mysql://"),
        ("postgresql+asyncpg://u:Secr3t@127.0.0.1/db", r"synchronous drivers.*expected postgresql://"),
        ("postgresql://u:Secr3t@127.0.0.1/research/team", r"postgresql://u:\*\*\*@127\.0\.0\.1/research\?base=/team"),
        (
            "mariadb://u:Secr3t@127.0.0.1/research/a/b?table=t",
            r"mariadb://u:\*\*\*@127\.0\.0\.1/research\?base=/a/b&table=t",
        ),
    ],
)
def test_malformed_urls_are_one_value_error_naming_the_url_and_the_expected_form(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        kydb.connect(url)
    assert type(info.value) is ValueError  # not SQLAlchemy's ArgumentError, not an AssertionError at first use
    assert "Secr3t" not in str(info.value) and "invalid kydb URL" in str(info.value)


def test_options_the_driver_refuses_when_connecting_are_value_errors(server_database: Database) -> None:
    """libpq and PyMySQL see their options only when they connect: the first operation says what is wrong."""
    db = kydb.connect(server_database.url(base="/b", no_such_option="1"))
    try:
        with pytest.raises(ValueError, match="refused its options") as info:
            db.ls("/")
    finally:
        db.close()
    assert "no_such_option" in str(info.value) and "invalid kydb URL" in str(info.value)
    assert not isinstance(info.value, kydb.StoreUnavailable)


# ---------------------------------------------------------------------------- a base path after the file or database


def test_a_base_path_after_the_sqlite_file_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src.db"
    db = kydb.connect(f"sqlite:///{src}")
    db["/data/x"] = 1
    db.close()
    with pytest.raises(ValueError) as info:
        kydb.connect(f"sqlite:///{src}/data?table=kydb")
    message = str(info.value)
    assert f"'sqlite:///{src}/data?table=kydb'" in message and "is a file" in message
    assert f"sqlite:///{src}?base=/data&table=kydb" in message  # the form meant
    assert src.is_file()
    db = kydb.connect(f"sqlite:///{src}?base=/data")
    assert db.read("/x", reload=True) == 1
    db.close()


def test_a_path_after_a_missing_file_named_like_a_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"named like a database file.*\?base=/data/deeper") as info:
        kydb.connect(f"sqlite:///{tmp_path}/fresh.db/data/deeper")
    assert f"sqlite:///{tmp_path}/fresh.db?base=/data/deeper" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_named_like_a_database_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "archive.db").mkdir()
    db = kydb.connect(f"sqlite:///{tmp_path}/archive.db/kydb.sqlite")
    db["/x"] = 1
    assert db.read("/x", reload=True) == 1 and (tmp_path / "archive.db" / "kydb.sqlite").is_file()
    db.close()


# ---------------------------------------------------------------------------- drivers


def test_a_driver_installed_but_broken_names_the_extra_and_why(tmp_path: Path) -> None:
    """psycopg installed without a usable libpq wrapper: the error says so, and how to get one."""
    program = (
        "import kydb\n"
        "try:\n"
        "    kydb.connect('postgresql://u:Secr3t@127.0.0.1/db')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PSYCOPG_IMPL": "c"}  # psycopg's C implementation, which is not installed
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, check=True)
    message = result.stdout
    assert "pip install 'kydb-sql[postgresql]'" in message
    assert "installed but cannot be imported" in message and "psycopg_c" in message
    assert "Secr3t" not in message


@pytest.mark.parametrize(
    ("url", "module", "package"),
    [
        ("mysql+mysqldb://u:Secr3t@127.0.0.1/db", "MySQLdb", "pip install mysqlclient"),
        ("mariadb+mariadbconnector://u:Secr3t@127.0.0.1/db", "mariadb", "pip install mariadb"),
        ("postgresql+psycopg2://u:Secr3t@127.0.0.1/db", "psycopg2", "pip install psycopg2-binary"),
    ],
)
def test_a_missing_driver_named_in_the_url_names_its_package(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(ImportError, match="which is not installed") as info:
        kydb.connect(url)
    assert package in str(info.value) and "Secr3t" not in str(info.value)


def test_the_cli_names_the_extra_for_a_missing_driver() -> None:
    program = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"  # as if it were not installed
        "from kydb.cli import main\n"
        "main(['-u', 'postgresql://u:Secr3t@127.0.0.1/db', 'ls'])\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("kydb: error: ") and "pip install 'kydb-sql[postgresql]'" in result.stderr
    assert "Secr3t" not in result.stderr
