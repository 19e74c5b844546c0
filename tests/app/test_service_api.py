"""The review service's API against a real server process, on SQLite and on PostgreSQL:
submission in every format, access between teams, limits, readable errors, and that a refused
request leaves nothing behind."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from infra.db import make_engine, session_scope
from infra.db_models import Artifact, BriefRow, Campaign, Deliverable
from infra.repository import add_artifact, add_brief, ensure_deliverable
from infra.statuses import DeliverableStatus
from tests.app.conftest import ROOT, Service
from tests.example_brief import example_text

EXAMPLE = example_text()
BODY_LIMIT = 300_000
PER_MINUTE = 6  # per team; team "flood" is the one that reaches it
UNKNOWN = "/api/deliverables/00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def service(database_url: str, service_factory: Callable[..., Service],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield service_factory(tmp_path_factory.mktemp("svc"), database_url,
                          teams=("emea", "apac", "flood", "lint", "brand", "judge",
                                 "archive"),
                          worker=False,
                          API_MAX_BODY_BYTES=str(BODY_LIMIT),
                          API_SUBMISSIONS_PER_MINUTE=str(PER_MINUTE))


def _counts(service: Service) -> tuple[int, int, int, list[str]]:
    """Briefs, campaigns, artifacts and stored files: what a refused request must not add."""
    engine = make_engine(service.database_url)
    with session_scope(engine) as session:
        counts = tuple(int(session.scalar(select(func.count()).select_from(model)) or 0)
                       for model in (BriefRow, Campaign, Artifact))
    engine.dispose()
    storage = service.data_dir / "storage"
    files = sorted(str(p.relative_to(storage)) for p in storage.rglob("*") if p.is_file()) \
        if storage.exists() else []
    return (*counts, files)  # type: ignore[return-value]


def _brief(**changes: object) -> dict[str, object]:
    brief = yaml.safe_load(EXAMPLE)
    brief.update(changes)
    return brief


def test_a_brief_submitted_as_yaml_json_or_form_can_be_read_back(service: Service) -> None:
    with service.client() as client:
        as_yaml = client.post("/api/briefs", content=EXAMPLE,
                              headers={"Content-Type": "application/yaml"})
        as_json = client.post("/api/briefs?requires_approval=true", json=_brief())
        assert as_yaml.status_code == as_json.status_code == 201, (as_yaml.text, as_json.text)
        assert as_yaml.headers["location"] == f"/api/briefs/{as_yaml.json()['id']}"
        png = (ROOT / "tests" / "app" / "first_frame.png").read_bytes()
        scenes = _brief()["scenes"]
        scenes[0]["first_frame"] = "hero.png"  # type: ignore[index]
        form = client.post("/api/briefs", files={
            "brief": ("brief.yaml", yaml.safe_dump(_brief(scenes=scenes)), "application/yaml"),
            "first_frames": ("hero.png", png, "image/png")})
        assert form.status_code == 201, form.text

        read = client.get(f"/api/briefs/{as_json.json()['id']}").json()
        assert read["status"] == "submitted" and read["team"] == "emea"
        assert read["requires_approval"] is True and read["active"] is True
        assert read["locales"] == ["en-US", "de-DE"] and read["aspects"] == ["16:9", "9:16"]
        assert client.get(f"/api/briefs/{as_yaml.json()['id']}").json()[
            "requires_approval"] is False
        listed = [b["id"] for b in client.get("/api/briefs").json()]
        assert {as_yaml.json()["id"], as_json.json()["id"], form.json()["id"]} <= set(listed)
    stored = [f for f in _counts(service)[3] if f.startswith("inputs/")]
    assert any(f.endswith(".png") for f in stored), "the uploaded first frame was not stored"


def test_another_teams_brief_is_not_found_and_tokens_are_required(service: Service) -> None:
    with service.client("emea") as emea, service.client("apac") as apac, \
            service.client(None) as anonymous:
        brief_id = emea.post("/api/briefs", json=_brief()).json()["id"]
        for path in (f"/api/briefs/{brief_id}", f"/api/briefs/{brief_id}/deliverables"):
            response = apac.get(path)
            assert response.status_code == 404 and brief_id in response.json()["detail"]
            assert "emea" not in response.text and "aurora" not in response.text
        assert brief_id not in [b["id"] for b in apac.get("/api/briefs").json()]
        assert anonymous.get(f"/api/briefs/{brief_id}").status_code == 401
        assert anonymous.get("/api/briefs").status_code == 401
        wrong = httpx.get(f"{service.url}/api/briefs", headers={
            "Authorization": "Bearer mova_not-a-token"})
        assert wrong.status_code == 401 and "token" in wrong.json()["detail"]
        # the raw token in a cookie is not accepted (pages use a server-side session)
        for name in ("mova_token", "mova_session"):
            cookie = httpx.get(f"{service.url}/api/briefs/{brief_id}",
                               cookies={name: service.tokens["emea"]})
            assert cookie.status_code == 401


@pytest.mark.parametrize("path", [
    "/api/briefs/00000000-0000-0000-0000-000000000000", "/api/briefs/not-an-id",
    "/api/deliverables/00000000-0000-0000-0000-000000000000",
    "/api/deliverables/not-an-id/files/video"])
def test_unknown_ids_are_404_with_a_message(service: Service, path: str) -> None:
    with service.client() as client:
        response = client.get(path)
    assert response.status_code == 404 and response.json()["detail"]


def test_decisions_on_unknown_or_foreign_deliverables_are_404(service: Service) -> None:
    with service.client("apac") as client:
        response = client.post("/api/deliverables/00000000-0000-0000-0000-000000000000/approve",
                               json={"comment": "fine"})
        assert response.status_code == 404
        response = client.post("/api/deliverables/00000000-0000-0000-0000-000000000000/reject",
                               json={"comment": ""})
        assert response.status_code == 422
        assert response.json()["problems"][0]["path"] == "comment"


def test_a_malformed_brief_is_422_with_every_problem_and_leaves_nothing(
        service: Service) -> None:
    before = _counts(service)
    bad = EXAMPLE.replace("[en-US, de-DE]", "[en-US, xx-QQ]").replace("duration_s: 1.0",
                                                                      "duration_s: -2")
    with service.client("lint") as client:  # invalid briefs count toward its rate limit
        response = client.post("/api/briefs", content=bad,
                               headers={"Content-Type": "text/yaml"})
        assert response.status_code == 422
        paths = {p["path"] for p in response.json()["problems"]}
        assert {"locales[1]", "scenes[0].duration_s"} <= paths, response.text
        not_yaml = client.post("/api/briefs", content="campaign: [unclosed",
                               headers={"Content-Type": "application/yaml"})
        assert not_yaml.status_code == 422 and not_yaml.json()["problems"]
        not_json = client.post("/api/briefs", content="{not json",
                               headers={"Content-Type": "application/json"})
        assert not_json.status_code == 422
        # a first frame must come with the brief: the server's own files are never read
        scenes = _brief()["scenes"]
        scenes[0]["first_frame"] = "pyproject.toml"  # type: ignore[index]
        missing = client.post("/api/briefs", json=_brief(scenes=scenes))
        assert missing.status_code == 422
        assert missing.json()["problems"][0]["path"] == "scenes[0].first_frame"
        wrong_type = client.post("/api/briefs", content=b"\x00\x01",
                                 headers={"Content-Type": "application/octet-stream"})
        assert wrong_type.status_code == 415 and "Content-Type" in wrong_type.json()["detail"]
    assert _counts(service) == before


def test_oversize_bodies_are_413_whether_declared_or_streamed(service: Service) -> None:
    before = _counts(service)
    padding = "#" + "x" * (BODY_LIMIT + 10) + "\n"
    with service.client() as client:
        declared = client.post("/api/briefs", content=EXAMPLE + padding,
                               headers={"Content-Type": "application/yaml"})
        assert declared.status_code == 413
        assert f"{BODY_LIMIT:,}" in declared.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield EXAMPLE.encode()
            for _ in range(40):
                yield b"#" + b"x" * 10_000 + b"\n"

        streamed = client.post("/api/briefs", content=chunks(),
                               headers={"Content-Type": "application/yaml"})
        assert streamed.status_code == 413
    assert _counts(service) == before


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_an_oversize_decision_is_413_when_streamed_too(service: Service, verb: str) -> None:
    def chunks() -> Iterator[bytes]:  # JSON, no Content-Length: FastAPI parses it as it comes
        yield b'{"comment": "'
        for _ in range(40):
            yield b"a" * 10_000

    with service.client() as client:
        for body in (b"".join(chunks()), chunks()):  # declared, then streamed
            response = client.post(f"{UNKNOWN}/{verb}", content=body,
                                   headers={"Content-Type": "application/json"})
            assert response.status_code == 413, response.text
            assert f"{BODY_LIMIT:,} bytes (API_MAX_BODY_BYTES)" in response.json()["detail"]


def test_submissions_beyond_the_per_minute_limit_are_429(service: Service) -> None:
    with service.client("flood") as client:
        # distinct briefs: the same brief again would be answered 200 with the first one
        accepted = [client.post("/api/briefs", json=_brief(seed=i)).status_code
                    for i in range(PER_MINUTE)]
        before = _counts(service)
        refused = client.post("/api/briefs", json=_brief(seed=PER_MINUTE))
    assert accepted == [201] * PER_MINUTE
    assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
    assert f"limit {PER_MINUTE}" in refused.json()["detail"]
    assert _counts(service) == before
    with service.client("apac") as other:  # the limit is per team
        assert other.post("/api/briefs", json=_brief()).status_code == 201


def _planted_in_review(service: Service) -> str:
    """A variant of team "judge" waiting in review, planted in the service's database: a
    decision without a re-render needs no production run nor files."""
    engine = make_engine(service.database_url)
    with session_scope(engine) as session:
        brief = add_brief(session, campaign_slug="planted", brand="Aurora",
                          raw=json.dumps(_brief(campaign="planted")), sha256=uuid4().hex * 2,
                          team="judge")
        row = ensure_deliverable(session, brief, name="s/en-US/16x9", scene_id="s",
                                 locale="en-US", aspect="16:9", render_key=uuid4().hex * 2)
        row.status = DeliverableStatus.IN_REVIEW
        deliverable_id = str(row.id)
    engine.dispose()
    return deliverable_id


def _brief_of(service: Service, deliverable_id: str) -> UUID:
    engine = make_engine(service.database_url)
    with session_scope(engine) as session:
        brief_id = session.get(Deliverable, UUID(deliverable_id)).brief_id  # type: ignore[union-attr]
    engine.dispose()
    return brief_id


def _refused(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_scene_id_without_rerender_is_422_and_leaves_the_variant_in_review(
        service: Service) -> None:
    base = f"/api/deliverables/{_planted_in_review(service)}"
    with service.client("judge") as client:
        refused = _refused(client.post(f"{base}/reject", json={
            "comment": "bad", "rerender": False, "scene_id": "face-greets"}), 422)
        assert refused["problems"] == [{"path": "scene_id", "message": (
            "scene_id re-renders one scene; it needs rerender: true")}]
        _refused(client.post(f"{base}/reject", json={"comment": "bad", "scene_id": "s"}), 422)
        assert client.get(base).json()["status"] == "in_review"


def test_a_misspelt_decision_field_is_422_not_a_final_rejection(service: Service) -> None:
    """'rerendr' was ignored: the variant was rejected for good without the re-render asked."""
    base = f"/api/deliverables/{_planted_in_review(service)}"
    with service.client("judge") as client:
        refused = _refused(client.post(f"{base}/reject", json={
            "comment": "wrong colour", "rerendr": True}), 422)
        assert [p["path"] for p in refused["problems"]] == ["rerendr"]
        _refused(client.post(f"{base}/approve", json={"coment": "fine"}), 422)
        assert client.get(base).json()["status"] == "in_review"


def test_a_blank_comment_is_no_reason_and_a_blank_reviewer_is_the_teams_name(
        service: Service) -> None:
    base = f"/api/deliverables/{_planted_in_review(service)}"
    with service.client("judge") as client:
        for blank in (" ", "\n\t "):
            refused = _refused(client.post(f"{base}/reject", json={"comment": blank}), 422)
            assert [p["path"] for p in refused["problems"]] == ["comment"]
        assert client.get(base).json()["status"] == "in_review"
        # the reviewer is optional: blank is as good as left out (the page sends what is typed)
        rejected = _refused(client.post(f"{base}/reject", json={
            "comment": "  too dark ", "reviewer": " \t"}), 200)
    [decision] = rejected["decisions"]
    assert (decision["reviewer"], decision["comment"]) == ("judge", "too dark")


def test_a_comment_or_reviewer_with_control_characters_or_nothing_visible_is_422(
        service: Service) -> None:
    """A NUL in a comment or a reviewer's name was a 500 on PostgreSQL (its text cannot hold
    one), and control or zero-width characters alone passed as a rejection's reason."""
    base = f"/api/deliverables/{_planted_in_review(service)}"
    with service.client("judge") as client:
        for field, body in (("comment", {"comment": "too\x00dark"}),
                            ("comment", {"comment": "\x01\x02"}),
                            ("comment", {"comment": "\u200b\u200d"}),
                            ("reviewer", {"comment": "too dark", "reviewer": "ann\x00"}),
                            ("reviewer", {"comment": "too dark", "reviewer": "\u200b"})):
            refused = _refused(client.post(f"{base}/reject", json=body), 422)
            assert [p["path"] for p in refused["problems"]] == [field], (body, refused)
        assert _refused(client.post(f"{base}/approve", json={"comment": "ok\x00"}),
                        422)["problems"][0]["path"] == "comment"
        assert client.get(base).json()["status"] == "in_review"
        rejected = _refused(client.post(f"{base}/reject", json={
            "comment": "zu dunkel,\nbitte heller", "reviewer": "أحمد"}), 200)
    [decision] = rejected["decisions"]
    assert (decision["reviewer"], decision["comment"]) == ("أحمد", "zu dunkel,\nbitte heller")


