"""Team API tokens (made once, shown once, stored as their SHA-256) and the request's team.

A request acts for the team whose token it carries: `Authorization: Bearer …` from API
clients, or the HttpOnly cookie the review page's login sets.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.deps import ServicesDep
from app.errors import ServiceError
from infra import repository as repo
from infra.db import session_scope
from infra.repository import BriefRow, Deliverable, Team

TOKEN_PREFIX = "mova_"
TOKEN_COOKIE = "mova_token"
TEAM_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # used with fullmatch: no trailing newline


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_team(session: Session, name: str) -> str:
    """Add a team and return its token (only its hash is kept: print it now or lose it)."""
    if not TEAM_NAME.fullmatch(name):  # match() with $ would let a trailing newline through
        raise ValueError(f"team name {name!r}: use lowercase letters, digits and dashes")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    repo.add_team(session, name, hash_token(token))
    return token


def team_for_token(session: Session, token: str | None) -> Team | None:
    if not token or not token.startswith(TOKEN_PREFIX):
        return None
    return repo.team_by_token_hash(session, hash_token(token))


def _request_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip()
    return request.cookies.get(TOKEN_COOKIE)


def optional_team(request: Request, services: ServicesDep) -> Team | None:
    """The team whose token the request carries, or None (the pages send it to /login)."""
    with session_scope(services.engine) as session:
        return team_for_token(session, _request_token(request))


def current_team(team: Annotated[Team | None, Depends(optional_team)]) -> Team:
    """The request's team; 401 without a known token."""
    if team is None:
        raise ServiceError(401, "missing or unknown API token: send "
                                "'Authorization: Bearer <team token>'",
                           headers={"WWW-Authenticate": "Bearer"})
    return team


TeamDep = Annotated[Team, Depends(current_team)]
OptionalTeamDep = Annotated[Team | None, Depends(optional_team)]


def _uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise ServiceError(404, f"{value!r} is not an id") from None


def own_brief(session: Session, brief_id: str, team: Team) -> BriefRow:
    """The team's brief; another team's brief answers 404, not even its existence shows."""
    row = repo.team_brief(session, team.name, _uuid(brief_id))
    if row is None:
        raise ServiceError(404, f"no brief {brief_id}")
    return row


def own_deliverable(session: Session, deliverable_id: str, team: Team) -> Deliverable:
    row = repo.team_deliverable(session, team.name, _uuid(deliverable_id))
    if row is None:
        raise ServiceError(404, f"no deliverable {deliverable_id}")
    return row
