"""The one door to the database: every query and every write of the pipeline lives here.

Each function takes a Session; the caller owns the transaction (`with session_scope(engine)`).
Tasks, flows and the app call these and never import the ORM module or build queries. The rows
returned are the ORM records (re-exported below as the record types); callers read them, and
change them only through the functions here, so every status change passes `transition`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Integer, Text, cast, delete, func, literal_column, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from infra.db_models import (
    NO_TEAM,
    Artifact,
    Base,
    BriefRow,
    BriefRun,
    Campaign,
    Deliverable,
    DeliverableKind,
    LineageEdge,
    LoraRow,
    PlanRow,
    RenderJob,
    ReviewDecision,
    Submission,
    Team,
    WebSession,
)
from infra.statuses import (
    BRIEF_ACTIVE,
    BRIEF_TO_PRODUCE,
    BRIEF_WAITING,
    DELIVERABLE_SETTLED,
    DELIVERABLE_TRANSITIONS,
    BriefStatus,
    DeliverableStatus,
    RenderStatus,
    ReviewVerdict,
    Status,
    check_transition,
)
from schemas.errors import InvalidTransition, NotFound

__all__ = ["NO_TEAM", "Artifact", "BriefRow", "Deliverable", "DeliverableKind", "LoraRow",
           "RenderJob", "ReviewDecision", "Team"]

T = TypeVar("T", bound=Base)
S = TypeVar("S", BriefStatus, RenderStatus, DeliverableStatus)


_STATUS_OF: dict[str, type[BriefStatus] | type[RenderStatus] | type[DeliverableStatus]] = {
    "brief": BriefStatus, "render_job": RenderStatus, "deliverable": DeliverableStatus}


def transition(row: BriefRow | RenderJob | Deliverable, new_status: Status | str) -> None:
    """Move `row` to `new_status` if its table's state machine (infra/statuses.py) allows it."""
    kind = _STATUS_OF[row.__tablename__]
    new = kind(new_status)
    check_transition(row.__tablename__, row.id, kind(row.status), new)
    row.status = new


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


def _get(session: Session, model: type[T], row_id: UUID) -> T:
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"{model.__tablename__} {row_id} does not exist")
    return row


def ping(session: Session) -> None:
    """Raise if the database does not answer."""
    session.execute(select(1))