def test_a_decision_on_a_variant_no_longer_in_review_is_409_in_words(service: Service) -> None:
    base = f"/api/deliverables/{_planted_in_review(service)}"
    with service.client("judge") as client:
        assert client.post(f"{base}/reject", json={"comment": "no"}).status_code == 200
        for verb, done in (("approve", "approved"), ("reject", "rejected")):
            refused = _refused(client.post(f"{base}/{verb}", json={"comment": "again"}), 409)
            assert refused["detail"].endswith(f"is rejected; only a deliverable in review can "
                                              f"be {done}"), refused
    page = httpx.get(f"{service.url}/briefs/{_brief_of(service, base.rsplit('/', 1)[1])}",
                     cookies=service.page_cookies("judge"), timeout=60)
    assert page.status_code == 200 and "rejected by <bdi>judge</bdi>" in page.text  # not "rejectd"


def test_a_right_to_left_override_in_a_decision_stays_inside_its_own_text_on_the_page(
        service: Service) -> None:
    """A reviewer's name or comment with U+202E (right-to-left override) and no closing
    mark turned the rest of its line around: "(judge), <date>" read backwards. Each is now
    isolated (<bdi>), as Arabic or Hebrew text is, and the line around it reads as written."""
    deliverable_id = _planted_in_review(service)
    with service.client("judge") as client:
        _refused(client.post(f"/api/deliverables/{deliverable_id}/reject", json={
            "comment": "\u202ereversed", "reviewer": "\u202eann"}), 200)
    page = httpx.get(f"{service.url}/briefs/{_brief_of(service, deliverable_id)}",
                     cookies=service.page_cookies("judge"), timeout=60).text
    assert "by <bdi>\u202eann</bdi> (judge)," in page
    assert ": “<bdi>\u202ereversed</bdi>”" in page


