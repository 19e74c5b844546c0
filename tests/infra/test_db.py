"""Database adapter on SQLite and PostgreSQL: migrations, state machines, claims, idempotence."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from infra.db import downgrade_to_base, session_scope, upgrade_to_head
from infra.db_models import Artifact, BriefRow, RenderJob, Submission
from infra.repository import (
    NO_TEAM,
    Deliverable,
    DeliverableKind,
    Team,
    _get_or_create,
    accept_deliverable,
    add_artifact,
    add_brief,
    add_decision,
    add_lora,
    add_team,
    add_web_session,
    any_brief_waiting,
    approve_budget,
    brief_render_jobs,
    briefs_awaiting_approval,
    briefs_to_produce,
    campaign_briefs,
    campaign_deliverables,
    campaign_team,
    claim_submitted_briefs,
    close_brief,
    count_rows,
    count_submissions,
    deliverable_ids,
    deliverable_manifest,
    deliverables_by_id_prefix,
    deliverables_that_count,
    duplicate_brief,
    ensure_deliverable,
    ensure_render_job,
    fail_render,
    find_artifact,
    find_artifacts,
    finish_render,
    get_brief,
    get_deliverable,
    last_decision_artifact,
    lineage_chain,
    lock_team,
    mark_brief_invalid,
    ping,
    plan_artifact,
    published_deliverables,
    record_submission,
    release_claim,
    render_job,
    render_progress,
    reopen_spot,
    save_plan,
    set_brief_status,
    set_finished_video,
    set_flow_run,
    set_published,
    spots_containing,
    start_render,
    team_briefs,
    team_by_name,
    team_for_web_session,
    team_gpu_seconds_since,
    team_lora,
    team_loras,
    team_session_count,
    teams,
    transition,
)
from infra.statuses import TRANSITIONS, BriefStatus, DeliverableStatus, RenderStatus, ReviewVerdict
from schemas.errors import InvalidTransition, NotFound

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


def _artifact(session: Session, kind: str, parents: list[Artifact], uri: str | None = None
              ) -> Artifact:
    key = uuid4().hex * 2
    return add_artifact(session, kind=kind, input_key=key, sha256=key, uri=uri or f"file:///{kind}",
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


def test_a_shared_clips_lineage_ends_at_the_asking_briefs_own_plan(engine: Engine) -> None:
    """A clip rendered first for team alpha's brief is reused by team beta's: beta's lineage
    names beta's plan and brief, nothing of alpha's (its brief's hash and storage URI)."""
    from infra import repository as repo

    with session_scope(engine) as session:
        rows, plans, briefs = [], [], []
        for team in ("alpha", "beta"):
            _team(session, team)
            row = add_brief(session, campaign_slug="spring", brand="A", raw=team,
                            sha256=team[0] * 64, team=team)
            briefs.append(_artifact(session, "brief", [], uri=f"file:///briefs/{team}"))
            plans.append(_artifact(session, "plan", [briefs[-1]]))
            row.status = BriefStatus.CLAIMED
            repo.save_plan(session, row, {}, briefs[-1], plans[-1])
            rows.append(row)
        master = _artifact(session, "clip", [plans[0]])  # a dub: the plan and its master
        clip = _artifact(session, "clip", [plans[0], master])
        videos = [_artifact(session, "video", [clip]) for _ in rows]
        seen = [[(depth, a.id) for depth, a in repo.brief_lineage(session, video.id, row)]
                for video, row in zip(videos, rows, strict=True)]
        graph = [[(depth, a.id) for depth, a in lineage_chain(session, video.id)]
                 for video in videos]
    alpha_plan, beta_plan = (p.id for p in plans)
    alpha_brief, beta_brief = (b.id for b in briefs)
    assert seen[0] == graph[0]  # alpha planned the clip: its lineage is the graph's
    raw = graph[1]
    assert alpha_plan not in {i for _, i in seen[1]} and alpha_brief not in {i for _, i in seen[1]}
    # beta's plan stands where alpha's did, its brief listed once, under the first visit
    expected = [(d, beta_plan if i == alpha_plan else i) for d, i in raw
                if i != alpha_brief]
    first = next(n for n, (_, i) in enumerate(expected) if i == beta_plan)
    expected.insert(first + 1, (expected[first][0] + 1, beta_brief))
    assert seen[1] == expected


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


# Queries the service, the CLI and the flows use (each called directly, by value)

_Status = BriefStatus | DeliverableStatus | RenderStatus
SCENE, SPOT = DeliverableKind.SCENE, DeliverableKind.SPOT


def _move_to(row: BriefRow | Deliverable | RenderJob, target: _Status) -> None:
    """Take a row to `target` by legal moves only (a shortest path in infra/statuses.py)."""
    moves = TRANSITIONS[type(target)]
    start = type(target)(row.status)
    paths: dict[_Status, tuple[_Status, ...]] = {start: ()}
    queue = deque([start])
    while target not in paths:
        status = queue.popleft()
        for step in moves[status]:
            if step not in paths:
                paths[step] = (*paths[status], step)
                queue.append(step)
    for step in paths[target]:
        transition(row, step)


def _minutes_from_now(minutes: float) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


def _brief(session: Session, *, team: str | None = None, campaign: str = "spring",
           status: BriefStatus = BriefStatus.SUBMITTED, created_at: datetime | None = None
           ) -> BriefRow:
    """A brief taken to `status`; `created_at` pins its time where the order matters."""
    raw = uuid4().hex
    brief = add_brief(session, campaign_slug=campaign, brand="Aurora", raw=raw, sha256=raw * 2,
                      team=team)
    _move_to(brief, status)
    if created_at is not None:
        brief.created_at = created_at
    session.flush()
    return brief


def _variant(session: Session, brief: BriefRow, name: str, *, kind: DeliverableKind = SCENE,
             locale: str = "en-US", aspect: str = "16:9", render_key: str = "",
             status: DeliverableStatus = DeliverableStatus.PENDING) -> Deliverable:
    """A scene finish (or a spot: no scene, no render of its own) taken to `status`."""
    row = ensure_deliverable(session, brief, name=name, scene_id=name if kind == SCENE else "",
                             locale=locale, aspect=aspect, render_key=render_key, kind=kind)
    _move_to(row, status)
    session.flush()
    return row


def _team(session: Session, name: str) -> Team:
    return add_team(session, name, hashlib.sha256(name.encode()).hexdigest())


def _decide(session: Session, deliverable_id: UUID, *, at: datetime,
            artifact: Artifact | None) -> None:
    """A reviewer's rejection at a pinned time (the decisions of a variant are in time order)."""
    row = get_deliverable(session, deliverable_id)
    decision = add_decision(session, row, decision_id=uuid4(), team="alpha", reviewer="ana",
                            decision=ReviewVerdict.REJECT, comment="again", artifact=artifact)
    decision.created_at = at
    session.flush()


def _last_decision_file(engine: Engine, deliverable_id: UUID) -> UUID | None:
    with session_scope(engine) as session:
        found = last_decision_artifact(session, get_deliverable(session, deliverable_id))
        return None if found is None else found.id


def _register_loras(session: Session, names: list[tuple[str, str]]) -> dict[str, UUID]:
    """LoRAs by (team, name); each one's digest is the SHA-256 of "team/name"; ids by it."""
    ids = {}
    for team, name in names:
        digest = hashlib.sha256(f"{team}/{name}".encode()).hexdigest()
        ids[f"{team}/{name}"] = add_lora(
            session, team=team, name=name, sha256=digest,
            files_prefix=f"loras/{team}/{name}/{digest}/",
            files={"lora_weights.safetensors": {"sha256": digest, "size_bytes": len(name)}}).id
    return ids


def test_ping_answers_on_a_live_database_and_raises_on_one_it_cannot_open(
        engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as session:
        assert ping(session) is None
    missing = (f"sqlite:///{tmp_path / 'no-such-folder' / 'mova_ads.db'}"
               if engine.dialect.name == "sqlite"
               else engine.url.set(database="mova_no_such_database"))
    unreachable = create_engine(missing)
    with Session(unreachable) as session, pytest.raises(OperationalError):
        ping(session)
    unreachable.dispose()


def test_any_brief_waiting_is_true_only_while_a_brief_is_submitted_planned_or_producing(
        engine: Engine) -> None:
    with session_scope(engine) as session:
        assert any_brief_waiting(session) is False  # an empty database
        brief_id = _brief(session).id
        assert any_brief_waiting(session) is True
    B = BriefStatus
    walk = [(B.CLAIMED, False), (B.AWAITING_APPROVAL, False), (B.PLANNED, True),
            (B.PRODUCING, True), (B.FAILED, False), (B.PRODUCING, True), (B.DONE, False)]
    seen = []
    for status, _ in walk:
        with session_scope(engine) as session:
            set_brief_status(session, brief_id, status)
        with session_scope(engine) as session:
            seen.append((status, any_brief_waiting(session)))
    assert seen == walk
    with session_scope(engine) as session:
        _brief(session, status=B.INVALID)
        assert any_brief_waiting(session) is False
        _brief(session, status=B.PLANNED)
        assert any_brief_waiting(session) is True


def test_set_brief_status_writes_a_legal_move_and_refuses_an_illegal_one(engine: Engine) -> None:
    with session_scope(engine) as session:
        brief_id, other_id = _brief(session).id, _brief(session).id
    with session_scope(engine) as session:
        set_brief_status(session, brief_id, BriefStatus.CLAIMED)
    with session_scope(engine) as session:
        assert get_brief(session, brief_id).status == BriefStatus.CLAIMED
        assert get_brief(session, other_id).status == BriefStatus.SUBMITTED
        with pytest.raises(InvalidTransition, match="cannot go from 'claimed' to 'done'"):
            set_brief_status(session, brief_id, BriefStatus.DONE)
        with pytest.raises(NotFound):
            set_brief_status(session, uuid4(), BriefStatus.CLAIMED)


def test_mark_brief_invalid_keeps_every_problem_in_order_and_ends_the_brief(
        engine: Engine) -> None:
    with session_scope(engine) as session:
        brief = _brief(session, status=BriefStatus.CLAIMED)
        other = _brief(session, status=BriefStatus.CLAIMED)
        mark_brief_invalid(session, brief, [("campaign", "missing"),
                                            ("loras.0", "no LoRA named 'ink'")])
    with session_scope(engine) as session:
        row = get_brief(session, brief.id)
        assert row.status == BriefStatus.INVALID
        assert row.problems == [["campaign", "missing"], ["loras.0", "no LoRA named 'ink'"]]
        assert get_brief(session, other.id).problems is None


def test_set_flow_run_records_the_run_on_that_brief_only(engine: Engine) -> None:
    with session_scope(engine) as session:
        brief_id, other_id = _brief(session).id, _brief(session).id
    with session_scope(engine) as session:
        set_flow_run(session, brief_id, "0b5e1d2c-run")
    with session_scope(engine) as session:
        assert get_brief(session, brief_id).flow_run_id == "0b5e1d2c-run"
        assert get_brief(session, other_id).flow_run_id is None
        with pytest.raises(NotFound):
            set_flow_run(session, uuid4(), "0b5e1d2c-run")


def test_teams_are_listed_by_name(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert teams(session) == []
        for name in ("zeta", "alpha", "mid"):
            _team(session, name)
    with session_scope(engine) as session:
        assert [team.name for team in teams(session)] == ["alpha", "mid", "zeta"]


def test_add_decision_records_who_decided_what_with_its_file(engine: Engine) -> None:
    rejected, approved = uuid4(), uuid4()
    with session_scope(engine) as session:
        row = _variant(session, _brief(session, team="alpha"), "open/en-US/16:9")
        proof = _artifact(session, "review", [])
        made = add_decision(session, row, decision_id=rejected, team="alpha", reviewer="ana",
                            decision=ReviewVerdict.REJECT, comment="too dark", rerender=True,
                            new_seed=8, artifact=proof)
        assert made.id == rejected
        # the defaults: no re-render, no seed, no file
        add_decision(session, row, decision_id=approved, team="alpha", reviewer="ben",
                     decision=ReviewVerdict.APPROVE, comment="")
    with session_scope(engine) as session:
        stored = {d.id: (d.deliverable_id, d.team, d.reviewer, d.decision, d.comment, d.rerender,
                         d.new_seed, d.artifact_id)
                  for d in get_deliverable(session, row.id).decisions}
    assert stored == {
        rejected: (row.id, "alpha", "ana", ReviewVerdict.REJECT, "too dark", True, 8, proof.id),
        approved: (row.id, "alpha", "ben", ReviewVerdict.APPROVE, "", False, None, None)}


def test_last_decision_artifact_is_the_file_of_the_latest_decision_only(engine: Engine) -> None:
    with session_scope(engine) as session:
        row_id = _variant(session, _brief(session), "open/en-US/16:9").id
        first, second = _artifact(session, "review", []), _artifact(session, "review", [])
    seen = [_last_decision_file(engine, row_id)]  # no decision yet
    for minutes, file in ((-3, first), (-2, second), (-1, None)):
        with session_scope(engine) as session:
            _decide(session, row_id, at=_minutes_from_now(minutes), artifact=file)
        seen.append(_last_decision_file(engine, row_id))
    # a latest decision without a file does not fall back to an earlier decision's file
    assert seen == [None, first.id, second.id, None]


def test_campaign_team_is_the_owning_team_or_the_operators(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert campaign_team(_brief(session, team="alpha")) == "alpha"
        assert campaign_team(_brief(session)) == "_local" == NO_TEAM


def test_deliverable_ids_are_the_briefs_rows_in_that_status_and_kind_by_name(
        engine: Engine) -> None:
    D = DeliverableStatus
    with session_scope(engine) as session:
        brief = _brief(session)
        names = {_variant(session, brief, name, kind=kind, status=status).id: name
                 for name, kind, status in (("b-scene", SCENE, D.PENDING),
                                            ("c-spot", SPOT, D.PENDING),
                                            ("a-scene", SCENE, D.PENDING),
                                            ("d-scene", SCENE, D.FINISHED))}
        _variant(session, _brief(session), "a-other-brief")  # pending too: not listed

    def listed(status: DeliverableStatus, kind: DeliverableKind | None = None) -> list[str]:
        with session_scope(engine) as session:
            return [names[row_id] for row_id in deliverable_ids(session, brief.id, status, kind)]

    assert listed(D.PENDING) == ["a-scene", "b-scene", "c-spot"]
    assert listed(D.PENDING, SCENE) == ["a-scene", "b-scene"]
    assert listed(D.PENDING, SPOT) == ["c-spot"]
    assert listed(D.FINISHED) == ["d-scene"]
    assert listed(D.FINISHED, SPOT) == []
    assert listed(D.PUBLISHED) == []
    with session_scope(engine) as session:
        assert deliverable_ids(session, uuid4(), D.PENDING) == []


def test_spots_containing_are_the_briefs_spots_of_the_scenes_locale_and_aspect(
        engine: Engine) -> None:
    with session_scope(engine) as session:
        brief = _brief(session)
        scene = _variant(session, brief, "open/en-US/16:9")
        lonely = _variant(session, brief, "open/fr-FR/16:9", locale="fr-FR")
        _variant(session, brief, "stride/en-US/16:9")  # a scene of the same market, not a spot
        for name, locale, aspect in (("spot-z", "en-US", "16:9"), ("spot-a", "en-US", "16:9"),
                                     ("spot-de", "de-DE", "16:9"), ("spot-sq", "en-US", "1:1")):
            _variant(session, brief, name, kind=SPOT, locale=locale, aspect=aspect)
        _variant(session, _brief(session), "spot-b", kind=SPOT)  # another brief's en-US 16:9
    with session_scope(engine) as session:
        assert [row.name for row in spots_containing(session, scene)] == ["spot-a", "spot-z"]
        assert spots_containing(session, lonely) == []


def test_reopen_spot_sends_a_spot_back_to_pending_unless_its_files_are_out(
        engine: Engine) -> None:
    D, reason = DeliverableStatus, "scene open is re-rendered"
    outcome = {}
    with session_scope(engine) as session:
        brief = _brief(session)
        for status in D:
            spot = _variant(session, brief, f"spot-{status}", kind=SPOT, status=status)
            spot.error = "earlier"
            outcome[status] = (reopen_spot(spot, reason), spot.status, spot.error)
        cleared = _variant(session, brief, "spot-cleared", kind=SPOT, status=D.REJECTED)
        cleared.error = "earlier"
        assert reopen_spot(cleared, None) is True  # a reviewer's re-render: no error to show
        assert (cleared.status, cleared.error) == (D.PENDING, None)
    reopened = (True, D.PENDING, reason)
    assert outcome == {D.PENDING: reopened, D.FINISHED: reopened, D.FAILED: reopened,
                       D.REJECTED: reopened, D.IN_REVIEW: (False, D.IN_REVIEW, "earlier"),
                       D.APPROVED: (False, D.APPROVED, "earlier"),
                       D.PUBLISHED: (False, D.PUBLISHED, "earlier")}


def test_render_progress_counts_the_renders_and_variants_of_active_briefs_only(
        engine: Engine) -> None:
    D, R = DeliverableStatus, RenderStatus
    with session_scope(engine) as session:
        assert render_progress(session) == (Counter(), Counter())  # an empty database
        for key, status in (("k1", R.RUNNING), ("k2", R.DONE), ("k3", R.DONE), ("k4", R.PENDING),
                            ("k5", R.PENDING)):
            _move_to(ensure_render_job(session, key, {}), status)
        producing = _brief(session, status=BriefStatus.PRODUCING)
        _variant(session, producing, "a", render_key="k1")
        _variant(session, producing, "b", render_key="k1", status=D.FAILED)  # k1 counted once
        _variant(session, producing, "c", render_key="k2", status=D.FINISHED)
        _variant(session, producing, "spot", kind=SPOT)
        held = _brief(session, status=BriefStatus.AWAITING_APPROVAL)
        _variant(session, held, "a", render_key="k4")
        done = _brief(session, status=BriefStatus.DONE)  # closed: its k3 and its variant are not
        _variant(session, done, "a", render_key="k3", status=D.PUBLISHED)
        # k5: a render no variant uses
    with session_scope(engine) as session:
        renders, variants = render_progress(session)
    assert renders == Counter({"running": 1, "done": 1, "pending": 1})
    assert variants == Counter({"pending": 3, "failed": 1, "finished": 1})


def test_published_deliverables_are_the_rows_with_a_manifest_in_id_order(
        engine: Engine) -> None:
    with session_scope(engine) as session:
        assert published_deliverables(session) == []
        briefs = [_brief(session), _brief(session, team="beta")]
        ids = [_variant(session, briefs[i % 2], f"v{i}").id for i in range(6)]
    out = sorted(ids[:5], reverse=True)  # published in descending id order; ids[5] never
    with session_scope(engine) as session:
        for row_id in out:
            set_published(get_deliverable(session, row_id), manifest_uri=f"file:///{row_id}.json",
                          published_uri=f"file:///{row_id}.mp4")
    with session_scope(engine) as session:
        rows = published_deliverables(session)
        assert [(row.id, row.manifest_uri) for row in rows] == [
            (row_id, f"file:///{row_id}.json") for row_id in sorted(out)]


def test_campaign_deliverables_are_by_campaign_then_name_and_filtered_by_slug(
        engine: Engine) -> None:
    with session_scope(engine) as session:
        spring = _brief(session, campaign="spring")
        for name in ("b", "a"):
            _variant(session, spring, name)
        _variant(session, _brief(session, campaign="autumn"), "z")
        _variant(session, _brief(session, team="beta", campaign="spring"), "m")  # beta's spring

    def listed(campaign: str | None) -> list[tuple[str, str]]:
        with session_scope(engine) as session:
            return [(row.brief.campaign.slug, row.name)
                    for row in campaign_deliverables(session, campaign)]

    everything = [("autumn", "z"), ("spring", "a"), ("spring", "b"), ("spring", "m")]
    assert listed(None) == everything
    assert listed("") == everything
    assert listed("spring") == everything[1:]
    assert listed("autumn") == everything[:1]
    assert listed("winter") == []


def test_a_deliverables_manifest_is_the_one_made_from_its_own_video(engine: Engine) -> None:
    """Two briefs of one campaign publish their manifests at the same URI: each deliverable's
    is the one whose parent is its video (by URI alone, the other brief's could come back)."""
    uri = "file:///campaigns/emea/spring/en-US/16x9/spot.manifest.json"
    with session_scope(engine) as session:
        rows, manifests = [], []
        for _ in range(2):
            row = _variant(session, _brief(session), "spot")
            video = _artifact(session, "video", [])
            manifests.append(_artifact(session, "manifest", [video], uri=uri))
            _artifact(session, "manifest", [video], uri="file:///review/elsewhere.json")
            row.video_artifact_id, row.manifest_uri = video.id, uri
            rows.append(row)
        unpublished = _variant(session, _brief(session), "spot")
    with session_scope(engine) as session:
        for row, manifest in zip(rows, manifests, strict=True):
            found = deliverable_manifest(session, session.get(Deliverable, row.id))
            assert found is not None and found.id == manifest.id
        assert deliverable_manifest(session, session.get(Deliverable, unpublished.id)) is None


def test_add_lora_keeps_its_files_and_team_lora_finds_it_by_team_and_name(
        engine: Engine) -> None:
    with session_scope(engine) as session:
        ids = _register_loras(session, [("alpha", "zebra"), ("alpha", "aster"),
                                        ("beta", "aster")])
    digest = hashlib.sha256(b"alpha/aster").hexdigest()
    with session_scope(engine) as session:
        found = team_lora(session, "alpha", "aster")
        assert found is not None and found.id == ids["alpha/aster"]
        assert (found.team, found.name, found.sha256, found.files_prefix, found.files) == (
            "alpha", "aster", digest, f"loras/alpha/aster/{digest}/",
            {"lora_weights.safetensors": {"sha256": digest, "size_bytes": 5}})
        beta = team_lora(session, "beta", "aster")
        assert beta is not None and beta.id == ids["beta/aster"]
        assert team_lora(session, "alpha", "lily") is None
        assert team_lora(session, "gamma", "aster") is None  # a team with none


def _with_statistics(engine: Engine, table: str) -> None:
    """Without statistics PostgreSQL reads a new table through its (team, name) index, already
    in name order; with them (autovacuum keeps them in production) it scans a small table in
    storage order, so only there does a missing ORDER BY show. (SQLite always uses the index.)"""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text(f"ANALYZE {table}"))


def test_team_loras_are_the_teams_own_by_name(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert team_loras(session, "alpha") == []
        _register_loras(session, [("alpha", "zebra"), ("beta", "aster"), ("alpha", "aster"),
                                  ("alpha", "mint")])
    _with_statistics(engine, "lora")
    with session_scope(engine) as session:
        assert [row.name for row in team_loras(session, "alpha")] == ["aster", "mint", "zebra"]
        assert [(row.team, row.name) for row in team_loras(session, "beta")] == [
            ("beta", "aster")]
        assert team_loras(session, NO_TEAM) == []


def test_team_session_count_counts_the_teams_unexpired_sessions(engine: Engine) -> None:
    with session_scope(engine) as session:
        alpha, beta, gamma = (_team(session, name) for name in ("alpha", "beta", "gamma"))
        for i, (team, minutes) in enumerate(((alpha, 60), (alpha, 5), (alpha, -1), (beta, 60),
                                             (beta, -60))):
            add_web_session(session, f"{i:064d}", team, _minutes_from_now(minutes))
    with session_scope(engine) as session:
        assert [team_session_count(session, t) for t in (alpha, beta, gamma)] == [2, 1, 0]


def test_briefs_awaiting_approval_are_only_those_held_oldest_first(engine: Engine) -> None:
    B = BriefStatus
    with session_scope(engine) as session:
        assert briefs_awaiting_approval(session) == []
        held = {minutes: _brief(session, status=B.AWAITING_APPROVAL,
                                created_at=_minutes_from_now(minutes)).id
                for minutes in (-5, -30, -10)}
        for status in (B.SUBMITTED, B.CLAIMED, B.PLANNED, B.PRODUCING):
            _brief(session, status=status, created_at=_minutes_from_now(-60))
    with session_scope(engine) as session:
        assert [row.id for row in briefs_awaiting_approval(session)] == [held[-30], held[-10],
                                                                        held[-5]]


# Quotas and limits: the submission door's queries

def _submitted(session: Session, team: str, *, minutes_ago: float,
               brief: BriefRow | None = None) -> None:
    """A counted submission of `team`, posted `minutes_ago`."""
    record_submission(session, team, brief)
    row = session.scalars(select(Submission).order_by(Submission.created_at.desc())).first()
    assert row is not None
    row.created_at = _minutes_from_now(-minutes_ago)
    session.flush()


def test_count_submissions_counts_the_teams_posts_within_the_window_only(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert count_submissions(session, "alpha", timedelta(minutes=1)) == 0
        _submitted(session, "alpha", minutes_ago=0.2)
        _submitted(session, "alpha", minutes_ago=30)
        _submitted(session, "beta", minutes_ago=0.2)
        assert count_submissions(session, "alpha", timedelta(minutes=1)) == 1
        assert count_submissions(session, "alpha", timedelta(hours=1)) == 2
        assert count_submissions(session, "beta", timedelta(hours=1)) == 1
        assert count_submissions(session, "gamma", timedelta(hours=1)) == 0


def test_record_submission_keeps_the_brief_it_created_or_none_when_refused(
        engine: Engine) -> None:
    with session_scope(engine) as session:
        brief = _brief(session, team="alpha")
        record_submission(session, "alpha", brief)
        record_submission(session, "alpha", None)
        rows = session.scalars(select(Submission).where(Submission.team == "alpha")).all()
        assert sorted(str(row.brief_id) for row in rows) == sorted([str(brief.id), "None"])


@pytest.fixture
def host_in_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The host's local time is not UTC (the times written and compared must still be)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("host_in_new_york")
def test_lock_team_stamps_the_team_and_refuses_an_unknown_one(engine: Engine) -> None:
    with session_scope(engine) as session:
        _team(session, "alpha")
        before = datetime.now(UTC)
        lock_team(session, "alpha")
        stamped = team_by_name(session, "alpha").last_submission_at
    assert stamped is not None
    stamped = stamped if stamped.tzinfo else stamped.replace(tzinfo=UTC)
    assert before - timedelta(seconds=5) <= stamped <= datetime.now(UTC) + timedelta(seconds=5)
    with session_scope(engine) as session, pytest.raises(
            NotFound, match=r"team 'nobody' does not exist \(mova-ads team create nobody\)"):
        lock_team(session, "nobody")


def test_gpu_seconds_since_sum_the_teams_valid_briefs_from_that_moment_on(
        engine: Engine) -> None:
    with session_scope(engine) as session:
        start = _minutes_from_now(-60)
        assert team_gpu_seconds_since(session, "alpha", start) == 0.0
        costs = {"at the start": (0, 100.0), "later": (30, 20.0), "before": (-30, 4000.0)}
        for minutes, cost in costs.values():
            brief = _brief(session, team="alpha", created_at=start + timedelta(minutes=minutes))
            brief.gpu_seconds_estimate = cost
        _brief(session, team="beta", created_at=start).gpu_seconds_estimate = 7.0
        _brief(session, team="alpha", created_at=start, status=BriefStatus.INVALID
               ).gpu_seconds_estimate = 500.0
        session.flush()
        assert team_gpu_seconds_since(session, "alpha", start) == 120.0
        assert team_gpu_seconds_since(session, "beta", start) == 7.0
        assert team_gpu_seconds_since(session, "alpha", start + timedelta(minutes=31)) == 0.0


def test_quotas_hold_on_a_postgres_server_whose_clock_is_not_utc(postgres_url: str) -> None:
    """A server in another time zone reads a time without zone in its own: the queries must
    send the instant (with its zone), or a window moves by hours."""
    engine = create_engine(postgres_url, connect_args={"options": "-c timezone=Asia/Tokyo"})
    try:
        with session_scope(engine) as session:
            start = _minutes_from_now(-60)
            _brief(session, team="alpha", created_at=start - timedelta(hours=3)
                   ).gpu_seconds_estimate = 50.0
            _brief(session, team="alpha", created_at=start).gpu_seconds_estimate = 10.0
            session.flush()
            assert team_gpu_seconds_since(session, "alpha", start) == 10.0
            _submitted(session, "alpha", minutes_ago=120)
            assert count_submissions(session, "alpha", timedelta(hours=1)) == 0
    finally:
        engine.dispose()


@pytest.mark.usefixtures("host_in_new_york")
def test_the_rate_limit_window_ends_now_whatever_the_hosts_time_zone(engine: Engine) -> None:
    with session_scope(engine) as session:
        _submitted(session, "alpha", minutes_ago=120)
        assert count_submissions(session, "alpha", timedelta(hours=1)) == 0


# Lists a user sees: order and filters

def test_campaign_briefs_are_oldest_first_and_only_the_named_campaigns(engine: Engine) -> None:
    with session_scope(engine) as session:
        newer = _brief(session, campaign="spring", created_at=_minutes_from_now(-1))
        older = _brief(session, campaign="spring", created_at=_minutes_from_now(-9))
        other = _brief(session, campaign="autumn", created_at=_minutes_from_now(-5))
        assert [b.id for b in campaign_briefs(session, "spring")] == [older.id, newer.id]
        assert [b.id for b in campaign_briefs(session, "autumn")] == [other.id]
        assert [b.id for b in campaign_briefs(session, None)] == [older.id, other.id, newer.id]


def test_team_briefs_are_newest_first_and_cut_to_the_limit(engine: Engine) -> None:
    with session_scope(engine) as session:
        old = _brief(session, team="alpha", created_at=_minutes_from_now(-9))
        new = _brief(session, team="alpha", created_at=_minutes_from_now(-1))
        _brief(session, team="beta")
        assert [b.id for b in team_briefs(session, "alpha")] == [new.id, old.id]
        assert [b.id for b in team_briefs(session, "alpha", limit=1)] == [new.id]


def test_briefs_to_produce_are_oldest_first(engine: Engine) -> None:
    with session_scope(engine) as session:
        new = _brief(session, status=BriefStatus.PLANNED, created_at=_minutes_from_now(-1))
        old = _brief(session, status=BriefStatus.PRODUCING, created_at=_minutes_from_now(-9))
        _brief(session, status=BriefStatus.DONE, created_at=_minutes_from_now(-20))
        assert [b.id for b in briefs_to_produce(session)] == [old.id, new.id]


def test_approve_budget_names_the_brief_and_its_status_when_refused(engine: Engine) -> None:
    with session_scope(engine) as session:
        brief = _brief(session, status=BriefStatus.PLANNED)
        with pytest.raises(InvalidTransition,
                           match=rf"brief {brief.id} is planned, not awaiting approval"):
            approve_budget(session, brief.id)


def test_count_rows_of_an_empty_table_is_zero(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert count_rows(session, RenderJob) == 0
        _brief(session)
        assert count_rows(session, BriefRow) == 1


def test_what_a_brief_delivers_is_its_spots_and_its_published_scenes(engine: Engine) -> None:
    with session_scope(engine) as session:
        brief = _brief(session, status=BriefStatus.PRODUCING)
        spot = _variant(session, brief, "spot", kind=SPOT)
        published = _variant(session, brief, "s1")
        _variant(session, brief, "s2")
        published.manifest_uri = "file:///out/s1.json"
        session.flush()
        session.refresh(brief)
        assert {d.id for d in deliverables_that_count(brief)} == {spot.id, published.id}


def test_an_id_prefix_lists_its_matches_in_id_order(engine: Engine) -> None:
    with session_scope(engine) as session:
        brief = _brief(session)
        ids = [UUID(digit * 32) for digit in "f81"]  # inserted in falling id order
        for i, row_id in enumerate(ids):
            session.add(Deliverable(id=row_id, brief_id=brief.id, name=f"s{i}", kind=SCENE,
                                    scene_id=f"s{i}", locale="en-US", aspect="16:9",
                                    render_key="", status=DeliverableStatus.PENDING))
        session.flush()
        assert [d.id for d in deliverables_by_id_prefix(session, "")] == sorted(ids)


def test_finding_artifacts_matches_both_the_kind_and_the_inputs(engine: Engine) -> None:
    with session_scope(engine) as session:
        made = {(kind, key): add_artifact(
            session, kind=kind, input_key=key * 64, sha256=key * 64, uri=f"file:///{kind}/{key}",
            size_bytes=1, content_type="x", task="t", code_version="test")
            for kind in ("video", "captions", "dub") for key in "ab"}
        assert find_artifact(session, "video", "a" * 64) is made["video", "a"]
        assert find_artifact(session, "captions", "b" * 64) is made["captions", "b"]
        assert find_artifact(session, "video", "c" * 64) is None
        assert find_artifacts(session, ["dub", "captions", "poster"], "b" * 64) == [
            made["dub", "b"], made["captions", "b"]]
        assert find_artifacts(session, ["video"], "c" * 64) == []


def test_plan_artifact_is_the_stored_plan_once_the_brief_is_planned(engine: Engine) -> None:
    with session_scope(engine) as session:
        brief = _brief(session, status=BriefStatus.CLAIMED)
        assert plan_artifact(session, brief) is None
        stored_brief, stored_plan = _artifact(session, "brief", []), _artifact(session, "plan", [])
        save_plan(session, brief, {"scenes": []}, stored_brief, stored_plan)
        session.flush()
        session.refresh(brief)
        assert plan_artifact(session, brief) is stored_plan
        # not held for approval unless asked; the brief row names the file it was planned from
        assert (brief.status, brief.artifact_id) == (BriefStatus.PLANNED, stored_brief.id)


def test_a_finished_variant_keeps_its_file_and_qc_and_loses_its_old_error(
        engine: Engine) -> None:
    with session_scope(engine) as session:
        row = _variant(session, _brief(session, status=BriefStatus.PRODUCING), "s1")
        set_finished_video(row, _artifact(session, "video", []), {"passed": False})
        session.flush()
        row.error = "QC: black frames (retrying)"  # finished again after a retake
        video = _artifact(session, "video", [])
        set_finished_video(row, video, {"passed": True})
        assert row.video is video  # publishing reads it in the same transaction
        accept_deliverable(row)
        set_published(row, manifest_uri="file:///m.json", published_uri="file:///v.mp4")
        session.flush()
        row_id = row.id
    with session_scope(engine) as session:
        row = get_deliverable(session, row_id)
        assert (row.video_artifact_id, row.qc, row.error, row.status) == (
            video.id, {"passed": True}, None, DeliverableStatus.FINISHED)
        assert (row.manifest_uri, row.published_uri) == ("file:///m.json", "file:///v.mp4")


def test_a_failed_brief_lists_at_most_100_problems(engine: Engine) -> None:
    with session_scope(engine) as session:
        brief = _brief(session, status=BriefStatus.PRODUCING)
        for i in range(101):
            _variant(session, brief, f"s{i:03d}", status=DeliverableStatus.FAILED).error = f"e{i}"
        session.flush()
        session.refresh(brief)
        close_brief(session, brief.id)
        assert brief.status == BriefStatus.FAILED
        assert brief.problems == [[f"s{i:03d}", f"e{i}"] for i in range(100)]


@pytest.mark.usefixtures("host_in_new_york")
def test_a_page_session_expired_an_hour_ago_does_not_count_whatever_the_hosts_zone(
        engine: Engine) -> None:
    with session_scope(engine) as session:
        team = _team(session, "alpha")
        add_web_session(session, "e" * 64, team, _minutes_from_now(-60))
        add_web_session(session, "f" * 64, team, _minutes_from_now(60))
        assert team_session_count(session, team) == 1


def test_page_sessions_expire_on_time_on_a_postgres_server_whose_clock_is_not_utc(
        postgres_url: str) -> None:
    engine = create_engine(postgres_url, connect_args={"options": "-c timezone=Asia/Tokyo"})
    try:
        with session_scope(engine) as session:
            team = _team(session, "alpha")
            add_web_session(session, "e" * 64, team, _minutes_from_now(-60))
            add_web_session(session, "f" * 64, team, _minutes_from_now(60))
        with session_scope(engine) as session:
            assert team_for_web_session(session, "e" * 64) is None
            found = team_for_web_session(session, "f" * 64)
            assert found is not None and found.name == "alpha"
    finally:
        engine.dispose()


def test_a_render_retried_after_a_failure_keeps_its_clip_and_time_and_drops_the_error(
        engine: Engine) -> None:
    with session_scope(engine) as session:
        job = ensure_render_job(session, "k" * 64, {"seed": 1})
        start_render(job)
        fail_render(session, job.id, "worker lost")
        _move_to(job, RenderStatus.PENDING)
        start_render(job)
        clip = _artifact(session, "clip", [])
        finish_render(session, job.id, clip, 12.5)
        job_id = job.id
    with session_scope(engine) as session:
        job = session.get(RenderJob, job_id)
        assert job is not None
        assert (job.status, job.clip_artifact_id, job.seconds, job.error, job.attempts) == (
            RenderStatus.DONE, clip.id, 12.5, None, 2)


def test_an_illegal_move_names_the_table_and_the_row(engine: Engine) -> None:
    with session_scope(engine) as session:
        brief = _brief(session)
        with pytest.raises(InvalidTransition, match=rf"^brief {brief.id}: cannot go from"):
            transition(brief, BriefStatus.DONE)


def test_not_found_errors_name_what_was_looked_for(engine: Engine) -> None:
    missing = uuid4()
    with session_scope(engine) as session:
        with pytest.raises(NotFound, match=f"brief {missing} does not exist"):
            get_brief(session, missing)
        with pytest.raises(NotFound, match="no render job with key " + "f" * 64):
            render_job(session, "f" * 64)
        with pytest.raises(NotFound, match=f"artifact {missing} does not exist"):
            lineage_chain(session, missing)


def test_get_or_create_returns_the_row_a_concurrent_writer_inserted_first(
        postgres_engine: Engine) -> None:
    """Two workers ensure the same render job: the other one inserts between this one's
    lookup and its insert. The unique key refuses this insert, and the row the other made
    comes back (not created here), with the other's content. (PostgreSQL only: SQLite's
    sessions take the write lock at their start, so no writer can come in between.)"""
    engine = postgres_engine
    key = "r" * 64

    def create_after_the_other_writer() -> RenderJob:
        with session_scope(engine) as other:
            ensure_render_job(other, key, {"seed": 1, "by": "other"})
        return RenderJob(spec_key=key, spec={"seed": 1, "by": "me"}, status=RenderStatus.PENDING)

    with session_scope(engine) as session:
        job, created = _get_or_create(session, RenderJob, {"spec_key": key},
                                      create_after_the_other_writer)
        assert (created, job.spec) == (False, {"seed": 1, "by": "other"})
    with session_scope(engine) as session:
        assert count_rows(session, RenderJob) == 1


def _set_id(session: Session, brief: BriefRow, last_hex_digit: str) -> None:
    brief.id = UUID("00000000-0000-4000-8000-00000000000" + last_hex_digit)
    session.flush()


def test_claims_take_the_oldest_brief_first_and_break_a_tie_by_id(engine: Engine) -> None:
    """Three briefs: two submitted in the same instant (the one stored first has the larger
    id), one later with the smallest id. Claimed one at a time: the tie by id, then the later."""
    instant = _minutes_from_now(-10)
    with session_scope(engine) as session:
        tie_second, tie_first, later = (
            _brief(session, created_at=at) for at in (instant, instant, _minutes_from_now(-5)))
        for row, digit in ((tie_second, "3"), (tie_first, "2"), (later, "1")):
            _set_id(session, row, digit)
        expected = [tie_first.id, tie_second.id, later.id]
    claimed = []
    for _ in expected:
        with session_scope(engine) as session:
            claimed += [b.id for b in claim_submitted_briefs(session, limit=1, worker_id="w")]
    assert claimed == expected


def test_a_briefs_render_jobs_include_the_renders_they_wait_for_transitively(
        engine: Engine) -> None:
    """A dub waits for its master, the master continues an earlier scene's render; a render
    of another brief is not included."""
    with session_scope(engine) as session:
        ensure_render_job(session, "a" * 64, {"seed": 1})
        ensure_render_job(session, "m" * 64, {"seed": 1, "continue_from": "a" * 64})
        ensure_render_job(session, "d" * 64, {"seed": 1, "master_key": "m" * 64})
        ensure_render_job(session, "o" * 64, {"seed": 1})
        brief = _brief(session, status=BriefStatus.PRODUCING)
        _variant(session, brief, "s1", render_key="d" * 64)
        session.refresh(brief)
        assert set(brief_render_jobs(session, brief.id)) == {"a" * 64, "m" * 64, "d" * 64}


def test_a_failed_render_does_not_start_again_until_it_is_requeued(engine: Engine) -> None:
    with session_scope(engine) as session:
        job = ensure_render_job(session, "k" * 64, {"seed": 1})
        start_render(job)
        start_render(job)  # the first run died while running: it runs again
        assert (job.status, job.attempts) == (RenderStatus.RUNNING, 2)
        fail_render(session, job.id, "out of memory")
        with pytest.raises(InvalidTransition, match="cannot go from 'failed' to 'running'"):
            start_render(job)


def test_an_artifact_keeps_the_checkpoint_and_seed_it_was_made_with(engine: Engine) -> None:
    with session_scope(engine) as session:
        clip = add_artifact(session, kind="clip", input_key="c" * 64, sha256="c" * 64,
                            uri="file:///c", size_bytes=1, content_type="x",
                            task="render.generate", code_version="test",
                            checkpoint="mova-360p@abc123", seed=42)
        clip_id = clip.id
    with session_scope(engine) as session:
        clip = session.get(Artifact, clip_id)
        assert clip is not None and (clip.checkpoint, clip.seed) == ("mova-360p@abc123", 42)


def test_lineage_lists_every_parent_after_a_repeated_ancestor(engine: Engine) -> None:
    """Three parents share one grandparent: it is expanded under the first parent only, and
    the parents after a repeat (and the repeat itself) are still listed."""
    with session_scope(engine) as session:
        root = _artifact(session, "brief", [])
        shared = _artifact(session, "plan", [root])
        parents = sorted((_artifact(session, "clip", [shared]) for _ in range(3)),
                         key=lambda a: str(a.id))
        child = _artifact(session, "video", parents)
        chain = [(depth, a.id) for depth, a in lineage_chain(session, child.id)]
    first, second, third = (p.id for p in parents)
    assert chain == [(0, child.id), (1, first), (2, shared.id), (3, root.id),
                     (1, second), (2, shared.id), (1, third), (2, shared.id)]


def test_an_idempotency_key_finds_only_the_teams_own_brief(engine: Engine) -> None:
    with session_scope(engine) as session:
        for name in ("alpha", "beta"):
            _team(session, name)
        alphas = add_brief(session, campaign_slug="spring", brand="Aurora", raw="a",
                           sha256="a" * 64, team="alpha", idempotency_key="key-1")
        assert duplicate_brief(session, "alpha", "x" * 64, "key-1") is alphas
        assert duplicate_brief(session, "beta", "x" * 64, "key-1") is None


def test_a_resubmitted_brief_is_the_oldest_valid_one_with_that_content(engine: Engine) -> None:
    """Same content twice (stored newer first): the older one is the duplicate; a brief
    found invalid is never returned (sent again, it is checked again)."""
    with session_scope(engine) as session:
        _team(session, "alpha")

        def submit(created_at: datetime | None = None) -> BriefRow:
            row = add_brief(session, campaign_slug="spring", brand="Aurora", raw="same",
                            sha256="s" * 64, team="alpha")
            if created_at is not None:
                row.created_at = created_at
                session.flush()
            return row

        submit()
        older = submit(created_at=_minutes_from_now(-60))
        assert duplicate_brief(session, "alpha", "s" * 64, None) is older
        invalid = add_brief(session, campaign_slug="spring", brand="Aurora", raw="bad",
                            sha256="b" * 64, team="alpha")
        _move_to(invalid, BriefStatus.CLAIMED)
        mark_brief_invalid(session, invalid, [("scenes", "empty")])
        session.flush()
        assert duplicate_brief(session, "alpha", "b" * 64, None) is None


def test_a_planning_failure_is_kept_as_the_briefs_problem_until_a_plan_is_made(
        engine: Engine) -> None:
    with session_scope(engine) as session:
        brief = _brief(session, status=BriefStatus.CLAIMED)
        assert release_claim(session, brief.id, "inputs/emea/ab.png does not exist")
        assert brief.status == BriefStatus.SUBMITTED and brief.problems == [[
            "(planning)", "planning failed and is tried again by the next production run: "
                          "inputs/emea/ab.png does not exist"]]
        _move_to(brief, BriefStatus.CLAIMED)
        save_plan(session, brief, {"scenes": []}, _artifact(session, "brief", []),
                  _artifact(session, "plan", []))
        assert brief.status == BriefStatus.PLANNED and brief.problems is None
