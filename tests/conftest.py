"""Shared fixtures: real databases (SQLite file and the PostgreSQL server), migrated to head,
and moto's S3 server. A missing backend skips its tests on a developer's machine and fails them
under CI=true (tests/servers.py: backend_missing)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

# Set before anything loads torch's OpenMP runtime, and inherited by every process a test starts
# (Ray actors, the CLI, the service): OpenMP threads that wait for work sleep instead of spinning.
# Two test workers on two cores each run torch, ffmpeg and Ray processes at once; spinning
# threads took the cores the other worker's processes needed (two end-to-end tests side by
# side: 252 s and 225 s spinning, 189 s and 164 s sleeping).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from infra.db import make_engine, upgrade_to_head
from tests.servers import backend_missing, free_port, wait_until_up

POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: on two workers (`make test`) the long end-to-end runs start early and
    overlap, instead of one of them running alone at the end. Under mutmut, quick files first
    (see _quick_files_first)."""
    if "MUTANT_UNDER_TEST" in os.environ:
        _quick_files_first(items)
    else:
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _quick_files_first(items: list[pytest.Item]) -> None:
    """A mutant's run (`make mutation`) stops at its first failing test, and most mutants fail
    the quick database tests as surely as the end-to-end ones: run the test files in the order
    of their time in mutmut's stats run (its mutmut-stats.json, in the working directory), each
    file's tests together and in order so its fixtures are set up once."""
    stats = Path("mutmut-stats.json")
    durations = json.loads(stats.read_text())["duration_by_test"] if stats.exists() else {}
    per_file: Counter[str] = Counter()
    for test, seconds in durations.items():
        per_file[test.split("::")[0]] += seconds
    items.sort(key=lambda item: per_file[item.nodeid.split("::")[0]])


def postgres_admin_url() -> str:
    """The server the PostgreSQL tests use (MOVA_TEST_POSTGRES_URL overrides the local one)."""
    return os.environ.get("MOVA_TEST_POSTGRES_URL", POSTGRES_ADMIN_URL)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'mova_ads.db'}")
    upgrade_to_head(engine)
    yield engine
    engine.dispose()


def _fresh_postgres_database() -> Iterator[str]:
    """A new, uniquely named database on the local PostgreSQL server, dropped afterwards."""
    admin_url = postgres_admin_url()
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 5})
    name = f"mova_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as err:
        admin.dispose()
        backend_missing("PostgreSQL", f"{admin_url} is not reachable: {err}")
    yield admin_url.rsplit("/", 1)[0] + f"/{name}"
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
            "TRUNCATE web_session, brief_run, submission, review_decision, team, lineage_edge, "
            "deliverable, plan, lora, "
            "render_job, brief, campaign, artifact CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Both real backends: each test using it runs on SQLite and on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_engine")



@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3 server over HTTP: started here, or the one MOVA_TEST_S3_ENDPOINT
    names (checked to answer)."""
    external = os.environ.get("MOVA_TEST_S3_ENDPOINT")
    if external:
        try:
            httpx.get(external, timeout=5)
        except httpx.TransportError as err:
            backend_missing("the moto S3 server", f"{external} is not reachable: {err}")
        yield external
        return
    if importlib.util.find_spec("moto") is None:
        backend_missing("the moto S3 server", "the moto package is not installed "
                                              "(pip install 'moto[server]')")
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


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server` on a free loopback port (its own PREFECT_HOME, SQLite); the
    API URL to set as PREFECT_API_URL. Shared by the session's worker processes, as a
    production server is: each `mova-ads run` starting an ephemeral server of its own costs
    about 16 s of CPU, and several starting at once time out on a loaded machine. (The
    embedded default, the ephemeral server, is what `test_a_run_killed_mid_way_*` runs on.)"""
    tmp_path = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_ENABLED="false")
    log_path = tmp_path / "prefect.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host",
                                   "127.0.0.1", "--port", str(port)], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api"
    wait_until_up(f"{api}/health", server, timeout=180,
                  log=lambda: log_path.read_text()[-3000:])
    yield api
    server.terminate()
    server.wait(timeout=30)