def count_rows(session: Session, model: type[Base]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _is_dialect(session: Session, name: str) -> bool:
    return session.bind is not None and session.bind.dialect.name == name


# ---- briefs ---------------------------------------------------------------------------------


def get_brief(session: Session, brief_id: UUID) -> BriefRow:
    return _get(session, BriefRow, brief_id)


def add_brief(session: Session, *, campaign_slug: str, brand: str, raw: str, sha256: str,
              team: str | None = None, idempotency_key: str | None = None,
              gpu_seconds_estimate: float | None = None) -> BriefRow:
    """A new submitted brief in its team's campaign of that slug (made on first use: two teams
    using one slug get two campaigns)."""
    owner = team or NO_TEAM
    campaign, _ = _get_or_create(session, Campaign, {"team": owner, "slug": campaign_slug},
                                 lambda: Campaign(team=owner, slug=campaign_slug, brand=brand))
    row = BriefRow(campaign=campaign, raw=raw, sha256=sha256, team=team,
                   idempotency_key=idempotency_key, gpu_seconds_estimate=gpu_seconds_estimate,
                   status=BriefStatus.SUBMITTED)
    session.add(row)
    session.flush()
    return row


def claim_submitted_briefs(session: Session, limit: int, worker_id: str) -> list[BriefRow]:
    """Take up to `limit` submitted briefs for this worker. On PostgreSQL the rows are locked
    with FOR UPDATE SKIP LOCKED, so concurrent ingesters never take the same brief; SQLite
    serialises writers, which gives the same guarantee."""
    query = select(BriefRow).where(BriefRow.status == BriefStatus.SUBMITTED) \
        .order_by(BriefRow.created_at, BriefRow.id).limit(limit)
    if _is_dialect(session, "postgresql"):
        query = query.with_for_update(skip_locked=True)
    rows = list(session.scalars(query))
    for row in rows:
        transition(row, BriefStatus.CLAIMED)
        row.claimed_by = worker_id
    session.flush()
    return rows


PLANNING_PROBLEM = "(planning)"  # the path of a planning failure among a brief's problems


def release_claim(session: Session, brief_id: UUID, reason: str | None = None) -> bool:
    """A claimed brief whose planning failed goes back to submitted, for the next ingest run
    (left claimed, no run would ever take it again, and sending it again finds it as sent),
    with `reason` kept as its problem until a plan is made: the team and the operator see why
    it waits. False when it had moved on (planned, or found invalid)."""
    row = get_brief(session, brief_id)
    if row.status != BriefStatus.CLAIMED:
        return False
    transition(row, BriefStatus.SUBMITTED)
    row.claimed_by = None
    if reason is not None:
        row.problems = [[PLANNING_PROBLEM, f"planning failed and is tried again by the next "
                                           f"production run: {reason}"]]
    return True


def claim_brief(session: Session, brief_id: UUID, worker_id: str) -> bool:
    """Claim one brief if it is still submitted; False when a worker took it first."""
    row = _locked(session, BriefRow, brief_id, "brief")
    if row.status != BriefStatus.SUBMITTED:
        return False
    transition(row, BriefStatus.CLAIMED)
    row.claimed_by = worker_id
    return True


def claimed_brief_ids(session: Session) -> list[UUID]:
    """Briefs claimed and not planned yet: this run's claims, and those of runs that died."""
    return list(session.scalars(select(BriefRow.id).where(
        BriefRow.status == BriefStatus.CLAIMED).order_by(BriefRow.created_at, BriefRow.id)))


def briefs_to_produce(session: Session) -> list[BriefRow]:
    """Planned briefs, and briefs a dead run left producing (resumed, never duplicated)."""
    return list(session.scalars(select(BriefRow).where(
        BriefRow.status.in_(BRIEF_TO_PRODUCE)).order_by(BriefRow.created_at)))


def any_brief_waiting(session: Session) -> bool:
    """True when some brief waits for a production run (submitted, planned or producing)."""
    return session.scalars(select(BriefRow.id).where(
        BriefRow.status.in_(BRIEF_WAITING)).limit(1)).first() is not None


def mark_brief_invalid(session: Session, brief: BriefRow, problems: list[tuple[str, str]]) -> None:
    brief.problems = [list(p) for p in problems]
    transition(brief, BriefStatus.INVALID)


def save_plan(session: Session, brief: BriefRow, body: dict[str, Any], brief_artifact: Artifact,
              plan_artifact: Artifact, *, hold: bool = False) -> PlanRow:
    """Keep the plan (and the stored brief it was made from); the brief becomes planned, or
    awaiting_approval when `hold` (its cost needs an operator's yes first)."""
    brief.artifact_id = brief_artifact.id
    plan, _ = _get_or_create(session, PlanRow, {"brief_id": brief.id},
                             lambda: PlanRow(brief_id=brief.id, body=body,
                                             artifact_id=plan_artifact.id))
    transition(brief, BriefStatus.AWAITING_APPROVAL if hold else BriefStatus.PLANNED)
    brief.problems = None  # an earlier attempt's planning failure is over
    return plan


def plan_artifact(session: Session, brief: BriefRow) -> Artifact | None:
    """The stored plan of a brief, if it was planned."""
    if brief.plan is None or brief.plan.artifact_id is None:
        return None
    return _get(session, Artifact, brief.plan.artifact_id)


def set_flow_run(session: Session, brief_id: UUID, flow_run_id: str) -> None:
    get_brief(session, brief_id).flow_run_id = flow_run_id


def open_production(session: Session, brief_id: UUID, flow_run_id: str | None) -> None:
    """Mark the brief producing (by this flow run); its failed variants and failed renders
    go back to pending for another chance."""
    brief = get_brief(session, brief_id)
    transition(brief, BriefStatus.PRODUCING)
    brief.flow_run_id = flow_run_id or brief.flow_run_id
    for row in brief.deliverables:
        if row.status == DeliverableStatus.FAILED:
            transition(row, DeliverableStatus.PENDING)
            row.attempts = 0
    for job in render_jobs(session, [row.render_key for row in brief.deliverables]).values():
        if job.status == RenderStatus.FAILED:
            transition(job, RenderStatus.PENDING)


def deliverable_counts(session: Session, brief_id: UUID) -> Counter[DeliverableStatus]:
    """How many of the brief's variants are in each status."""
    return Counter(row.status for row in get_brief(session, brief_id).deliverables)


def set_brief_status(session: Session, brief_id: UUID, status: BriefStatus) -> None:
    transition(get_brief(session, brief_id), status)


def campaign_briefs(session: Session, campaign: str | None) -> list[BriefRow]:
    """Briefs, oldest first; only those of `campaign` when given."""
    query = select(BriefRow).join(Campaign).order_by(BriefRow.created_at)
    if campaign:
        query = query.where(Campaign.slug == campaign)
    return list(session.scalars(query))


def team_briefs(session: Session, team: str, limit: int | None = None,
                offset: int = 0) -> list[BriefRow]:
    """A team's briefs, newest first (ties in a stable order, so pages neither repeat nor
    skip one)."""
    return list(session.scalars(select(BriefRow).where(BriefRow.team == team)
                                .order_by(BriefRow.created_at.desc(), BriefRow.id.desc())
                                .limit(limit).offset(offset)))


def brief_count(session: Session, status: BriefStatus) -> int:
    """How many briefs, of every team, are in `status`."""
    return int(session.scalar(select(func.count()).select_from(BriefRow)
                              .where(BriefRow.status == status)) or 0)


def team_brief_count(session: Session, team: str) -> int:
    return int(session.scalar(select(func.count()).select_from(BriefRow)
                              .where(BriefRow.team == team)) or 0)


def team_brief(session: Session, team: str, brief_id: UUID) -> BriefRow | None:
    """The brief if it belongs to `team`; another team's brief is as if it did not exist."""
    row = session.get(BriefRow, brief_id)
    return row if row is not None and row.team == team else None


def team_deliverable(session: Session, team: str, deliverable_id: UUID) -> Deliverable | None:
    row = session.get(Deliverable, deliverable_id)
    return row if row is not None and row.brief.team == team else None


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


def teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.name)))


