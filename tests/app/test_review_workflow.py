"""The approval gate end to end through the service and its embedded worker, with the tiny
model: variants wait in the review area, play with range requests, an approval publishes one
variant, a rejection re-renders another with a new seed and leaves the rest untouched, and
each decision is in the lineage. Slow (a production run): runs on PostgreSQL; the browser test
runs the same service on the SQLite default, and the fast API tests run on both."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import yaml
from sqlalchemy import select

from infra.db import make_engine, session_scope
from infra.db_models import Artifact, Deliverable, RenderJob
from infra.repository import lineage_chain
from tests.app.conftest import Service
from tests.example_brief import example_text

pytestmark = pytest.mark.slow


def _two_variant_brief() -> dict[str, Any]:
    brief = yaml.safe_load(example_text())
    scene = brief["scenes"][0]
    scene["dialogue"] = {"en-US": scene["dialogue"]["en-US"]}
    scene["on_screen_text"] = {"en-US": scene["on_screen_text"]["en-US"]}
    brief.update(locales=["en-US"], requires_approval=True)
    return brief


def _wait(client: httpx.Client, brief_id: str, done: Callable[[dict[str, Any]], bool],
          service: Service, timeout: float = 400) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        brief: dict[str, Any] = client.get(f"/api/briefs/{brief_id}").json()
        if done(brief):
            return brief
        time.sleep(1)
    pytest.fail(f"brief {brief_id} did not get there: {brief}\n{service.log()}")


def _render_seed(database_url: str, deliverable_id: str) -> int:
    """The seed of the render behind a scene finish (a spot's scene strip entry)."""
    engine = make_engine(database_url)
    with session_scope(engine) as session:
        row = session.scalars(select(Deliverable).where(
            Deliverable.id == UUID(deliverable_id))).one()
        job = session.scalars(select(RenderJob).where(RenderJob.spec_key == row.render_key)
                              ).one()
        seed = int(job.spec["request"]["seed"])  # RenderSpec keeps the render request nested
    engine.dispose()
    return seed


def test_approve_publishes_and_reject_rerenders_only_that_variant(
        module_postgres_url: str, service_factory: Callable[..., Service], tiny_checkpoint: Path,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    service = service_factory(tmp_path_factory.mktemp("review"), module_postgres_url,
                              teams=("emea",), worker=True, checkpoint=tiny_checkpoint)
    storage = service.data_dir / "storage"
    with service.client() as client:
        brief_id = client.post("/api/briefs", json=_two_variant_brief()).json()["id"]
        # the run closes the brief (done) just after its last variant reaches review
        brief = _wait(client, brief_id, lambda b: b["status"] == "done", service)
        assert [v["status"] for v in brief["deliverables"]] == ["in_review", "in_review"]
        assert brief["progress"] == 1.0 and not brief["active"]
        assert brief["flow_run_id"], "the producing flow run is not recorded"
        landscape, portrait = brief["deliverables"]
        assert (landscape["aspect"], portrait["aspect"]) == ("16:9", "9:16")
        # nothing is in the campaign layout before approval
        assert not (storage / "campaigns").exists()
        assert (storage / "review" / "campaigns" / "emea" / "aurora-spring-launch").is_dir()

        # players seek: range requests get 206 with the asked bytes
        video = client.get(landscape["files"]["video"], headers={"Range": "bytes=100-199"})
        assert video.status_code == 206 and len(video.content) == 100
        assert video.headers["content-type"] == "video/mp4"
        assert video.headers["content-range"].startswith("bytes 100-199/")
        vtt = client.get(landscape["files"]["captions_vtt"])
        assert vtt.text.startswith("WEBVTT") and "Every morning" in vtt.text
        assert landscape["qc"]["checks"] and landscape["loudness"]["output_lufs"] < 0

        approved = client.post(f"/api/deliverables/{landscape['id']}/approve",
                               json={"comment": "ship it", "reviewer": "ana"}).json()
        assert approved["status"] == "published"
        final = storage / "campaigns" / "emea" / "aurora-spring-launch" / "en-US" / "16x9"
        spot = "aurora-spring-launch_en-US_16x9_youtube"
        assert (final / f"{spot}.mp4").is_file() and (final / f"{spot}.vtt").is_file()
        manifest = json.loads((final / f"{spot}.manifest.json").read_text())
        assert [s["scene_id"] for s in manifest["spot"]["scenes"]] == ["morning-run"]
        assert manifest["approval"]["reviewer"] == "ana"
        assert manifest["approval"]["comment"] == "ship it"
        assert all("/review/" not in f["uri"] for f in manifest["files"])
        again = client.post(f"/api/deliverables/{landscape['id']}/approve", json={})
        assert again.status_code == 409 and "published" in again.json()["detail"]
        published_at = (final / f"{spot}.mp4").stat().st_mtime

        # reject one scene of the portrait spot: that scene renders again with the next
        # seed and that spot is assembled again; the approved spot is left alone
        [scene] = portrait["scenes"]
        landscape_scene = landscape["scenes"][0]["id"]
        seed_before = _render_seed(service.database_url, scene["id"])
        landscape_seed = _render_seed(service.database_url, landscape_scene)
        rejected = client.post(f"/api/deliverables/{portrait['id']}/reject", json={
            "comment": "the runner's shoes should be orange", "rerender": True,
            "scene_id": scene["scene_id"]}).json()
        assert rejected["status"] == "pending"
        assert rejected["decisions"][-1]["new_seed"] == seed_before + 1
        brief = _wait(client, brief_id, lambda b: b["status"] == "done", service)
        assert brief["deliverables"][1]["status"] == "in_review"
        assert _render_seed(service.database_url, scene["id"]) == seed_before + 1
        assert _render_seed(service.database_url, landscape_scene) == landscape_seed
        assert brief["deliverables"][0]["status"] == "published"
        assert (final / f"{spot}.mp4").stat().st_mtime == published_at, \
            "the approved spot was touched by the re-render"
        decisions = brief["deliverables"][1]["decisions"]
        assert [d["decision"] for d in decisions] == ["reject"]
        assert decisions[0]["team"] == "emea" and decisions[0]["reviewer"] == "emea"

    engine = make_engine(service.database_url)
    with session_scope(engine) as session:
        reviews = list(session.scalars(select(Artifact).where(Artifact.kind == "review")))
        assert sorted(r.task for r in reviews) == ["review.approve", "review.reject"]
        for review in reviews:  # each decision hangs off the video it judged
            chain = [a.kind for _, a in lineage_chain(session, review.id)]
            assert chain[:2] == ["review", "video"] and chain[-1] == "brief"
            assert review.params["team"] == "emea" and review.params["decided_at"]
    engine.dispose()
    events = (service.data_dir / "lineage" / "openlineage.jsonl").read_text()
    assert '"review.approve"' in events and '"review.reject"' in events
