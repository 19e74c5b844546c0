"""What the API returns and the review page shows, built from database rows (no I/O)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy.orm import Session

from infra import repository as repo
from infra.repository import BriefRow, Deliverable, DeliverableKind, RenderJob
from infra.settings import Settings
from infra.statuses import (
    BRIEF_ACTIVE,
    DELIVERABLE_IN_REVIEW_AREA,
    BriefStatus,
    DeliverableStatus,
    RenderStatus,
)
from schemas.brief import load_brief
from tasks.deliver import COMPANION_KINDS, FILE_SUFFIXES

D, R = DeliverableStatus, RenderStatus
# Where a variant is on its way, and roughly how far along (for the progress bars). A pending
# variant is where its render is.
RENDER_STAGES: dict[RenderStatus, tuple[str, float]] = {
    R.PENDING: ("queued for render", 0.05),
    R.RUNNING: ("rendering", 0.3),
    R.DONE: ("finishing and QC", 0.7),
    R.FAILED: ("render failed", 1.0),
}
STAGES: dict[DeliverableStatus, tuple[str, float]] = {
    D.FINISHED: ("publishing", 0.9),
    D.IN_REVIEW: ("awaiting review", 1.0),
    D.APPROVED: ("publishing", 0.95),
    D.PUBLISHED: (D.PUBLISHED.value, 1.0),
    D.REJECTED: (D.REJECTED.value, 1.0),
    D.FAILED: (D.FAILED.value, 1.0),
}
del D, R


def file_url(deliverable_id: Any, kind: str) -> str:
    return f"/api/deliverables/{deliverable_id}/files/{kind}"


def files_of(session: Session, row: Deliverable) -> dict[str, str]:
    """The published (or in-review) files of a variant, as service URLs."""
    if row.video is None or not (row.status in DELIVERABLE_IN_REVIEW_AREA
                                 or row.status == DeliverableStatus.PUBLISHED):
        return {}
    kinds = ["video"] + [a.kind for a in repo.find_artifacts(session, COMPANION_KINDS,
                                                             row.video.input_key)]
    if row.manifest_uri:
        kinds.append("manifest")
    return {kind: file_url(row.id, kind) for kind in kinds if kind in FILE_SUFFIXES}


def spot_strip(session: Session, row: Deliverable,
               jobs: dict[str, RenderJob] | None = None) -> list[dict[str, Any]]:
    """The scenes of a spot, in the order they play, as variant views (the scene strip)."""
    scenes = repo.spot_scenes(session, row)
    order = [s.scene_id for s in load_brief(row.brief.raw, fmt="json").scenes]
    return [variant_view(session, scenes[scene_id], jobs) for scene_id in order
            if scene_id in scenes]


def variant_view(session: Session, row: Deliverable,
                 jobs: dict[str, RenderJob] | None = None) -> dict[str, Any]:
    strip = spot_strip(session, row, jobs) if row.kind == DeliverableKind.SPOT else []
    if row.status == DeliverableStatus.PENDING and row.kind == DeliverableKind.SPOT:
        waiting = [s for s in strip if s["status"] == DeliverableStatus.PENDING]
        stage = "making its scenes" if waiting else "assembling the spot"
        progress = 0.8 * sum(s["progress"] for s in strip) / max(1, len(strip)) \
            if waiting else 0.85
        render_status = RenderStatus.PENDING if waiting else RenderStatus.DONE
    elif row.status == DeliverableStatus.PENDING:
        job = (jobs or {}).get(row.render_key) or repo.render_job(session, row.render_key)
        stage, progress = RENDER_STAGES[job.status]
        render_status = job.status
    elif row.status == DeliverableStatus.FINISHED and row.kind == DeliverableKind.SCENE \
            and not load_brief(row.brief.raw, fmt="json").publish_scenes:
        # a scene finish the spots are made from, not published itself: it is done (it
        # read "publishing" at 0.9 for good)
        stage, progress, render_status = "finished (in its spots)", 1.0, RenderStatus.DONE
    else:
        stage, progress = STAGES[row.status]
        render_status = RenderStatus.DONE
    qc = row.qc or {}
    return {
        "id": str(row.id), "name": row.name, "kind": row.kind, "scene_id": row.scene_id,
        "scenes": strip, "locale": row.locale,
        "aspect": row.aspect, "status": row.status, "stage": stage, "progress": progress,
        "render_status": render_status, "attempts": row.attempts, "error": row.error,
        "preview": bool(qc.get("preview")), "qc": qc.get("report"),
        "qc_passed": all(c["passed"] for c in qc["report"]["checks"]) if qc.get("report")
        else None,
        "loudness": qc.get("loudness"), "files": files_of(session, row),
        # what a reviewer watches: a decision naming it is refused once it was made again
        "video_id": str(row.video_artifact_id) if row.video_artifact_id else None,
        "published_uri": row.published_uri if row.status == DeliverableStatus.PUBLISHED
        else None,
        "decisions": [{"decision": d.decision, "team": d.team, "reviewer": d.reviewer,
                       "comment": d.comment, "rerender": d.rerender, "new_seed": d.new_seed,
                       "at": d.created_at.isoformat()} for d in row.decisions],
    }


def brief_view(session: Session, row: BriefRow, settings: Settings) -> dict[str, Any]:
    jobs = repo.render_jobs(session, [d.render_key for d in row.deliverables])
    # The spots (each with its scene strip); the scene finishes are shown inside them.
    variants = [variant_view(session, d, jobs) for d in repo.deliverables_that_count(row)]
    brief = load_brief(row.raw, fmt="json")
    if variants:
        progress = sum(v["progress"] for v in variants) / len(variants)
    else:
        progress = 0.0 if row.status in BRIEF_ACTIVE else 1.0
    ui = settings.prefect_ui
    cost = (row.plan.body.get("cost") if row.plan is not None else None) or (
        {"gpu_seconds": row.gpu_seconds_estimate} if row.gpu_seconds_estimate is not None
        else None)
    return {
        "id": str(row.id), "campaign": row.campaign.slug, "brand": row.campaign.brand,
        "cost": cost, "awaiting_approval": row.status == BriefStatus.AWAITING_APPROVAL,
        "product": brief.product, "team": row.team, "status": row.status,
        "requires_approval": brief.requires_approval,
        "submitted_at": row.created_at.isoformat(), "problems": row.problems,
        "active": row.status in BRIEF_ACTIVE, "progress": round(progress, 3),
        "flow_run_id": row.flow_run_id,
        "flow_run_url": f"{ui}/runs/flow-run/{row.flow_run_id}" if ui and row.flow_run_id
        else None,
        "ray_dashboard_url": settings.ray_dashboard_link,
        "locales": list(brief.locales), "aspects": [a.value for a in brief.aspects],
        "scenes": [s.scene_id for s in brief.scenes],
        "deliverables": variants,
    }


def team_briefs(session: Session, team: str, limit: int | None = None,
                offset: int = 0) -> list[dict[str, Any]]:
    """A team's briefs, newest first, as summaries."""
    return [brief_summary(row) for row in repo.team_briefs(session, team, limit, offset)]


def brief_summary(row: BriefRow) -> dict[str, Any]:
    counts = dict(Counter(str(d.status) for d in repo.deliverables_that_count(row)))
    return {"id": str(row.id), "campaign": row.campaign.slug, "status": row.status,
            "submitted_at": row.created_at.isoformat(), "deliverables": counts}
