"""With a Prefect server configured, a brief submitted to the service is planned at once and
the produce-campaign deployment is started for it; the campaign page links the flow run.
Runs a real `prefect server` on 127.0.0.1 (slow: the server takes a while to start)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.app.conftest import ROOT, Service
from tests.example_brief import example_text

pytestmark = pytest.mark.slow


def test_a_new_brief_starts_the_produce_deployment_and_links_its_run(
        prefect_api: str, service_factory: Callable[..., Service], tiny_checkpoint: Path,
        tmp_path: Path) -> None:
    register = subprocess.run(
        [sys.executable, "-c", "from flows.produce import produce_campaign; "
         "print(produce_campaign.to_deployment(name='produce-campaign').apply())"],
        env={**os.environ, "PREFECT_API_URL": prefect_api, "PYTHONPATH": str(ROOT)},
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert register.returncode == 0, register.stderr[-3000:]
    deployment_id = register.stdout.strip().splitlines()[-1]

    service = service_factory(tmp_path / "svc", f"sqlite:///{tmp_path / 'svc' / 'db.sqlite'}",
                              teams=("emea",), worker=False, checkpoint=tiny_checkpoint,
                              PREFECT_API_URL=prefect_api)
    with service.client() as client:
        brief_id = client.post("/api/briefs", content=example_text().encode(),
                               headers={"Content-Type": "application/yaml"}).json()["id"]
        deadline = time.monotonic() + 60
        while (brief := client.get(f"/api/briefs/{brief_id}").json())["flow_run_id"] is None:
            assert time.monotonic() < deadline, f"no flow run started:\n{service.log()}"
            time.sleep(0.5)
        assert brief["status"] == "planned" and len(brief["deliverables"]) == 4
        run_id = brief["flow_run_id"]
        ui = prefect_api.removesuffix("/api")
        assert brief["flow_run_url"] == f"{ui}/runs/flow-run/{run_id}"
        page = client.get(f"/briefs/{brief_id}")  # the page accepts the Bearer token too
        assert f'href="{ui}/runs/flow-run/{run_id}"' in page.text

    run = httpx.get(f"{prefect_api}/flow_runs/{run_id}").json()
    assert run["deployment_id"] == deployment_id
    assert run["parameters"] == {"brief_id": brief_id}
