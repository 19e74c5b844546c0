"""The review service's JSON API: briefs, deliverables and review decisions.

Every route acts for one team, named by its token (`Authorization: Bearer …`, or the page's
cookie); another team's ids answer 404.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from app import views
from app.auth import TeamDep, own_brief, own_deliverable
from app.deps import ServicesDep, SessionDep, SettingsDep
from app.errors import ServiceError, error_responses
from app.orchestration import start_production
from app.submission import submit_request
from infra import repository as repo
from infra.db import session_scope
from schemas.brief import readable_text
from tasks import review
from tasks.deliver import own_file_key

router = APIRouter(prefix="/api")


class Decision(BaseModel):
    # Surrounding blanks are no text: a blank required comment is missing (422), a blank
    # reviewer is no name, so the team's name stands in as when it is left out. An unknown
    # field is refused (422): a misspelt "rerendr" would otherwise make a rejection final.
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    comment: str = Field("", max_length=2000)
    reviewer: str | None = Field(None, max_length=100,
                                 description="Who decides; default (or blank): the team's name.")
    video_id: UUID | None = Field(None, description=(
        "The video the reviewer watched (the variant's `video_id`): when the variant was "
        "rendered again since, the decision is 409."))

    @field_validator("comment", "reviewer")
    @classmethod
    def _readable(cls, text: str | None) -> str | None:
        # Blank is left out (checked above); anything else is kept as typed, line breaks too,
        # but must be readable: a NUL cannot be stored (PostgreSQL refuses it), and control
        # or zero-width characters alone are no reason and no name.
        if text:
            readable_text(text)
        return text


class Rejection(Decision):
    comment: str = Field(min_length=1, max_length=2000,
                         description="Why: the team producing the re-render reads it.")
    rerender: bool = Field(False, description="Render this variant again with a new seed.")
    scene_id: str | None = Field(None, max_length=63, description=(
        "On a spot, with `rerender`: the one scene to render again (next seed); the spot is "
        "then assembled again. Default with `rerender`: every scene of the spot."))

    @field_validator("scene_id")
    @classmethod
    def _only_with_rerender(cls, scene_id: str | None, info: ValidationInfo) -> str | None:
        # Without a re-render the spot is rejected for good: a scene_id would be ignored.
        # (No `rerender` in the data: it was invalid, and that is the error to read.)
        if scene_id is not None and not info.data.get("rerender", True):
            raise PydanticCustomError("scene_id_without_rerender",
                                      "scene_id re-renders one scene; it needs rerender: true")
        return scene_id


# The error statuses each kind of route answers (app/errors.py's ErrorBody). 422 on the
# reads too: FastAPI declares it on any route with parameters, and this replaces its shape.
READ_ERRORS = error_responses(401, 404, 422)
DECISION_ERRORS = error_responses(400, 401, 403, 404, 409, 413, 415, 422, 503)
SUBMIT_ERRORS = error_responses(400, 401, 403, 413, 415, 422, 429, 503)
# The route reads its body itself (three formats), so FastAPI cannot infer it.
BRIEF_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/yaml": {"schema": {"type": "string", "description": (
        "The brief as YAML (also as application/x-yaml, text/yaml).")}},
    "application/json": {"schema": {"type": "object", "description": "The brief as JSON."}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["brief"], "properties": {
        "brief": {"type": "string", "format": "binary", "description": (
            "The brief: a YAML or JSON file (.json is read as JSON), or its text.")},
        "first_frames": {"type": "array", "items": {"type": "string", "format": "binary"},
                         "description": "The files the brief names (first-frame images, the "
                                        "brand kit's logo and font), by file name."},
        "requires_approval": {"type": "boolean", "description": (
            "Override the brief's requires_approval: `true`, `on`, `1` or `yes` hold it; "
            "`false`, `off`, `0` or `no` do not; anything else is 422.")}}}},
}}}


@router.get("/health", tags=["service"])
def health(session: SessionDep) -> dict[str, str]:
    repo.ping(session)
    return {"status": "ok"}


@router.post("/briefs", status_code=201, tags=["briefs"], openapi_extra=BRIEF_BODY,
             responses={200: {"description": "The team submitted this brief before: its id."},
                        **SUBMIT_ERRORS})
async def submit(request: Request, team: TeamDep, services: ServicesDep,
                 background: BackgroundTasks,
                 requires_approval: Annotated[bool | None, Query(
                     description="Override the brief's requires_approval")] = None
                 ) -> JSONResponse:
    """Submit a brief: a YAML or JSON body, or a multipart form with a `brief` file (or
    text) and the `first_frames` files it names (first-frame images, the brand kit's logo and
    font). 201 with the new brief's id and its cost
    estimate; 200 with the earlier brief's id when the team submitted the same brief before
    (same content, or the same `Idempotency-Key` header). 422 lists the first 100 problems
    with their paths and `total`; 429 past the team's per-minute limit or daily GPU budget."""
    submitted = await submit_request(services, request, team, requires_approval)
    brief_id = submitted.brief_id
    cost = submitted.cost.model_dump(mode="json") if submitted.cost is not None else None
    if submitted.created:
        background.add_task(start_production, services, brief_id)
    return JSONResponse({"id": str(brief_id), "status": "submitted" if submitted.created
                         else "exists", "url": f"/briefs/{brief_id}", "cost": cost},
                        status_code=201 if submitted.created else 200,
                        headers={"Location": f"/api/briefs/{brief_id}"},
                        background=background)


