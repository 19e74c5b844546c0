"""Data functions over the ORM. Each takes a Session; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from infra.db_models import (
    Artifact,
    Base,
    BriefRow,
    Campaign,
    Deliverable,
    LineageEdge,
    PlanRow,
    RenderJob,
    ReviewDecision,
    Team,
)
from schemas.errors import InvalidTransition, NotFound

T = TypeVar("T", bound=Base)

# Allowed status changes per table. Anything else is a bug or a race, and is refused.
TRANSITIONS: dict[str, dict[str, set[str]]] = {
    "brief": {
        "submitted": {"claimed"},
        "claimed": {"planned", "invalid", "submitted"},
        "planned": {"producing"},
        "producing": {"done", "failed", "planned"},
        "failed": {"producing", "planned"},
        "done": {"producing", "planned"},  # planned again: a reviewer asked for a re-render
        "invalid": set(),
    },
    "render_job": {
        "pending": {"running"},
        "running": {"done", "failed", "pending"},  # pending again: a run died mid-render
        "failed": {"pending"},
        "done": set(),
    },
    "deliverable": {
        "pending": {"finished", "failed"},
        "finished": {"published", "in_review", "failed", "pending"},
        "in_review": {"approved", "rejected"},
        "approved": {"published"},
        "rejected": {"pending"},
        "failed": {"pending"},
        "published": set(),
    },
}


def transition(row: BriefRow | RenderJob | Deliverable, new_status: str) -> None:
    """Move `row` to `new_status` if its table's state machine allows it."""
    table = row.__tablename__
    if row.status == new_status:
        return
    if new_status not in TRANSITIONS[table].get(row.status, set()):
        raise InvalidTransition(f"{table} {row.id}: cannot go from {row.status!r} to "
                                f"{new_status!r} (allowed: "
                                f"{sorted(TRANSITIONS[table].get(row.status, set())) or 'none'})")
    row.status = new_status


def _get_or_create(session: Session, model: type[T], lookup: dict[str, Any],
                   create: Callable[[], T]) -> tuple[T, bool]:
    """The row matching `lookup`, or a new one; safe against a concurrent insert."""
    found = session.scalars(select(model).filter_by(**lookup)).first()
    if found is not None:
        return found, False
    try:
        with session.begin_nested():
            row = create()
            session.add(row)
            session.flush()
        return row, True
    except IntegrityError:
        return session.scalars(select(model).filter_by(**lookup)).one(), False


def get(session: Session, model: type[T], row_id: UUID) -> T:
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"{model.__tablename__} {row_id} does not exist")
    return row


# ---- briefs ---------------------------------------------------------------------------------


def add_brief(session: Session, *, campaign_slug: str, brand: str, raw: str, sha256: str,
              team: str | None = None) -> BriefRow:
    campaign, _ = _get_or_create(session, Campaign, {"slug": campaign_slug},
                                 lambda: Campaign(slug=campaign_slug, brand=brand))
    row = BriefRow(campaign=campaign, raw=raw, sha256=sha256, team=team, status="submitted")
    session.add(row)
    session.flush()
    return row


def claim_submitted_briefs(session: Session, limit: int, worker_id: str) -> list[BriefRow]:
    """Take up to `limit` submitted briefs for this worker. On PostgreSQL the rows are locked
    with FOR UPDATE SKIP LOCKED, so concurrent ingesters never take the same brief; SQLite
    serialises writers, which gives the same guarantee."""
    query = select(BriefRow).where(BriefRow.status == "submitted") \
        .order_by(BriefRow.created_at, BriefRow.id).limit(limit)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = list(session.scalars(query))
    for row in rows:
        transition(row, "claimed")
        row.claimed_by = worker_id
    session.flush()
    return rows


def briefs_to_produce(session: Session) -> list[BriefRow]:
    """Planned briefs, and briefs a dead run left producing (resumed, never duplicated)."""
    return list(session.scalars(select(BriefRow).where(
        BriefRow.status.in_(("planned", "producing"))).order_by(BriefRow.created_at)))


def save_plan(session: Session, brief: BriefRow, body: dict[str, Any],
              artifact: Artifact) -> PlanRow:
    plan, _ = _get_or_create(session, PlanRow, {"brief_id": brief.id},
                             lambda: PlanRow(brief_id=brief.id, body=body,
                                             artifact_id=artifact.id))
    return plan


