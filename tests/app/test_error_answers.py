"""Requests a hostile user sends (the app in-process on SQLite): each is answered as the
README says, never with a plain-text 500."""

from __future__ import annotations

import json
import logging
import threading
import time
from uuid import uuid4

import httpx
import pytest
import uvicorn
import yaml
from fastapi.testclient import TestClient

from app import pages
from infra import repository
from infra.db import session_scope
from infra.repository import add_artifact, add_brief, ensure_deliverable
from infra.statuses import DeliverableStatus
from tasks.services import Services
from tests.example_brief import example_text
from tests.servers import free_port

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


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_unhandled_errors_traceback_is_in_the_servers_log_once(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under uvicorn, Starlette's re-raise after the 500 handler made the server log the
    same traceback a second time ("Exception in ASGI application")."""
    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(repository, "team_briefs", broken)
    records = _Records()
    loggers = [logging.getLogger(name) for name in ("app.errors", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(records)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port,
                                           log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        answer = httpx.get(f"http://127.0.0.1:{port}/api/briefs", timeout=30,
                           headers={"Authorization": client.headers["Authorization"]})
        assert answer.status_code == 500
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        for logger in loggers:
            logger.removeHandler(records)
    tracebacks = [r for r in records.records if r.exc_info is not None]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    assert tracebacks[0].name == "app.errors"
    assert answer.json()["detail"].split()[2].rstrip(":") in tracebacks[0].getMessage()


def test_a_decisions_problems_are_in_our_words_without_pydantics_prefix(
        client: TestClient) -> None:
    """They read "Value error, no visible character ...", as briefs' problems no longer do."""
    answer = client.post(f"/api/deliverables/{uuid4()}/approve", json={"comment": "\u200b"})
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["problems"]
    assert problem["path"] == "comment"
    assert problem["message"].startswith("no visible character"), problem
