"""Retakes: a variant re-rendered (new seed after a QC failure or a reviewer's reject) takes the
scenes chained after it along, in the same language and aspect, and nothing else."""

from __future__ import annotations

from sqlalchemy.orm import Session

from infra import repository as repo
from infra.repository import Deliverable
from schemas.brief import load_brief
from schemas.plan import RenderSpec
from schemas.spot import render_order
from tasks.faults import run_logger


def retake(session: Session, row: Deliverable, spec: RenderSpec, *, error: str | None,
           reset_attempts: bool) -> list[str]:
    """Point `row` at the render `spec` (queued if new). When its picture changes, every
    variant of the same brief, language and aspect whose scene continues from it (directly or
    through others) moves to a render starting from the new picture. Returns the names of the
    variants that moved along; those in review, approved or published stay (logged)."""
    before = RenderSpec.model_validate(repo.render_job(session, row.render_key).spec)
    repo.ensure_render_job(session, spec.key, spec.model_dump(mode="json"))
    repo.rerender_deliverable(row, spec.key, error=error, reset_attempts=reset_attempts)
    if spec.picture_key == before.picture_key:
        return []  # a new soundtrack on the same picture: the next scene starts the same
    brief = load_brief(row.brief.raw, fmt="json")
    parent_of = {scene.scene_id: scene.continue_from for scene in brief.scenes}
    siblings = {d.scene_id: d for d in row.brief.deliverables
                if d.locale == row.locale and d.aspect == row.aspect}
    new_picture = {row.scene_id: spec.picture_key}
    moved = []
    for scene_id in render_order(brief):  # a scene's predecessor is always handled first
        parent = parent_of[scene_id]
        sibling = siblings.get(scene_id)
        if parent not in new_picture or sibling is None:
            continue
        current = RenderSpec.model_validate(repo.render_job(session, sibling.render_key).spec)
        if current.continue_from is None:
            continue  # a dub: its picture is its master's
        follower = current.continuing(new_picture[parent])
        repo.ensure_render_job(session, follower.key, follower.model_dump(mode="json"))
        if repo.follow_render(sibling, follower.key, f"re-rendering: scene {parent} changed"):
            moved.append(sibling.name)
            new_picture[scene_id] = follower.picture_key
        else:
            run_logger().warning("retake.kept variant=%s status=%s: scene %s changed after "
                                 "it was %s", sibling.name, sibling.status, parent,
                                 sibling.status)
    return moved
