"""Team tokens on a real (SQLite) database: made once, kept only as their SHA-256, looked up
by it; team names are checked. Fast: no server process."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import Engine, select

from app.auth import create_team, team_for_token
from infra.db import session_scope
from infra.db_models import Team
from infra.repository import add_team
from schemas.errors import InvalidTransition


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