def _new_video(service: Service, deliverable_id: str) -> str:
    """Point a planted variant at a new video, as a re-render back in review does; its id."""
    engine = make_engine(service.database_url)
    with session_scope(engine) as session:
        video = add_artifact(session, kind="video", input_key=uuid4().hex * 2,
                             sha256=uuid4().hex * 2, uri="file:///nowhere.mp4", size_bytes=1,
                             content_type="video/mp4", task="test.plant", code_version="test")
        session.get(Deliverable, UUID(deliverable_id)).video_artifact_id = video.id
        video_id = str(video.id)
    engine.dispose()
    return video_id


def test_a_decision_made_on_a_video_that_was_rendered_again_since_is_409(
        service: Service) -> None:
    """A reviewer whose page still showed the first render (the page stops polling once
    everything waits in review) pressed Approve after a colleague's re-render came back to
    review: the new render was approved unseen. The page sends the video it shows; a decision
    on another one is refused, and one on the video in review stands."""
    deliverable_id = _planted_in_review(service)
    base = f"/api/deliverables/{deliverable_id}"
    seen = _new_video(service, deliverable_id)
    with service.client("judge") as client:
        assert client.get(base).json()["video_id"] == seen
    rendered_again = _new_video(service, deliverable_id)
    with service.client("judge") as client:
        for verb in ("approve", "reject"):
            refused = _refused(client.post(f"{base}/{verb}", json={
                "comment": "no", "video_id": seen}), 409)
            assert "rendered again since" in refused["detail"], refused
        assert client.get(base).json()["status"] == "in_review"
        rejected = _refused(client.post(f"{base}/reject", json={
            "comment": "no", "video_id": rendered_again}), 200)
    assert rejected["status"] == "rejected"


