"""The review service as users meet it: `mova-ads serve` in its own process (uvicorn on
127.0.0.1), on the SQLite default or on the PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from app.auth import create_team
from app.service import create_app
from infra.db import make_engine, session_scope, upgrade_to_head
from infra.settings import load_settings
from tasks.services import Services
from tests.example_brief import example_text
from tests.servers import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
SERVE = [sys.executable, "-c", "from app.cli import main; main()", "serve"]


@dataclass
class Service:
    url: str
    data_dir: Path
    database_url: str
    tokens: dict[str, str]
    process: subprocess.Popen[bytes]

    def client(self, team: str | None = "emea") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[team]}"} if team else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def page_cookies(self, team: str) -> dict[str, str]:
        """The page session of `team`, signed in through /login as a browser would."""
        response = httpx.post(f"{self.url}/login", data={"token": self.tokens[team]},
                              headers={"Origin": self.url}, timeout=60)
        return {"mova_session": response.cookies["mova_session"]}

    def log(self) -> str:
        path = self.data_dir / "serve.log"
        worker = self.data_dir / "worker.log"
        return path.read_text()[-4000:] + (worker.read_text()[-4000:] if worker.exists() else "")


def start_service(data_dir: Path, database_url: str, *, teams: tuple[str, ...],
                  worker: bool, checkpoint: Path | None = None, **env_extra: str) -> Service:
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url)
    upgrade_to_head(engine)
    with session_scope(engine) as session:
        tokens = {team: create_team(session, team) for team in teams}
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MOVA_"))}
    env.update({"MOVA_DATA_DIR": str(data_dir), "DATABASE_URL": database_url,
                "PYTHONPATH": str(ROOT), **env_extra})
    if checkpoint is not None:
        env["MOVA_CHECKPOINT"] = str(checkpoint)
    port = free_port()
    log = (data_dir / "serve.log").open("wb")
    process = subprocess.Popen([*SERVE, "--port", str(port),
                                "--worker" if worker else "--no-worker"],
                               env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    service = Service(f"http://127.0.0.1:{port}", data_dir, database_url, tokens, process)
    wait_until_up(f"{service.url}/api/health", process, timeout=60, log=service.log)
    return service


def stop_service(service: Service) -> None:
    service.process.terminate()
    try:
        service.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        service.process.kill()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> str:
    """Both backends: the SQLite default and the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'mova_ads.db'}"
    url: str = request.getfixturevalue("module_postgres_url")
    return url


@pytest.fixture(scope="module")
def service_factory() -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(*args: object, **kwargs: object) -> Service:
        service = start_service(*args, **kwargs)  # type: ignore[arg-type]
        started.append(service)
        return service

    yield start
    for service in started:
        stop_service(service)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The app in-process on SQLite, signed in as team "emea" (its Services are
    `client.app.state.services`); a route's unhandled error is answered, not raised."""
    settings = load_settings({"MOVA_DATA_DIR": str(tmp_path),
                              "API_SUBMISSIONS_PER_MINUTE": "50"})
    with Services(settings) as services, session_scope(services.engine) as session:
        token = create_team(session, "emea")
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mova_model.make_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


@dataclass
class ReviewedBrief:
    """A brief that team "emea" produced with the tiny model: two variants (16:9 and 9:16)
    waiting in review, with real encoded files. Team "apac" shares the service."""

    service: Service
    brief_id: str
    deliverables: list[dict[str, Any]]  # as emea's API shows them


def two_variant_brief() -> dict[str, Any]:
    """The example brief cut to one locale (two aspects), held for approval."""
    brief: dict[str, Any] = yaml.safe_load(example_text())
    scene = brief["scenes"][0]
    scene["dialogue"] = {"en-US": scene["dialogue"]["en-US"]}
    scene["on_screen_text"] = {"en-US": scene["on_screen_text"]["en-US"]}
    brief.update(locales=["en-US"], requires_approval=True)
    return brief


@pytest.fixture(scope="module")
def reviewed_brief(service_factory: Callable[..., Service], tiny_checkpoint: Path,
                   tmp_path_factory: pytest.TempPathFactory,
                   module_postgres_url: str) -> ReviewedBrief:
    """On PostgreSQL (the browser test runs the service on the SQLite default)."""
    data_dir = tmp_path_factory.mktemp("reviewed")
    service = service_factory(data_dir, module_postgres_url,
                              teams=("emea", "apac"), worker=True, checkpoint=tiny_checkpoint)
    with service.client("emea") as client:
        response = client.post("/api/briefs", json=two_variant_brief())
        assert response.status_code == 201, response.text
        brief_id = response.json()["id"]
        deadline = time.monotonic() + 600
        while True:
            brief = client.get(f"/api/briefs/{brief_id}").json()
            if brief["status"] == "done":
                break
            if time.monotonic() > deadline or brief["status"] in ("failed", "invalid"):
                pytest.fail(f"brief {brief_id} was not produced: {brief}\n{service.log()}")
            time.sleep(1)
    assert [d["status"] for d in brief["deliverables"]] == ["in_review", "in_review"], brief
    return ReviewedBrief(service, brief_id, brief["deliverables"])