def add_decision(session: Session, deliverable: Deliverable, *, decision_id: UUID, team: str,
                 reviewer: str, decision: ReviewVerdict, comment: str, rerender: bool = False,
                 new_seed: int | None = None, artifact: Artifact | None = None
                 ) -> ReviewDecision:
    row = ReviewDecision(id=decision_id, deliverable_id=deliverable.id, team=team,
                         reviewer=reviewer, decision=decision, comment=comment, rerender=rerender,
                         new_seed=new_seed, artifact_id=artifact.id if artifact else None)
    session.add(row)
    session.flush()
    return row


def last_decision_artifact(session: Session, deliverable: Deliverable) -> Artifact | None:
    """The lineage artifact of the latest review decision on a variant."""
    if not deliverable.decisions or deliverable.decisions[-1].artifact_id is None:
        return None
    return _get(session, Artifact, deliverable.decisions[-1].artifact_id)


# ---- renders --------------------------------------------------------------------------------


def ensure_render_job(session: Session, spec_key: str, spec: dict[str, Any]) -> RenderJob:
    job, _ = _get_or_create(session, RenderJob, {"spec_key": spec_key},
                            lambda: RenderJob(spec_key=spec_key, spec=spec,
                                              status=RenderStatus.PENDING))
    return job


def get_render_job(session: Session, job_id: UUID) -> RenderJob:
    return _get(session, RenderJob, job_id)


def render_job(session: Session, spec_key: str) -> RenderJob:
    job = session.scalars(select(RenderJob).where(RenderJob.spec_key == spec_key)).first()
    if job is None:
        raise NotFound(f"no render job with key {spec_key}")
    return job


def render_jobs(session: Session, spec_keys: Iterable[str]) -> dict[str, RenderJob]:
    """The render jobs with these spec keys, by key."""
    keys = set(spec_keys)
    if not keys:
        return {}
    return {job.spec_key: job for job in session.scalars(
        select(RenderJob).where(RenderJob.spec_key.in_(keys)))}


def brief_render_jobs(session: Session, brief_id: UUID) -> dict[str, RenderJob]:
    """Every render job the brief's variants use, and the renders those wait for (a dub's
    master, the render a continued scene starts from), transitively."""
    brief = get_brief(session, brief_id)
    jobs = render_jobs(session, [d.render_key for d in brief.deliverables])
    new = jobs
    while new:
        inputs = {str(job.spec[name]) for job in new.values()
                  for name in ("master_key", "continue_from") if job.spec.get(name)}
        new = render_jobs(session, inputs - set(jobs))
        jobs.update(new)
    return jobs