def test_the_review_page_sends_the_video_it_shows_with_a_decision(service: Service) -> None:
    deliverable_id = _planted_in_review(service)
    video_id = _new_video(service, deliverable_id)
    page = httpx.get(f"{service.url}/briefs/{_brief_of(service, deliverable_id)}",
                     cookies=service.page_cookies("judge"), timeout=60).text
    assert page.count(f'data-video="{video_id}"') == 1  # on the spot's card
    assert "video_id: card.dataset.video || null" in page


def test_reviewers_deciding_one_variant_at_once_get_one_decision_and_409s(
        service: Service) -> None:
    """Eight reviewers press Reject on the same variant at the same moment: one decision is
    recorded, the others are told it was decided (on PostgreSQL each used to record its own,
    and an approval racing a rejection could publish a rejected spot)."""
    base = f"/api/deliverables/{_planted_in_review(service)}"
    start = threading.Barrier(8)

    def reject(reviewer: int) -> int:
        with service.client("judge") as client:
            start.wait()
            return client.post(f"{base}/reject", json={"comment": "no",
                                                       "reviewer": f"r{reviewer}"}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(reject, range(8)))
    assert statuses == [200] + [409] * 7
    with service.client("judge") as client:
        variant = client.get(base).json()
    assert variant["status"] == "rejected" and len(variant["decisions"]) == 1


