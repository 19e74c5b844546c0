"""Claim and plan briefs (the Prefect tasks of ingestion); submission is tasks/submission.py."""

from __future__ import annotations

import json
import socket
import tempfile
from pathlib import Path
from uuid import UUID, uuid4

from prefect import task
from prefect.cache_policies import NO_CACHE

from infra import repository as repo
from infra.db import session_scope
from infra.hashing import sha256_bytes
from infra.locks import brief_lock
from infra.statuses import BriefStatus
from schemas.brief import Brief, load_brief
from schemas.errors import BriefInvalid
from schemas.plan import RENDER_PROFILES, Plan, plan_variants, with_cost
from tasks.faults import readable_reason, run_logger
from tasks.lora import lora_misfits, resolve_loras
from tasks.render import fetch_first_frame
from tasks.retry import retry_on_transient
from tasks.services import Services
from tasks.spot_deliver import ensure_spots

BRIEF_CONTENT_TYPE = "application/json"


def first_frame_hashes(services: Services, brief: Brief) -> dict[str, str]:
    """sha256 of each first-frame image the brief names, read from storage: a render key holds
    what the model sees, not where it was read from."""
    hashes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scene in brief.scenes:
            ref = scene.first_frame
            if ref is None or ref in hashes:
                continue
            path = fetch_first_frame(services.settings, services.store, ref, Path(tmp) / "f")
            hashes[ref] = sha256_bytes(path.read_bytes())
    return hashes


def plan_brief(services: Services, brief_id: UUID) -> Plan | None:
    """Validate the claimed brief again, store it and its plan, create render jobs and
    deliverable rows. Returns None (brief marked invalid) if it no longer validates."""
    settings = services.settings
    from mova_model.checkpoint import fingerprint_folder  # heavy import only where needed

    checkpoint = fingerprint_folder(settings.checkpoint)
    with session_scope(services.engine) as session:
        row = repo.get_brief(session, brief_id)
        try:
            brief = load_brief(row.raw, fmt="json")
        except BriefInvalid as err:
            repo.mark_brief_invalid(session, row, err.problems)
            return None
        loras, unknown = resolve_loras(session, repo.campaign_team(row), brief)
        unknown += lora_misfits(services.store, brief, loras, settings.checkpoint,
                                settings.mova_data_dir / "lora-cache")  # the actors' cache
        if unknown:
            repo.mark_brief_invalid(session, row, unknown)
            return None
        profile = RENDER_PROFILES[settings.mova_render_profile]
        plan = with_cost(plan_variants(brief, row.sha256, profile, checkpoint,
                                       first_frame_hashes(services, brief), loras),
                         settings.gpu_seconds_per_step(profile.name))
        brief_obj = services.store.put_bytes(row.raw.encode(), f"briefs/{row.sha256}.json",
                                             content_type=BRIEF_CONTENT_TYPE)
        brief_artifact = repo.add_artifact(
            session, kind="brief", input_key=row.sha256, sha256=brief_obj.sha256,
            uri=brief_obj.uri, size_bytes=brief_obj.size_bytes, content_type=BRIEF_CONTENT_TYPE,
            task="ingest.submit", code_version=services.code_version,
            params={"campaign": brief.campaign})
        body = plan.model_dump(mode="json")
        plan_bytes = json.dumps(body, indent=2, sort_keys=True).encode()
        plan_sha = sha256_bytes(plan_bytes)
        plan_obj = services.store.put_bytes(plan_bytes, f"plans/{plan_sha}.json",
                                            content_type=BRIEF_CONTENT_TYPE)
        plan_artifact = repo.add_artifact(
            session, kind="plan", input_key=plan_sha, sha256=plan_obj.sha256, uri=plan_obj.uri,
            size_bytes=plan_obj.size_bytes, content_type=BRIEF_CONTENT_TYPE,
            task="plan.variants", code_version=services.code_version, checkpoint=checkpoint,
            params={"profile": profile.model_dump(mode="json")}, parents=[brief_artifact])
        for spec in plan.renders:
            repo.ensure_render_job(session, spec.key, spec.model_dump(mode="json"))
        for variant in plan.variants:
            repo.ensure_deliverable(session, row, name=variant.name, scene_id=variant.scene_id,
                                    locale=variant.locale, aspect=variant.aspect.value,
                                    render_key=variant.render_key)
        ensure_spots(session, row)
        assert plan.cost is not None
        # Over the threshold, nothing renders until an operator approves the cost.
        repo.save_plan(session, row, body, brief_artifact, plan_artifact,
                       hold=plan.cost.gpu_seconds > settings.approval_gpu_seconds)
    return plan


def release_claim(services: Services, brief_id: UUID, error: BaseException) -> None:
    """After planning failed (its retries spent): the brief waits for the next run again,
    showing why."""
    with session_scope(services.engine) as session:
        repo.release_claim(session, brief_id, readable_reason(error))


def _claimed(services: Services, brief_id: UUID) -> bool:
    with session_scope(services.engine) as session:
        return repo.get_brief(session, brief_id).status == BriefStatus.CLAIMED


def worker_id() -> str:
    return f"{socket.gethostname()}-{uuid4().hex[:8]}"


@task(name="ingest.claim", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def claim_briefs_task(services: Services, limit: int) -> list[UUID]:
    """Claim submitted briefs; the briefs to plan: these, and any claimed before and never
    planned (its run was killed while planning: no other run would take it again)."""
    with session_scope(services.engine) as session:
        rows = repo.claim_submitted_briefs(session, limit, worker_id())
        ids = repo.claimed_brief_ids(session)
    run_logger().info("ingest.claimed n=%d left_by_earlier_runs=%d", len(rows),
                      len(ids) - len(rows))
    return ids


@task(name="plan.variants", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def plan_brief_task(services: Services, brief_id: UUID) -> int:
    run_id = uuid4()
    services.lineage.start("plan.variants", run_id, [])
    try:
        # Planned under the brief's lock, which dies with its holder: a claim whose lock is
        # free was left by a dead run (or waits in a live run's queue; whichever locks it
        # first plans it), and a claim whose lock is held is being planned now.
        with brief_lock(services.engine, brief_id) as lock:
            skipped = not lock or not _claimed(services, brief_id)
            plan = None if skipped else plan_brief(services, brief_id)
    except Exception as err:  # the run ends in FAIL (it stayed started for good); re-raised
        services.lineage.fail("plan.variants", run_id, [], readable_reason(err))
        raise
    logger = run_logger()
    if skipped:
        logger.info("plan.skipped brief_id=%s (planned, or being planned, by another run)",
                    brief_id)
        services.lineage.complete("plan.variants", run_id, [], [])
        return 0
    if plan is None:
        logger.warning("plan.invalid brief_id=%s", brief_id)
        services.lineage.fail("plan.variants", run_id, [], f"brief {brief_id} is invalid")
        return 0
    logger.info("plan.done brief_id=%s variants=%d renders=%d", brief_id, len(plan.variants),
                len(plan.renders))
    services.lineage.complete("plan.variants", run_id, [], [f"brief:{brief_id}"])
    return len(plan.variants)
