"""ingest_briefs: claim submitted briefs, validate and plan them; optionally produce them."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.produce import produce_campaign
from infra.settings import load_settings
from tasks.ingest import claim_briefs_task, plan_brief_task
from tasks.production import briefs_ready
from tasks.services import Services


@flow(name="ingest-briefs")
def ingest_briefs(limit: int = 20, produce: bool = False) -> list[str]:
    """Plan every claimable brief; with `produce`, also run each planned brief to the end
    (briefs a dead run left half-produced are picked up again)."""
    with Services(load_settings()) as services:
        for claimed in claim_briefs_task(services, limit):
            plan_brief_task(services, claimed)
        ready = [str(b) for b in briefs_ready(services)]
    get_run_logger().info("ingest.ready n=%d", len(ready))
    if produce:
        for brief_id in ready:
            produce_campaign(brief_id)
    return ready
