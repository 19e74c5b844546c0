"""prefect.yaml declares deployments whose entrypoints are real flows with those parameters."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import yaml
from prefect import Flow

ROOT = Path(__file__).resolve().parents[2]


def test_every_deployment_points_at_a_flow_with_its_parameters() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = {d["name"] for d in config["deployments"]}
    assert names == {"ingest-briefs", "produce-campaign"}
    for deployment in config["deployments"]:
        path, function = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, function)
        assert isinstance(flow, Flow), deployment["entrypoint"]
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment.get("parameters") or {}) <= accepted


def test_ingest_runs_on_a_cron_schedule() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    ingest = next(d for d in config["deployments"] if d["name"] == "ingest-briefs")
    assert ingest["schedules"][0]["cron"] == "*/5 * * * *"