def test_the_briefs_page_of_a_team_with_more_briefs_than_one_page_shows_them_all(
        service: Service) -> None:
    """The page listed the newest 100 briefs and no more: the 101st, and its campaign page,
    could no longer be reached from it. Now it shows 100 a page, newest first, and links the
    next."""
    engine = make_engine(service.database_url)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with session_scope(engine) as session:
        for i in range(101):
            row = add_brief(session, campaign_slug=f"old-{i}", brand="Aurora",
                            raw=json.dumps(_brief(campaign=f"old-{i}")), sha256=uuid4().hex * 2,
                            team="archive")
            row.created_at = start + timedelta(minutes=i)
    engine.dispose()
    cookies = service.page_cookies("archive")
    first = httpx.get(f"{service.url}/briefs", cookies=cookies, timeout=60)
    assert first.status_code == 200
    assert first.text.count('<a href="/briefs/') == 100 and ">old-100<" in first.text
    assert ">old-0<" not in first.text
    assert 'href="/briefs?page=2"' in first.text
    second = httpx.get(f"{service.url}/briefs?page=2", cookies=cookies, timeout=60)
    assert second.status_code == 200 and second.text.count('<a href="/briefs/') == 1
    assert ">old-0<" in second.text and 'href="/briefs?page=1"' in second.text
    assert 'href="/briefs?page=3"' not in second.text


