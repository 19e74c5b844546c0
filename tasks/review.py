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
from typing import Any, Literal
from uuid import UUID, uuid4

from infra import repository as repo
from infra.db import session_scope
from infra.db_models import Artifact, BriefRow, Deliverable, ReviewDecision
from infra.hashing import sha256_bytes
from schemas.errors import InvalidTransition
from schemas.plan import RenderSpec
from tasks.deliver import publish_files
from tasks.services import Services

Decision = Literal["approve", "reject"]


def _record(services: Services, session: Any, row: Deliverable, *, decision: Decision,
            team: str, reviewer: str, comment: str, rerender: bool = False,
            new_seed: int | None = None) -> tuple[ReviewDecision, Artifact]:
    decision_id = uuid4()
    body = {"decision": decision, "deliverable": str(row.id), "variant": row.name,
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
            comment: str = "") -> str:
    """Approve a variant in review and publish it to the campaign layout. Calling it again on
    an approved variant whose publishing failed (storage down) publishes it without a second
    decision. Returns the new status."""
    with session_scope(services.engine) as session:
        row = repo.get(session, Deliverable, deliverable_id)
        if row.status != "approved":
            _require(row, "in_review", "approve")
            _record(services, session, row, decision="approve", team=team,
                    reviewer=reviewer, comment=comment)
            repo.transition(row, "approved")
    # Committed: the decision stands even if copying the files fails below.
    with session_scope(services.engine) as session:
        row = repo.get(session, Deliverable, deliverable_id)
        approval = session.get(Artifact, row.decisions[-1].artifact_id)
        publish_files(services, session, row, review=False, approval=approval)
        repo.transition(row, "published")
        return row.status


def reject(services: Services, deliverable_id: UUID, *, team: str, reviewer: str,
           comment: str, rerender: bool) -> str:
    """Reject a variant in review; with `rerender`, queue a new render of it with the next
    seed (the brief goes back to `planned`, so the next production run picks it up)."""
    with session_scope(services.engine) as session:
        row = repo.get(session, Deliverable, deliverable_id)
        _require(row, "in_review", "reject")
        repo.transition(row, "rejected")
        new_seed = None
        if rerender:
            spec = RenderSpec.model_validate(repo.render_job(session, row.render_key).spec)
            # Seeds only grow (QC retries add to the current one), so +1 is always unused.
            retry = spec.with_seed(spec.seed + 1)
            repo.ensure_render_job(session, retry.key, retry.model_dump(mode="json"))
            new_seed, row.render_key, row.attempts, row.error = retry.seed, retry.key, 0, None
            repo.transition(row, "pending")
            brief = session.get(BriefRow, row.brief_id)
            assert brief is not None
            if brief.status in ("done", "failed"):
                repo.transition(brief, "planned")
        _record(services, session, row, decision="reject", team=team, reviewer=reviewer,
                comment=comment, rerender=rerender, new_seed=new_seed)
        return row.status


def _require(row: Deliverable, status: str, action: str) -> None:
    if row.status != status:
        raise InvalidTransition(f"deliverable {row.name} is {row.status}; only a deliverable "
                                f"{status.replace('_', ' ')} can be {action}d")
