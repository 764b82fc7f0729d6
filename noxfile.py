"""Every session a user or CI runs.

    python3 -m venv .venv && .venv/bin/pip install nox && .venv/bin/nox   # the default sessions: every test
    .venv/bin/nox -s demo                               # the walkthrough, in a folder of its own of kydb-demo.db
    .venv/bin/nox -s bench bench-sql bench-redis bench-s3 bench-dynamodb bench-files bench-memory bench-conditional
                                                        # side-by-side measurements

Each distribution's session installs that distribution alone (non-editable,
plus kydb-core and the test tools) and runs its tests, which proves that
"pip install only the backends you need" works.  Services (Redis,
PostgreSQL, MariaDB) are expected to be running; with
KYDB_REQUIRE_SERVICES=1 a missing one fails instead of skipping.  S3 and
DynamoDB are moto's server, started by the tests.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "core", "sql", "redis", "s3", "dynamodb", "files", "fsspec", "integration"]
nox.options.reuse_existing_virtualenvs = False

CORE = "./kydb-core[testing]"
MEMORY = "./kydb-memory"
SQL = "./kydb-sql[postgresql,mysql]"
REDIS = "./kydb-redis"
S3 = "./kydb-s3"
FILES = "./kydb-files"
FSSPEC = "./kydb-fsspec"
DYNAMODB = "./kydb-dynamodb"
MOTO = "moto[server]"
#: Every distribution in the repository (its directory and distribution name) and the package it installs.
DISTRIBUTIONS = {"kydb-core": "kydb", "kydb-memory": "kydb_memory", "kydb-sql": "kydb_sql", "kydb-redis": "kydb_redis",
                 "kydb-s3": "kydb_s3", "kydb-dynamodb": "kydb_dynamodb", "kydb-files": "kydb_files",
                 "kydb-fsspec": "kydb_fsspec",
                 "examples/third_party_backend": "kydb_dirstore"}
TEST_TOOLS = ["pytest", "numpy", "msgpack", "pip"]
PYTEST = ["python", "-m", "pytest", "-ra", "-p", "no:cacheprovider"]


@nox.session
def core(session: nox.Session) -> None:
    """kydb-core and kydb-memory installed alone, with their tests."""
    session.install(CORE, MEMORY, *TEST_TOOLS)
    session.run(*PYTEST, "tests/core", "tests/memory", *session.posargs)


@nox.session
def sql(session: nox.Session) -> None:
    """kydb-sql with both drivers, alone: SQLite, and the PostgreSQL and MariaDB servers."""
    session.install(CORE, SQL, *TEST_TOOLS)
    session.run(*PYTEST, "tests/sql", *session.posargs)


@nox.session
def redis(session: nox.Session) -> None:
    """kydb-redis installed alone: its tests on the Redis at KYDB_TEST_REDIS_URL and on a local Redis Cluster."""
    session.install(CORE, REDIS, "fakeredis[lua]", *TEST_TOOLS)
    session.run(*PYTEST, "tests/redis", *session.posargs)


@nox.session
def s3(session: nox.Session) -> None:
    """kydb-core and kydb-s3 installed alone, tested over HTTP against moto's S3 server."""
    session.install(CORE, S3, MOTO, *TEST_TOOLS)
    session.run(*PYTEST, "tests/s3", *session.posargs)


@nox.session
def dynamodb(session: nox.Session) -> None:
    """kydb-core and kydb-dynamodb installed alone, tested over HTTP against moto's DynamoDB server."""
    session.install(CORE, DYNAMODB, MOTO, *TEST_TOOLS)
    session.run(*PYTEST, "tests/dynamodb", *session.posargs)


@nox.session
def files(session: nox.Session) -> None:
    """kydb-files installed alone: the conformance suite, the model check, writers SIGKILLed mid-put."""
    session.install(CORE, FILES, *TEST_TOOLS)
    session.run(*PYTEST, "tests/files", *session.posargs)


