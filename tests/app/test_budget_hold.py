"""A brief estimated above APPROVAL_GPU_SECONDS, as its team sees it: the API and the campaign
page show its cost and that it waits for approval, until an operator runs `mova-ads brief
approve` (the one way to accept a cost; teams cannot approve their own)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from infra import repository as repo
from infra.db import session_scope
from infra.settings import load_settings
from tasks.ingest import plan_brief
from tasks.services import Services
from tests.app.conftest import ROOT, Service
from tests.example_brief import example_text

pytestmark = pytest.mark.slow  # a service and three CLI processes
EXAMPLE = example_text().encode()
EXAMPLE_GPU_SECONDS = 1.6  # 4 renders × 8 steps × 0.05 s/step of the tiny profile
HOLD_MESSAGE = "waiting for an operator to approve the cost"


@pytest.fixture
def service(service_factory: Callable[..., Service], tiny_checkpoint: Path,
            tmp_path: Path) -> Service:
    return service_factory(tmp_path, f"sqlite:///{tmp_path / 'mova_ads.db'}",
                           teams=("emea", "apac"), worker=False, checkpoint=tiny_checkpoint,
                           APPROVAL_GPU_SECONDS="1.0")


def _env(service: Service) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MOVA_"))}
    env.update(MOVA_DATA_DIR=str(service.data_dir), DATABASE_URL=service.database_url,
               PYTHONPATH=str(ROOT))
    return env


def _plan_as_the_worker_does(service: Service, checkpoint: Path, brief_id: str) -> None:
    env = {**_env(service), "MOVA_CHECKPOINT": str(checkpoint), "APPROVAL_GPU_SECONDS": "1.0"}
    with Services(load_settings(env)) as services:
        with session_scope(services.engine) as session:
            assert repo.claim_brief(session, UUID(brief_id), "test")
        assert plan_brief(services, UUID(brief_id)) is not None


def _cli(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=_env(service),
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_a_held_brief_shows_its_cost_and_waits_until_an_operator_approves_it(
        service: Service, tiny_checkpoint: Path) -> None:
    with service.client("emea") as client:
        answer = client.post("/api/briefs", content=EXAMPLE,
                             headers={"Content-Type": "application/yaml"})
        assert answer.status_code == 201, answer.text
        brief_id = answer.json()["id"]
        assert answer.json()["cost"]["gpu_seconds"] == pytest.approx(EXAMPLE_GPU_SECONDS)

        _plan_as_the_worker_does(service, tiny_checkpoint, brief_id)
        held: dict[str, Any] = client.get(f"/api/briefs/{brief_id}").json()
        assert held["status"] == "awaiting_approval" and held["awaiting_approval"] is True
        assert held["cost"]["gpu_seconds"] == pytest.approx(EXAMPLE_GPU_SECONDS)
        assert held["cost"]["renders"] == 4
        page = client.get(f"/briefs/{brief_id}").text
        assert HOLD_MESSAGE in page and 'id="brief-cost"' in page
        assert "4 renders × 8 steps × 0.05 s/step" in page
        assert "awaiting_approval" in client.get("/briefs").text  # the team's list says so
        # the team cannot approve the cost itself: there is no such call for it
        assert client.post(f"/api/briefs/{brief_id}/approve").status_code in (404, 405)

        pending = _cli(service, "brief", "pending")
        assert pending.returncode == 0, pending.stderr
        assert brief_id in pending.stdout and "emea" in pending.stdout
        # tenths, as the door's refusals show them: 1.6 GPU-seconds is not "2"
        assert f"{EXAMPLE_GPU_SECONDS:.1f} GPU-seconds" in pending.stdout, pending.stdout
        unknown = _cli(service, "brief", "approve", "ffffffff")
        assert unknown.returncode == 2 and "0 briefs match 'ffffffff'" in unknown.stderr
        approved = _cli(service, "brief", "approve", brief_id[:8])  # the start of its id
        assert approved.returncode == 0, approved.stderr
        assert f"({EXAMPLE_GPU_SECONDS:.1f} GPU-seconds)" in approved.stdout, approved.stdout
        again = _cli(service, "brief", "approve", brief_id)  # once only
        assert again.returncode == 2 and "not awaiting approval" in again.stderr

        released = client.get(f"/api/briefs/{brief_id}").json()
        assert released["status"] == "planned" and released["awaiting_approval"] is False
        assert released["cost"]["gpu_seconds"] == pytest.approx(EXAMPLE_GPU_SECONDS)
        assert HOLD_MESSAGE not in client.get(f"/briefs/{brief_id}").text
    with service.client("apac") as other:  # another team sees neither the brief nor its cost
        assert other.get(f"/api/briefs/{brief_id}").status_code == 404
