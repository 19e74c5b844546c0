"""The review page: server-rendered HTML over the same functions as the JSON API.

Login takes a team token and keeps it in an HttpOnly, SameSite=Strict cookie, so the page's
`<video>` and `<track>` requests and its fetch() calls are authenticated like API calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.background import BackgroundTask

from app import views
from app.auth import TOKEN_COOKIE, OptionalTeamDep, own_brief, team_for_token
from app.deps import ServicesDep, SessionDep, SettingsDep
from app.errors import ServiceError
from app.orchestration import start_production
from app.submission import submit_request
from infra.db import session_scope
from infra.repository import Team
from schemas.errors import BriefInvalid
from tasks.services import Services

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
EXAMPLE_BRIEF = Path(__file__).resolve().parents[1] / "examples" / "brief.yaml"

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
    if team_for_token(session, token.strip()) is None:
        return _render(request, "login.html", status=401, error="unknown token")
    response = RedirectResponse("/briefs", status_code=303)
    response.set_cookie(TOKEN_COOKIE, token.strip(), httponly=True, samesite="strict",
                        max_age=30 * 24 * 3600)
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(TOKEN_COOKIE)
    return response


def _briefs_page(request: Request, services: Services, team: Team, status: int = 200,
                 **context: Any) -> Response:
    with session_scope(services.engine) as session:
        rows = views.team_briefs(session, team.name, limit=100)
    context.setdefault("brief_text", EXAMPLE_BRIEF.read_text())
    return _render(request, "briefs.html", status=status, team=team.name, briefs=rows,
                   **context)


@router.get("/briefs")
def briefs(request: Request, team: OptionalTeamDep, services: ServicesDep) -> Response:
    if team is None:
        return _to_login()
    return _briefs_page(request, services, team)


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
    cells = {(v["scene_id"], v["locale"], v["aspect"]): v for v in brief["deliverables"]}
    return _render(request, "campaign.html", team=team.name, brief=brief, cells=cells)