@nox.session
def fsspec(session: nox.Session) -> None:
    """kydb-fsspec alone (+ kydb-files, its layout): fsspec's memory and file filesystems, read-only HTTP."""
    session.install(CORE, FILES, FSSPEC, *TEST_TOOLS)
    session.run(*PYTEST, "tests/fsspec", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    """Everything installed: examples, cross-backend unions and cache DBs, the command line between stores."""
    session.install(CORE, MEMORY, SQL, REDIS, S3, FILES, FSSPEC, MOTO, *TEST_TOOLS)
    session.run(*PYTEST, "tests/integration", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (private names included: SLF001), mypy --strict on every distribution, and kydb-core's layering."""
    session.install(
        "ruff", "mypy", "import-linter", "pytest", "hypothesis", "sqlalchemy", "redis", "boto3-stubs[s3,dynamodb]"
    )
    session.install("--no-deps", "./kydb-core")  # lint-imports reads the installed package
    session.run("ruff", "check", ".")
    sources = [f"{directory}/src" for directory in DISTRIBUTIONS]
    session.run("ruff", "format", "--check", *sources)
    packages = [arg for package in DISTRIBUTIONS.values() for arg in ("-p", package)]
    session.run("mypy", "--strict", *packages, env={"MYPYPATH": ":".join(sources)})
    session.run("lint-imports")


@nox.session
def demo(session: nox.Session) -> None:
    """The walkthrough on sqlite:///kydb-demo.db (or the URL after --), in a folder of its own that it removes."""
    session.install("./kydb-core", MEMORY, "./kydb-sql")
    session.run("python", "examples/walkthrough.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side ratios (never timed asserts): kydb versus the raw operation."""
    session.install("./kydb-core", MEMORY)
    session.run("python", "benchmarks/bench_core.py", *session.posargs)


@nox.session(name="bench-sql")
def bench_sql(session: nox.Session) -> None:
    """kydb-sql on SQLite, PostgreSQL and MariaDB next to bare SQLAlchemy Core; ls, rm_tree and recent against size."""
    session.install(CORE, SQL)  # kydb.testing's TCPProxy counts the round trips
    session.run("python", "benchmarks/bench_sql.py", *session.posargs)


@nox.session(name="bench-redis")
def bench_redis(session: nox.Session) -> None:
    """kydb on Redis vs bare redis-py: puts/s and CPU per put, one server and a cluster; connects; recent by size."""
    session.install("./kydb-core", REDIS)
    session.run("python", "benchmarks/bench_redis.py", *session.posargs)


@nox.session(name="bench-s3")
def bench_s3(session: nox.Session) -> None:
    """kydb on S3 against boto3 doing the same work, on moto's S3 server: ratios and request counts."""
    session.install("./kydb-core", S3, MOTO)
    session.run("python", "benchmarks/bench_s3.py", *session.posargs)


@nox.session(name="bench-dynamodb")
def bench_dynamodb(session: nox.Session) -> None:
    """kydb on DynamoDB against boto3 doing the same work, on moto's DynamoDB server: ratios and request counts."""
    session.install("./kydb-core", DYNAMODB, MOTO)
    session.run("python", "benchmarks/bench_dynamodb.py", *session.posargs)


@nox.session(name="bench-conditional")
def bench_conditional(session: nox.Session) -> None:
    """A conditional put next to a plain one on every backend (time, round trips); update() from 4 workers at once."""
    session.install("./kydb-core", MEMORY, SQL, REDIS, S3, DYNAMODB, FILES, MOTO)
    session.run("python", "benchmarks/bench_conditional.py", *session.posargs)


@nox.session(name="bench-memory")
def bench_memory(session: nox.Session) -> None:
    """Peak memory for one 300 MB value put and read back, per backend, as a multiple of its size."""
    session.install("./kydb-core", MEMORY, SQL, REDIS, S3, MOTO)
    session.run("python", "benchmarks/bench_memory.py", *session.posargs)


@nox.session(name="bench-files")
def bench_files(session: nox.Session) -> None:
    """kydb-files next to open().write() + os.replace() and open().read(); cold gets over HTTP next to urllib."""
    session.install("./kydb-core", FILES, FSSPEC)
    session.run("python", "benchmarks/bench_files.py", *session.posargs)


@nox.session(name="bench-cli")
def bench_cli(session: nox.Session) -> None:
    """kydb cp -r from SQLite to Redis next to a plain Python copy loop: throughput ratio."""
    session.install("./kydb-core", "./kydb-sql", REDIS)
    session.run("python", "benchmarks/bench_cli.py", *session.posargs)
