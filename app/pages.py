"""The review page: server-rendered HTML over the same functions as the JSON API.

Login takes a team token and starts a server-side session: the HttpOnly, SameSite=Strict
cookie (Secure when served over HTTPS) holds a random session id, never the token, so the
page's `<video>` and `<track>` requests and its fetch() calls are authenticated like API calls
and logout really ends the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.background import BackgroundTask

from app import views
from app.auth import (
    SESSION_TTL,
    OptionalTeamDep,
    end_session,
    own_brief,
    start_session,
    team_for_token,
)
from app.deps import ServicesDep, SessionDep, SettingsDep
from app.errors import ServiceError
from app.orchestration import start_production
from app.security import SESSION_COOKIE
from app.submission import submit_request
from infra import repository as repo
from infra.db import session_scope
from infra.repository import Team
from schemas.errors import BriefInvalid
from tasks.services import Services

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
EXAMPLE_BRIEF = Path(__file__).resolve().parents[1] / "examples" / "brief.yaml"
BRIEFS_PER_PAGE = 100

router = APIRouter(include_in_schema=False)


def _render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status)


def _to_login() -> Response:
    return RedirectResponse("/login", status_code=303)


@router.get("/")
def home() -> Response:
    return RedirectResponse("/briefs", status_code=303)


@router.get("/login")
def login_page(request: Request) -> Response:
    return _render(request, "login.html")


@router.post("/login")
def login(request: Request, session: SessionDep, token: str = Form(...)) -> Response:
    team = team_for_token(session, token.strip())
    if team is None:
        return _render(request, "login.html", status=401, error="unknown token")
    end_session(session, request.cookies.get(SESSION_COOKIE))  # no fixation of an old id
    response = RedirectResponse("/briefs", status_code=303)
    # Secure when the page is served over HTTPS (uvicorn sets the scheme from a trusted
    # proxy's X-Forwarded-Proto); on plain-HTTP loopback a Secure cookie would never be sent.
    response.set_cookie(SESSION_COOKIE, start_session(session, team), httponly=True,
                        samesite="strict", secure=request.url.scheme == "https",
                        max_age=int(SESSION_TTL.total_seconds()))
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Response:
    end_session(session, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response


def _briefs_page(request: Request, services: Services, team: Team, status: int = 200,
                 page: int = 1, **context: Any) -> Response:
    with session_scope(services.engine) as session:
        pages = -(-repo.team_brief_count(session, team.name) // BRIEFS_PER_PAGE)
        # A page past the last (an old link, a typed number) shows the last one; its offset
        # could otherwise be too large for the database's integers.
        page = min(page, max(pages, 1))
        rows = views.team_briefs(session, team.name, limit=BRIEFS_PER_PAGE,
                                 offset=(page - 1) * BRIEFS_PER_PAGE)
    context.setdefault("brief_text", EXAMPLE_BRIEF.read_text())
    return _render(request, "briefs.html", status=status, team=team.name, briefs=rows,
                   page=page, pages=pages, **context)


@router.get("/briefs")
def briefs(request: Request, team: OptionalTeamDep, services: ServicesDep,
           page: Annotated[int, Query(ge=1)] = 1) -> Response:
    if team is None:
        return _to_login()
    return _briefs_page(request, services, team, page=page)


@router.post("/briefs")
async def submit_form(request: Request, team: OptionalTeamDep,
                      services: ServicesDep) -> Response:
    if team is None:
        return _to_login()
    try:
        brief_id = (await submit_request(services, request, team, None)).brief_id
    except BriefInvalid as err:
        problems = err.problems
        error = f"the brief has {len(problems)} problem(s)"
    except ServiceError as err:
        problems, error = err.problems or [], err.detail
        if err.status != 422:
            return _briefs_page(request, services, team, status=err.status, error=error,
                                problems=[])
    else:
        return RedirectResponse(f"/briefs/{brief_id}", status_code=303,
                                background=BackgroundTask(start_production, services,
                                                          brief_id))
    form = await request.form()
    text = form.get("brief")
    return _briefs_page(request, services, team, status=422, error=error, problems=problems,
                        brief_text=text if isinstance(text, str) else "")


@router.get("/briefs/{brief_id}", response_class=HTMLResponse)
def campaign_page(request: Request, brief_id: str, team: OptionalTeamDep,
                  session: SessionDep, settings: SettingsDep) -> Response:
    if team is None:
        return _to_login()
    try:
        brief = views.brief_view(session, own_brief(session, brief_id, team), settings)
    except ServiceError as err:
        return _render(request, "error.html", status=err.status, error=err.detail,
                       team=team.name)
    return _render(request, "campaign.html", team=team.name, brief=brief)
