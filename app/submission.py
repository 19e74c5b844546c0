"""Reading a submitted brief from an HTTP request (API or review page) and queueing it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.errors import ServiceError
from infra import repository as repo
from infra.db import session_scope
from infra.repository import Team
from schemas.brief import MAX_BRIEF_BYTES
from tasks.services import Services
from tasks.submission import (
    SUBMIT_WINDOW,
    IdempotencyConflict,
    SubmissionRefused,
    Submitted,
    submit,
)

YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml",
              "text/plain"}
MAX_IDEMPOTENCY_KEY = 200
MAX_NAME_BYTES = 255  # a file name's limit on every common filesystem (bytes, not characters)
# What a checkbox or a client sends for a boolean form field (a ticked HTML checkbox: "on").
FORM_TRUE = ("on", "true", "1", "yes")
FORM_FALSE = ("off", "false", "0", "no")


async def submit_request(services: Services, request: Request, team: Team,
                         requires_approval: bool | None) -> Submitted:
    """Queue the brief the request carries (YAML or JSON body, or a multipart form) for
    `team`, or find the team's same brief submitted before (same content, or the same
    `Idempotency-Key` header); 429 past the team's per-minute limit or daily GPU budget,
    413/415 for bodies it cannot take, 422 for bad briefs and uploads."""
    settings = services.settings
    # A cheap early answer for a team already over its limit (nothing is read or stored); the
    # binding check is the atomic one in `submit`.
    with session_scope(services.engine) as session:
        recent = repo.count_submissions(session, team.name, SUBMIT_WINDOW)
    if recent >= settings.api_submissions_per_minute:
        raise _too_many(f"team {team.name} submitted {recent} briefs in the last minute "
                        f"(limit {settings.api_submissions_per_minute}); try again in a minute")
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise ServiceError(422, f"Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY} "
                                "characters", [("Idempotency-Key", "too long or empty")])
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    with tempfile.TemporaryDirectory(prefix="mova-upload-") as uploads:
        # The brief's first_frame names resolve only among the uploaded files, never
        # against the server's own folders.
        if content_type == "multipart/form-data":
            raw, fmt, approval = await _read_form(request, Path(uploads))
            requires_approval = approval if requires_approval is None else requires_approval
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
        try:
            submitted: Submitted = await run_in_threadpool(
                submit, services, raw, fmt=fmt, base_dir=Path(uploads), team=team.name,
                requires_approval=requires_approval, idempotency_key=idempotency_key)
        except SubmissionRefused as err:
            raise _too_many(str(err), err.retry_after_s) from err
        except IdempotencyConflict as err:
            # 422, as the IETF Idempotency-Key draft asks for a key reused with another body
            raise ServiceError(422, str(err), [("Idempotency-Key", "used for another brief")]
                               ) from err
        return submitted


def _too_many(detail: str, retry_after_s: int = 60) -> ServiceError:
    return ServiceError(429, detail, headers={"Retry-After": str(retry_after_s)})


def upload_name(filename: str) -> str:
    """An uploaded file's name as the brief refers to it; a name that is no plain file name
    ('..', '.', hidden, with slashes or control characters) is the client's error (422)."""
    if (not filename or len(filename.encode()) > MAX_NAME_BYTES or filename in (".", "..")
            or filename.startswith(".") or any(c in filename for c in "/\\\0")
            or not filename.isprintable()):
        raise ServiceError(422, f"upload file name {filename[:80]!r} is not a plain file name",
                           [("first_frames", "name files like hero.png: no '/', '\\', "
                                             "leading '.', or control characters, at most "
                                             f"{MAX_NAME_BYTES} bytes")])
    return filename


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
            name = upload_name(upload.filename)
            if (uploads / name).exists():  # the brief names files by name: which one is meant?
                raise ServiceError(422, f"two uploads are named {name!r}",
                                   [("first_frames", f"{name!r} is given twice: give each "
                                                     "file a name of its own")])
            (uploads / name).write_bytes(await upload.read())
    approval = form.get("requires_approval")
    return raw, fmt, None if approval is None else form_flag("requires_approval", approval)


def form_flag(field: str, value: object) -> bool:
    """A form's yes/no field; anything else is refused rather than read as no (a typo would
    otherwise switch the review hold off unseen)."""
    text = str(value).strip().lower()
    if text in FORM_TRUE or text in FORM_FALSE:
        return text in FORM_TRUE
    raise ServiceError(422, f"{field}={str(value)[:40]!r} is not yes or no",
                       [(field, f"one of {', '.join(FORM_TRUE + FORM_FALSE)}")])