def test_openapi_docs_are_served(service: Service) -> None:
    assert httpx.get(f"{service.url}/docs").status_code == 200
    spec = httpx.get(f"{service.url}/openapi.json").json()
    assert {"/api/briefs", "/api/briefs/{brief_id}", "/api/deliverables/{deliverable_id}/approve",
            "/api/deliverables/{deliverable_id}/files/{kind}"} <= set(spec["paths"])


ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


def test_openapi_declares_the_errors_as_sent_and_the_brief_formats(service: Service) -> None:
    spec = httpx.get(f"{service.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's 422 shape, never sent here
    assert set(schemas["ErrorBody"]["properties"]) == {"detail", "problems", "total"}
    assert schemas["ErrorBody"]["required"] == ["detail"]
    errors = {(path, method): {int(code): answer for code, answer in op["responses"].items()
                               if code.startswith(("4", "5"))}
              for path, ops in spec["paths"].items() for method, op in ops.items()}
    for operation, answers in errors.items():
        for answer in answers.values():
            assert answer["content"]["application/json"]["schema"] == ERROR_BODY, operation
    decision = {400, 401, 403, 404, 409, 413, 415, 422, 503}
    assert set(errors["/api/deliverables/{deliverable_id}/reject", "post"]) == decision
    assert set(errors["/api/deliverables/{deliverable_id}/approve", "post"]) == decision
    assert set(errors["/api/briefs", "post"]) == {400, 401, 403, 413, 415, 422, 429, 503}
    assert set(errors["/api/briefs/{brief_id}", "get"]) == {401, 404, 422}
    assert set(errors["/api/briefs", "get"]) == {401}
    assert errors["/api/briefs", "post"][429]["headers"]["Retry-After"]
    assert errors["/api/briefs", "get"][401]["headers"]["WWW-Authenticate"]

    submit = spec["paths"]["/api/briefs"]["post"]
    assert {"200", "201"} <= set(submit["responses"])  # the same brief again: 200
    body = submit["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == {"application/yaml", "application/json",
                                    "multipart/form-data"}
    form = body["content"]["multipart/form-data"]["schema"]
    assert set(form["properties"]) == {"brief", "first_frames", "requires_approval"}
    assert form["properties"]["first_frames"]["items"]["format"] == "binary"


def test_a_brief_naming_a_lora_the_team_has_not_registered_is_422(service: Service,
                                                                   tmp_path: Path) -> None:
    from infra.settings import load_settings
    from tasks.lora import register_lora
    from tasks.services import Services
    from tests.mova_model.test_lora import CONFIG, make_factors, write_lora

    brief = _brief(campaign="lora-door", lora={"name": "mascot", "scale": 0.8})
    with service.client("brand") as client:
        refused = client.post("/api/briefs", json=brief)
        assert refused.status_code == 422
        assert refused.json()["problems"][0]["path"] == "lora.name"
        assert "no LoRA named 'mascot'" in refused.json()["problems"][0]["message"]
        with Services(load_settings({"MOVA_DATA_DIR": str(service.data_dir),
                                     "DATABASE_URL": service.database_url})) as services:
            register_lora(services, "brand", "mascot",
                          write_lora(tmp_path / "mascot", make_factors(), CONFIG))
        accepted = client.post("/api/briefs", json=brief)
        assert accepted.status_code == 201, accepted.text
    with service.client("apac") as client:  # LoRAs belong to the team that registered them
        assert client.post("/api/briefs", json=brief).status_code == 422


def test_the_review_page_says_when_a_decision_got_no_answer_it_can_read(
        service: Service) -> None:
    """A proxy's 502 (plain text) or a dropped connection made the page's script throw: the
    reviewer saw nothing and could not tell the decision was not made. In Chromium, with the
    answers replaced on the way: each is shown, the buttons come back, nothing is decided."""
    from playwright.sync_api import Route, expect, sync_playwright

    from tests.servers import require_chromium

    chromium = require_chromium()
    deliverable_id = _planted_in_review(service)
    base = f"/api/deliverables/{deliverable_id}"
    brief_id = _brief_of(service, deliverable_id)
    cookie = service.page_cookies("judge")["mova_session"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "mova_session", "value": cookie,
                                  "url": service.url}])
            page = context.new_page()
            page.goto(f"{service.url}/briefs/{brief_id}")
            card = page.locator(f"[data-variant='{deliverable_id}']")
            shown = page.locator("#action-error")

            def bad_gateway(route: Route) -> None:
                route.fulfill(status=502, content_type="text/plain", body="Bad Gateway")

            page.route(f"**{base}/approve", bad_gateway)
            card.locator("button.approve").click()
            expect(shown).to_have_text("the service answered 502 Bad Gateway; nothing was "
                                       "decided, try again")
            expect(card.locator("button.approve")).to_be_enabled()

            page.unroute(f"**{base}/approve")
            page.route(f"**{base}/approve", lambda route: route.abort("connectionrefused"))
            card.locator("button.approve").click()
            expect(shown).to_contain_text("the service could not be reached (")
            expect(card.locator("button.approve")).to_be_enabled()

            # our own refusals are JSON and read as before: a rejection needs a reason
            card.locator("button.reject").first.click()
            expect(shown).to_contain_text("comment")
        finally:
            browser.close()
    with service.client("judge") as client:
        assert client.get(base).json()["status"] == "in_review"


