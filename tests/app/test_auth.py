"""Team tokens and page sessions on a real (SQLite) database: made once, kept only as their
SHA-256, looked up by it, rotated and revoked; ownership of briefs and deliverables; the request's
team through the app in-process. Fast: no server process."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.auth import (
    create_team,
    end_session,
    own_brief,
    own_deliverable,
    revoke_token,
    rotate_token,
    start_session,
    team_for_session,
    team_for_token,
    token_is_revoked,
)
from app.errors import ServiceError
from app.security import SESSION_COOKIE
from app.service import create_app
from infra.db import session_scope
from infra.db_models import Team, WebSession
from infra.repository import (
    add_brief,
    add_team,
    add_web_session,
    end_team_sessions,
    ensure_deliverable,
)
from infra.settings import load_settings
from schemas.errors import InvalidTransition, NotFound
from tasks.services import Services


def test_a_token_is_returned_once_and_only_its_hash_is_kept(sqlite_engine: Engine) -> None:
    with session_scope(sqlite_engine) as session:
        token = create_team(session, "emea")
        other = create_team(session, "apac")
    assert token.startswith("mova_") and len(token) == len("mova_") + 43  # 32 random bytes
    assert other != token
    with session_scope(sqlite_engine) as session:
        row = session.scalars(select(Team).where(Team.name == "emea")).one()
        assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
        stored = [(t.name, t.token_sha256) for t in session.scalars(select(Team))]
    assert not any(token in value or other in value for _, value in stored)


def test_a_token_finds_its_own_team_and_nothing_else_does(sqlite_engine: Engine) -> None:
    with session_scope(sqlite_engine) as session:
        emea, apac = create_team(session, "emea"), create_team(session, "apac")
        # a team whose hash matches a token without the prefix: the prefix is required
        add_team(session, "legacy", hashlib.sha256(b"no-prefix").hexdigest())
    with session_scope(sqlite_engine) as session:
        found = team_for_token(session, emea)
        assert found is not None and found.name == "emea"
        found = team_for_token(session, apac)
        assert found is not None and found.name == "apac"
        for wrong in (None, "", "mova_", emea[:-1], emea + "x", emea.upper(), " " + emea,
                      "no-prefix", emea.removeprefix("mova_")):
            assert team_for_token(session, wrong) is None, wrong


@pytest.mark.parametrize("name", ["a", "emea", "emea-2", "0team", "a" * 63])
def test_valid_team_names(sqlite_engine: Engine, name: str) -> None:
    with session_scope(sqlite_engine) as session:
        token = create_team(session, name)
        found = team_for_token(session, token)
    assert found is not None and found.name == name


@pytest.mark.parametrize("name", ["", "Emea", "-emea", "em ea", "em_ea", "emea/x", "a" * 64,
                                  "emea\n"])
def test_invalid_team_names_are_refused_with_the_rule(sqlite_engine: Engine, name: str) -> None:
    with session_scope(sqlite_engine) as session:
        with pytest.raises(ValueError, match="lowercase letters, digits and dashes"):
            create_team(session, name)
        assert list(session.scalars(select(Team))) == []


def test_a_team_name_is_taken_once(sqlite_engine: Engine) -> None:
    with session_scope(sqlite_engine) as session:
        create_team(session, "emea")
        with pytest.raises(InvalidTransition, match="team 'emea' exists already"):
            create_team(session, "emea")


# ---- rotation, revocation and page sessions (direct calls: what the CLI and login do) ----------

def _team(session: Session, name: str) -> Team:
    return session.scalars(select(Team).where(Team.name == name)).one()


def _two_teams_signed_in(engine: Engine) -> tuple[str, str, str, str]:
    """Teams emea and apac, each with a page session: (emea token, apac token, emea cookie,
    apac cookie)."""
    with session_scope(engine) as session:
        tokens = [create_team(session, "emea"), create_team(session, "apac")]
        cookies = [start_session(session, _team(session, name)) for name in ("emea", "apac")]
    return tokens[0], tokens[1], cookies[0], cookies[1]


def test_rotation_issues_a_new_token_and_ends_the_old_one_and_its_sessions(
        sqlite_engine: Engine) -> None:
    old, other, page, kept_page = _two_teams_signed_in(sqlite_engine)
    with session_scope(sqlite_engine) as session:
        new = rotate_token(session, "emea")
    assert new.startswith("mova_") and len(new) == len("mova_") + 43 and new != old
    with session_scope(sqlite_engine) as session:
        assert team_for_token(session, old) is None
        found = team_for_token(session, new)
        assert found is not None and found.name == "emea"
        assert team_for_session(session, page) is None  # signed out everywhere
        assert _team(session, "emea").token_sha256 == hashlib.sha256(new.encode()).hexdigest()
        # the other team keeps its token and its page session
        assert team_for_token(session, other) is not None
        kept = team_for_session(session, kept_page)
        assert kept is not None and kept.name == "apac"
        with pytest.raises(NotFound, match="no team 'nobody'"):
            rotate_token(session, "nobody")


def test_revocation_stops_the_token_and_its_sessions_until_rotation(
        sqlite_engine: Engine) -> None:
    token, other, page, _ = _two_teams_signed_in(sqlite_engine)
    with session_scope(sqlite_engine) as session:
        assert not token_is_revoked(_team(session, "emea"))
    with session_scope(sqlite_engine) as session:
        revoke_token(session, "emea")
    with session_scope(sqlite_engine) as session:
        team = _team(session, "emea")
        assert token_is_revoked(team)
        # the stored value fits the column and can be no token's hash (hashes are hex only)
        assert len(team.token_sha256) == 64 and team.token_sha256.startswith("!revoked-")
        assert team_for_token(session, token) is None
        assert team_for_session(session, page) is None
        assert not token_is_revoked(_team(session, "apac"))
        assert team_for_token(session, other) is not None
    with session_scope(sqlite_engine) as session:
        revoke_token(session, "emea")
        again = _team(session, "emea").token_sha256
    assert again != team.token_sha256  # random each time: two revoked teams never share a value
    with session_scope(sqlite_engine) as session:
        fresh = rotate_token(session, "emea")
        assert not token_is_revoked(_team(session, "emea"))
        assert team_for_token(session, fresh) is not None


@pytest.fixture
def local_time_not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone five hours behind UTC: a naive `datetime.now()` where an
    aware UTC time belongs shows up as a wrong expiry."""
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_time_not_utc")
def test_a_page_session_is_random_hashed_and_lasts_a_working_day(sqlite_engine: Engine) -> None:
    before = datetime.now(UTC)
    with session_scope(sqlite_engine) as session:
        create_team(session, "emea")
        first = start_session(session, _team(session, "emea"))
        second = start_session(session, _team(session, "emea"))
    assert first != second and len(first) == 43  # 32 random bytes, URL-safe
    with session_scope(sqlite_engine) as session:
        rows = {row.id_sha256: row for row in session.scalars(select(WebSession))}
        assert set(rows) == {hashlib.sha256(s.encode()).hexdigest() for s in (first, second)}
        expires = rows[hashlib.sha256(first.encode()).hexdigest()].expires_at.replace(tzinfo=UTC)
        assert timedelta(hours=12) <= expires - before <= timedelta(hours=12, minutes=1)
        found = team_for_session(session, first)
        assert found is not None and found.name == "emea"
        for wrong in (None, "", first[:-1], first.upper(),
                      hashlib.sha256(first.encode()).hexdigest()):  # the stored value is no cookie
            assert team_for_session(session, wrong) is None, wrong


