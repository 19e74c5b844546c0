"""Two ingesters claiming at once on PostgreSQL, forced deterministically: the first claims and
keeps its transaction open (its rows locked, its status change not yet visible) while the
second claims. The second must skip the held briefs at once and take the others."""

from __future__ import annotations

import threading
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from infra.db import session_scope
from infra.db_models import BriefRow
from infra.repository import add_brief, claim_brief, claim_submitted_briefs
from schemas.errors import NotFound

HOLD_S = 10.0  # how long the first transaction stays open while the second claims


def test_a_second_claim_skips_the_briefs_an_open_claim_holds(postgres_engine: Engine) -> None:
    with session_scope(postgres_engine) as session:
        for i in range(6):
            add_brief(session, campaign_slug="spring", brand="Aurora", raw=f"brief {i}",
                      sha256=f"{i:064d}")
    second: dict[str, set[UUID]] = {}

    def claim_second() -> None:
        with session_scope(postgres_engine) as session:
            second["ids"] = {row.id for row in claim_submitted_briefs(session, limit=3,
                                                                       worker_id="b")}

    with Session(postgres_engine) as first_session:
        first_session.begin()
        first = {row.id for row in claim_submitted_briefs(first_session, limit=3, worker_id="a")}
        # Still uncommitted: to the second transaction these briefs read as 'submitted'.
        thread = threading.Thread(target=claim_second, daemon=True)
        thread.start()
        thread.join(timeout=HOLD_S)
        second_waited = thread.is_alive()
        first_session.commit()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the second claim never finished"

    assert len(first) == 3 and len(second["ids"]) == 3
    assert not first & second["ids"], f"claimed twice: {sorted(map(str, first & second['ids']))}"
    assert not second_waited, "the second claim waited for the first's rows instead of " \
                              "skipping them"
    with session_scope(postgres_engine) as session:
        rows = list(session.scalars(select(BriefRow)))
        owners = {row.id: row.claimed_by for row in rows}
        assert {row.status for row in rows} == {"claimed"}
    assert owners == {**{i: "a" for i in first}, **{i: "b" for i in second["ids"]}}


def test_one_brief_claimed_by_two_workers_at_once_goes_to_the_first(
        postgres_engine: Engine) -> None:
    with session_scope(postgres_engine) as session:
        brief_id = add_brief(session, campaign_slug="spring", brand="Aurora", raw="one brief",
                             sha256="7" * 64).id
    second: dict[str, bool] = {}

    def claim_second() -> None:
        with session_scope(postgres_engine) as session:
            second["claimed"] = claim_brief(session, brief_id, "b")

    with Session(postgres_engine) as first_session:
        first_session.begin()
        assert claim_brief(first_session, brief_id, "a")
        # uncommitted: the second worker still reads the brief as submitted unless it waits
        thread = threading.Thread(target=claim_second, daemon=True)
        thread.start()
        thread.join(timeout=2.0)
        first_session.commit()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the second claim never finished"
    assert second == {"claimed": False}, "the brief was claimed twice"
    with session_scope(postgres_engine) as session:
        row = session.get(BriefRow, brief_id)
        assert row is not None and (row.status, row.claimed_by) == ("claimed", "a")
        assert not claim_brief(session, brief_id, "c")  # claimed: nobody takes it again
        missing = uuid4()
        with pytest.raises(NotFound, match=f"^brief {missing} does not exist$"):
            claim_brief(session, missing, "c")
