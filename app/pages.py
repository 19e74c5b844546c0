"""The review page: server-rendered HTML over the same functions as the JSON API.

Login takes a team token and keeps it in an HttpOnly, SameSite=Strict cookie, so the page's
`<video>` and `<track>` requests and its fetch() calls are authenticated like API calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.background import BackgroundTask

from app import views
from app.auth import team_for_token
from infra.db import session_scope
from infra.db_models import Team
from infra.settings import Settings
from schemas.errors import BriefInvalid

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
EXAMPLE_BRIEF = Path(__file__).resolve().parents[1] / "examples" / "brief.yaml"


def add_pages(app: FastAPI, settings: Settings) -> None:
    from app.service import TOKEN_COOKIE, ServiceError, current_team

    services = app.state.services

    def page_team(request: Request) -> Team | None:
        try:
            team = current_team(request)
        except ServiceError:
            return None
        return team

    def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        return TEMPLATES.TemplateResponse(request, name, context, status_code=status)

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("/briefs", status_code=303)

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request) -> Response:
        return render(request, "login.html")

    @app.post("/login", include_in_schema=False)
    def login(request: Request, token: str = Form(...)) -> Response:
        with session_scope(services.engine) as session:
            team = team_for_token(session, token.strip())
        if team is None:
            return render(request, "login.html", status=401, error="unknown token")
        response = RedirectResponse("/briefs", status_code=303)
        response.set_cookie(TOKEN_COOKIE, token.strip(), httponly=True, samesite="strict",
                            max_age=30 * 24 * 3600)
        return response

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(TOKEN_COOKIE)
        return response

    def briefs_page(request: Request, team: Team, status: int = 200,
                    **context: Any) -> Response:
        with session_scope(services.engine) as session:
            rows = views.team_briefs(session, team.name, limit=100)
        context.setdefault("brief_text", EXAMPLE_BRIEF.read_text())
        return render(request, "briefs.html", status=status, team=team.name, briefs=rows,
                      **context)

    @app.get("/briefs", include_in_schema=False)
    def briefs(request: Request) -> Response:
        team = page_team(request)
        if team is None:
            return RedirectResponse("/login", status_code=303)
        return briefs_page(request, team)

    @app.post("/briefs", include_in_schema=False)
    async def submit_form(request: Request) -> Response:
        team = page_team(request)
        if team is None:
            return RedirectResponse("/login", status_code=303)
        try:
            brief_id = await app.state.submit_request(request, team, None)
        except BriefInvalid as err:
            problems = err.problems
            error = f"the brief has {len(problems)} problem(s)"
        except ServiceError as err:
            problems, error = err.problems or [], err.detail
            if err.status != 422:
                return briefs_page(request, team, status=err.status, error=error, problems=[])
        else:
            from app.orchestration import start_production

            return RedirectResponse(f"/briefs/{brief_id}", status_code=303,
                                    background=BackgroundTask(start_production, services,
                                                              brief_id))
        form = await request.form()
        text = form.get("brief")
        return briefs_page(request, team, status=422, error=error, problems=problems,
                           brief_text=text if isinstance(text, str) else "")

    @app.get("/briefs/{brief_id}", response_class=HTMLResponse, include_in_schema=False)
    def campaign_page(request: Request, brief_id: str) -> Response:
        team = page_team(request)
        if team is None:
            return RedirectResponse("/login", status_code=303)
        with session_scope(services.engine) as session:
            try:
                brief = views.brief_view(session, app.state.own_brief(session, brief_id, team),
                                         settings)
            except ServiceError as err:
                return render(request, "error.html", status=err.status, error=err.detail,
                              team=team.name)
        cells = {(v["scene_id"], v["locale"], v["aspect"]): v for v in brief["deliverables"]}
        return render(request, "campaign.html", team=team.name, brief=brief, cells=cells)
