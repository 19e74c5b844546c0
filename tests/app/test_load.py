"""Five teams submitting at once to one service on PostgreSQL (issue 12, part 6): every
submission is either stored (201, and its brief is in the database) or refused with 429;
none is lost, none stored twice, and no team ends over its limits: the per-minute limit and
the daily GPU-seconds quota are checked and the brief stored in one transaction, so a burst
cannot slip past a check made before its siblings were stored. Bounded: TEAMS ×
POSTS_PER_TEAM requests, loopback only.

Two teams send small briefs (one variant): only the per-minute limit can stop them. Three send
the example brief (four renders): the daily quota stops them first."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from infra.db import make_engine, session_scope
from infra.repository import BriefRow
from infra.settings import load_settings
from schemas.brief import load_brief
from tasks.submission import brief_cost
from tests.app.conftest import Service
from tests.app.test_service_api import EXAMPLE
from tests.tasks.test_faults import one_variant_brief

pytestmark = pytest.mark.slow
SMALL_TEAMS = ("t1", "t2")
LARGE_TEAMS = ("t3", "t4", "t5")
TEAMS = SMALL_TEAMS + LARGE_TEAMS
POSTS_PER_TEAM = 8
PER_MINUTE = 5  # below POSTS_PER_TEAM: the small teams meet it during the burst
LARGE_PER_DAY = 3  # the quota holds this many example briefs (and a half): below PER_MINUTE

BRIEFS = {team: one_variant_brief(f"load-{team}") if team in SMALL_TEAMS else EXAMPLE
          for team in TEAMS}
COST = {team: brief_cost(load_brief(text), load_settings({})).gpu_seconds
        for team, text in BRIEFS.items()}
QUOTA = (LARGE_PER_DAY + 0.5) * COST[LARGE_TEAMS[0]]


@pytest.fixture(scope="module")
def service(service_factory: Callable[..., Service], module_postgres_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # which limit stops which team, as the module docstring says
    assert POSTS_PER_TEAM * max(COST[t] for t in SMALL_TEAMS) < QUOTA
    assert LARGE_PER_DAY < PER_MINUTE
    yield service_factory(tmp_path_factory.mktemp("load"), module_postgres_url, teams=TEAMS,
                          worker=False, API_SUBMISSIONS_PER_MINUTE=str(PER_MINUTE),
                          TEAM_GPU_SECONDS_PER_DAY=str(QUOTA))


def _submit(service: Service, team: str, n: int) -> tuple[str, int, dict[str, Any]]:
    brief = yaml.safe_load(BRIEFS[team])
    brief["seed"] = 1000 * TEAMS.index(team) + n  # distinct content: never a duplicate
    with httpx.Client(base_url=service.url, timeout=120, headers={
            "Authorization": f"Bearer {service.tokens[team]}"}) as client:
        response = client.post("/api/briefs", json=brief)
    return team, response.status_code, response.json()


def test_concurrent_submissions_of_five_teams_are_stored_or_refused_none_lost_none_over(
        service: Service) -> None:
    jobs = [(team, n) for n in range(POSTS_PER_TEAM) for team in TEAMS]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda job: _submit(service, *job), jobs))
    seconds = time.monotonic() - started
    # inside one window of the per-minute limit, or a team may rightly store more than it
    assert seconds < 50, f"the burst took {seconds:.0f} s, longer than the limit's window"
    statuses = Counter(status for _, status, _ in results)
    assert set(statuses) <= {201, 429}, f"answers other than stored/refused: {statuses}"
    accepted = {body["id"] for _, status, body in results if status == 201}
    assert len(accepted) == statuses[201], "one id was answered twice"
    engine = make_engine(service.database_url)
    with session_scope(engine) as session:
        rows = list(session.execute(select(BriefRow.id, BriefRow.team,
                                           BriefRow.gpu_seconds_estimate)))
    engine.dispose()
    stored = {str(brief_id) for brief_id, _, _ in rows}
    assert stored == accepted, (f"lost: {sorted(accepted - stored)}, "
                                f"stored without a 201: {sorted(stored - accepted)}")

    # none over quota: what the database holds per team, not what the answers said
    stored_per_team: Counter[str] = Counter()
    gpu_per_team: defaultdict[str, float] = defaultdict(float)
    for _, team, estimate in rows:
        stored_per_team[team] += 1
        gpu_per_team[team] += estimate
    for team in TEAMS:
        assert stored_per_team[team] <= PER_MINUTE, (team, stored_per_team)
        assert gpu_per_team[team] <= QUOTA, (team, gpu_per_team[team], QUOTA)
        assert gpu_per_team[team] == pytest.approx(stored_per_team[team] * COST[team])
        answers = Counter(s for t, s, _ in results if t == team)
        assert answers[201] >= 1 and answers[429] >= 1, (team, answers)  # each met a limit
    refusals = {team: {"quota" if "TEAM_GPU_SECONDS_PER_DAY" in body["detail"] else "rate"
                       for t, status, body in results if t == team and status == 429}
                for team in TEAMS}
    for team in LARGE_TEAMS:  # the quota, not the rate limit, stopped the large briefs
        assert refusals[team] == {"quota"}, (team, refusals[team])
        assert stored_per_team[team] == LARGE_PER_DAY, (team, stored_per_team)
    for team in SMALL_TEAMS:
        assert refusals[team] == {"rate"}, (team, refusals[team])
    print(f"\nload: {len(results)} submissions from {len(TEAMS)} teams in {seconds:.1f} s: "  # noqa: T201 - the figures of the closing note
          f"{statuses[201]} stored, {statuses[429]} refused (429), lost 0; stored per team "
          f"{dict(sorted(stored_per_team.items()))}, GPU-seconds per team "
          f"{ {t: round(g, 3) for t, g in sorted(gpu_per_team.items())} } "
          f"(quota {QUOTA:g}, over quota: 0; per-minute limit {PER_MINUTE}, over: 0)")
