"""Five teams submitting at once to one service on PostgreSQL (issue 12, part 6): every
submission is either stored (201, and its brief is in the database) or refused with 429;
none is lost and none stored twice. Bounded: TEAMS × POSTS_PER_TEAM requests, loopback only.

To extend: the quota checks of issue 12 part 3 add their limits to `start_service(...)` and
an assertion on `stored_per_team` below (atomic: never more than the limit per team)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import yaml
from sqlalchemy import select

from infra.db import make_engine, session_scope
from infra.repository import BriefRow
from tests.app.conftest import Service
from tests.app.test_service_api import EXAMPLE

pytestmark = pytest.mark.slow
TEAMS = ("t1", "t2", "t3", "t4", "t5")
POSTS_PER_TEAM = 8
PER_MINUTE = 5  # below POSTS_PER_TEAM: every team meets its limit during the burst


@pytest.fixture(scope="module")
def service(service_factory: Callable[..., Service], module_postgres_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield service_factory(tmp_path_factory.mktemp("load"), module_postgres_url, teams=TEAMS,
                          worker=False, API_SUBMISSIONS_PER_MINUTE=str(PER_MINUTE))


def _submit(service: Service, team: str, n: int) -> tuple[str, int, str | None]:
    brief = yaml.safe_load(EXAMPLE)
    brief["seed"] = 1000 * TEAMS.index(team) + n  # distinct content: never a duplicate
    with httpx.Client(base_url=service.url, timeout=120, headers={
            "Authorization": f"Bearer {service.tokens[team]}"}) as client:
        response = client.post("/api/briefs", json=brief)
    brief_id = response.json().get("id") if response.status_code == 201 else None
    return team, response.status_code, brief_id


def test_concurrent_submissions_of_five_teams_are_stored_or_refused_none_lost(
        service: Service) -> None:
    jobs = [(team, n) for n in range(POSTS_PER_TEAM) for team in TEAMS]
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda job: _submit(service, *job), jobs))
    statuses = Counter(status for _, status, _ in results)
    assert set(statuses) <= {201, 429}, f"answers other than stored/refused: {statuses}"
    accepted = {brief_id for _, status, brief_id in results if status == 201}
    assert len(accepted) == statuses[201], "one id was answered twice"
    engine = make_engine(service.database_url)
    with session_scope(engine) as session:
        rows = list(session.execute(select(BriefRow.id, BriefRow.team)))
    engine.dispose()
    stored = {str(brief_id) for brief_id, _ in rows}
    assert stored == accepted, (f"lost: {sorted(accepted - stored)}, "
                                f"stored without a 201: {sorted(stored - accepted)}")
    stored_per_team = Counter(team for _, team in rows)
    for team in TEAMS:  # each team got through, and each met its limit
        answers = Counter(s for t, s, _ in results if t == team)
        assert answers[201] >= 1 and answers[429] >= 1, (team, answers)
    over = sum(max(0, n - PER_MINUTE) for n in stored_per_team.values())
    print(f"\nload: {len(results)} submissions from {len(TEAMS)} teams: "  # noqa: T201
          f"{statuses[201]} stored, {statuses[429]} refused (429), lost 0, "
          f"stored over the per-minute limit: {over}")