def start_render(job: RenderJob) -> None:
    """The job runs now (again, if a dead run left it running); counts the attempt."""
    if job.status == RenderStatus.RUNNING:
        transition(job, RenderStatus.PENDING)
    transition(job, RenderStatus.RUNNING)
    job.attempts += 1


def finish_render(session: Session, job_id: UUID, clip: Artifact, seconds: float) -> None:
    job = get_render_job(session, job_id)
    job.clip_artifact_id = clip.id
    job.seconds = seconds
    job.error = None
    transition(job, RenderStatus.DONE)


def fail_render(session: Session, job_id: UUID, error: str) -> None:
    job = get_render_job(session, job_id)
    job.error = error[:4000]
    transition(job, RenderStatus.FAILED)


def follow_render(row: Deliverable, render_key: str, reason: str) -> bool:
    """Point a variant at a new render because a render it depends on changed (the scene it
    continues was re-rendered); it waits for it, its QC attempts unchanged. A variant in
    review, approved or published is left as it is: False."""
    if row.status != DeliverableStatus.PENDING:
        if DeliverableStatus.PENDING not in DELIVERABLE_TRANSITIONS[DeliverableStatus(row.status)]:
            return False
        transition(row, DeliverableStatus.PENDING)
        row.error = reason
    row.render_key = render_key
    return True


def render_progress(session: Session) -> tuple[Counter[str], Counter[str]]:
    """Render jobs and variants of the active briefs, counted by status (progress bars)."""
    active = select(BriefRow.id).where(BriefRow.status.in_(BRIEF_ACTIVE))
    keys = select(Deliverable.render_key).where(Deliverable.brief_id.in_(active))
    renders = session.execute(select(RenderJob.status, func.count()).where(
        RenderJob.spec_key.in_(keys)).group_by(RenderJob.status)).all()
    outs = session.execute(select(Deliverable.status, func.count()).where(
        Deliverable.brief_id.in_(active)).group_by(Deliverable.status)).all()
    return Counter({str(s): int(n) for s, n in renders}), \
        Counter({str(s): int(n) for s, n in outs})


# ---- deliverables ---------------------------------------------------------------------------


def ensure_deliverable(session: Session, brief: BriefRow, *, name: str, scene_id: str,
                       locale: str, aspect: str, render_key: str,
                       kind: DeliverableKind = DeliverableKind.SCENE) -> Deliverable:
    row, _ = _get_or_create(
        session, Deliverable, {"brief_id": brief.id, "name": name},
        lambda: Deliverable(brief_id=brief.id, name=name, kind=kind, scene_id=scene_id,
                            locale=locale, aspect=aspect, render_key=render_key,
                            status=DeliverableStatus.PENDING))
    return row


def spot_scenes(session: Session, spot: Deliverable) -> dict[str, Deliverable]:
    """The scene finishes a spot is assembled from (same brief, locale and aspect), by scene."""
    return {row.scene_id: row for row in session.scalars(select(Deliverable).where(
        Deliverable.brief_id == spot.brief_id, Deliverable.kind == DeliverableKind.SCENE,
        Deliverable.locale == spot.locale, Deliverable.aspect == spot.aspect))}


def spots_containing(session: Session, scene: Deliverable) -> list[Deliverable]:
    """The spots assembled from this scene finish (every spot of its locale and aspect)."""
    return list(session.scalars(select(Deliverable).where(
        Deliverable.brief_id == scene.brief_id, Deliverable.kind == DeliverableKind.SPOT,
        Deliverable.locale == scene.locale, Deliverable.aspect == scene.aspect)
        .order_by(Deliverable.name)))


def reopen_spot(spot: Deliverable, reason: str | None) -> bool:
    """A scene of the spot is being made again: the spot waits (pending) to be re-assembled.
    A published spot stays as published (its files are out); True when it was reopened."""
    if spot.status in (DeliverableStatus.PUBLISHED, DeliverableStatus.APPROVED,
                       DeliverableStatus.IN_REVIEW):
        return False
    spot.error = reason
    transition(spot, DeliverableStatus.PENDING)
    return True


def get_deliverable(session: Session, deliverable_id: UUID) -> Deliverable:
    return _get(session, Deliverable, deliverable_id)


def lock_deliverable(session: Session, deliverable_id: UUID) -> Deliverable:
    """The variant, its row locked until the transaction ends (FOR UPDATE on PostgreSQL;
    SQLite's transactions take the write lock when they begin): two review decisions on one
    variant run one after the other, and the second sees the first's status."""
    return _locked(session, Deliverable, deliverable_id, "deliverable")


