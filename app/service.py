"""The review service: the JSON API for briefs, deliverables and review decisions.

`create_app(settings)` builds the FastAPI app (`mova-ads serve` runs it under uvicorn); the
HTML pages in app/pages.py call the same functions. Every route acts for one team, named by
its token (`Authorization: Bearer …`, or the page's cookie); another team's ids answer 404.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path, PurePath
from typing import Annotated, Any
from uuid import UUID

from fastapi import BackgroundTasks, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import views
from app.auth import team_for_token
from infra import repository as repo
from infra.db import session_scope
from infra.db_models import BriefRow, Deliverable, Team
from infra.settings import Settings
from infra.storage_errors import StorageError
from schemas.brief import MAX_BRIEF_BYTES
from schemas.errors import BriefInvalid, InvalidTransition, NotFound, TransientError
from tasks.deliver import published_key
from tasks.services import Services

log = logging.getLogger(__name__)

TOKEN_COOKIE = "mova_token"
YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml",
              "text/plain"}
SUBMIT_WINDOW = timedelta(minutes=1)


class ServiceError(Exception):
    """An HTTP error with a readable message (and, for 422, the problems with their paths)."""

    def __init__(self, status: int, detail: str, problems: list[tuple[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.problems, self.headers = status, detail, problems, headers


def error_body(detail: str, problems: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": detail}
    if problems is not None:
        body["problems"] = [{"path": path, "message": message} for path, message in problems]
    return body


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, whether announced by Content-Length
    or streamed; nothing of such a request reaches a route."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(error_body(
            f"request body is larger than the limit of {self.limit:,} bytes "
            "(API_MAX_BODY_BYTES)"), status_code=413)
        await response({"type": "http"}, _no_receive, send)


class _TooLarge(Exception):
    pass


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class Decision(BaseModel):
    comment: str = Field("", max_length=2000)
    reviewer: str | None = Field(None, max_length=100,
                                 description="Who decides; default: the team's name.")


class Rejection(Decision):
    comment: str = Field(min_length=1, max_length=2000,
                         description="Why: the team producing the re-render reads it.")
    rerender: bool = Field(False, description="Render this variant again with a new seed.")


def current_team(request: Request) -> Team:
    """The team whose token the request carries (Bearer header, or the page's cookie)."""
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") \
        else request.cookies.get(TOKEN_COOKIE)
    with session_scope(request.app.state.services.engine) as session:
        team = team_for_token(session, token)
    if team is None:
        raise ServiceError(401, "missing or unknown API token: send "
                                "'Authorization: Bearer <team token>'",
                           headers={"WWW-Authenticate": "Bearer"})
    return team


TeamDep = Annotated[Team, Depends(current_team)]


def create_app(settings: Settings) -> FastAPI:
    services = Services(settings)
    app = FastAPI(title="MOVA ad factory: review service", version="1",
                  description="Submit campaign briefs, follow their production, play and "
                              "approve or reject every localized variant.")
    app.state.services = services
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    _add_error_handlers(app)

    @contextmanager
    def session() -> Iterator[Session]:
        with session_scope(services.engine) as s:
            yield s

    @app.get("/api/health", tags=["service"])
    def health() -> dict[str, str]:
        with session() as s:
            s.execute(select(1))
        return {"status": "ok"}

    @app.post("/api/briefs", status_code=201, tags=["briefs"])
    async def submit(request: Request, team: TeamDep, background: BackgroundTasks,
                     requires_approval: Annotated[bool | None, Query(
                         description="Override the brief's requires_approval")] = None
                     ) -> JSONResponse:
        """Submit a brief: a YAML or JSON body, or a multipart form with a `brief` file (or
        text) and the `first_frames` images it names. 422 lists every problem with its path."""
        brief_id = await submit_request(request, team, requires_approval)
        from app.orchestration import start_production

        background.add_task(start_production, services, brief_id)
        return JSONResponse({"id": str(brief_id), "status": "submitted",
                             "url": f"/briefs/{brief_id}"}, status_code=201,
                            headers={"Location": f"/api/briefs/{brief_id}"},
                            background=background)

    async def submit_request(request: Request, team: Team,
                             requires_approval: bool | None) -> UUID:
        with session() as s:
            recent = repo.recent_submissions(s, team.name, SUBMIT_WINDOW)
        if recent >= settings.api_submissions_per_minute:
            raise ServiceError(429, f"team {team.name} submitted {recent} briefs in the last "
                                    f"minute (limit {settings.api_submissions_per_minute}); "
                                    "try again in a minute", headers={"Retry-After": "60"})
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        with tempfile.TemporaryDirectory(prefix="mova-upload-") as uploads:
            # The brief's first_frame names resolve only among the uploaded files, never
            # against the server's own folders.
            if content_type == "multipart/form-data":
                raw, fmt, approval = await _read_form(request, Path(uploads))
                requires_approval = approval if requires_approval is None else \
                    requires_approval
            elif content_type == "application/json":
                raw, fmt = await request.body(), "json"
            elif content_type in YAML_TYPES or content_type == "":
                raw, fmt = await request.body(), "yaml"
            else:
                raise ServiceError(415, f"unsupported Content-Type {content_type!r}: send "
                                        "YAML, JSON or a multipart form")
            if len(raw) > MAX_BRIEF_BYTES:
                raise ServiceError(413, f"a brief is at most {MAX_BRIEF_BYTES:,} bytes; this "
                                        f"one has {len(raw):,}")
            from tasks.ingest import submit_brief

            brief_id: UUID = await run_in_threadpool(
                submit_brief, services, raw, fmt=fmt, base_dir=Path(uploads), team=team.name,
                requires_approval=requires_approval)
            return brief_id

    app.state.submit_request = submit_request

    def own_brief(s: Session, brief_id: str, team: Team) -> BriefRow:
        row = s.get(BriefRow, _uuid(brief_id))
        if row is None or row.team != team.name:  # another team's brief: not even its existence
            raise ServiceError(404, f"no brief {brief_id}")
        return row

    def own_deliverable(s: Session, deliverable_id: str, team: Team) -> Deliverable:
        row = s.get(Deliverable, _uuid(deliverable_id))
        if row is None or row.brief.team != team.name:
            raise ServiceError(404, f"no deliverable {deliverable_id}")
        return row

    app.state.own_brief = own_brief

    @app.get("/api/briefs", tags=["briefs"])
    def list_briefs(team: TeamDep) -> list[dict[str, Any]]:
        """The team's briefs, newest first."""
        with session() as s:
            return views.team_briefs(s, team.name)

    @app.get("/api/briefs/{brief_id}", tags=["briefs"])
    def read_brief(brief_id: str, team: TeamDep) -> dict[str, Any]:
        """A brief, its campaign status and every variant's progress."""
        with session() as s:
            return views.brief_view(s, own_brief(s, brief_id, team), settings)

    @app.get("/api/briefs/{brief_id}/deliverables", tags=["deliverables"])
    def list_deliverables(brief_id: str, team: TeamDep) -> list[dict[str, Any]]:
        with session() as s:
            row = own_brief(s, brief_id, team)
            return [views.variant_view(s, d) for d in row.deliverables]

    @app.get("/api/deliverables/{deliverable_id}", tags=["deliverables"])
    def read_deliverable(deliverable_id: str, team: TeamDep) -> dict[str, Any]:
        with session() as s:
            return views.variant_view(s, own_deliverable(s, deliverable_id, team))

    @app.get("/api/deliverables/{deliverable_id}/files/{kind}", tags=["deliverables"],
             response_class=Response)
    def stream_file(deliverable_id: str, kind: str, team: TeamDep) -> Response:
        """A published or in-review file (video, video_burned, captions_vtt, captions_srt,
        manifest). Local storage is served with HTTP range support (players can seek); S3
        answers with a redirect to a presigned URL."""
        with session() as s:
            row = own_deliverable(s, deliverable_id, team)
            if kind not in views.files_of(s, row):
                raise ServiceError(404, f"deliverable {row.name} ({row.status}) has no "
                                        f"{kind} file to show")
            key = published_key(row, row.brief.campaign.slug, kind,
                                review=row.status in views.IN_REVIEW_AREA)
        stored = services.store.head(key)
        if stored is None:
            raise ServiceError(404, f"{key} is missing from storage")
        local = services.store.local_path(key)  # exists: head() just found it
        if local is not None:
            return FileResponse(local, media_type=stored.content_type,
                                filename=PurePath(key).name, content_disposition_type="inline")
        url = services.store.presigned_url(key, expires_s=3600)
        assert url is not None  # only local storage has no URL of its own
        return RedirectResponse(url, status_code=307)

    @app.post("/api/deliverables/{deliverable_id}/approve", tags=["review"])
    def approve(deliverable_id: str, decision: Decision, team: TeamDep) -> dict[str, Any]:
        """Approve a variant in review: it is published to the campaign layout."""
        from tasks.review import approve as approve_variant

        with session() as s:
            row_id = own_deliverable(s, deliverable_id, team).id
        approve_variant(services, row_id, team=team.name,
                        reviewer=decision.reviewer or team.name, comment=decision.comment)
        with session() as s:
            return views.variant_view(s, repo.get(s, Deliverable, row_id))

    @app.post("/api/deliverables/{deliverable_id}/reject", tags=["review"])
    def reject(deliverable_id: str, decision: Rejection, team: TeamDep) -> dict[str, Any]:
        """Reject a variant in review; `rerender` renders it again with a new seed (the other
        variants are left as they are)."""
        from tasks.review import reject as reject_variant

        with session() as s:
            row_id = own_deliverable(s, deliverable_id, team).id
        reject_variant(services, row_id, team=team.name,
                       reviewer=decision.reviewer or team.name, comment=decision.comment,
                       rerender=decision.rerender)
        with session() as s:
            return views.variant_view(s, repo.get(s, Deliverable, row_id))

    from app.pages import add_pages

    add_pages(app, settings)
    return app


def _uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise ServiceError(404, f"{value!r} is not an id") from None


async def _read_form(request: Request, uploads: Path) -> tuple[bytes, str, bool | None]:
    """The brief (file or text field) from a multipart form; uploaded images are saved under
    `uploads` by their file names."""
    form = await request.form(max_files=60, max_fields=20)
    brief: Any = form.get("brief")
    if isinstance(brief, UploadFile):
        raw = await brief.read()
        fmt = "json" if (brief.filename or "").lower().endswith(".json") else "yaml"
    elif isinstance(brief, str) and brief.strip():
        raw, fmt = brief.encode(), "json" if brief.lstrip().startswith("{") else "yaml"
    else:
        raise ServiceError(422, "the form has no brief", [("brief", "give a file or text")])
    for upload in form.getlist("first_frames"):
        if isinstance(upload, UploadFile) and upload.filename:
            name = PurePath(upload.filename).name
            (uploads / name).write_bytes(await upload.read())
    approval = form.get("requires_approval")
    return raw, fmt, (str(approval).lower() in ("on", "true", "1")) if approval is not None \
        else None


def _add_error_handlers(app: FastAPI) -> None:
    def handler(status: int, detail: Callable[[Exception], str]
                ) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def respond(request: Request, err: Exception) -> JSONResponse:
            return JSONResponse(error_body(detail(err)), status_code=status)
        return respond

    async def service_error(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, ServiceError)
        return JSONResponse(error_body(err.detail, err.problems), status_code=err.status,
                            headers=err.headers)

    async def brief_invalid(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, BriefInvalid)
        return JSONResponse(error_body(f"the brief has {len(err.problems)} problem(s)",
                                       err.problems), status_code=422)

    async def request_invalid(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RequestValidationError)
        problems = [(".".join(str(p) for p in e["loc"] if p != "body") or "(body)", e["msg"])
                    for e in err.errors()]
        return JSONResponse(error_body("the request is not valid", problems), status_code=422)

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(BriefInvalid, brief_invalid)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(NotFound, handler(404, str))
    app.add_exception_handler(InvalidTransition, handler(409, str))
    for transient in (TransientError, StorageError):
        app.add_exception_handler(transient, handler(
            503, lambda err: f"storage or a service is unavailable, try again: {err}"))
