"""The approval gate end to end through the service and its embedded worker, on one brief
that team "emea" produced with the tiny model (the module's `reviewed_brief`, on PostgreSQL):

- another team's real work is invisible and untouchable: team "apac" tries every route on
  emea's brief, its two spots in review and each of their files, then again once one spot is
  published. Each answer is 404 without a trace of emea's data, and nothing changes: no
  decision, no re-render, no file written. Each route is first shown to work for emea, so a
  404 means "not yours", not "wrong URL";
- spots wait in the review area, play with range requests, an approval publishes one, a
  rejection of one scene re-renders it with a new seed and leaves the rest untouched, and
  each decision is in the lineage.

The tests share the produced brief and run in file order (the first changes nothing). Slow
(a production run); the browser test runs the same service on the SQLite default, and the
fast API tests run on both."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from infra.db import make_engine, session_scope
from infra.db_models import Artifact, Deliverable, RenderJob, ReviewDecision
from infra.repository import lineage_chain
from tests.app.conftest import ReviewedBrief, Service

pytestmark = pytest.mark.slow

FILE_KINDS = {"video", "video_burned", "captions_vtt", "captions_srt"}
CAMPAIGN = "aurora-spring-launch"


def _state(reviewed: ReviewedBrief) -> dict[str, Any]:
    """Everything a foreign request could change: stored files, decisions, renders, statuses."""
    storage = reviewed.service.data_dir / "storage"
    files = {str(p.relative_to(storage)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(storage.rglob("*")) if p.is_file()}
    engine = make_engine(reviewed.service.database_url)
    with session_scope(engine) as session:
        decisions = len(list(session.scalars(select(ReviewDecision))))
        jobs = sorted((j.spec_key, j.status, j.spec["request"]["seed"])
                      for j in session.scalars(select(RenderJob)))
        variants = sorted((str(d.id), d.status, d.attempts, d.published_uri)
                          for d in session.scalars(select(Deliverable)))
    engine.dispose()
    return {"files": files, "decisions": decisions, "jobs": jobs, "variants": variants}


def _assert_not_found(response: httpx.Response, what: str) -> None:
    assert response.status_code == 404, f"{what}: {response.status_code} {response.text[:300]}"
    assert "emea" not in response.text and CAMPAIGN not in response.text, what
    assert "Every morning" not in response.text, what


def _try_every_deliverable_route(apac: httpx.Client, variant: dict[str, Any],
                                 kinds: list[str]) -> None:
    base = f"/api/deliverables/{variant['id']}"
    _assert_not_found(apac.get(base), f"read {variant['name']}")
    for kind in kinds:
        _assert_not_found(apac.get(f"{base}/files/{kind}"), f"stream {kind}")
        _assert_not_found(apac.get(f"{base}/files/{kind}", headers={"Range": "bytes=0-99"}),
                          f"stream {kind} with a range")
    _assert_not_found(apac.post(f"{base}/approve", json={"comment": "mine now"}), "approve")
    _assert_not_found(apac.post(f"{base}/reject", json={"comment": "redo", "rerender": True}),
                      "reject with re-render")
    _assert_not_found(apac.post(f"{base}/reject", json={"comment": "no"}), "reject")


def test_another_team_cannot_read_stream_or_decide_on_a_brief_in_review(
        reviewed_brief: ReviewedBrief) -> None:
    service, brief_id = reviewed_brief.service, reviewed_brief.brief_id
    landscape, portrait = reviewed_brief.deliverables
    kinds = sorted(landscape["files"])
    assert FILE_KINDS <= set(kinds), kinds
    with service.client("emea") as emea, service.client("apac") as apac:
        # the routes work for the owner
        assert emea.get(f"/api/briefs/{brief_id}").status_code == 200
        assert len(emea.get(f"/api/briefs/{brief_id}/deliverables").json()) == 2
        for variant in (landscape, portrait):
            assert emea.get(f"/api/deliverables/{variant['id']}").status_code == 200
            for kind in kinds:
                got = emea.get(variant["files"][kind])
                assert got.status_code == 200 and got.content, (variant["name"], kind)
        page = httpx.get(f"{service.url}/briefs/{brief_id}",
                         cookies=service.page_cookies("emea"))
        assert page.status_code == 200 and CAMPAIGN in page.text and brief_id in page.text

        before = _state(reviewed_brief)
        _assert_not_found(apac.get(f"/api/briefs/{brief_id}"), "read brief")
        _assert_not_found(apac.get(f"/api/briefs/{brief_id}/deliverables"), "list deliverables")
        assert brief_id not in apac.get("/api/briefs").text
        for variant in (landscape, portrait):
            _try_every_deliverable_route(apac, variant, kinds)
        cookies = service.page_cookies("apac")
        _assert_not_found(httpx.get(f"{service.url}/briefs/{brief_id}", cookies=cookies),
                          "campaign page")
        listing = httpx.get(f"{service.url}/briefs", cookies=cookies)  # (its form holds the
        assert listing.status_code == 200 and brief_id not in listing.text  # example brief)
        assert _state(reviewed_brief) == before, "a foreign request changed emea's brief"


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
        reviewed_brief: ReviewedBrief) -> None:
    service, brief_id = reviewed_brief.service, reviewed_brief.brief_id
    storage = service.data_dir / "storage"
    with service.client() as client, service.client("apac") as apac:
        # the run closed the brief (done) just after its last spot reached review
        brief = client.get(f"/api/briefs/{brief_id}").json()
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
        # published: the files now come from the campaign layout, and are still emea's only
        assert "manifest" in approved["files"]
        before = _state(reviewed_brief)
        _try_every_deliverable_route(apac, approved, sorted(approved["files"]))
        assert _state(reviewed_brief) == before, "a foreign request changed emea's brief"

        # reject one scene of the portrait spot: that scene renders again with the next
        # seed and that spot is assembled again; the approved spot is left alone
        [scene] = portrait["scenes"]
        landscape_scene = landscape["scenes"][0]["id"]
        seed_before = _render_seed(service.database_url, scene["id"])
        landscape_seed = _render_seed(service.database_url, landscape_scene)
        # a scene the spot does not have is a bad request (422 naming the field), not a
        # missing spot (404), and nothing is decided
        wrong = client.post(f"/api/deliverables/{portrait['id']}/reject", json={
            "comment": "x", "rerender": True, "scene_id": "morning-rum"})
        assert wrong.status_code == 422, wrong.text
        assert wrong.json()["problems"] == [{"path": "scene_id", "message": (
            f"spot {portrait['name']} has no scene 'morning-rum' (its scenes: morning-run)")}]
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
        _assert_not_found(apac.get(f"/api/deliverables/{portrait['id']}"), "read decisions")

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
