"""Production without Ray or Prefect, for task tests: the actor's function called in-process."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select

from infra.db import session_scope
from infra.db_models import Deliverable
from tasks.deliver import finish_deliverable, publish_deliverable
from tasks.render import (
    RenderResult,
    load_render_model,
    pending_payloads,
    record_render,
    render_on_worker,
)
from tasks.services import Services


def render_all(services: Services, brief_id: UUID) -> None:
    """Every render the planned brief needs (masters before their dubs)."""
    model = load_render_model(services.settings.model_dump_json())
    while payloads := pending_payloads(services, brief_id):
        for payload in payloads:
            record_render(services, brief_id,
                          RenderResult.model_validate(render_on_worker(model, payload)))


def finish_and_publish(services: Services, brief_id: UUID) -> list[Deliverable]:
    """Finish and publish every deliverable of the brief; the rows, ordered by name."""
    with session_scope(services.engine) as session:
        ids = [d.id for d in session.scalars(select(Deliverable).where(
            Deliverable.brief_id == brief_id))]
    for deliverable_id in ids:
        finish_deliverable(services, deliverable_id)
        publish_deliverable(services, deliverable_id)
    with session_scope(services.engine) as session:
        return list(session.scalars(select(Deliverable).where(
            Deliverable.brief_id == brief_id).order_by(Deliverable.name)))