def test_a_brief_waiting_after_a_failed_planning_says_why_on_its_page(service: Service) -> None:
    """A brief whose planning failed waited in `submitted` with nothing shown; its page (and
    the API) give the reason, under a heading that says it waits (not "invalid")."""
    from infra.repository import PLANNING_PROBLEM, release_claim, set_brief_status
    from infra.statuses import BriefStatus

    engine = make_engine(service.database_url)
    with session_scope(engine) as session:
        brief = add_brief(session, campaign_slug="waiting", brand="Aurora",
                          raw=json.dumps(_brief(campaign="waiting")), sha256=uuid4().hex * 2,
                          team="judge")
        set_brief_status(session, brief.id, BriefStatus.CLAIMED)
        release_claim(session, brief.id, "inputs/judge/ab12.png does not exist")
        brief_id = brief.id
    engine.dispose()
    with service.client("judge") as client:
        view = client.get(f"/api/briefs/{brief_id}").json()
    assert view["status"] == "submitted"
    assert view["problems"][0][0] == PLANNING_PROBLEM
    page = httpx.get(f"{service.url}/briefs/{brief_id}", cookies=service.page_cookies("judge"),
                     timeout=60).text
    assert "waiting: its last planning attempt failed" in page
    assert "inputs/judge/ab12.png does not exist" in page and "became invalid" not in page


def test_an_approved_spot_whose_publishing_stopped_can_be_published_again_from_its_page(
        service: Service) -> None:
    """Approved, then publishing failed (storage down): the variant stayed 'approved' with no
    button anywhere (only the API, called again, could finish it)."""
    deliverable_id = _planted_in_review(service)
    engine = make_engine(service.database_url)
    with session_scope(engine) as session:
        session.get(Deliverable, UUID(deliverable_id)).status = DeliverableStatus.APPROVED  # type: ignore[union-attr]
    engine.dispose()
    page = httpx.get(f"{service.url}/briefs/{_brief_of(service, deliverable_id)}",
                     cookies=service.page_cookies("judge"), timeout=60).text
    card = page[page.index(f'data-variant="{deliverable_id}"'):]
    card = card[:card.index('class="variant"')] if 'class="variant"' in card else card
    assert f'<button class="approve" data-id="{deliverable_id}">Publish again</button>' in card
    assert "comment ? comment.value" in page  # the script sends no comment from that card