def _locked(session: Session, model: type[T], row_id: UUID, what: str) -> T:
    """The row of `model` with `row_id`, locked until the transaction ends (FOR UPDATE on
    PostgreSQL; SQLite's transactions take the write lock when they begin), or NotFound."""
    query = select(model).where(model.id == row_id)  # type: ignore[attr-defined]
    if _is_dialect(session, "postgresql"):
        query = query.with_for_update()
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(f"{what} {row_id} does not exist")
    return row


def deliverable_ids(session: Session, brief_id: UUID, status: DeliverableStatus,
                    kind: DeliverableKind | None = None) -> list[UUID]:
    """The brief's rows in `status` (of `kind` when given), by name."""
    query = select(Deliverable.id).where(Deliverable.brief_id == brief_id,
                                         Deliverable.status == status)
    if kind is not None:
        query = query.where(Deliverable.kind == kind)
    return list(session.scalars(query.order_by(Deliverable.name)))


def campaign_deliverables(session: Session, campaign: str | None) -> list[Deliverable]:
    """Every variant by campaign and name; only those of `campaign` when given."""
    query = select(Deliverable).join(BriefRow).join(Campaign).order_by(
        Campaign.slug, Deliverable.name)
    if campaign:
        query = query.where(Campaign.slug == campaign)
    return list(session.scalars(query))


_HEX_PREFIX = re.compile(r"[0-9a-f]{0,32}")


_ById = TypeVar("_ById", Deliverable, BriefRow)


def _by_id_prefix(session: Session, model: type[_ById], prefix: str) -> list[_ById]:
    """Rows whose id starts with `prefix` (dashes optional). Compared on the id's 32 hex
    digits: SQLite stores a UUID as those digits, PostgreSQL's text form adds dashes."""
    digits = prefix.lower().replace("-", "")
    if not _HEX_PREFIX.fullmatch(digits):
        return []  # not hex: no id can match (and no LIKE wildcard gets through)
    as_hex = func.replace(cast(model.id, Text), "-", "")
    return list(session.scalars(select(model).where(as_hex.like(f"{digits}%"))
                                .order_by(model.id)))


def deliverables_by_id_prefix(session: Session, prefix: str) -> list[Deliverable]:
    """Variants whose id starts with `prefix` (see _by_id_prefix)."""
    return _by_id_prefix(session, Deliverable, prefix)


def briefs_by_id_prefix(session: Session, prefix: str) -> list[BriefRow]:
    """Briefs whose id starts with `prefix` (see _by_id_prefix)."""
    return _by_id_prefix(session, BriefRow, prefix)


def fail_deliverable(row: Deliverable, error: str) -> None:
    row.error = error
    transition(row, DeliverableStatus.FAILED)


def set_finished_video(row: Deliverable, video: Artifact, qc: dict[str, Any]) -> None:
    """The variant's encoded file and its QC summary (status unchanged)."""
    row.video_artifact_id = video.id
    row.video = video
    row.qc = qc


def accept_deliverable(row: Deliverable) -> None:
    row.error = None
    transition(row, DeliverableStatus.FINISHED)


def rerender_deliverable(row: Deliverable, render_key: str, *, error: str | None,
                         reset_attempts: bool) -> None:
    """Point the variant at a new render; it waits (pending) for it. A QC retry counts an
    attempt; a reviewer's re-render starts the count again."""
    row.render_key = render_key
    row.error = error
    row.attempts = 0 if reset_attempts else row.attempts + 1
    transition(row, DeliverableStatus.PENDING)


def set_published(row: Deliverable, *, manifest_uri: str, published_uri: str) -> None:
    row.manifest_uri = manifest_uri
    row.published_uri = published_uri


# ---- artifacts and lineage -----------------------------------------------------------------


def find_artifact(session: Session, kind: str, input_key: str) -> Artifact | None:
    return session.scalars(select(Artifact).where(Artifact.kind == kind,
                                                  Artifact.input_key == input_key)).first()


def find_artifacts(session: Session, kinds: Iterable[str], input_key: str) -> list[Artifact]:
    """Artifacts of these kinds made from the same inputs, in the order of `kinds`."""
    order = list(kinds)
    found = {a.kind: a for a in session.scalars(select(Artifact).where(
        Artifact.kind.in_(order), Artifact.input_key == input_key))}
    return [found[kind] for kind in order if kind in found]


