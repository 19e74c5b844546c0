"""The review service as users meet it: `mova-ads serve` in its own process (uvicorn on
127.0.0.1), on the SQLite default or on the PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.auth import create_team
from infra.db import make_engine, session_scope, upgrade_to_head
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


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mova_model.make_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)
