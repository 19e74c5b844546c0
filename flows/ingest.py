"""ingest_briefs: claim submitted briefs, validate and plan them; optionally produce them."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.produce import produce_campaign
from infra.settings import load_settings
from infra.statuses import DeliverableStatus
from tasks.faults import readable_reason
from tasks.ingest import claim_briefs_task, plan_brief_task, release_claim
from tasks.production import briefs_ready
from tasks.render import keep_pools_open
from tasks.services import Services


class BriefsFailed(RuntimeError):
    """Some briefs of this run failed (each was isolated: the others went on)."""

    def __init__(self, brief_ids: list[str]) -> None:
        super().__init__(brief_ids)  # args as the constructor takes them: picklable
        self.brief_ids = list(brief_ids)

    def __str__(self) -> str:
        return f"{len(self.brief_ids)} brief(s) failed: {', '.join(self.brief_ids)}"


@flow(name="ingest-briefs")
def ingest_briefs(limit: int = 20, produce: bool = False) -> list[str]:
    """Plan every claimable brief; with `produce`, also run each planned brief to the end
    (briefs a dead run left half-produced are picked up again).

    Briefs are isolated from each other: one that fails to plan or produce is logged and the
    loop goes on with the next; the run reports the failures at the end (non-zero exit), after
    every other brief had its turn."""
    logger = get_run_logger()
    failed: list[str] = []
    with Services(load_settings()) as services:
        for claimed in claim_briefs_task(services, limit):
            try:
                plan_brief_task(services, claimed)
            except Exception as err:  # noqa: BLE001 - one brief's failure must not stop the others
                logger.exception("ingest.plan_failed brief_id=%s: %s", claimed,
                                 readable_reason(err))
                release_claim(services, claimed, err)
                failed.append(str(claimed))
        ready = [str(b) for b in briefs_ready(services)]
    logger.info("ingest.ready n=%d", len(ready))
    if produce:
        with keep_pools_open():  # the model loads once for all the briefs of this run
            for brief_id in ready:
                try:
                    summary = produce_campaign(brief_id)
                except Exception as err:  # noqa: BLE001 - the brief was closed; go on
                    logger.exception("ingest.produce_failed brief_id=%s: %s", brief_id,
                                     readable_reason(err))
                    failed.append(brief_id)
                    continue
                if summary.get(DeliverableStatus.FAILED, 0):  # closed as failed: say so
                    logger.error("ingest.brief_failed brief_id=%s failed_variants=%d",
                                 brief_id, summary[DeliverableStatus.FAILED])
                    failed.append(brief_id)
    if failed:
        raise BriefsFailed(failed)
    return ready
