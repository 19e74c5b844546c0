"""OpenLineage events land in the file transport and reach an HTTP endpoint."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from uuid import uuid4

from infra.lineage_events import EVENTS_FILE, LineageEmitter


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


def test_events_are_posted_to_an_http_endpoint() -> None:
    received: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        emitter = LineageEmitter(http_url=f"http://127.0.0.1:{server.server_port}")
        emitter.complete("publish.deliverable", uuid4(), ["file:///a.mp4"], ["s3://b/a.mp4"])
    finally:
        server.shutdown()
    assert received and received[0]["eventType"] == "COMPLETE"
