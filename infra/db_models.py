"""ORM tables. Every status column is a small explicit state machine (infra/statuses.py).

Only infra/repository.py queries these; tasks, flows and the app call its functions."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from infra.statuses import BriefStatus, DeliverableStatus, RenderStatus, ReviewVerdict

E = TypeVar("E", bound=StrEnum)


class StrEnumText(TypeDecorator[E], Generic[E]):
    """A StrEnum stored as its plain text value (the schema stays VARCHAR, no DB enum type);
    rows read back hold the enum member, and an unknown stored value fails loudly."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


def _now() -> datetime:
    return datetime.now(UTC)


def _updated() -> Mapped[datetime]:
    # Python-side onupdate: SQLite's rendering of now() cannot be used in batched UPDATEs.
    return mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=_now)


# The owner of campaigns submitted without a team (the operator's CLI). Team names are
# lowercase letters, digits and dashes, so this one can never be a team's.
NO_TEAM = "_local"


class Campaign(Base):
    """A campaign of one team: two teams may use the same slug and get two campaigns."""

    __tablename__ = "campaign"
    __table_args__ = (UniqueConstraint("team", "slug", name="uq_campaign_team_slug"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    team: Mapped[str] = mapped_column(String(100), default=NO_TEAM)
    slug: Mapped[str] = mapped_column(String(63))
    brand: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()

    briefs: Mapped[list[BriefRow]] = relationship(back_populates="campaign")


class BriefRow(Base):
    __tablename__ = "brief"
    __table_args__ = (UniqueConstraint("team", "idempotency_key",
                                       name="uq_brief_team_idempotency_key"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    campaign_id: Mapped[UUID] = mapped_column(ForeignKey("campaign.id"), index=True)
    team: Mapped[str | None] = mapped_column(String(100), index=True)
    raw: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[BriefStatus] = mapped_column(StrEnumText(BriefStatus, 20), index=True,
                                                default=BriefStatus.SUBMITTED)
    problems: Mapped[list[Any] | None] = mapped_column(JSON)
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))  # the Prefect run producing it
    # The client's Idempotency-Key header: the same key for the same team is the same brief.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # The plan's estimate at submission (GPU-seconds), counted against the team's daily quota.
    gpu_seconds_estimate: Mapped[float | None]
    artifact_id: Mapped[UUID | None] = mapped_column(ForeignKey("artifact.id"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    campaign: Mapped[Campaign] = relationship(back_populates="briefs")
    plan: Mapped[PlanRow | None] = relationship(back_populates="brief")
    deliverables: Mapped[list[Deliverable]] = relationship(back_populates="brief",
                                                           order_by="Deliverable.name")


class PlanRow(Base):
    __tablename__ = "plan"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    brief_id: Mapped[UUID] = mapped_column(ForeignKey("brief.id"), unique=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    artifact_id: Mapped[UUID | None] = mapped_column(ForeignKey("artifact.id"))
    created_at: Mapped[datetime] = _created()

    brief: Mapped[BriefRow] = relationship(back_populates="plan")


class RenderJob(Base):
    """One model render, shared by every brief whose plan asks for the same spec key."""

    __tablename__ = "render_job"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    spec_key: Mapped[str] = mapped_column(String(64), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[RenderStatus] = mapped_column(StrEnumText(RenderStatus, 20), index=True,
                                                 default=RenderStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    clip_artifact_id: Mapped[UUID | None] = mapped_column(ForeignKey("artifact.id"))
    seconds: Mapped[float | None]
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    clip: Mapped[Artifact | None] = relationship(foreign_keys=[clip_artifact_id])


class DeliverableKind(StrEnum):
    SCENE = "scene"  # one scene x locale x aspect, finished: an intermediate of its spots
    SPOT = "spot"  # the ad: every scene in order plus the end card, for one locale x aspect


class Deliverable(Base):
    """A finished file of a brief: a spot (what is published and reviewed) or a scene finish
    (what spots are assembled from; published too only when the brief asks for cut-downs)."""

    __tablename__ = "deliverable"
    __table_args__ = (UniqueConstraint("brief_id", "name"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    brief_id: Mapped[UUID] = mapped_column(ForeignKey("brief.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))  # scene/locale/aspect, or the spot id
    kind: Mapped[DeliverableKind] = mapped_column(StrEnumText(DeliverableKind, 10), index=True,
                                                  default=DeliverableKind.SCENE,
                                                  server_default=DeliverableKind.SCENE.value)
    scene_id: Mapped[str] = mapped_column(String(63))  # "" for a spot
    locale: Mapped[str] = mapped_column(String(35))
    aspect: Mapped[str] = mapped_column(String(5))
    render_key: Mapped[str] = mapped_column(String(64))  # "" for a spot (it has one per scene)
    status: Mapped[DeliverableStatus] = mapped_column(StrEnumText(DeliverableStatus, 20),
                                                      index=True,
                                                      default=DeliverableStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    video_artifact_id: Mapped[UUID | None] = mapped_column(ForeignKey("artifact.id"))
    manifest_uri: Mapped[str | None] = mapped_column(String(1024))
    published_uri: Mapped[str | None] = mapped_column(String(1024))
    qc: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    brief: Mapped[BriefRow] = relationship(back_populates="deliverables")
    video: Mapped[Artifact | None] = relationship(foreign_keys=[video_artifact_id])
    decisions: Mapped[list[ReviewDecision]] = relationship(order_by="ReviewDecision.created_at")


class Artifact(Base):
    """Any stored output, content-addressed, with how it was made."""

    __tablename__ = "artifact"
    __table_args__ = (UniqueConstraint("kind", "input_key"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    kind: Mapped[str] = mapped_column(String(30))  # brief, plan, clip, video, captions, manifest
    input_key: Mapped[str] = mapped_column(String(64))  # what it was made from (idempotence)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    uri: Mapped[str] = mapped_column(String(1024))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(100))
    task: Mapped[str] = mapped_column(String(60))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    checkpoint: Mapped[str | None] = mapped_column(String(64))
    seed: Mapped[int | None] = mapped_column(BigInteger)
    code_version: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = _created()

    parents: Mapped[list[LineageEdge]] = relationship(
        foreign_keys="LineageEdge.child_id", back_populates="child")


class LineageEdge(Base):
    __tablename__ = "lineage_edge"
    __table_args__ = (UniqueConstraint("child_id", "parent_id"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    child_id: Mapped[UUID] = mapped_column(ForeignKey("artifact.id"), index=True)
    parent_id: Mapped[UUID] = mapped_column(ForeignKey("artifact.id"), index=True)
    created_at: Mapped[datetime] = _created()

    child: Mapped[Artifact] = relationship(foreign_keys=[child_id], back_populates="parents")
    parent: Mapped[Artifact] = relationship(foreign_keys=[parent_id])


class Team(Base):
    """A marketing team: it sees and acts on its own briefs only. The API token is stored as
    its SHA-256 (tokens are 256-bit random, so a fast hash cannot be brute-forced)."""

    __tablename__ = "team"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()
    # Written first by every submission: the write locks the team's row (PostgreSQL) or the
    # database (SQLite), so the limit checks and the insert after it are one atomic step.
    last_submission_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Submission(Base):
    """One brief a team posted, valid or not: the per-minute limit counts these."""

    __tablename__ = "submission"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    team: Mapped[str] = mapped_column(String(100), index=True)
    brief_id: Mapped[UUID | None] = mapped_column(ForeignKey("brief.id"))  # None: refused
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now,
                                                 index=True)


class ReviewDecision(Base):
    """An approve / reject decision on a deliverable: who, when, what."""

    __tablename__ = "review_decision"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    deliverable_id: Mapped[UUID] = mapped_column(ForeignKey("deliverable.id"), index=True)
    team: Mapped[str] = mapped_column(String(100))
    reviewer: Mapped[str] = mapped_column(String(100))
    decision: Mapped[ReviewVerdict] = mapped_column(StrEnumText(ReviewVerdict, 10))
    comment: Mapped[str] = mapped_column(Text, default="")
    rerender: Mapped[bool] = mapped_column(default=False)
    new_seed: Mapped[int | None] = mapped_column(BigInteger)
    artifact_id: Mapped[UUID | None] = mapped_column(ForeignKey("artifact.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class BriefRun(Base):
    """How many production runs of a brief failed or died, and the last reason: a brief that
    keeps failing is parked as failed instead of being retried forever."""

    __tablename__ = "brief_run"

    brief_id: Mapped[UUID] = mapped_column(ForeignKey("brief.id"), primary_key=True)
    failed_runs: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _updated()


class WebSession(Base):
    """A signed-in page session. Only the SHA-256 of the random session id is stored, so a
    leaked table row cannot be replayed as a cookie."""

    __tablename__ = "web_session"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[UUID] = mapped_column(ForeignKey("team.id"), index=True)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoraRow(Base):
    """A registered LoRA (issue 11): a team's name for a set of files kept in storage under
    `files_prefix`. The files never change under a name, so a brief naming it renders the
    same weights every time (their digest is part of the render key)."""

    __tablename__ = "lora"
    __table_args__ = (UniqueConstraint("team", "name"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    team: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(63))
    sha256: Mapped[str] = mapped_column(String(64))  # over the files' names and digests
    files_prefix: Mapped[str] = mapped_column(String(1024))  # storage key prefix, ends in '/'
    files: Mapped[dict[str, Any]] = mapped_column(JSON)  # file name -> {sha256, size_bytes}
    created_at: Mapped[datetime] = _created()
