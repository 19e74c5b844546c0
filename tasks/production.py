"""Brief-level bookkeeping around a production run, and the faults that end one."""

from __future__ import annotations

from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.orm import Session

from infra import repository as repo
from infra.db import session_scope
from infra.repository import DeliverableKind
from infra.statuses import BRIEF_TO_PRODUCE, RENDER_SETTLED, BriefStatus, DeliverableStatus
from schemas.brief import load_brief
from schemas.spot import plan_spots
from tasks.faults import readable_reason
from tasks.retry import retried_when_transient, retry_on_transient
from tasks.services import Services
from tasks.spot_deliver import SCENE_READY, ensure_spots

# Production runs of one brief that may fail or die before it is parked as failed (a brief
# whose run crashes the same way each time would otherwise be retried forever).
MAX_FAILED_RUNS = 3
DEAD_RUN_REASON = "a production run stopped before finishing (worker restarted or crashed)"


@task(name="production.open", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def open_production(services: Services, brief_id: UUID, flow_run_id: str | None = None) -> bool:
    """Mark the brief producing (by this Prefect flow run); failed renders and failed variants
    get another chance. A brief found producing was left so by a run that died: that counts as
    a failed run, and after MAX_FAILED_RUNS the brief is parked as failed. False when there is
    nothing to run: parked now, or no longer planned (another worker finished it). The caller
    holds the brief's lock (infra.locks), so no live run is producing it."""
    with session_scope(services.engine) as session:
        status = repo.get_brief(session, brief_id).status
        if status not in BRIEF_TO_PRODUCE:
            return False  # another worker finished (or parked) it since it was listed
        if status == BriefStatus.PRODUCING:
            if repo.note_failed_run(session, brief_id, DEAD_RUN_REASON) >= MAX_FAILED_RUNS:
                _park(session, brief_id, DEAD_RUN_REASON)
                return False
        repo.open_production(session, brief_id, flow_run_id)
        ensure_spots(session, repo.get_brief(session, brief_id))
    return True


def _park(session: Session, brief_id: UUID, reason: str) -> None:
    repo.fail_brief_work(session, brief_id,
                         f"production stopped after {MAX_FAILED_RUNS} failed runs: {reason}")
    repo.close_brief(session, brief_id)


@retried_when_transient
def deliverables_in(services: Services, brief_id: UUID, status: DeliverableStatus,
                    kind: DeliverableKind | None = None) -> list[UUID]:
    with session_scope(services.engine) as session:
        return repo.deliverable_ids(session, brief_id, status, kind)


@retried_when_transient
def scenes_waiting_for(services: Services, brief_id: UUID, job_id: UUID) -> list[UUID]:
    """The brief's pending scene finishes made from this render job."""
    with session_scope(services.engine) as session:
        key = repo.get_render_job(session, job_id).spec_key
        return [row.id for row in repo.get_brief(session, brief_id).deliverables
                if row.kind == DeliverableKind.SCENE and row.render_key == key
                and row.status == DeliverableStatus.PENDING]


@retried_when_transient
def scenes_ready(services: Services, brief_id: UUID) -> list[UUID]:
    """The brief's pending scene finishes whose render has settled (stored, or failed for
    good): finishing them now does (or records) their work."""
    with session_scope(services.engine) as session:
        rows = [row for row in repo.get_brief(session, brief_id).deliverables
                if row.kind == DeliverableKind.SCENE and row.status == DeliverableStatus.PENDING]
        jobs = repo.render_jobs(session, [row.render_key for row in rows])
        return [row.id for row in rows
                if row.render_key in jobs and jobs[row.render_key].status in RENDER_SETTLED]


@retried_when_transient
def spots_ready(services: Services, brief_id: UUID) -> list[UUID]:
    """The brief's pending spots whose scenes are all finished: each can be assembled now,
    while the renders and finishes of other spots go on."""
    with session_scope(services.engine) as session:
        row = repo.get_brief(session, brief_id)
        pending = [spot for spot in row.deliverables if spot.kind == DeliverableKind.SPOT
                   and spot.status == DeliverableStatus.PENDING]
        if not pending:
            return []
        scene_ids = {spec.spot_id: spec.scene_ids
                     for spec in plan_spots(load_brief(row.raw, fmt="json"))}
        ready = []
        for spot in pending:
            scenes = repo.spot_scenes(session, spot)
            if all(scene_id in scenes and scenes[scene_id].status in SCENE_READY
                   for scene_id in scene_ids[spot.name]):
                ready.append(spot.id)
        return ready


@retried_when_transient
def publishes_scenes(services: Services, brief_id: UUID) -> bool:
    """True when the brief asks for its scene finishes as cut-downs beside the spots."""
    with session_scope(services.engine) as session:
        return load_brief(repo.get_brief(session, brief_id).raw, fmt="json").publish_scenes


@retried_when_transient
def fail_variant(services: Services, deliverable_id: UUID, error: BaseException) -> str:
    """A permanent error (or a transient one past its retries) in finishing or publishing: that
    variant fails with a reason the team can read; the brief's other variants go on."""
    reason = readable_reason(error)
    with session_scope(services.engine) as session:
        repo.fail_unsettled_deliverable(session, deliverable_id, reason)
        return str(repo.get_deliverable(session, deliverable_id).status)


def fail_run(services: Services, brief_id: UUID, error: BaseException) -> None:
    """The run itself broke (not one variant): count it; a brief that keeps failing is parked
    as failed with the reason, else it stays planned for the next run."""
    reason = readable_reason(error)
    with session_scope(services.engine) as session:
        if repo.note_failed_run(session, brief_id, reason) >= MAX_FAILED_RUNS:
            repo.fail_brief_work(session, brief_id, f"production stopped after "
                                 f"{MAX_FAILED_RUNS} failed runs: {reason}")


@task(name="production.close", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def close_production(services: Services, brief_id: UUID) -> dict[str, int]:
    """Brief done when every variant is published or in review, else failed (with each failed
    variant's reason); planned again when a variant waits for a re-render. The counts."""
    with session_scope(services.engine) as session:
        counts = repo.close_brief(session, brief_id)
        return {str(s): n for s, n in counts.items()}


@retried_when_transient
def briefs_ready(services: Services) -> list[UUID]:
    with session_scope(services.engine) as session:
        return [row.id for row in repo.briefs_to_produce(session)]
