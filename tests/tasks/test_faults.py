"""Faults stay local (issue 12, part 4): transient render failures are retried up to a cap,
a broken variant fails alone with a reason the team can read, and a brief never stays
`producing` with no run at work on it. Real SQLite, real planning on the tiny checkpoint."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from infra import repository as repo
from infra.db import session_scope
from infra.db_models import BriefRun, Deliverable
from infra.locks import brief_lock
from infra.settings import load_settings
from infra.statuses import BriefStatus, DeliverableStatus, RenderStatus
from tasks.faults import readable_reason, retry_delay_s
from tasks.ingest import claim_briefs_task, plan_brief, plan_brief_task
from tasks.production import (
    MAX_FAILED_RUNS,
    briefs_ready,
    close_production,
    fail_variant,
    open_production,
)
from tasks.render import pending_payloads
from tasks.services import Services
from tasks.submission import submit_brief
from tests.example_brief import example_text

EXAMPLE = example_text()


def one_variant_brief(campaign: str = "aurora-spring-launch") -> str:
    """The example brief cut to one scene × en-US × 16:9: one render, one variant."""
    text = EXAMPLE.replace('aspects: ["16:9", "9:16"]', 'aspects: ["16:9"]') \
        .replace("locales: [en-US, de-DE]", "locales: [en-US]") \
        .replace("campaign: aurora-spring-launch", f"campaign: {campaign}")
    start = text.index("      de-DE:\n        - speaker")
    text = text[:start] + text[text.index("    on_screen_text:"):]
    return text.replace("      de-DE: {brand_line: Aurora One, call_to_action: Heute loslaufen, "
                        'price: "129 €"}\n', "")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mova_model.make_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


@pytest.fixture
def services(tmp_path: Path, checkpoint: Path) -> Services:
    return Services(load_settings({"MOVA_DATA_DIR": str(tmp_path),
                                   "MOVA_CHECKPOINT": str(checkpoint)}))


def planned_brief(services: Services, campaign: str = "aurora-spring-launch") -> UUID:
    brief_id = submit_brief(services, one_variant_brief(campaign))
    with session_scope(services.engine) as session:
        assert repo.claim_brief(session, brief_id, "test")
    assert plan_brief(services, brief_id) is not None
    return brief_id


def test_reasons_shown_to_a_team_carry_no_worker_paths() -> None:
    err = OSError("cannot identify image file '/tmp/tmpk3x9_a1/first' (from /srv/mova/ckpt/x)")
    reason = readable_reason(err)
    assert "/tmp" not in reason and "/srv" not in reason
    assert reason == "cannot identify image file 'first' (from x)"
    # storage URIs and relative keys are what the team submitted or reads: kept as they are
    assert readable_reason("no object s3://team-bucket/inputs/a.png") == \
        "no object s3://team-bucket/inputs/a.png"
    assert len(readable_reason("x" * 10_000)) == 500


def test_retry_backoff_doubles_and_is_capped() -> None:
    assert [retry_delay_s(n, base_s=2.0, cap_s=30.0) for n in (1, 2, 3, 4, 5, 9)] == \
        [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_transient_render_failure_is_requeued_until_the_cap_then_fails(
        services: Services) -> None:
    brief_id = planned_brief(services)
    for attempt in (1, 2, 3):
        [payload] = pending_payloads(services, brief_id)  # the job runs (attempt counted)
        job_id = UUID(payload["job_id"])
        with session_scope(services.engine) as session:
            requeued = repo.requeue_render(session, job_id, "worker died; retry", 3)
            job = repo.get_render_job(session, job_id)
            assert job.attempts == attempt
            if attempt < 3:
                assert requeued and job.status == RenderStatus.PENDING
            else:
                assert not requeued and job.status == RenderStatus.FAILED
                assert job.error == "gave up after 3 attempts: worker died; retry"
    assert pending_payloads(services, brief_id) == []


def test_a_failed_variant_fails_alone_and_the_brief_closes_failed_with_its_reason(
        services: Services) -> None:
    broken, healthy = planned_brief(services, "broken-one"), planned_brief(services, "next-one")
    open_production.fn(services, broken)
    [variant] = _deliverables(services, broken)  # the brief's one spot
    status = fail_variant(services, variant, FileExistsError(
        "[Errno 17] File exists: '/tmp/tmpq1w2e3/storage/campaigns/broken-one'"))
    assert status == DeliverableStatus.FAILED
    counts = close_production.fn(services, broken)
    assert counts == {"failed": 1}
    with session_scope(services.engine) as session:
        brief = repo.get_brief(session, broken)
        assert brief.status == BriefStatus.FAILED
        assert brief.problems == [["en-US/16x9/-14LUFS",
                                   "[Errno 17] File exists: 'broken-one'"]]
    # parked: the failed brief is not taken again, the next brief is
    assert briefs_ready(services) == [healthy]


def test_a_brief_that_keeps_dying_mid_run_is_parked_failed_with_its_reason(
        services: Services) -> None:
    brief_id = planned_brief(services)
    assert open_production.fn(services, brief_id)
    # Each further open finds the brief still producing: the run before it died.
    for _ in range(MAX_FAILED_RUNS - 1):
        assert open_production.fn(services, brief_id)
        assert briefs_ready(services) == [brief_id]
    assert not open_production.fn(services, brief_id)
    assert briefs_ready(services) == []
    with session_scope(services.engine) as session:
        brief = repo.get_brief(session, brief_id)
        assert brief.status == BriefStatus.FAILED
        [[name, reason]] = brief.problems or []
        assert name == "en-US/16x9/-14LUFS"  # the spot; its scene's failure is inside it
        assert reason.startswith(f"production stopped after {MAX_FAILED_RUNS} failed runs")


def _deliverables(services: Services, brief_id: UUID) -> list[UUID]:
    """What the brief delivers: its spots."""
    with session_scope(services.engine) as session:
        return [d.id for d in repo.deliverables_that_count(repo.get_brief(session, brief_id))]


def test_a_brief_lock_is_held_by_one_worker_and_freed_when_its_holder_goes(
        engine: Engine) -> None:
    from uuid import uuid4

    from infra.locks import brief_lock

    brief_id = uuid4()
    with brief_lock(engine, brief_id) as first:
        assert first
        with brief_lock(engine, brief_id) as second:
            assert not second, "two holders of one brief's lock"
        with brief_lock(engine, uuid4()) as other:
            assert other, "one brief's lock blocked another brief"
    with brief_lock(engine, brief_id) as again:
        assert again, "the lock was not released"
    if engine.dialect.name == "postgresql":  # a holder whose connection dies frees the lock
        def cut_the_holder() -> None:
            with engine.connect() as admin:
                # pg_locks is server-wide: only this database's holders (other tests' too);
                # the timeout waits until the backend is gone (and its lock with it)
                assert admin.execute(text(
                    "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND pid <> pg_backend_pid() AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())")
                ).scalar() == 1

        with brief_lock(engine, brief_id) as held:
            assert held and held.still_held()
            cut_the_holder()
            # nobody took it meanwhile: the holder takes it again and goes on, alone
            assert held.still_held(), "a lost lock nobody else took was not taken again"
            with brief_lock(engine, brief_id) as rival:
                assert not rival, "the lock was not held again after its connection died"
            cut_the_holder()
            with brief_lock(engine, brief_id) as taken_over:
                assert taken_over
                # the first holder must learn it lost the brief, not go on beside the other
                assert not held.still_held(), "two workers hold one brief's lock"
        with brief_lock(engine, brief_id) as after:
            assert after, "the lock was not released"


def test_a_brief_another_worker_finished_is_not_opened_again(services: Services) -> None:
    brief_id = planned_brief(services)
    assert open_production.fn(services, brief_id)
    [variant] = _deliverables(services, brief_id)
    fail_variant(services, variant, RuntimeError("boom"))
    close_production.fn(services, brief_id)  # failed: closed by "the other worker"
    assert not open_production.fn(services, brief_id)
    with session_scope(services.engine) as session:
        assert repo.get_brief(session, brief_id).status == BriefStatus.FAILED


def _spot(session: Session, brief_id: UUID) -> Deliverable:
    [spot] = [d for d in repo.get_brief(session, brief_id).deliverables
              if d.kind == repo.DeliverableKind.SPOT]
    return spot


def test_a_brief_opened_again_gives_only_its_failed_variants_and_renders_another_chance(
        services: Services) -> None:
    brief_id = planned_brief(services)
    [payload] = pending_payloads(services, brief_id)  # its one render starts
    job_id = UUID(payload["job_id"])
    with session_scope(services.engine) as session:
        repo.open_production(session, brief_id, "flow-run-1")
        assert repo.get_brief(session, brief_id).flow_run_id == "flow-run-1"
        repo.fail_render(session, job_id, "out of memory")
        failed = _spot(session, brief_id)
        repo.transition(failed, DeliverableStatus.FAILED)
        failed.attempts = 2
        waiting = [d for d in repo.get_brief(session, brief_id).deliverables if d is not failed]
        assert waiting and all(d.status == DeliverableStatus.PENDING for d in waiting)
        for row in waiting:
            row.attempts = 1
        repo.set_brief_status(session, brief_id, BriefStatus.FAILED)
    with session_scope(services.engine) as session:
        # a run without a Prefect flow run id keeps the last one on record
        repo.open_production(session, brief_id, None)
        brief = repo.get_brief(session, brief_id)
        assert brief.status == BriefStatus.PRODUCING
        assert brief.flow_run_id == "flow-run-1"
        by_id = {d.id: d for d in brief.deliverables}
        assert (by_id[failed.id].status, by_id[failed.id].attempts) == \
            (DeliverableStatus.PENDING, 0)
        # what had not failed is left as it was, its attempts included
        assert [(by_id[d.id].status, by_id[d.id].attempts) for d in waiting] == \
            [(DeliverableStatus.PENDING, 1)] * len(waiting)
        assert repo.get_render_job(session, job_id).status == RenderStatus.PENDING


def test_a_retake_counts_a_qc_attempt_and_a_reviewers_rerender_starts_the_count_again(
        services: Services) -> None:
    brief_id = planned_brief(services)
    with session_scope(services.engine) as session:
        spot = _spot(session, brief_id)
        repo.transition(spot, DeliverableStatus.FAILED)
        spot.attempts = 2
        repo.rerender_deliverable(spot, "render-2", error="QC: silent track", reset_attempts=False)
        assert (spot.status, spot.render_key, spot.error, spot.attempts) == \
            (DeliverableStatus.PENDING, "render-2", "QC: silent track", 3)
        repo.transition(spot, DeliverableStatus.FAILED)
        repo.rerender_deliverable(spot, "render-3", error=None, reset_attempts=True)
        assert (spot.status, spot.render_key, spot.error, spot.attempts) == \
            (DeliverableStatus.PENDING, "render-3", None, 0)


def test_a_variant_follows_a_new_render_unless_it_is_past_waiting(services: Services) -> None:
    brief_id = planned_brief(services)
    with session_scope(services.engine) as session:
        spot = _spot(session, brief_id)
        # waiting already: only its render changes (its error and attempts stay)
        spot.error, spot.attempts = "earlier note", 1
        assert repo.follow_render(spot, "render-2", "scene changed")
        assert (spot.status, spot.render_key, spot.error, spot.attempts) == \
            (DeliverableStatus.PENDING, "render-2", "earlier note", 1)
        # failed: it waits again, with the reason
        repo.transition(spot, DeliverableStatus.FAILED)
        assert repo.follow_render(spot, "render-3", "scene changed")
        assert (spot.status, spot.render_key, spot.error, spot.attempts) == \
            (DeliverableStatus.PENDING, "render-3", "scene changed", 1)
        # published: left as it is
        spot.status = DeliverableStatus.PUBLISHED
        assert not repo.follow_render(spot, "render-4", "scene changed")
        assert (spot.status, spot.render_key) == (DeliverableStatus.PUBLISHED, "render-3")


@pytest.mark.parametrize(("spot_status", "error", "closed_as", "problems"), [
    (DeliverableStatus.PENDING, None, BriefStatus.PLANNED, None),  # waits for a re-render
    (DeliverableStatus.PUBLISHED, None, BriefStatus.DONE, None),
    (DeliverableStatus.IN_REVIEW, None, BriefStatus.DONE, None),
    (DeliverableStatus.FAILED, "QC: silent track", BriefStatus.FAILED,
     [["en-US/16x9/-14LUFS", "QC: silent track"]]),
    (DeliverableStatus.FAILED, None, BriefStatus.FAILED, [["en-US/16x9/-14LUFS", "failed"]]),
])
def test_a_closed_run_leaves_the_brief_as_its_spots_stand(
        services: Services, spot_status: DeliverableStatus, error: str | None,
        closed_as: BriefStatus, problems: list[list[str]] | None) -> None:
    brief_id = planned_brief(services)
    with session_scope(services.engine) as session:
        repo.open_production(session, brief_id, None)
        spot = _spot(session, brief_id)
        spot.status, spot.error = spot_status, error
        counts = repo.close_brief(session, brief_id)
        assert dict(counts) == {spot_status: 1}  # the spot only: its scene is not delivered
        brief = repo.get_brief(session, brief_id)
        assert (brief.status, brief.problems) == (closed_as, problems)


def test_failed_runs_are_counted_with_the_last_reason(services: Services) -> None:
    brief_id = planned_brief(services)
    with session_scope(services.engine) as session:
        assert repo.note_failed_run(session, brief_id, "worker lost") == 1
        assert repo.note_failed_run(session, brief_id, "x" * 5000) == 2
        run = session.get(BriefRun, brief_id)
        assert run is not None and run.failed_runs == 2 and run.last_error == "x" * 4000


def test_only_a_variant_still_in_work_is_failed_and_its_reason_is_cut_to_4000(
        services: Services) -> None:
    brief_id = planned_brief(services)
    with session_scope(services.engine) as session:
        spot = _spot(session, brief_id)
        assert repo.fail_unsettled_deliverable(session, spot.id, "y" * 5000)
        assert (spot.status, spot.error) == (DeliverableStatus.FAILED, "y" * 4000)
        spot.status = DeliverableStatus.IN_REVIEW
        assert not repo.fail_unsettled_deliverable(session, spot.id, "too late")
        assert (spot.status, spot.error) == (DeliverableStatus.IN_REVIEW, "y" * 4000)


def test_a_render_keeps_its_error_up_to_4000_characters(services: Services) -> None:
    brief_id = planned_brief(services)
    [payload] = pending_payloads(services, brief_id)
    job_id = UUID(payload["job_id"])
    with session_scope(services.engine) as session:
        assert repo.requeue_render(session, job_id, "z" * 5000, 3)
        assert repo.get_render_job(session, job_id).error == \
            "retrying after: " + "z" * (4000 - len("retrying after: "))
    [payload] = pending_payloads(services, brief_id)  # it runs again, and fails for good
    with session_scope(services.engine) as session:
        repo.fail_render(session, job_id, "q" * 5000)
        job = repo.get_render_job(session, job_id)
        assert (job.status, job.error) == (RenderStatus.FAILED, "q" * 4000)


def test_a_brief_claimed_by_a_run_killed_while_planning_is_planned_by_the_next_run(
        services: Services) -> None:
    """A run killed (SIGKILL, a lost host) after its claim was committed and before the plan
    was left the brief `claimed` for good: no later run claimed, planned or produced it."""
    brief_id = submit_brief(services, one_variant_brief())
    with session_scope(services.engine) as session:
        assert repo.claim_brief(session, brief_id, "worker-killed-while-planning")
    assert claim_briefs_task.fn(services, 20) == [brief_id]
    with brief_lock(services.engine, brief_id):  # a live run is planning it: left to that run
        assert plan_brief_task.fn(services, brief_id) == 0
    assert plan_brief_task.fn(services, brief_id) == 1  # its one variant
    with session_scope(services.engine) as session:
        assert repo.get_brief(session, brief_id).status == BriefStatus.PLANNED
    assert plan_brief_task.fn(services, brief_id) == 0, "planned twice"
