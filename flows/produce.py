"""produce_campaign: renders -> finishing + QC (re-render on failure) -> publish -> done."""

from __future__ import annotations

from uuid import UUID

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from infra.settings import load_settings
from infra.statuses import DeliverableStatus
from tasks.deliver import finish_task, publish_task
from tasks.production import (
    close_production,
    deliverables_in,
    open_production,
)
from tasks.render import open_pool, render_pending_task
from tasks.services import Services


@flow(name="produce-campaign", log_prints=False)
def produce_campaign(brief_id: str) -> dict[str, int]:
    """Turn one planned brief into published deliverables; safe to run again at any point."""
    brief = UUID(brief_id)
    with Services(load_settings()) as services:
        open_production(services, brief, flow_run_id=str(flow_run.id) if flow_run.id else None)
        pool = open_pool(services.settings)
        try:
            while True:
                render_pending_task(services, pool, brief)
                pending = deliverables_in(services, brief, DeliverableStatus.PENDING)
                statuses = [finish_task(services, d) for d in pending]
                if DeliverableStatus.PENDING not in statuses:  # nothing waits for a re-render
                    break
            for deliverable in deliverables_in(services, brief, DeliverableStatus.FINISHED):
                publish_task(services, deliverable)
        finally:
            pool.shutdown()
        summary = close_production(services, brief)
    get_run_logger().info("produce.done brief_id=%s %s", brief_id,
                          " ".join(f"{k}={v}" for k, v in sorted(summary.items())))
    return summary