def deliverable_manifest(session: Session, row: Deliverable) -> Artifact | None:
    """The manifest last published for this deliverable: at its manifest_uri and made from its
    video (a later brief of the same campaign writes its own manifest at the same URI)."""
    if row.manifest_uri is None or row.video_artifact_id is None:
        return None
    return session.scalars(
        select(Artifact).join(LineageEdge, LineageEdge.child_id == Artifact.id)
        .where(Artifact.kind == "manifest", Artifact.uri == row.manifest_uri,
               LineageEdge.parent_id == row.video_artifact_id)
        .order_by(Artifact.created_at.desc())).first()


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
    """The artifact and all its ancestors, depth first with parents in id order: (depth,
    artifact). An ancestor reached twice (a dub's clip and its master share the plan) is listed
    each time but its own ancestors only under the first.

    One recursive query walks every path; each row carries its path of ids, so ordering by the
    path is the depth-first order (ids are fixed-length text, compared bytewise)."""
    as_text = cast(Artifact.id, Text)
    parent_text = cast(LineageEdge.parent_id, Text)
    chain = select(Artifact.id.label("id"), literal_column("0", Integer).label("depth"),
                   as_text.label("path")).where(Artifact.id == artifact_id) \
        .cte("chain", recursive=True)
    chain = chain.union_all(
        select(LineageEdge.parent_id, chain.c.depth + 1,
               (chain.c.path + "/" + parent_text).label("path"))
        .join(chain, LineageEdge.child_id == chain.c.id)
        .where(~chain.c.path.contains(parent_text)))  # a cycle would never end; stop it
    path = chain.c.path.collate("C") if _is_dialect(session, "postgresql") else chain.c.path
    rows = session.execute(select(Artifact, chain.c.depth, chain.c.path)
                           .join(chain, Artifact.id == chain.c.id).order_by(path)).all()
    if not rows:
        raise NotFound(f"artifact {artifact_id} does not exist")
    out: list[tuple[int, Artifact]] = []
    seen: set[UUID] = set()
    expanded: set[str] = set()  # paths whose ancestors are listed
    for artifact, depth, artifact_path in rows:
        if depth and artifact_path.rsplit("/", 1)[0] not in expanded:
            continue  # under a repeated ancestor: listed the first time already
        out.append((depth, artifact))
        if artifact.id not in seen:
            seen.add(artifact.id)
            expanded.add(artifact_path)
    return out


# ---- teams: isolation and budgets -----------------------------------------------------------


def brief_lineage(session: Session, artifact_id: UUID, brief: BriefRow
                  ) -> list[tuple[int, Artifact]]:
    """`lineage_chain` as one brief sees it. Renders are shared by key (across teams too), so
    a clip made first for another brief has that brief's plan for its parent in the graph;
    here every plan that is not this brief's (with what lies beneath it) gives way to this
    brief's own plan and stored brief: a manifest names no other brief and no other team's
    files."""
    own_plan = plan_artifact(session, brief)
    own_brief = None if brief.artifact_id is None else _get(session, Artifact, brief.artifact_id)
    out: list[tuple[int, Artifact]] = []
    skip_below: int | None = None  # the depth of a subtree left out
    own_listed = False  # the own plan's ancestry is listed once, like any repeated ancestor
    for depth, artifact in lineage_chain(session, artifact_id):
        if skip_below is not None and depth > skip_below:
            continue
        skip_below = None
        if artifact.kind == "plan" and (own_plan is None or artifact.id != own_plan.id):
            skip_below = depth
            if own_plan is not None:
                out.append((depth, own_plan))
                if not own_listed and own_brief is not None:
                    out.append((depth + 1, own_brief))
                own_listed = True
            continue
        if own_plan is not None and artifact.id == own_plan.id:
            if own_listed:
                skip_below = depth
            own_listed = True
        out.append((depth, artifact))
    return out


def lock_team(session: Session, team: str) -> None:
    """Take the team's submission lock until the transaction ends: the first write of the
    transaction, so on PostgreSQL it locks the team's row (other submissions of the team wait)
    and on SQLite it takes the database's write lock. Checks made after it and the insert that
    follows are one atomic step. NotFound if the team does not exist."""
    done = session.execute(update(Team).where(Team.name == team)
                           .values(last_submission_at=datetime.now(UTC)))
    if getattr(done, "rowcount", 1) == 0:
        raise NotFound(f"team {team!r} does not exist (mova-ads team create {team})")


