"""OpenLineage events land in the file transport and reach an HTTP endpoint; an endpoint
that is down neither fails the caller nor loses the event."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from infra.lineage_events import ENDPOINT_PAUSE_S, EVENTS_FILE, LineageEmitter


def test_events_are_written_as_json_lines(tmp_path: Path) -> None:
    emitter = LineageEmitter(file_dir=tmp_path)
    run = uuid4()
    emitter.start("render.generate", run, ["s3://bucket/plans/p.json"])
    emitter.complete("render.generate", run, ["s3://bucket/plans/p.json"],
                     ["s3://bucket/renders/c.npz"])
    emitter.fail("finish.variant", uuid4(), ["file:///x/c.npz"], "ffmpeg exited 1")
    events = [json.loads(line) for line in (tmp_path / EVENTS_FILE).read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE", "FAIL"]
    assert events[1]["run"]["runId"] == str(run)
    assert events[1]["job"]["name"] == "render.generate"
    assert events[1]["outputs"][0] == {**events[1]["outputs"][0], "namespace": "s3://bucket",
                                       "name": "renders/c.npz"}
    assert events[2]["run"]["facets"]["errorMessage"]["message"] == "ffmpeg exited 1"


@dataclass
class _Post:
    path: str
    authorization: str | None
    body: dict[str, Any]


@contextmanager
def _endpoint(status: int) -> Iterator[tuple[str, list[_Post]]]:
    """A real HTTP endpoint on loopback answering every POST with `status`; its URL and the
    posts it received."""
    posts: list[_Post] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append(_Post(self.path, self.headers.get("Authorization"), json.loads(body)))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", posts
    finally:
        server.shutdown()


def test_events_are_posted_to_an_http_endpoint(tmp_path: Path) -> None:
    with _endpoint(201) as (url, posts):
        emitter = LineageEmitter(file_dir=tmp_path, http_url=url)
        emitter.complete("publish.deliverable", uuid4(), ["file:///a.mp4"], ["s3://b/a.mp4"])
    assert posts and posts[0].body["eventType"] == "COMPLETE"
    assert posts[0].authorization is None
    assert not emitter.undelivered_path.exists()


def test_an_api_key_is_sent_as_a_bearer_token(tmp_path: Path) -> None:
    """A hosted endpoint (Marquez behind a gateway, DataHub) wants a key: OPENLINEAGE_API_KEY
    (our transport is built here, so the client's own OPENLINEAGE__ settings are not read)."""
    from infra.settings import load_settings
    from tasks.services import Services

    with _endpoint(201) as (url, posts):
        settings = load_settings({"MOVA_DATA_DIR": str(tmp_path), "OPENLINEAGE_URL": url,
                                  "OPENLINEAGE_API_KEY": "k-123"})
        assert "k-123" not in repr(settings)
        Services(settings).lineage.start("plan.brief", uuid4(), [])
    assert [p.authorization for p in posts] == ["Bearer k-123"]


def test_an_endpoint_that_fails_keeps_the_events_and_is_paused(tmp_path: Path) -> None:
    """An endpoint answering 503 (or down, or slow) used to raise out of every task that emits
    (a finished render was then not recorded and the brief failed), after 9-39 s per event."""
    now = [0.0]
    with _endpoint(503) as (url, posts):
        emitter = LineageEmitter(file_dir=tmp_path, clock=lambda: now[0], http_url=url)
        runs = [uuid4() for _ in range(3)]
        emitter.start("render.generate", runs[0], [])
        tried = len(posts)
        emitter.complete("render.generate", runs[1], [], ["s3://b/c.npz"])  # paused: not posted
        assert len(posts) == tried
        now[0] += ENDPOINT_PAUSE_S
        emitter.fail("render.generate", runs[2], [], "boom")  # tried again after the pause
        assert len(posts) > tried
    assert 1 <= tried <= 2  # one retry, not five
    kept = [json.loads(line) for line in emitter.undelivered_path.read_text().splitlines()]
    assert [(e["eventType"], e["run"]["runId"]) for e in kept] == [
        ("START", str(runs[0])), ("COMPLETE", str(runs[1])), ("FAIL", str(runs[2]))]


def test_the_pause_holds_for_every_emitter_of_the_process(tmp_path: Path) -> None:
    """A run has several emitters (its flows' and its tasks' services): each tried the dead
    endpoint once, a timeout apiece, where the pause promises one a minute."""
    now = [0.0]

    def clock() -> float:
        return now[0]

    with _endpoint(503) as (url, posts):
        first, second = (LineageEmitter(file_dir=tmp_path / name, clock=clock, http_url=url)
                         for name in ("flow", "task"))
        first.start("ingest-briefs", uuid4(), [])
        tried = len(posts)
        second.start("render.generate", uuid4(), [])
        assert len(posts) == tried and tried >= 1
        assert second.undelivered_path.read_text().count("\n") == 1  # kept, not lost


def test_a_lineage_file_that_cannot_be_written_does_not_stop_production(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A full disk under the lineage folder made the file transport raise RuntimeError, which
    went up through the render that had just finished (its result was thrown away). Now the
    event is kept in undelivered.jsonl, or, when nothing there can be written either, in the
    log whole."""
    (tmp_path / EVENTS_FILE).mkdir()  # the events file cannot be opened for writing
    emitter = LineageEmitter(file_dir=tmp_path)
    first = uuid4()
    emitter.start("render.generate", first, [])
    [kept] = [json.loads(line) for line in emitter.undelivered_path.read_text().splitlines()]
    assert kept["run"]["runId"] == str(first)

    emitter.undelivered_path.unlink()
    emitter.undelivered_path.mkdir()  # and now neither file can be written
    second = uuid4()
    with caplog.at_level(logging.ERROR, logger="infra.lineage_events"):
        emitter.complete("render.generate", second, [], ["s3://b/c.npz"])
    [record] = [r for r in caplog.records if "lineage.unkept" in r.getMessage()]
    logged = json.loads(record.getMessage().split(" event=", 1)[1])
    assert logged["run"]["runId"] == str(second) and logged["eventType"] == "COMPLETE"
