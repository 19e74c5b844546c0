"""Review decisions on deliverables that wait for approval.

Approve: the files are copied from the review area to the campaign layout and the manifest
records the approval. Reject: the variant stays out of the campaign layout; with `rerender`
it is rendered again with a new seed while every other variant is left as it is. Each
decision is an artifact in the lineage graph (child of the reviewed video) and an
OpenLineage event: who, when, what.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

from sqlalchemy.orm import Session

from infra import repository as repo
from infra.db import session_scope
from infra.hashing import sha256_bytes
from infra.repository import Artifact, Deliverable, DeliverableKind, ReviewDecision
from infra.statuses import BRIEF_CLOSED, BriefStatus, DeliverableStatus, ReviewVerdict
from schemas.brief import load_brief
from schemas.errors import InvalidTransition, RequestInvalid
from schemas.plan import RenderSpec
from schemas.spot import render_order
from tasks.deliver import publish_files
from tasks.faults import readable_reason
from tasks.retake import retake
from tasks.services import Services


@dataclass(frozen=True)
class _ReviewRun:
    """A decision's lineage run, started; it ends when the decision's transaction does."""

    job: str
    run_id: UUID
    inputs: list[str]
    output_uri: str


@contextmanager
def _deciding(services: Services) -> Iterator[tuple[Session, list[_ReviewRun]]]:
    """One transaction that records decisions. Each decision's lineage run COMPLETEs once the
    transaction has committed, and FAILs when it does not (a database cut at the commit): the
    event says what the database holds. The decision's JSON file, stored before, is then left
    unreferenced; it is not deleted, since a commit whose answer was lost may have landed."""
    runs: list[_ReviewRun] = []
    try:
        with session_scope(services.engine) as session:
            yield session, runs
    except Exception as err:
        for run in runs:
            services.lineage.fail(run.job, run.run_id, run.inputs, readable_reason(err))
        raise
    for run in runs:
        services.lineage.complete(run.job, run.run_id, run.inputs, [run.output_uri])


def _record(services: Services, session: Session, runs: list[_ReviewRun], row: Deliverable, *,
            decision: ReviewVerdict, team: str, reviewer: str, comment: str, rerender: bool = False,
            new_seed: int | None = None) -> tuple[ReviewDecision, Artifact]:
    """Store the decision's file and rows in `session`; its lineage run starts here and is
    ended by `_deciding` (appended to `runs`)."""
    decision_id = uuid4()
    job, inputs = f"review.{decision}", [f"deliverable:{row.id}"]
    services.lineage.start(job, decision_id, inputs)
    try:
        record, artifact = _store_decision(services, session, row, decision_id,
                                           decision=decision, team=team, reviewer=reviewer,
                                           comment=comment, rerender=rerender,
                                           new_seed=new_seed)
    except Exception as err:
        services.lineage.fail(job, decision_id, inputs, readable_reason(err))
        raise
    runs.append(_ReviewRun(job, decision_id, inputs, artifact.uri))
    return record, artifact


def _store_decision(services: Services, session: Session, row: Deliverable,
                    decision_id: UUID, *, decision: ReviewVerdict, team: str, reviewer: str,
                    comment: str, rerender: bool, new_seed: int | None
                    ) -> tuple[ReviewDecision, Artifact]:
    body = {"decision": decision.value, "deliverable": str(row.id), "variant": row.name,
            "brief_sha256": row.brief.sha256, "team": team, "reviewer": reviewer,
            "comment": comment, "rerender": rerender, "new_seed": new_seed,
            "decided_at": datetime.now(UTC).isoformat(), "id": str(decision_id)}
    data = json.dumps(body, indent=2, sort_keys=True).encode()
    key = f"reviews/{row.id}/{decision_id}.json"
    stored = services.store.put_bytes(data, key, content_type="application/json")
    parents = [row.video] if row.video is not None else []
    artifact = repo.add_artifact(
        session, kind="review", input_key=sha256_bytes(data), sha256=stored.sha256,
        uri=stored.uri, size_bytes=stored.size_bytes, content_type="application/json",
        task=f"review.{decision}", code_version=services.code_version,
        params={"key": key, **body}, parents=parents)
    record = repo.add_decision(session, row, decision_id=decision_id, team=team,
                               reviewer=reviewer, decision=decision, comment=comment,
                               rerender=rerender, new_seed=new_seed, artifact=artifact)
    return record, artifact


def approve(services: Services, deliverable_id: UUID, *, team: str, reviewer: str,
            comment: str = "", seen_video_id: UUID | None = None) -> DeliverableStatus:
    """Approve a variant in review and publish it to the campaign layout. Calling it again on
    an approved variant whose publishing failed (storage down) publishes it without a second
    decision. `seen_video_id`: the video the reviewer watched (refused when it is no longer
    the one in review). Returns the new status."""
    with _deciding(services) as (session, runs):
        row = repo.lock_deliverable(session, deliverable_id)
        if row.status != DeliverableStatus.APPROVED:
            _require(row, DeliverableStatus.IN_REVIEW, "approved")
            _require_seen(row, seen_video_id)
            _record(services, session, runs, row, decision=ReviewVerdict.APPROVE, team=team,
                    reviewer=reviewer, comment=comment)
            repo.transition(row, DeliverableStatus.APPROVED)
    # Committed: the decision stands even if copying the files fails below. Locked again:
    # a second approver who waited for the first finds it published, not publishes it twice.
    with session_scope(services.engine) as session:
        row = repo.lock_deliverable(session, deliverable_id)
        if row.status == DeliverableStatus.PUBLISHED:
            return row.status
        approval = repo.last_decision_artifact(session, row)
        publish_files(services, session, row, review=False, approval=approval)
        repo.transition(row, DeliverableStatus.PUBLISHED)
        return row.status


def reject(services: Services, deliverable_id: UUID, *, team: str, reviewer: str,
           comment: str, rerender: bool, scene_id: str | None = None,
           seen_video_id: UUID | None = None) -> DeliverableStatus:
    """Reject a variant in review; with `rerender`, queue a new render of it with the next
    seed (the brief goes back to `planned`, so the next production run picks it up). On a
    spot, `scene_id` names the one scene to render again (and the scenes chained after it);
    the spot is assembled again from it, the brief's other spots are left as they are."""
    with _deciding(services) as (session, runs):
        row = repo.lock_deliverable(session, deliverable_id)
        _require(row, DeliverableStatus.IN_REVIEW, "rejected")
        _require_seen(row, seen_video_id)
        if scene_id is not None and row.kind != DeliverableKind.SPOT:
            raise RequestInvalid([("scene_id", f"deliverable {row.name} is a scene; scene_id "
                                               "names a scene of a spot")])
        repo.transition(row, DeliverableStatus.REJECTED)
        new_seed = None
        if rerender and row.kind == DeliverableKind.SPOT:
            new_seed = _rerender_spot_scenes(session, row, scene_id)
            repo.reopen_spot(row, None)
        elif rerender:
            new_seed = _rerender(session, row)
        if rerender and row.brief.status in BRIEF_CLOSED:
            repo.transition(row.brief, BriefStatus.PLANNED)
        _record(services, session, runs, row, decision=ReviewVerdict.REJECT, team=team,
                reviewer=reviewer,
                comment=f"{comment} (scene {scene_id})" if scene_id else comment,
                rerender=rerender, new_seed=new_seed)
        return row.status