def _since(session: Session, moment: datetime) -> datetime:
    return moment.replace(tzinfo=None) if _is_dialect(session, "sqlite") else moment


def count_submissions(session: Session, team: str, window: timedelta) -> int:
    """Briefs `team` posted within the last `window`, accepted or invalid (the rate limit)."""
    since = _since(session, datetime.now(UTC) - window)
    return int(session.scalar(select(func.count()).select_from(Submission).where(
        Submission.team == team, Submission.created_at >= since)) or 0)


def record_submission(session: Session, team: str, brief: BriefRow | None) -> None:
    """Count a posted brief (None: it was invalid) toward the team's rate limit."""
    session.add(Submission(team=team, brief_id=brief.id if brief is not None else None))
    session.flush()


def duplicate_brief(session: Session, team: str | None, sha256: str,
                    idempotency_key: str | None) -> BriefRow | None:
    """The team's earlier brief with this Idempotency-Key, or else with the same content (not
    one found invalid, nor one that failed: sent again, a failed brief is produced anew, its
    finished renders reused by key): submitting it again returns that one instead of a
    copy."""
    if idempotency_key is not None:
        found = session.scalars(select(BriefRow).where(
            BriefRow.team == team, BriefRow.idempotency_key == idempotency_key)).first()
        if found is not None:
            return found
    owner = BriefRow.team.is_(None) if team is None else BriefRow.team == team
    return session.scalars(select(BriefRow).where(
        owner, BriefRow.sha256 == sha256,
        BriefRow.status.not_in((BriefStatus.INVALID, BriefStatus.FAILED)))
        .order_by(BriefRow.created_at)).first()


def team_gpu_seconds_since(session: Session, team: str, since: datetime) -> float:
    """Estimated GPU-seconds of the team's briefs submitted since `since` (invalid ones cost
    nothing: they never render)."""
    return float(session.scalar(select(func.coalesce(func.sum(BriefRow.gpu_seconds_estimate),
                                                     0.0)).where(
        BriefRow.team == team, BriefRow.created_at >= _since(session, since),
        BriefRow.status != BriefStatus.INVALID)) or 0.0)


def approve_budget(session: Session, brief_id: UUID) -> BriefRow:
    """An operator accepts the cost of a brief awaiting approval: it is planned and produced."""
    brief = get_brief(session, brief_id)
    if brief.status != BriefStatus.AWAITING_APPROVAL:
        raise InvalidTransition(f"brief {brief_id} is {brief.status}, not awaiting approval")
    transition(brief, BriefStatus.PLANNED)
    return brief


def briefs_awaiting_approval(session: Session) -> list[BriefRow]:
    return list(session.scalars(select(BriefRow).where(
        BriefRow.status == BriefStatus.AWAITING_APPROVAL).order_by(BriefRow.created_at)))


def campaign_team(brief: BriefRow) -> str:
    """The team segment of the brief's storage keys."""
    return brief.campaign.team


def published_deliverables(session: Session) -> list[Deliverable]:
    """Variants with files in the campaign layout or the review area (for moving keys)."""
    return list(session.scalars(select(Deliverable).where(
        Deliverable.manifest_uri.is_not(None)).order_by(Deliverable.id)))


# ---- sessions and faults --------------------------------------------------------------------


def requeue_render(session: Session, job_id: UUID, reason: str, max_attempts: int) -> bool:
    """After a transient failure: the job waits (pending) for another run while it has had
    fewer than `max_attempts`; else it fails with the reason. True when it was requeued."""
    job = get_render_job(session, job_id)
    if job.attempts < max_attempts:
        job.error = f"retrying after: {reason}"[:4000]
        transition(job, RenderStatus.PENDING)
        return True
    fail_render(session, job_id, f"gave up after {job.attempts} attempts: {reason}")
    return False


def fail_unsettled_deliverable(session: Session, deliverable_id: UUID, reason: str) -> bool:
    """Fail a variant that is still in work (pending or finished) with a reason the team
    reads; a variant already published or in review is left alone. True when it failed."""
    row = get_deliverable(session, deliverable_id)
    if row.status not in (DeliverableStatus.PENDING, DeliverableStatus.FINISHED):
        return False
    fail_deliverable(row, reason[:4000])
    return True


