"""Database adapter on SQLite and PostgreSQL: migrations, state machines, claims, idempotence."""

from __future__ import annotations

import threading
from uuid import uuid4

import pytest
from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session

from infra.db import downgrade_to_base, session_scope, upgrade_to_head
from infra.db_models import Artifact, BriefRow, RenderJob
from infra.repository import (
    add_artifact,
    add_brief,
    claim_submitted_briefs,
    count_rows,
    deliverables_by_id_prefix,
    ensure_deliverable,
    ensure_render_job,
    lineage_chain,
    transition,
)
from infra.statuses import BriefStatus
from schemas.errors import InvalidTransition

TABLES = {"campaign", "brief", "plan", "render_job", "deliverable", "artifact", "lineage_edge",
          "team", "review_decision"}


def _submit(engine: Engine, n: int) -> None:
    with session_scope(engine) as session:
        for i in range(n):
            add_brief(session, campaign_slug="spring", brand="Aurora", raw=f"brief {i}",
                      sha256=f"{i:064d}")


def test_migrations_create_every_table_and_downgrade_removes_them(engine: Engine) -> None:
    assert TABLES <= set(inspect(engine).get_table_names())
    downgrade_to_base(engine)
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade_to_head(engine)
    upgrade_to_head(engine)  # idempotent
    assert TABLES <= set(inspect(engine).get_table_names())


def test_migrations_match_the_models(engine: Engine) -> None:
    """A model change without its migration would break every deployed database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from infra.db_models import Base

    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_state_machine_refuses_illegal_moves(engine: Engine) -> None:
    _submit(engine, 1)
    with session_scope(engine) as session:
        brief = session.query(BriefRow).one()
        with pytest.raises(InvalidTransition, match=r"cannot go from 'submitted' to 'done'"):
            transition(brief, "done")
        transition(brief, "claimed")
        transition(brief, BriefStatus.PLANNED)
        assert brief.status == "planned" and brief.status is BriefStatus.PLANNED


def test_claims_take_each_brief_once(engine: Engine) -> None:
    _submit(engine, 3)
    with session_scope(engine) as session:
        first = claim_submitted_briefs(session, limit=2, worker_id="a")
    with session_scope(engine) as session:
        second = claim_submitted_briefs(session, limit=5, worker_id="b")
    assert len(first) == 2 and len(second) == 1
    assert not {b.id for b in first} & {b.id for b in second}


def test_concurrent_claims_on_postgres_never_overlap(postgres_engine: Engine) -> None:
    _submit(postgres_engine, 10)
    claimed: dict[str, list[str]] = {}
    barrier = threading.Barrier(2)

    def claim(worker: str) -> None:
        with session_scope(postgres_engine) as session:
            barrier.wait()  # both transactions are open before either claims
            rows = claim_submitted_briefs(session, limit=6, worker_id=worker)
            claimed[worker] = [str(r.id) for r in rows]

    threads = [threading.Thread(target=claim, args=(w,)) for w in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not set(claimed["a"]) & set(claimed["b"])
    assert len(claimed["a"]) + len(claimed["b"]) == 10


def test_render_jobs_and_artifacts_are_get_or_create(engine: Engine) -> None:
    with session_scope(engine) as session:
        job = ensure_render_job(session, "k" * 64, {"seed": 1})
        again = ensure_render_job(session, "k" * 64, {"seed": 1})
        assert job.id == again.id
        brief = add_artifact(session, kind="brief", input_key="b" * 64, sha256="b" * 64,
                             uri="file:///b", size_bytes=10, content_type="text/yaml",
                             task="ingest.submit", code_version="test")
        clip = add_artifact(session, kind="clip", input_key="c" * 64, sha256="c" * 64,
                            uri="file:///c", size_bytes=10, content_type="application/x-npz",
                            task="render.generate", code_version="test", parents=[brief],
                            seed=7)
        clip_again = add_artifact(session, kind="clip", input_key="c" * 64, sha256="c" * 64,
                                  uri="file:///c", size_bytes=10, content_type="x",
                                  task="render.generate", code_version="test", parents=[brief])
        assert clip.id == clip_again.id
        chain = lineage_chain(session, clip.id)
        assert [(d, a.kind) for d, a in chain] == [(0, "clip"), (1, "brief")]
    with session_scope(engine) as session:
        assert count_rows(session, RenderJob) == 1 and count_rows(session, Artifact) == 2


def test_timestamps_are_timezone_aware(engine: Engine) -> None:
    _submit(engine, 1)
    with session_scope(engine) as session:
        brief = session.query(BriefRow).one()
        assert brief.id.version == uuid4().version
        if engine.dialect.name == "postgresql":  # SQLite stores no zone; Postgres keeps it
            assert brief.created_at.tzinfo is not None


def _artifact(session: Session, kind: str, parents: list[Artifact]) -> Artifact:
    key = uuid4().hex * 2
    return add_artifact(session, kind=kind, input_key=key, sha256=key, uri=f"file:///{kind}",
                        size_bytes=1, content_type="x", task="t", code_version="test",
                        parents=parents)


def test_lineage_chain_is_depth_first_and_expands_a_shared_ancestor_once(engine: Engine) -> None:
    """A dub's clip has two parents (the plan and its master clip, itself made from the plan):
    parents come in id order, and the plan's own ancestry is listed under its first visit."""
    with session_scope(engine) as session:
        brief = _artifact(session, "brief", [])
        plan = _artifact(session, "plan", [brief])
        master = _artifact(session, "master", [plan])
        clip = _artifact(session, "clip", [plan, master])
        video = _artifact(session, "video", [clip])
        chain = [(depth, a.kind) for depth, a in lineage_chain(session, video.id)]
    if str(plan.id) < str(master.id):
        expected = [(0, "video"), (1, "clip"), (2, "plan"), (3, "brief"), (2, "master"),
                    (3, "plan")]
    else:
        expected = [(0, "video"), (1, "clip"), (2, "master"), (3, "plan"), (4, "brief"),
                    (2, "plan")]
    assert chain == expected


def test_deliverable_id_prefix_is_a_query_on_both_backends(engine: Engine) -> None:
    _submit(engine, 1)
    with session_scope(engine) as session:
        brief = session.query(BriefRow).one()
        rows = [ensure_deliverable(session, brief, name=f"s/en-US/{i}", scene_id="s",
                                   locale="en-US", aspect="16:9", render_key="k" * 64)
                for i in range(3)]
    with session_scope(engine) as session:
        target = rows[1].id
        for prefix in (str(target)[:13], str(target)[:8].upper(), target.hex[:10], str(target)):
            assert [d.id for d in deliverables_by_id_prefix(session, prefix)] == [target]
        assert len(deliverables_by_id_prefix(session, "")) == 3
        assert deliverables_by_id_prefix(session, "%") == []
        assert deliverables_by_id_prefix(session, "zz") == []