def _rerender(session: Session, row: Deliverable) -> int:
    """Point a scene finish at a new render of it with the next seed; the seed."""
    spec = RenderSpec.model_validate(repo.render_job(session, row.render_key).spec)
    # Seeds only grow (QC retries add to the current one), so +1 is always unused.
    retry = spec.with_seed(spec.seed + 1)
    retake(session, row, retry, error=None, reset_attempts=True)  # its chain moves along
    return retry.seed


def _rerender_spot_scenes(session: Session, spot: Deliverable, scene_id: str | None) -> int:
    """Re-render the spot's scene `scene_id` and the scenes chained after it (its first frame
    is their start), or every scene of the spot; the new seed of the first one."""
    brief = load_brief(spot.brief.raw, fmt="json")
    scenes = repo.spot_scenes(session, spot)
    if scene_id is not None and scene_id not in scenes:
        raise RequestInvalid([("scene_id", f"spot {spot.name} has no scene {scene_id!r} "
                                           f"(its scenes: {', '.join(sorted(scenes))})")])
    if scene_id is not None:  # the scenes chained after it follow its new picture
        return _rerender(session, scenes[scene_id])
    seeds = [_rerender(session, scenes[name]) for name in render_order(brief)]
    return seeds[0]


def _require(row: Deliverable, status: DeliverableStatus, done: str) -> None:
    """`done`: the action's past participle ("approved"); not built from the verb, whose
    spelling varies ("reject" + "d")."""
    if row.status != status:
        raise InvalidTransition(f"deliverable {row.name} is {row.status}; only a deliverable "
                                f"{status.replace('_', ' ')} can be {done}")


def _require_seen(row: Deliverable, video_id: UUID | None) -> None:
    """A decision is on the video the reviewer watched: a page left open while a colleague's
    re-render came back to review would otherwise judge the new video unseen."""
    if video_id is not None and video_id != row.video_artifact_id:
        raise InvalidTransition(f"deliverable {row.name} was rendered again since video "
                                f"{video_id} was reviewed (now {row.video_artifact_id}); "
                                "reload the page and review the new video")