def test_ending_a_session_ends_only_that_one(sqlite_engine: Engine) -> None:
    with session_scope(sqlite_engine) as session:
        create_team(session, "emea")
        first = start_session(session, _team(session, "emea"))
        second = start_session(session, _team(session, "emea"))
    with session_scope(sqlite_engine) as session:
        end_session(session, first)
        end_session(session, None)  # logging out without a cookie is not an error
        end_session(session, "")
        end_session(session, "never-issued")
    with session_scope(sqlite_engine) as session:
        assert team_for_session(session, first) is None
        assert team_for_session(session, second) is not None


def test_an_expired_session_finds_no_team(sqlite_engine: Engine) -> None:
    with session_scope(sqlite_engine) as session:
        create_team(session, "emea")
        cookie = start_session(session, _team(session, "emea"))
        row = session.get(WebSession, hashlib.sha256(cookie.encode()).hexdigest())
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    with session_scope(sqlite_engine) as session:
        assert team_for_session(session, cookie) is None


def test_session_ids_longer_than_any_issued_are_not_looked_up(sqlite_engine: Engine) -> None:
    with session_scope(sqlite_engine) as session:
        create_team(session, "emea")
        team = _team(session, "emea")
        later = datetime.now(UTC) + timedelta(hours=1)
        for length in (100, 101):  # rows planted directly: no issued id is this long
            add_web_session(session, hashlib.sha256(("s" * length).encode()).hexdigest(),
                            team, later)
    with session_scope(sqlite_engine) as session:
        assert team_for_session(session, "s" * 100) is not None
        assert team_for_session(session, "s" * 101) is None


