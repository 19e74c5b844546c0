"""Brief-level bookkeeping around a production run."""

from __future__ import annotations

from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE

from infra import repository as repo
from infra.db import session_scope
from infra.statuses import DELIVERABLE_SETTLED, BriefStatus, DeliverableStatus
from tasks.retry import retry_on_transient
from tasks.services import Services


@task(name="production.open", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def open_production(services: Services, brief_id: UUID, flow_run_id: str | None = None) -> None:
    """Mark the brief producing (by this Prefect flow run); failed renders and failed variants
    get another chance."""
    with session_scope(services.engine) as session:
        repo.open_production(session, brief_id, flow_run_id)


def deliverables_in(services: Services, brief_id: UUID, status: DeliverableStatus) -> list[UUID]:
    with session_scope(services.engine) as session:
        return repo.deliverable_ids(session, brief_id, status)


@task(name="production.close", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def close_production(services: Services, brief_id: UUID) -> dict[str, int]:
    """Brief done when every variant is published or in review, else failed; planned again
    when a reviewer sent a variant back for a re-render during the run. The counts."""
    with session_scope(services.engine) as session:
        counts = repo.deliverable_counts(session, brief_id)
        settled = sum(counts[status] for status in DELIVERABLE_SETTLED)
        if counts[DeliverableStatus.PENDING]:
            status = BriefStatus.PLANNED
        else:
            status = BriefStatus.DONE if settled == counts.total() else BriefStatus.FAILED
        repo.set_brief_status(session, brief_id, status)
        return {str(s): n for s, n in counts.items()}


def briefs_ready(services: Services) -> list[UUID]:
    with session_scope(services.engine) as session:
        return [row.id for row in repo.briefs_to_produce(session)]
