"""produce_campaign: renders -> finishing + QC (re-render on failure) -> publish -> done."""

from __future__ import annotations

from uuid import UUID

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from infra.locks import BriefLock, brief_lock
from infra.settings import load_settings
from infra.statuses import DeliverableStatus
from tasks.deliver import finish_task, publish_task
from tasks.production import (
    close_production,
    deliverables_in,
    fail_run,
    fail_variant,
    open_production,
)
from tasks.render import open_pool, render_pending_task
from tasks.services import Services


class LockLost(RuntimeError):
    """The brief's lock went with a dropped connection and another worker holds it now."""


@flow(name="produce-campaign", log_prints=False)
def produce_campaign(brief_id: str) -> dict[str, int]:
    """Turn one planned brief into published deliverables; safe to run again at any point.

    Faults stay local: an error finishing or publishing one variant fails that variant (with a
    reason the team reads) and the others go on; whatever happens, the run ends by closing the
    brief, so it never stays `producing` with no run at work on it."""
    brief = UUID(brief_id)
    # Held for the whole run (two ingest workers never produce one brief twice); a brief found
    # `producing` under a free lock was left so by a run that died.
    logger = get_run_logger()
    with Services(load_settings()) as services, brief_lock(services.engine, brief) as lock:
        if not lock:  # another worker is producing it right now
            logger.info("produce.skipped brief_id=%s (another worker has it)", brief_id)
            return {}
        if not open_production(services, brief,
                               flow_run_id=str(flow_run.id) if flow_run.id else None):
            logger.warning("produce.not_opened brief_id=%s (parked after failed runs, or "
                           "finished by another worker)", brief_id)
            return {}
        try:
            _run(services, brief, lock)
        except LockLost:  # the brief is the other worker's now: not ours to fail or close
            logger.warning("produce.stopped brief_id=%s (another worker took it over after "
                           "this run's database connection was dropped)", brief_id)
            return {}
        except Exception as err:  # noqa: BLE001 - counted and closed below, then re-raised
            logger.exception("produce.run_failed brief_id=%s", brief_id)
            fail_run(services, brief, err)
            close_production(services, brief)
            raise
        summary = close_production(services, brief)
    logger.info("produce.done brief_id=%s %s", brief_id,
                " ".join(f"{k}={v}" for k, v in sorted(summary.items())))
    return summary


def _still_ours(lock: BriefLock) -> None:
    """Between steps: a dropped connection took the lock with it; go on only if it could be
    taken again (else another worker is producing the brief now)."""
    if not lock.still_held():
        raise LockLost("the brief's production lock was taken by another worker")


def _run(services: Services, brief: UUID, lock: BriefLock) -> None:
    pool = open_pool(services.settings)
    try:
        while True:
            _still_ours(lock)
            render_pending_task(services, pool, brief)
            statuses = []
            for deliverable in deliverables_in(services, brief, DeliverableStatus.PENDING):
                _still_ours(lock)
                statuses.append(_finish(services, deliverable))
            if DeliverableStatus.PENDING not in statuses:  # nothing waits for a re-render
                break
        for deliverable in deliverables_in(services, brief, DeliverableStatus.FINISHED):
            _still_ours(lock)
            try:
                publish_task(services, deliverable)
            except Exception as err:  # noqa: BLE001 - this variant fails, the rest publish
                get_run_logger().error("publish.failed deliverable_id=%s", deliverable,
                                       exc_info=True)
                fail_variant(services, deliverable, err)
    finally:
        pool.shutdown()


def _finish(services: Services, deliverable: UUID) -> str:
    try:
        return finish_task(services, deliverable)
    except Exception as err:  # noqa: BLE001 - this variant fails, the rest finish
        get_run_logger().error("finish.failed deliverable_id=%s", deliverable, exc_info=True)
        return fail_variant(services, deliverable, err)