# ---- ownership: another team's brief or deliverable does not exist for you ---------------------

def _briefs_of_two_teams(engine: Engine) -> tuple[UUID, UUID, UUID, UUID]:
    """(emea's brief, emea's deliverable, apac's brief, apac's deliverable)."""
    ids: list[UUID] = []
    with session_scope(engine) as session:
        for i, team in enumerate(("emea", "apac")):
            create_team(session, team)
            brief = add_brief(session, campaign_slug="spring", brand="Aurora", raw="x",
                              sha256=f"{i:064d}", team=team)
            deliverable = ensure_deliverable(session, brief, name="s/en-US/16x9", scene_id="s",
                                             locale="en-US", aspect="16:9",
                                             render_key="k" * 64)
            ids += [brief.id, deliverable.id]
    return ids[0], ids[1], ids[2], ids[3]


def test_a_team_reaches_its_own_brief_and_deliverable_only(sqlite_engine: Engine) -> None:
    emea_brief, emea_item, apac_brief, apac_item = _briefs_of_two_teams(sqlite_engine)
    with session_scope(sqlite_engine) as session:
        emea, apac = _team(session, "emea"), _team(session, "apac")
        assert own_brief(session, str(emea_brief), emea).id == emea_brief
        assert own_deliverable(session, str(emea_item), emea).id == emea_item
        assert own_brief(session, str(apac_brief), apac).id == apac_brief
        assert own_deliverable(session, str(apac_item), apac).id == apac_item
        for call, foreign, what in ((own_brief, apac_brief, "brief"),
                                    (own_deliverable, apac_item, "deliverable")):
            with pytest.raises(ServiceError) as refused:
                call(session, str(foreign), emea)
            assert (refused.value.status, refused.value.detail) == (404, f"no {what} {foreign}")
        for call in (own_brief, own_deliverable):
            with pytest.raises(ServiceError) as refused:
                call(session, "not-an-id", emea)
            assert (refused.value.status, refused.value.detail) == (404,
                                                                    "'not-an-id' is not an id")
            with pytest.raises(ServiceError) as refused:  # a 10 KB id is not echoed back
                call(session, "x" * 10_000, emea)
            assert refused.value.detail == f"{'x' * 40!r} is not an id"


# ---- the request's team, through the app (in-process, SQLite) ----------------------------------

@dataclass
class TwoTeamApp:
    client: TestClient
    tokens: dict[str, str]  # team -> its token
    engine: Engine
    brief_team: dict[str, str]  # brief id -> its team

    def teams_listed(self, **headers: str) -> set[str]:
        """The teams whose briefs GET /api/briefs lists for these headers."""
        answer = self.client.get("/api/briefs", headers=headers)
        assert answer.status_code == 200, answer.text
        return {self.brief_team[brief["id"]] for brief in answer.json()}


