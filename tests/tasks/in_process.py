"""Production without Ray or Prefect, for task tests: the actor's function called in-process."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select

from infra.db import session_scope
from infra.db_models import Deliverable, DeliverableKind
from tasks.deliver import finish_deliverable, publish_deliverable
from tasks.render import (
    RenderResult,
    load_render_model,
    pending_payloads,
    record_render,
    render_on_worker,
)
from tasks.services import Services
from tasks.spot_deliver import assemble_spot_deliverable


def render_all(services: Services, brief_id: UUID) -> None:
    """Every render the planned brief needs (masters before their dubs)."""
    model = load_render_model(services.settings.model_dump_json())
    while payloads := pending_payloads(services, brief_id):
        for payload in payloads:
            record_render(services, brief_id,
                          RenderResult.model_validate(render_on_worker(model, payload)))


def finish_and_publish(services: Services, brief_id: UUID, *,
                       scenes: bool = True) -> list[Deliverable]:
    """Finish every scene of the brief, assemble its spots, publish the spots (and the scene
    cut-downs with `scenes`, which the tests of scene finishing read); the rows, by name."""
    def ids(kind: DeliverableKind) -> list[UUID]:
        with session_scope(services.engine) as session:
            return [d.id for d in session.scalars(select(Deliverable).where(
                Deliverable.brief_id == brief_id, Deliverable.kind == kind))]

    for deliverable_id in ids(DeliverableKind.SCENE):
        finish_deliverable(services, deliverable_id)
    for spot_id in ids(DeliverableKind.SPOT):
        assemble_spot_deliverable(services, spot_id)
    published = ids(DeliverableKind.SCENE) if scenes else []
    for deliverable_id in published + ids(DeliverableKind.SPOT):
        publish_deliverable(services, deliverable_id)
    with session_scope(services.engine) as session:
        return list(session.scalars(select(Deliverable).where(
            Deliverable.brief_id == brief_id).order_by(Deliverable.name)))
