"""Submit, claim and plan briefs."""

from __future__ import annotations

import json
import mimetypes
import socket
from pathlib import Path
from uuid import UUID, uuid4

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra import repository as repo
from infra.db import session_scope
from infra.hashing import sha256_bytes
from schemas.brief import Brief, load_brief
from schemas.errors import BriefInvalid
from schemas.plan import RENDER_PROFILES, Plan, plan_variants
from tasks.retry import retry_on_transient
from tasks.services import Services

BRIEF_CONTENT_TYPE = "application/json"


def _upload_first_frames(services: Services, brief: Brief, base_dir: Path | None) -> Brief:
    """Store local first-frame images and point the brief at their storage keys. Every file
    is checked before any is stored, so a brief with a missing image leaves nothing behind."""
    local = {index: (base_dir or Path.cwd()) / scene.first_frame
             for index, scene in enumerate(brief.scenes)
             if scene.first_frame is not None
             and not scene.first_frame.startswith(("s3://", "inputs/"))}
    missing = [(f"scenes[{i}].first_frame", f"no file {path.name!r} was given with the brief")
               for i, path in local.items() if not path.is_file()]
    if missing:
        raise BriefInvalid(missing)
    scenes = list(brief.scenes)
    for index, path in local.items():
        data = path.read_bytes()
        key = f"inputs/{sha256_bytes(data)}{path.suffix.lower()}"
        services.store.put_bytes(data, key, content_type=mimetypes.guess_type(path.name)[0])
        scenes[index] = scenes[index].model_copy(update={"first_frame": key})
    return brief.model_copy(update={"scenes": scenes})


def submit_brief(services: Services, raw: bytes | str, *, fmt: str | None = None,
                 base_dir: Path | None = None, team: str | None = None,
                 requires_approval: bool | None = None) -> UUID:
    """Validate a brief and queue it; an invalid brief raises BriefInvalid and stores nothing.
    `requires_approval` overrides the brief's own field (the review form's checkbox)."""
    brief = load_brief(raw, fmt=fmt)
    if requires_approval is not None:
        brief = brief.model_copy(update={"requires_approval": requires_approval})
    brief = _upload_first_frames(services, brief, base_dir)
    canonical = brief.model_dump_json(indent=2)
    with session_scope(services.engine) as session:
        row = repo.add_brief(session, campaign_slug=brief.campaign, brand=brief.brand,
                             raw=canonical, sha256=sha256_bytes(canonical.encode()), team=team)
        return row.id


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
        profile = RENDER_PROFILES[settings.mova_render_profile]
        plan = plan_variants(brief, row.sha256, profile, checkpoint)
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
        repo.save_plan(session, row, body, brief_artifact, plan_artifact)
    return plan


def worker_id() -> str:
    return f"{socket.gethostname()}-{uuid4().hex[:8]}"


@task(name="ingest.claim", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def claim_briefs_task(services: Services, limit: int) -> list[UUID]:
    with session_scope(services.engine) as session:
        rows = repo.claim_submitted_briefs(session, limit, worker_id())
        ids = [row.id for row in rows]
    get_run_logger().info("ingest.claimed n=%d", len(ids))
    return ids


@task(name="plan.variants", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def plan_brief_task(services: Services, brief_id: UUID) -> int:
    run_id = uuid4()
    services.lineage.start("plan.variants", run_id, [])
    plan = plan_brief(services, brief_id)
    logger = get_run_logger()
    if plan is None:
        logger.warning("plan.invalid brief_id=%s", brief_id)
        services.lineage.fail("plan.variants", run_id, [], f"brief {brief_id} is invalid")
        return 0
    logger.info("plan.done brief_id=%s variants=%d renders=%d", brief_id, len(plan.variants),
                len(plan.renders))
    services.lineage.complete("plan.variants", run_id, [], [f"brief:{brief_id}"])
    return len(plan.variants)