@router.get("/briefs", tags=["briefs"], responses=error_responses(401))
def list_briefs(team: TeamDep, session: SessionDep) -> list[dict[str, Any]]:
    """The team's briefs, newest first."""
    return views.team_briefs(session, team.name)


@router.get("/briefs/{brief_id}", tags=["briefs"], responses=READ_ERRORS)
def read_brief(brief_id: str, team: TeamDep, session: SessionDep,
               settings: SettingsDep) -> dict[str, Any]:
    """A brief, its campaign status and every variant's progress."""
    return views.brief_view(session, own_brief(session, brief_id, team), settings)


@router.get("/briefs/{brief_id}/deliverables", tags=["deliverables"], responses=READ_ERRORS)
def list_deliverables(brief_id: str, team: TeamDep, session: SessionDep
                      ) -> list[dict[str, Any]]:
    row = own_brief(session, brief_id, team)
    return [views.variant_view(session, d) for d in repo.deliverables_that_count(row)]


@router.get("/deliverables/{deliverable_id}", tags=["deliverables"], responses=READ_ERRORS)
def read_deliverable(deliverable_id: str, team: TeamDep, session: SessionDep
                     ) -> dict[str, Any]:
    return views.variant_view(session, own_deliverable(session, deliverable_id, team))


class RangedFile(FileResponse):
    """A local file served with HTTP range support, whose refused ranges are answered as the
    service's other errors (Starlette answers them in plain text)."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []  # no range: the whole file, as RFC 9110 §14.2 allows
        except RangeNotSatisfiable as err:
            # raised before the answer starts, so the app's ServiceError handler answers it
            raise ServiceError(416, f"range {http_range[:80]!r} starts past the file's end "
                                    f"(it has {file_size:,} bytes)",
                               headers={"Content-Range": f"bytes */{file_size}"}) from err


@router.get("/deliverables/{deliverable_id}/files/{kind}", tags=["deliverables"],
            response_class=Response, responses={
                206: {"description": "The asked byte range (`Range` header)."},
                307: {"description": "S3 storage: a redirect to a presigned URL."},
                **READ_ERRORS, **error_responses(416, 503)})
def stream_file(deliverable_id: str, kind: str, team: TeamDep, services: ServicesDep,
                session: SessionDep) -> Response:
    """A published or in-review file (video, video_burned, captions_vtt, captions_srt,
    manifest). Local storage is served with HTTP range support (players can seek; a range
    past the end is 416, a malformed `Range` is ignored); S3 answers with a redirect to a
    presigned URL."""
    row = own_deliverable(session, deliverable_id, team)
    if kind not in views.files_of(session, row):
        raise ServiceError(404, f"deliverable {row.name} ({row.status}) has no "
                                f"{kind} file to show")
    # its own file, not what its published key holds now (a later brief of the campaign may
    # have published over it)
    key = own_file_key(session, row, kind)
    stored = services.store.head(key)
    if stored is None:
        raise ServiceError(404, f"{key} is missing from storage")
    local = services.store.local_path(key)  # exists: head() just found it
    if local is not None:
        return RangedFile(local, media_type=stored.content_type,
                          filename=PurePath(key).name, content_disposition_type="inline")
    url = services.store.presigned_url(key, expires_s=3600)
    assert url is not None  # only local storage has no URL of its own
    return RedirectResponse(url, status_code=307)


# The decisions open their own transactions (the decision commits before the files are
# copied), so the ownership check and the answer each get a short session of their own.
@router.post("/deliverables/{deliverable_id}/approve", tags=["review"],
             responses=DECISION_ERRORS)
def approve(deliverable_id: str, decision: Decision, team: TeamDep,
            services: ServicesDep) -> dict[str, Any]:
    """Approve a variant in review: it is published to the campaign layout."""
    with session_scope(services.engine) as session:
        row_id = own_deliverable(session, deliverable_id, team).id
    review.approve(services, row_id, team=team.name, reviewer=decision.reviewer or team.name,
                   comment=decision.comment, seen_video_id=decision.video_id)
    with session_scope(services.engine) as session:
        return views.variant_view(session, repo.get_deliverable(session, row_id))


@router.post("/deliverables/{deliverable_id}/reject", tags=["review"],
             responses=DECISION_ERRORS)
def reject(deliverable_id: str, decision: Rejection, team: TeamDep,
           services: ServicesDep) -> dict[str, Any]:
    """Reject a spot in review; `rerender` renders its scenes (or only `scene_id` and the
    scenes chained after it) again with a new seed and assembles it again (the other spots
    are left as they are)."""
    with session_scope(services.engine) as session:
        row_id = own_deliverable(session, deliverable_id, team).id
    review.reject(services, row_id, team=team.name, reviewer=decision.reviewer or team.name,
                  comment=decision.comment, rerender=decision.rerender,
                  scene_id=decision.scene_id, seen_video_id=decision.video_id)
    with session_scope(services.engine) as session:
        return views.variant_view(session, repo.get_deliverable(session, row_id))