@pytest.fixture
def app_with_two_teams(tmp_path: Path) -> Iterator[TwoTeamApp]:
    settings = load_settings({"MOVA_DATA_DIR": str(tmp_path)})
    with Services(settings) as services:
        emea_brief, _, apac_brief, _ = _briefs_of_two_teams(services.engine)
        with session_scope(services.engine) as session:
            tokens = {"emea": rotate_token(session, "emea"), "apac": rotate_token(session, "apac")}
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield TwoTeamApp(client, tokens, services.engine,
                             {str(emea_brief): "emea", str(apac_brief): "apac"})


def test_a_bearer_token_acts_for_its_team(app_with_two_teams: TwoTeamApp) -> None:
    app = app_with_two_teams
    for team, token in app.tokens.items():
        assert app.teams_listed(Authorization=f"Bearer {token}") == {team}
        # surrounding blanks are not part of the token
        assert app.teams_listed(Authorization=f"Bearer  {token} ") == {team}


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(app_with_two_teams: TwoTeamApp,
                                               scheme: str) -> None:
    # RFC 7235 §2.1: the authentication scheme is a case-insensitive token
    app = app_with_two_teams
    for team, token in app.tokens.items():
        assert app.teams_listed(Authorization=f"{scheme} {token}") == {team}
    # and a write carrying it is an API client's, not a cookie write needing an Origin
    with session_scope(app.engine) as session:
        app.client.cookies.set(SESSION_COOKIE, start_session(session, _team(session, "emea")))
    unknown = "/api/deliverables/00000000-0000-0000-0000-000000000000/approve"
    answer = app.client.post(unknown, json={},
                             headers={"Authorization": f"{scheme} {app.tokens['apac']}"})
    assert answer.status_code == 404, answer.text


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Bearer mova_unknown",
                                    "Basic dXNlcjpwYXNz", "Token {emea}", "{emea}"])
def test_no_known_token_is_401_with_the_bearer_challenge(app_with_two_teams: TwoTeamApp,
                                                          header: str | None) -> None:
    app = app_with_two_teams
    headers = {} if header is None else {"Authorization": header.format(**app.tokens)}
    answer = app.client.get("/api/briefs", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["detail"] == ("missing or unknown API token: send "
                                       "'Authorization: Bearer <team token>'")


def test_a_page_session_cookie_acts_for_its_team_and_a_token_header_comes_first(
        app_with_two_teams: TwoTeamApp) -> None:
    app = app_with_two_teams
    with session_scope(app.engine) as session:
        cookie = start_session(session, _team(session, "apac"))
    app.client.cookies.set(SESSION_COOKIE, cookie)
    assert app.teams_listed() == {"apac"}
    # a request that carries a token acts for the token's team, whatever its cookie says
    assert app.teams_listed(Authorization=f"Bearer {app.tokens['emea']}") == {"emea"}
    assert app.client.get("/api/briefs", headers={
        "Authorization": "Bearer mova_unknown"}).status_code == 401
    app.client.cookies.set(SESSION_COOKIE, "x" * 101)
    assert app.client.get("/api/briefs").status_code == 401


def test_ending_a_teams_page_sessions_says_how_many_ended_and_spares_other_teams(
        engine: Engine) -> None:
    _two_teams_signed_in(engine)
    with session_scope(engine) as session:
        start_session(session, _team(session, "emea"))  # signed in from a second browser
    with session_scope(engine) as session:
        emea, apac = _team(session, "emea"), _team(session, "apac")
        assert end_team_sessions(session, emea) == 2
        assert end_team_sessions(session, emea) == 0
        assert session.scalar(select(func.count()).select_from(WebSession).where(
            WebSession.team_id == apac.id)) == 1
