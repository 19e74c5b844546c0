"""Another team's real work is invisible and untouchable: team "apac" tries every route on
team "emea"'s produced brief, its two variants in review and each of their files, then again
once one variant is published. Each answer is 404 without a trace of emea's data, and nothing
changes: no decision, no re-render, no file written. Each route is first shown to work for
emea, so a 404 means "not yours", not "wrong URL". Slow: it produces a brief with the tiny
model (the shared `reviewed_brief` fixture)."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from infra.db import make_engine, session_scope
from infra.db_models import Deliverable, RenderJob, ReviewDecision
from tests.app.conftest import ReviewedBrief

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


def test_another_team_cannot_read_stream_or_decide_on_a_produced_brief(
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

        # published: the files now come from the campaign layout, and are still emea's only
        approved = emea.post(f"/api/deliverables/{landscape['id']}/approve", json={})
        assert approved.status_code == 200 and approved.json()["status"] == "published"
        published = approved.json()
        assert "manifest" in published["files"]
        before = _state(reviewed_brief)
        _try_every_deliverable_route(apac, published, sorted(published["files"]))
        assert _state(reviewed_brief) == before, "a foreign request changed emea's brief"

        rejected = emea.post(f"/api/deliverables/{portrait['id']}/reject",
                             json={"comment": "too dark"})
        assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
        assert [d["team"] for d in rejected.json()["decisions"]] == ["emea"]
