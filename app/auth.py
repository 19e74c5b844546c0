"""Team API tokens (made once, shown once, stored as their SHA-256) and the request's team.

A request acts for the team whose token it carries (`Authorization: Bearer …`, API clients),
or whose page session its cookie names. The cookie never holds the token: login makes a random
session id, the database keeps only its SHA-256, and logout, token revocation and rotation end
the session server-side.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.deps import ServicesDep
from app.errors import ServiceError
from app.security import SESSION_COOKIE, bearer_token
from infra import repository as repo
from infra.db import session_scope
from infra.repository import BriefRow, Deliverable, Team

TOKEN_PREFIX = "mova_"
SESSION_TTL = timedelta(hours=12)  # a working day; the token itself stays valid longer
# A stored hash no token can match: real hashes are 64 hex digits, never "!".
REVOKED_PREFIX = "!revoked-"
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


def rotate_token(session: Session, team_name: str) -> str:
    """A new token for the team (the old one stops working, its page sessions end)."""
    team = repo.team_by_name(session, team_name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    repo.set_team_token(session, team, hash_token(token))
    repo.end_team_sessions(session, team)
    return token


def revoke_token(session: Session, team_name: str) -> None:
    """The team's token stops working and its page sessions end; `rotate` issues a new one."""
    team = repo.team_by_name(session, team_name)
    stored = REVOKED_PREFIX + secrets.token_hex(32)
    repo.set_team_token(session, team, stored[:64])
    repo.end_team_sessions(session, team)


def token_is_revoked(team: Team) -> bool:
    return team.token_sha256.startswith(REVOKED_PREFIX)


def start_session(session: Session, team: Team) -> str:
    """A new page session for the team; returns the cookie value (only its hash is kept)."""
    session_id = secrets.token_urlsafe(32)
    repo.add_web_session(session, hash_token(session_id), team,
                         datetime.now(UTC) + SESSION_TTL)
    return session_id


def end_session(session: Session, session_id: str | None) -> None:
    if session_id:
        repo.end_web_session(session, hash_token(session_id))


def team_for_session(session: Session, session_id: str | None) -> Team | None:
    if not session_id or len(session_id) > 100:
        return None
    return repo.team_for_web_session(session, hash_token(session_id))


def optional_team(request: Request, services: ServicesDep) -> Team | None:
    """The team of the request's Bearer token or page session, or None (the pages send it
    to /login)."""
    token = bearer_token(request.headers.get("authorization", ""))
    with session_scope(services.engine) as session:
        if token is not None:
            return team_for_token(session, token)
        return team_for_session(session, request.cookies.get(SESSION_COOKIE))


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
        # at most an id's length echoed: the path segment can be kilobytes
        raise ServiceError(404, f"{value[:40]!r} is not an id") from None


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
