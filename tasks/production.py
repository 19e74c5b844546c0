"""Brief-level bookkeeping around a production run."""

from __future__ import annotations

from collections import Counter
from uuid import UUID

from sqlalchemy import select

from infra import repository as repo
from infra.db import session_scope
from infra.db_models import BriefRow, Deliverable, RenderJob
from tasks.services import Services


def open_production(services: Services, brief_id: UUID, flow_run_id: str | None = None) -> None:
    """Mark the brief producing (by this Prefect flow run); failed renders and failed variants
    get another chance."""
    with session_scope(services.engine) as session:
        brief = repo.get(session, BriefRow, brief_id)
        repo.transition(brief, "producing")
        brief.flow_run_id = flow_run_id or brief.flow_run_id
        for row in brief.deliverables:
            if row.status == "failed":
                repo.transition(row, "pending")
                row.attempts = 0
        keys = [row.render_key for row in brief.deliverables]
        for job in session.scalars(select(RenderJob).where(RenderJob.spec_key.in_(keys))):
            if job.status == "failed":
                repo.transition(job, "pending")


def deliverables_in(services: Services, brief_id: UUID, status: str) -> list[UUID]:
    with session_scope(services.engine) as session:
        return [row.id for row in session.scalars(
            select(Deliverable).where(Deliverable.brief_id == brief_id,
                                      Deliverable.status == status).order_by(Deliverable.name))]


def close_production(services: Services, brief_id: UUID) -> dict[str, int]:
    """Brief done when every variant is published or in review, else failed; planned again
    when a reviewer sent a variant back for a re-render during the run. The counts."""
    with session_scope(services.engine) as session:
        brief = repo.get(session, BriefRow, brief_id)
        counts = Counter(row.status for row in brief.deliverables)
        finished = counts["published"] + counts["in_review"] + counts["approved"] \
            + counts["rejected"]
        if counts["pending"]:
            status = "planned"
        else:
            status = "done" if finished == len(brief.deliverables) else "failed"
        repo.transition(brief, status)
        return dict(counts)


def briefs_ready(services: Services) -> list[UUID]:
    with session_scope(services.engine) as session:
        return [row.id for row in repo.briefs_to_produce(session)]
