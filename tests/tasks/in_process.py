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


def finish_and_publish(services: Services, brief_id: UUID, *, scenes: bool = True,
                       spots: bool = False) -> list[Deliverable]:
    """Finish every scene of the brief and publish the scene finishes as cut-downs (the tests
    of scene finishing read those); with `spots`, assemble and publish the spots too, and
    without `scenes` keep the scene finishes as intermediates. The rows of the kinds asked
    for, ordered by name."""
    def ids(kind: DeliverableKind) -> list[UUID]:
        with session_scope(services.engine) as session:
            return [d.id for d in session.scalars(select(Deliverable).where(
                Deliverable.brief_id == brief_id, Deliverable.kind == kind))]

    for deliverable_id in ids(DeliverableKind.SCENE):
        finish_deliverable(services, deliverable_id)
    kinds = [DeliverableKind.SCENE] if scenes else []
    if spots:
        for spot_id in ids(DeliverableKind.SPOT):
            assemble_spot_deliverable(services, spot_id)
        kinds.append(DeliverableKind.SPOT)
    for kind in kinds:
        for deliverable_id in ids(kind):
            publish_deliverable(services, deliverable_id)
    with session_scope(services.engine) as session:
        return list(session.scalars(select(Deliverable).where(
            Deliverable.brief_id == brief_id, Deliverable.kind.in_(kinds))
            .order_by(Deliverable.name)))
