"""A review decision is an OpenLineage run like every other task's: START, then COMPLETE with
the decision file as its output (it used to send COMPLETE alone)."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import uuid4

from infra import repository as repo
from infra.db import session_scope
from infra.lineage_events import EVENTS_FILE
from infra.settings import load_settings
from infra.statuses import DeliverableStatus
from schemas.brief import load_brief
from tasks import review
from tasks.services import Services
from tests.example_brief import example_text


def test_a_rejection_is_a_lineage_run_that_starts_and_completes(tmp_path: Path) -> None:
    with Services(load_settings({"MOVA_DATA_DIR": str(tmp_path)})) as services:
        with session_scope(services.engine) as session:
            brief = repo.add_brief(session, campaign_slug="spring", brand="Aurora",
                                   raw=load_brief(example_text()).model_dump_json(),
                                   sha256=uuid4().hex * 2)
            row = repo.ensure_deliverable(session, brief, name="s/en-US/16x9", scene_id="s",
                                          locale="en-US", aspect="16:9",
                                          render_key=uuid4().hex * 2)
            row.status = DeliverableStatus.IN_REVIEW
            deliverable_id = row.id
        review.reject(services, deliverable_id, team="emea", reviewer="ann",
                      comment="too dark", rerender=False)
        events = [json.loads(line) for line in
                  (services.settings.lineage_dir / EVENTS_FILE).read_text().splitlines()]
    runs = [e for e in events if e["job"]["name"] == "review.reject"]
    assert [e["eventType"] for e in runs] == ["START", "COMPLETE"]
    assert len({e["run"]["runId"] for e in runs}) == 1
    for run in runs:
        assert [(i["namespace"], i["name"]) for i in run["inputs"]] == [
            ("deliverable", str(deliverable_id))]
    assert runs[1]["outputs"][0]["name"].endswith(".json")
