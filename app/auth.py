"""Team API tokens: made once, shown once, stored as their SHA-256."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy.orm import Session

from infra import repository as repo
from infra.db_models import Team

TOKEN_PREFIX = "mova_"
TEAM_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


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