def fail_brief_work(session: Session, brief_id: UUID, reason: str) -> int:
    """Park a brief: every variant still in work fails with `reason`; how many."""
    return sum(fail_unsettled_deliverable(session, row.id, reason)
               for row in get_brief(session, brief_id).deliverables)


def note_failed_run(session: Session, brief_id: UUID, reason: str) -> int:
    """Count one failed or dead production run of the brief; the count so far."""
    run, _ = _get_or_create(session, BriefRun, {"brief_id": brief_id},
                            lambda: BriefRun(brief_id=brief_id, failed_runs=0))
    run.failed_runs += 1
    run.last_error = reason[:4000]
    session.flush()
    return run.failed_runs


def deliverables_that_count(brief: BriefRow) -> list[Deliverable]:
    """What a brief delivers: its spots, and its scene finishes when they are published as
    cut-downs. A brief planned before spots existed (no spot rows yet) delivers its scenes."""
    spots = [row for row in brief.deliverables if row.kind == DeliverableKind.SPOT]
    if not spots:
        return list(brief.deliverables)
    published_scenes = [row for row in brief.deliverables if row.kind == DeliverableKind.SCENE
                        and row.manifest_uri is not None]
    return spots + published_scenes


def close_brief(session: Session, brief_id: UUID) -> Counter[DeliverableStatus]:
    """End a production run: planned again when a variant waits for a re-render, done when
    every variant is published or in review, else failed with each failed variant's reason in
    `problems` (what the team reads). The counts by status."""
    brief = get_brief(session, brief_id)
    delivered = deliverables_that_count(brief)  # a scene waiting for a render: its spots wait
    counts = Counter(row.status for row in delivered)
    settled = sum(counts[s] for s in DELIVERABLE_SETTLED)
    if counts[DeliverableStatus.PENDING]:
        status = BriefStatus.PLANNED
    elif settled == counts.total():
        status = BriefStatus.DONE
    else:
        status = BriefStatus.FAILED
        brief.problems = [[row.name, row.error or "failed"] for row in delivered
                          if row.status == DeliverableStatus.FAILED][:100]
    transition(brief, status)
    return counts


def add_web_session(session: Session, id_sha256: str, team: Team, expires_at: datetime) -> None:
    session.add(WebSession(id_sha256=id_sha256, team_id=team.id, expires_at=expires_at))
    session.flush()


def team_for_web_session(session: Session, id_sha256: str) -> Team | None:
    """The team of a session that exists and has not expired."""
    row = session.get(WebSession, id_sha256)
    if row is None:
        return None
    expires_at = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    if expires_at <= datetime.now(UTC):
        session.delete(row)
        return None
    return session.get(Team, row.team_id)


def end_web_session(session: Session, id_sha256: str) -> None:
    row = session.get(WebSession, id_sha256)
    if row is not None:
        session.delete(row)


def end_team_sessions(session: Session, team: Team) -> int:
    """Sign the team out of every page session (its token was revoked or rotated)."""
    result = session.execute(delete(WebSession).where(WebSession.team_id == team.id))
    return int(getattr(result, "rowcount", 0) or 0)


def team_session_count(session: Session, team: Team) -> int:
    return int(session.scalar(select(func.count()).select_from(WebSession).where(
        WebSession.team_id == team.id, WebSession.expires_at > datetime.now(UTC))) or 0)


def team_by_name(session: Session, name: str) -> Team:
    team = session.scalars(select(Team).where(Team.name == name)).first()
    if team is None:
        raise NotFound(f"no team {name!r}")
    return team


def set_team_token(session: Session, team: Team, token_sha256: str) -> None:
    """Replace the team's token hash (rotate, or revoke with a value no token hashes to)."""
    team.token_sha256 = token_sha256
    session.flush()


# ---- registered LoRAs (issue 11) ---------------------------------------------------------------


def add_lora(session: Session, *, team: str, name: str, sha256: str, files_prefix: str,
             files: dict[str, Any]) -> LoraRow:
    row = LoraRow(team=team, name=name, sha256=sha256, files_prefix=files_prefix, files=files)
    session.add(row)
    session.flush()
    return row


def team_lora(session: Session, team: str, name: str) -> LoraRow | None:
    return session.scalars(select(LoraRow).where(LoraRow.team == team,
                                                 LoraRow.name == name)).one_or_none()


def team_loras(session: Session, team: str) -> list[LoraRow]:
    return list(session.scalars(select(LoraRow).where(LoraRow.team == team)
                                .order_by(LoraRow.name)))
