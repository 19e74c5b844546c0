"""Prefect retries fire on transient errors only: storage throttling, a lost or locked database;
never on a bug or a refused status change."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect import flow, task
from prefect.states import Failed
from sqlalchemy.exc import IntegrityError, OperationalError

from infra.storage_errors import InvalidKey, TransientStorageError
from schemas.errors import InvalidTransition, TransientError
from tasks import deliver, ingest, production, render
from tasks.retry import retry_on_transient

LOCKED = OperationalError("UPDATE brief", {}, Exception("database is locked"))
DUPLICATE = IntegrityError("INSERT INTO team", {}, Exception("UNIQUE constraint failed"))


@pytest.mark.parametrize(("error", "retried"), [
    (TransientError("worker restarting"), True),
    (TransientStorageError("503 SlowDown"), True),
    (LOCKED, True),
    (DUPLICATE, False),
    (InvalidTransition("deliverable x: cannot go from 'published' to 'pending'"), False),
    (InvalidKey("../escape"), False),
    (ValueError("a bug"), False),
])
def test_the_condition_retries_transient_errors_only(error: Exception, retried: bool) -> None:
    # The engine hands the condition a Failed state carrying the exception.
    state = Failed(data=error, message=repr(error))
    assert retry_on_transient(None, None, state) is retried  # type: ignore[arg-type]


@pytest.mark.parametrize("db_task", [
    ingest.claim_briefs_task, ingest.plan_brief_task, render.render_pending_task,
    deliver.finish_task, deliver.publish_task, production.open_production,
    production.close_production])
def test_every_task_that_writes_to_the_database_retries_on_transient_errors(
        db_task: object) -> None:
    assert getattr(db_task, "retries", 0) >= 1
    assert getattr(db_task, "retry_condition_fn", None) is retry_on_transient


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.mark.slow
def test_a_run_retries_a_lost_database_and_fails_at_once_on_a_bug(
        prefect_harness: None) -> None:
    calls: list[str] = []

    @task(retries=3, retry_delay_seconds=0, retry_condition_fn=retry_on_transient)
    def flaky(error: Exception) -> str:
        calls.append(type(error).__name__)
        if len(calls) == 1:
            raise error
        return "done"

    @flow
    def run(error: Exception) -> str:
        return flaky(error)

    assert run(LOCKED) == "done" and calls == ["OperationalError", "OperationalError"]
    calls.clear()
    with pytest.raises(ValueError, match="a bug"):
        run(ValueError("a bug"))
    assert calls == ["ValueError"]  # no retry


def test_the_flows_bookkeeping_survives_a_cut_connection_but_not_a_bug(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks import retry

    waits: list[float] = []
    monkeypatch.setattr(retry.time, "sleep", waits.append)
    outcomes: list[BaseException | str] = [LOCKED, LOCKED, "rows"]

    @retry.retried_when_transient
    def read() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert read() == "rows" and waits == [2.0, 4.0]  # backoff between the attempts
    outcomes[:] = [LOCKED] * 4
    with pytest.raises(OperationalError):  # three attempts, then the error stands
        read()
    assert len(outcomes) == 1
    outcomes[:] = [DUPLICATE, "rows"]
    with pytest.raises(IntegrityError):  # not transient: no second try
        read()
    assert outcomes == ["rows"]
