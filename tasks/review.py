"""Review decisions on deliverables that wait for approval.

Approve: the files are copied from the review area to the campaign layout and the manifest
records the approval. Reject: the variant stays out of the campaign layout; with `rerender`
it is rendered again with a new seed while every other variant is left as it is. Each
decision is an artifact in the lineage graph (child of the reviewed video) and an
OpenLineage event: who, when, what.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID, uuid4

from sqlalchemy.orm import Session

from infra import repository as repo
from infra.db import session_scope
from infra.hashing import sha256_bytes
from infra.repository import Artifact, Deliverable, ReviewDecision
from infra.statuses import BRIEF_CLOSED, BriefStatus, DeliverableStatus, ReviewVerdict
from schemas.errors import InvalidTransition
from schemas.plan import RenderSpec
from tasks.deliver import publish_files
from tasks.retake import retake
from tasks.services import Services


def _record(services: Services, session: Session, row: Deliverable, *,
            decision: ReviewVerdict, team: str, reviewer: str, comment: str, rerender: bool = False,
            new_seed: int | None = None) -> tuple[ReviewDecision, Artifact]:
    decision_id = uuid4()
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
    services.lineage.complete(f"review.{decision}", decision_id,
                              [f"deliverable:{row.id}"], [stored.uri])
    return record, artifact


def approve(services: Services, deliverable_id: UUID, *, team: str, reviewer: str,
            comment: str = "") -> DeliverableStatus:
    """Approve a variant in review and publish it to the campaign layout. Calling it again on
    an approved variant whose publishing failed (storage down) publishes it without a second
    decision. Returns the new status."""
    with session_scope(services.engine) as session:
        row = repo.get_deliverable(session, deliverable_id)
        if row.status != DeliverableStatus.APPROVED:
            _require(row, DeliverableStatus.IN_REVIEW, "approve")
            _record(services, session, row, decision=ReviewVerdict.APPROVE, team=team,
                    reviewer=reviewer, comment=comment)
            repo.transition(row, DeliverableStatus.APPROVED)
    # Committed: the decision stands even if copying the files fails below.
    with session_scope(services.engine) as session:
        row = repo.get_deliverable(session, deliverable_id)
        approval = repo.last_decision_artifact(session, row)
        publish_files(services, session, row, review=False, approval=approval)
        repo.transition(row, DeliverableStatus.PUBLISHED)
        return row.status


def reject(services: Services, deliverable_id: UUID, *, team: str, reviewer: str,
           comment: str, rerender: bool) -> DeliverableStatus:
    """Reject a variant in review; with `rerender`, queue a new render of it with the next
    seed (the brief goes back to `planned`, so the next production run picks it up)."""
    with session_scope(services.engine) as session:
        row = repo.get_deliverable(session, deliverable_id)
        _require(row, DeliverableStatus.IN_REVIEW, "reject")
        repo.transition(row, DeliverableStatus.REJECTED)
        new_seed = None
        if rerender:
            spec = RenderSpec.model_validate(repo.render_job(session, row.render_key).spec)
            # Seeds only grow (QC retries add to the current one), so +1 is always unused.
            retry = spec.with_seed(spec.seed + 1)
            new_seed = retry.seed
            retake(session, row, retry, error=None, reset_attempts=True)
            if row.brief.status in BRIEF_CLOSED:
                repo.transition(row.brief, BriefStatus.PLANNED)
        _record(services, session, row, decision=ReviewVerdict.REJECT, team=team, reviewer=reviewer,
                comment=comment, rerender=rerender, new_seed=new_seed)
        return row.status


def _require(row: Deliverable, status: DeliverableStatus, action: str) -> None:
    if row.status != status:
        raise InvalidTransition(f"deliverable {row.name} is {row.status}; only a deliverable "
                                f"{status.replace('_', ' ')} can be {action}d")