def recent_submissions(session: Session, team: str, window: timedelta) -> int:
    """Briefs `team` submitted within the last `window` (for the per-minute limit)."""
    since = datetime.now(UTC) - window
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        since = since.replace(tzinfo=None)  # SQLite keeps naive UTC text
    return int(session.scalar(select(func.count()).select_from(BriefRow).where(
        BriefRow.team == team, BriefRow.created_at >= since)) or 0)


# ---- teams and review decisions -------------------------------------------------------------


def add_team(session: Session, name: str, token_sha256: str) -> Team:
    if session.scalars(select(Team).where(Team.name == name)).first() is not None:
        raise InvalidTransition(f"team {name!r} exists already")
    team = Team(name=name, token_sha256=token_sha256)
    session.add(team)
    session.flush()
    return team


def team_by_token_hash(session: Session, token_sha256: str) -> Team | None:
    return session.scalars(select(Team).where(Team.token_sha256 == token_sha256)).first()


def add_decision(session: Session, deliverable: Deliverable, *, decision_id: UUID, team: str,
                 reviewer: str, decision: str, comment: str, rerender: bool = False,
                 new_seed: int | None = None, artifact: Artifact | None = None
                 ) -> ReviewDecision:
    row = ReviewDecision(id=decision_id, deliverable_id=deliverable.id, team=team,
                         reviewer=reviewer, decision=decision, comment=comment, rerender=rerender,
                         new_seed=new_seed, artifact_id=artifact.id if artifact else None)
    session.add(row)
    session.flush()
    return row


# ---- renders and deliverables --------------------------------------------------------------


def ensure_render_job(session: Session, spec_key: str, spec: dict[str, Any]) -> RenderJob:
    job, _ = _get_or_create(session, RenderJob, {"spec_key": spec_key},
                            lambda: RenderJob(spec_key=spec_key, spec=spec, status="pending"))
    return job


def ensure_deliverable(session: Session, brief: BriefRow, *, name: str, scene_id: str,
                       locale: str, aspect: str, render_key: str) -> Deliverable:
    row, _ = _get_or_create(
        session, Deliverable, {"brief_id": brief.id, "name": name},
        lambda: Deliverable(brief_id=brief.id, name=name, scene_id=scene_id, locale=locale,
                            aspect=aspect, render_key=render_key, status="pending"))
    return row


def render_job(session: Session, spec_key: str) -> RenderJob:
    job = session.scalars(select(RenderJob).where(RenderJob.spec_key == spec_key)).first()
    if job is None:
        raise NotFound(f"no render job with key {spec_key}")
    return job


# ---- artifacts and lineage -----------------------------------------------------------------


def find_artifact(session: Session, kind: str, input_key: str) -> Artifact | None:
    return session.scalars(select(Artifact).where(Artifact.kind == kind,
                                                  Artifact.input_key == input_key)).first()


def add_artifact(session: Session, *, kind: str, input_key: str, sha256: str, uri: str,
                 size_bytes: int, content_type: str, task: str, code_version: str,
                 params: dict[str, Any] | None = None, checkpoint: str | None = None,
                 seed: int | None = None, parents: list[Artifact] | None = None) -> Artifact:
    """Record an artifact (or return the one already made from the same inputs)."""
    artifact, created = _get_or_create(
        session, Artifact, {"kind": kind, "input_key": input_key},
        lambda: Artifact(kind=kind, input_key=input_key, sha256=sha256, uri=uri,
                         size_bytes=size_bytes, content_type=content_type, task=task,
                         params=params or {}, checkpoint=checkpoint, seed=seed,
                         code_version=code_version))
    if created:
        for parent in parents or []:
            session.add(LineageEdge(child_id=artifact.id, parent_id=parent.id))
        session.flush()
    return artifact


def lineage_chain(session: Session, artifact_id: UUID) -> list[tuple[int, Artifact]]:
    """The artifact and all its ancestors, depth first: (depth, artifact)."""
    out: list[tuple[int, Artifact]] = []
    seen: set[UUID] = set()

    def walk(current: Artifact, depth: int) -> None:
        out.append((depth, current))
        if current.id in seen:
            return
        seen.add(current.id)
        edges = session.scalars(select(LineageEdge).where(LineageEdge.child_id == current.id))
        for edge in sorted(edges, key=lambda e: str(e.parent_id)):
            walk(get(session, Artifact, edge.parent_id), depth + 1)

    walk(get(session, Artifact, artifact_id), 0)
    return out


def count_rows(session: Session, model: type[Base]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)
