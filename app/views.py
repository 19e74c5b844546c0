"""What the API returns and the review page shows, built from database rows (no I/O)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from infra import repository as repo
from infra.db_models import BriefRow, Deliverable, RenderJob
from infra.settings import Settings
from schemas.brief import load_brief
from tasks.deliver import FILE_SUFFIXES

# Where a variant is on its way, and roughly how far along (for the progress bars).
STAGES: dict[str, tuple[str, float]] = {
    "render:pending": ("queued for render", 0.05),
    "render:running": ("rendering", 0.3),
    "render:done": ("finishing and QC", 0.7),
    "render:failed": ("render failed", 1.0),
    "finished": ("publishing", 0.9),
    "in_review": ("awaiting review", 1.0),
    "approved": ("publishing", 0.95),
    "published": ("published", 1.0),
    "rejected": ("rejected", 1.0),
    "failed": ("failed", 1.0),
}
IN_REVIEW_AREA = {"in_review", "approved", "rejected"}
ACTIVE_BRIEF = {"submitted", "claimed", "planned", "producing"}


def file_url(deliverable_id: Any, kind: str) -> str:
    return f"/api/deliverables/{deliverable_id}/files/{kind}"


def files_of(session: Session, row: Deliverable) -> dict[str, str]:
    """The published (or in-review) files of a variant, as service URLs."""
    if row.video is None or not (row.status in IN_REVIEW_AREA or row.status == "published"):
        return {}
    kinds = ["video"] + [kind for kind in ("video_burned", "captions_srt", "captions_vtt")
                         if repo.find_artifact(session, kind, row.video.input_key) is not None]
    if row.manifest_uri:
        kinds.append("manifest")
    return {kind: file_url(row.id, kind) for kind in kinds if kind in FILE_SUFFIXES}


def variant_view(session: Session, row: Deliverable,
                 jobs: dict[str, RenderJob] | None = None) -> dict[str, Any]:
    if row.status == "pending":
        job = (jobs or {}).get(row.render_key) or repo.render_job(session, row.render_key)
        stage, progress = STAGES[f"render:{job.status}"]
        render_status = job.status
    else:
        stage, progress = STAGES[row.status]
        render_status = "done"
    qc = row.qc or {}
    return {
        "id": str(row.id), "name": row.name, "scene_id": row.scene_id, "locale": row.locale,
        "aspect": row.aspect, "status": row.status, "stage": stage, "progress": progress,
        "render_status": render_status, "attempts": row.attempts, "error": row.error,
        "preview": bool(qc.get("preview")), "qc": qc.get("report"),
        "qc_passed": all(c["passed"] for c in qc["report"]["checks"]) if qc.get("report")
        else None,
        "loudness": qc.get("loudness"), "files": files_of(session, row),
        "published_uri": row.published_uri if row.status == "published" else None,
        "decisions": [{"decision": d.decision, "team": d.team, "reviewer": d.reviewer,
                       "comment": d.comment, "rerender": d.rerender, "new_seed": d.new_seed,
                       "at": d.created_at.isoformat()} for d in row.decisions],
    }


def brief_view(session: Session, row: BriefRow, settings: Settings) -> dict[str, Any]:
    keys = [d.render_key for d in row.deliverables]
    jobs = {job.spec_key: job for job in session.scalars(
        select(RenderJob).where(RenderJob.spec_key.in_(keys)))} if keys else {}
    variants = [variant_view(session, d, jobs) for d in row.deliverables]
    brief = load_brief(row.raw, fmt="json")
    if variants:
        progress = sum(v["progress"] for v in variants) / len(variants)
    else:
        progress = 0.0 if row.status in ACTIVE_BRIEF else 1.0
    ui = settings.prefect_ui
    return {
        "id": str(row.id), "campaign": row.campaign.slug, "brand": row.campaign.brand,
        "product": brief.product, "team": row.team, "status": row.status,
        "requires_approval": brief.requires_approval,
        "submitted_at": row.created_at.isoformat(), "problems": row.problems,
        "active": row.status in ACTIVE_BRIEF, "progress": round(progress, 3),
        "flow_run_id": row.flow_run_id,
        "flow_run_url": f"{ui}/runs/flow-run/{row.flow_run_id}" if ui and row.flow_run_id
        else None,
        "ray_dashboard_url": settings.ray_dashboard_link,
        "locales": list(brief.locales), "aspects": [a.value for a in brief.aspects],
        "scenes": [s.scene_id for s in brief.scenes],
        "deliverables": variants,
    }


def team_briefs(session: Session, team: str, limit: int | None = None) -> list[dict[str, Any]]:
    """A team's briefs, newest first, as summaries."""
    query = select(BriefRow).where(BriefRow.team == team).order_by(BriefRow.created_at.desc())
    return [brief_summary(row) for row in session.scalars(query.limit(limit))]


def brief_summary(row: BriefRow) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for d in row.deliverables:
        counts[d.status] = counts.get(d.status, 0) + 1
    return {"id": str(row.id), "campaign": row.campaign.slug, "status": row.status,
            "submitted_at": row.created_at.isoformat(), "deliverables": counts}
