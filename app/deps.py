"""FastAPI dependencies: the adapters (built once per app) and one session per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from infra.db import session_scope
from infra.settings import Settings
from tasks.services import Services


def get_services(request: Request) -> Services:
    """The app's adapters, made by create_app and closed when the app shuts down."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """One transaction around the route; committed before the response is sent."""
    with session_scope(services.engine) as session:
        yield session


# scope="function": commit (or roll back) when the route returns, so a failed commit is the
# route's error and a client's next request sees the change.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
