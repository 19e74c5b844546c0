"""The review service plans a brief it claimed only under the brief's lock, as ingest runs
plan: a run planning the same brief (a claim of a run that died is planned by the next one)
holds that lock, and the service leaves the brief to it."""

from __future__ import annotations

from pathlib import Path

from app.orchestration import start_production
from infra import repository as repo
from infra.db import session_scope
from infra.locks import brief_lock
from infra.settings import load_settings
from infra.statuses import BriefStatus
from tasks.services import Services
from tasks.submission import submit_brief
from tests.example_brief import example_text


def test_a_brief_an_ingest_run_is_planning_is_left_to_it(
        tmp_path: Path, fresh_postgres_url: str, tiny_checkpoint: Path) -> None:
    settings = load_settings({
        "MOVA_DATA_DIR": str(tmp_path), "DATABASE_URL": fresh_postgres_url,
        "MOVA_CHECKPOINT": str(tiny_checkpoint),
        # never reached: the service stops before starting a flow run
        "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    with Services(settings) as services:
        brief_id = submit_brief(services, example_text())
        with brief_lock(services.engine, brief_id) as ingest_run:  # a run planning it
            assert ingest_run
            assert start_production(services, brief_id) is None
            with session_scope(services.engine) as session:
                brief = repo.get_brief(session, brief_id)
                # claimed by the service, not planned by it: no second plan beside the run's
                assert brief.status == BriefStatus.CLAIMED and not brief.deliverables


def test_a_brief_the_service_cannot_plan_waits_and_says_which_model_folder_is_missing(
        tmp_path: Path) -> None:
    """No model where MOVA_CHECKPOINT points: the brief goes back to the queue with a reason
    naming the folder (it said only "No such file or directory: 'model_index.json'"), and the
    background task ends quietly instead of as an unhandled ASGI exception."""
    settings = load_settings({
        "MOVA_DATA_DIR": str(tmp_path), "MOVA_CHECKPOINT": str(tmp_path / "models" / "mova"),
        "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    (tmp_path / "models" / "mova").mkdir(parents=True)
    with Services(settings) as services:
        brief_id = submit_brief(services, example_text())
        assert start_production(services, brief_id) is None
        with session_scope(services.engine) as session:
            brief = repo.get_brief(session, brief_id)
            assert brief.status == BriefStatus.SUBMITTED
            assert "mova: not a MOVA checkpoint folder (no model_index.json)" in str(
                brief.problems)
