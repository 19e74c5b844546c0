"""Shared fixtures: real databases (SQLite file and the PostgreSQL server), migrated to head."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from infra.db import make_engine, upgrade_to_head
from tests.servers import free_port, wait_until_up

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'mova_ads.db'}")
    upgrade_to_head(engine)
    yield engine
    engine.dispose()


def _fresh_postgres_database() -> Iterator[str]:
    """A new, uniquely named database on the local PostgreSQL server, dropped afterwards."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"mova_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as err:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {err}")
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database shared by the adapter tests (tables emptied after each test)."""
    yield from _fresh_postgres_database()


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """A database shared by one test module (a server process running for the module)."""
    yield from _fresh_postgres_database()


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A database of the test's own, for end-to-end runs."""
    yield from _fresh_postgres_database()


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    upgrade_to_head(engine)
    yield engine
    with engine.begin() as connection:  # empty the tables between tests, keep the schema
        connection.execute(text(
            "TRUNCATE submission, review_decision, team, lineage_edge, deliverable, plan, "
            "render_job, brief, campaign, artifact CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Both real backends: each test using it runs on SQLite and on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_engine")



@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, process, timeout=30)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    os.environ.pop("AWS_SESSION_TOKEN", None)
