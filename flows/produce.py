"""produce_campaign: renders -> scene finishes + QC, in parallel with the renders (re-render on
failure) -> each spot assembled + QC'd once its scenes are finished -> publish the spots -> done."""

from __future__ import annotations

from uuid import UUID

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.finishing import Finishing
from infra.locks import BriefLock, brief_lock
from infra.media import set_ffmpeg_niceness
from infra.repository import DeliverableKind
from infra.settings import load_settings
from infra.statuses import DeliverableStatus
from tasks.deliver import publish_task
from tasks.production import (
    close_production,
    deliverables_in,
    fail_run,
    fail_variant,
    open_production,
    publishes_scenes,
)
from tasks.render import render_pending_task, render_pool
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
            # a warning: a second `mova-ads run` beside the first otherwise ended silently
            logger.warning("produce.skipped brief_id=%s: another run is producing it", brief_id)
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
    """Renders, each scene finished as soon as its render is stored; scenes that failed QC
    render again with the next seed; each spot is assembled and QC'd as soon as its scenes
    are finished (the rest, e.g. spots with a failed scene, after the renders); then the spots
    are published (and the scene cut-downs, when the brief asks)."""
    set_ffmpeg_niceness(services.settings.finish_niceness)  # renders first, see there
    with render_pool(services.settings) as pool, Finishing(services, brief) as finishing:
        while True:
            _still_ours(lock)
            finishing.ready_scenes()  # renders stored by an earlier run
            rendered = render_pending_task(services, pool, brief,
                                           on_rendered=finishing.scenes_of_render)
            finishing.ready_scenes()  # failed renders: their scenes fail
            finished = finishing.wait()
            if not deliverables_in(services, brief, DeliverableStatus.PENDING,
                                   DeliverableKind.SCENE):
                break  # nothing waits for a re-render
            if not rendered and not finished:
                break  # what waits cannot run (a dub whose master failed): stop, not spin
        _still_ours(lock)
        finishing.pending_spots()
        finishing.wait()
    kinds = [DeliverableKind.SPOT]
    if publishes_scenes(services, brief):
        kinds.append(DeliverableKind.SCENE)
    for kind in kinds:
        for deliverable in deliverables_in(services, brief, DeliverableStatus.FINISHED, kind):
            _still_ours(lock)
            _publish(services, deliverable)


def _publish(services: Services, deliverable: UUID) -> None:
    try:
        publish_task(services, deliverable)
    except Exception as err:  # noqa: BLE001 - this variant fails, the rest publish
        get_run_logger().error("publish.failed deliverable_id=%s", deliverable, exc_info=True)
        fail_variant(services, deliverable, err)
