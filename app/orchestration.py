"""Starting production for a brief submitted to the review service.

With a Prefect server (`PREFECT_API_URL`), the brief is planned at once and the
`produce-campaign` deployment is started for it; its flow-run id is kept for the campaign
page's link. Without one, nothing happens here: the scheduled `ingest-briefs` deployment (or
`mova-ads serve`'s embedded worker) picks the brief up. If the server cannot be reached the
brief stays planned, and the next scheduled ingest produces it: nothing is lost.
"""

from __future__ import annotations

import logging
from uuid import UUID

from infra import repository as repo
from infra.db import session_scope
from infra.statuses import BriefStatus
from tasks.services import Services

log = logging.getLogger(__name__)


def start_production(services: Services, brief_id: UUID) -> str | None:
    """The started flow run's id, or None when production is left to the schedule."""
    settings = services.settings
    if not settings.prefect_api_url:
        return None
    from infra.locks import brief_lock
    from tasks.ingest import plan_brief, release_claim

    with session_scope(services.engine) as session:
        if not repo.claim_brief(session, brief_id, "review-service"):
            return None  # an ingest run took it first
    # Under the brief's lock, as an ingest run plans: a run that sees this claim before the
    # plan is made (it also plans claims of dead runs) finds the lock held and skips it.
    with brief_lock(services.engine, brief_id) as lock:
        if not lock:
            return None  # an ingest run is planning it: it produces it too
        try:
            if plan_brief(services, brief_id) is None:
                return None
        except Exception as err:  # noqa: BLE001 - recorded on the brief; the answer was sent
            # The next ingest run tries it again; the brief's problems say why. (Raised, it
            # ended this background task as an unhandled "Exception in ASGI application".)
            release_claim(services, brief_id, err)
            log.warning("orchestration.plan_failed brief_id=%s error=%s", brief_id, err)
            return None
    with session_scope(services.engine) as session:
        if repo.get_brief(session, brief_id).status == BriefStatus.AWAITING_APPROVAL:
            return None  # over the cost threshold: produced once an operator approves it
    try:
        from prefect.deployments import run_deployment

        run = run_deployment(name=settings.produce_deployment,
                             parameters={"brief_id": str(brief_id)}, timeout=0)
    except Exception as err:  # noqa: BLE001 - the schedule will still produce the brief
        log.warning("orchestration.start_failed brief_id=%s deployment=%s error=%s", brief_id,
                    settings.produce_deployment, err)
        return None
    run_id = str(run.id)  # type: ignore[union-attr]  # called from sync code: a FlowRun
    with session_scope(services.engine) as session:
        repo.set_flow_run(session, brief_id, run_id)
    log.info("orchestration.started brief_id=%s flow_run_id=%s", brief_id, run_id)
    return run_id
