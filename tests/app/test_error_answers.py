"""Requests a hostile user sends (the app in-process on SQLite): each is answered as the
README says, never with a plain-text 500."""

from __future__ import annotations

import json
import logging
from uuid import uuid4

import pytest
import yaml
from fastapi.testclient import TestClient

from app import pages
from infra import repository
from infra.db import session_scope
from infra.repository import add_artifact, add_brief, ensure_deliverable
from infra.statuses import DeliverableStatus
from tasks.services import Services
from tests.example_brief import example_text

VIDEO = bytes(range(256)) * 4  # 1,024 bytes, each byte telling its offset


def test_a_briefs_page_past_the_last_shows_the_last(client: TestClient,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Its offset was too large for SQLite's integers: a plain-text 500."""
    monkeypatch.setattr(pages, "BRIEFS_PER_PAGE", 1)
    for seed in (1, 2):
        assert client.post("/api/briefs", json={**yaml.safe_load(example_text()),
                                                "seed": seed}).status_code == 201
    oldest = client.get("/api/briefs").json()[-1]["id"]
    answer = client.get("/briefs?page=99999999999999999")
    assert answer.status_code == 200, answer.text
    assert "page 2 of 2" in answer.text and f'href="/briefs/{oldest}"' in answer.text


def _video_in_review(services: Services) -> str:
    """A variant of team emea in review with VIDEO as its file in local storage; its URL."""
    key = "review/deliverables/planted.mp4"
    services.store.put_bytes(VIDEO, key, content_type="video/mp4")
    with session_scope(services.engine) as session:
        brief = add_brief(session, campaign_slug="planted", brand="Aurora",
                          raw=json.dumps(yaml.safe_load(example_text())),
                          sha256=uuid4().hex * 2, team="emea")
        row = ensure_deliverable(session, brief, name="s/en-US/16x9", scene_id="s",
                                 locale="en-US", aspect="16:9", render_key=uuid4().hex * 2)
        row.video_artifact_id = add_artifact(
            session, kind="video", input_key=uuid4().hex * 2, sha256=uuid4().hex * 2,
            uri=services.store.uri_for(key), size_bytes=len(VIDEO), content_type="video/mp4",
            task="test.plant", code_version="test", params={"key": key}).id
        row.status = DeliverableStatus.IN_REVIEW
        return f"/api/deliverables/{row.id}/files/video"


@pytest.mark.parametrize(("asked", "start", "end"), [
    ("bytes=100-199", 100, 199), ("bytes=-500", 524, 1023), ("bytes=1000-", 1000, 1023)])
def test_a_range_in_the_file_is_206_with_its_bytes(client: TestClient, asked: str, start: int,
                                                   end: int) -> None:
    answer = client.get(_video_in_review(client.app.state.services), headers={"Range": asked})
    assert answer.status_code == 206, answer.text
    assert answer.headers["content-range"] == f"bytes {start}-{end}/{len(VIDEO)}"
    assert answer.content == VIDEO[start:end + 1]


def test_a_range_past_the_end_is_a_json_416_with_the_size(client: TestClient) -> None:
    answer = client.get(_video_in_review(client.app.state.services),
                        headers={"Range": "bytes=999999999-999999999999"})
    assert answer.status_code == 416
    assert answer.headers["content-range"] == f"bytes */{len(VIDEO)}"
    assert "past the file's end" in answer.json()["detail"]
    route = client.get("/openapi.json").json()["paths"][
        "/api/deliverables/{deliverable_id}/files/{kind}"]["get"]
    assert route["responses"]["416"]["headers"]["Content-Range"]


@pytest.mark.parametrize("asked", ["bytes=abc", "bytes=200-100", "pages=1-2", "bytes"])
def test_a_malformed_range_is_ignored_the_whole_file_is_200(client: TestClient,
                                                             asked: str) -> None:
    """RFC 9110 §14.2 lets a server ignore a Range it cannot read (and an unknown unit must
    be ignored); Starlette answered 400 in plain text."""
    answer = client.get(_video_in_review(client.app.state.services), headers={"Range": asked})
    assert answer.status_code == 200, answer.text
    assert answer.content == VIDEO


def test_an_unhandled_error_is_a_json_500_and_its_traceback_is_logged(
        client: TestClient, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Starlette's answer was a plain-text `Internal Server Error`."""
    def broken(*args: object) -> None:
        raise RuntimeError("secret: /srv/mova/settings.env")

    monkeypatch.setattr(repository, "team_briefs", broken)
    with caplog.at_level(logging.ERROR, logger="app.errors"):
        answer = client.get("/api/briefs")
    assert answer.status_code == 500
    detail = answer.json()["detail"]
    assert detail.startswith("internal error ") and "secret" not in answer.text
    # answered outside the security-headers middleware, it carries them itself
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    [record] = caplog.records
    reference = detail.split()[2].rstrip(":")
    assert reference in record.getMessage() and "GET /api/briefs" in record.getMessage()
    assert record.exc_info is not None and "secret" in str(record.exc_info[1])


def test_a_decisions_problems_are_in_our_words_without_pydantics_prefix(
        client: TestClient) -> None:
    """They read "Value error, no visible character ...", as briefs' problems no longer do."""
    answer = client.post(f"/api/deliverables/{uuid4()}/approve", json={"comment": "\u200b"})
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["problems"]
    assert problem["path"] == "comment"
    assert problem["message"].startswith("no visible character"), problem
