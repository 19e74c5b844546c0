"""A review decision is an OpenLineage run like every other task's: START, then COMPLETE with
the decision file as its output (it used to send COMPLETE alone), or FAIL when the decision
was not kept."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from infra import repository as repo
from infra.db import make_engine, session_scope
from infra.lineage_events import EVENTS_FILE
from infra.settings import load_settings
from infra.statuses import DeliverableStatus
from schemas.brief import load_brief
from tasks import review
from tasks.services import Services
from tests.example_brief import example_text


def _in_review(services: Services) -> UUID:
    """A scene deliverable waiting for review; its id."""
    with session_scope(services.engine) as session:
        brief = repo.add_brief(session, campaign_slug="spring", brand="Aurora",
                               raw=load_brief(example_text()).model_dump_json(),
                               sha256=uuid4().hex * 2)
        row = repo.ensure_deliverable(session, brief, name="s/en-US/16x9", scene_id="s",
                                      locale="en-US", aspect="16:9",
                                      render_key=uuid4().hex * 2)
        row.status = DeliverableStatus.IN_REVIEW
        return row.id


def _review_runs(services: Services, job: str) -> list[dict]:
    events = [json.loads(line) for line in
              (services.settings.lineage_dir / EVENTS_FILE).read_text().splitlines()]
    return [e for e in events if e["job"]["name"] == job]


def test_a_rejection_is_a_lineage_run_that_starts_and_completes(tmp_path: Path) -> None:
    with Services(load_settings({"MOVA_DATA_DIR": str(tmp_path)})) as services:
        deliverable_id = _in_review(services)
        review.reject(services, deliverable_id, team="emea", reviewer="ann",
                      comment="too dark", rerender=False)
        runs = _review_runs(services, "review.reject")
    assert [e["eventType"] for e in runs] == ["START", "COMPLETE"]
    assert len({e["run"]["runId"] for e in runs}) == 1
    for run in runs:
        assert [(i["namespace"], i["name"]) for i in run["inputs"]] == [
            ("deliverable", str(deliverable_id))]
    assert runs[1]["outputs"][0]["name"].endswith(".json")


def test_a_decision_cut_at_its_commit_fails_its_run_and_can_be_made_again(
        tmp_path: Path, fresh_postgres_url: str) -> None:
    # The database connection dies at the decision's COMMIT: the decision is not kept, yet the
    # lineage run had already said COMPLETE (before the commit) with the decision file as its
    # output. Now it says FAIL, and the reviewer's second try is the run that completes.
    settings = load_settings({"MOVA_DATA_DIR": str(tmp_path), "DATABASE_URL": fresh_postgres_url})
    admin = make_engine(fresh_postgres_url)

    cut: list[int] = []

    def cut_at_commit(session: Session) -> None:
        if session.in_nested_transaction() or cut:  # a savepoint's release, or done already
            return
        pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with admin.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid})
        cut.append(pid)

    with Services(settings) as services:
        deliverable_id = _in_review(services)
        event.listen(Session, "before_commit", cut_at_commit)
        try:
            with pytest.raises(OperationalError):
                review.reject(services, deliverable_id, team="emea", reviewer="ann",
                              comment="too dark", rerender=False)
        finally:
            event.remove(Session, "before_commit", cut_at_commit)
        assert cut, "the decision's transaction was not cut at its commit"
        with session_scope(services.engine) as session:
            row = repo.get_deliverable(session, deliverable_id)
            assert row.status == DeliverableStatus.IN_REVIEW and not row.decisions
        assert [e["eventType"] for e in _review_runs(services, "review.reject")] == [
            "START", "FAIL"]
        review.reject(services, deliverable_id, team="emea", reviewer="ann",
                      comment="too dark", rerender=False)
        runs = _review_runs(services, "review.reject")
    admin.dispose()
    assert [e["eventType"] for e in runs] == ["START", "FAIL", "START", "COMPLETE"]
    assert runs[0]["run"]["runId"] == runs[1]["run"]["runId"] != runs[2]["run"]["runId"]
