"""HTTP errors of the review service: one readable JSON body for every failure."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import InterfaceError, OperationalError

from app.headers import ERROR_ANSWER_HEADERS
from infra.storage_errors import StorageError
from schemas.errors import (
    MAX_PROBLEMS_SHOWN,
    BriefInvalid,
    InvalidTransition,
    NotFound,
    RequestInvalid,
    TransientError,
    first_line,
    validation_message,
)

log = logging.getLogger(__name__)

# Starlette re-raises an error after its 500 handler has answered, so the server logs it again.
_REFERENCE_ATTRIBUTE = "_mova_internal_error_reference"
SERVER_LOGGER = "uvicorn.error"


class LoggedOnce(logging.Filter):
    """Drops the server's own record of an error this module logged already, with its
    reference and traceback: one traceback per 500 in the service's log, not two."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return getattr(error, _REFERENCE_ATTRIBUTE, None) is None


def _log_server_errors_once() -> None:
    server_log = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, LoggedOnce) for f in server_log.filters):
        server_log.addFilter(LoggedOnce())


class ServiceError(Exception):
    """An HTTP error with a readable message (and, for 422, the problems with their paths)."""

    def __init__(self, status: int, detail: str, problems: list[tuple[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.problems, self.headers = status, detail, problems, headers


class Problem(BaseModel):
    path: str = Field(description="Where: `scenes[0].duration_s`, `comment`, `(body)`.")
    message: str


class ErrorBody(BaseModel):
    """Every failure's JSON body. `error_body` builds it, so the OpenAPI document declares
    what is really sent."""

    detail: str = Field(description="What went wrong, in words.")
    problems: list[Problem] | None = Field(default=None, description=(
        f"422 only: the first {MAX_PROBLEMS_SHOWN} problems, each with its path."))
    total: int | None = Field(default=None, description="With `problems`: how many there were.")


def error_body(detail: str, problems: list[tuple[str, str]] | None = None,
               total: int | None = None) -> dict[str, Any]:
    """`problems`: at most the first MAX_PROBLEMS_SHOWN; `total`: how many there were."""
    if problems is None:
        return ErrorBody(detail=detail).model_dump(exclude_none=True)
    shown = [Problem(path=path, message=message)
             for path, message in problems[:MAX_PROBLEMS_SHOWN]]
    return ErrorBody(detail=detail, problems=shown,
                     total=len(problems) if total is None else total).model_dump()


# What each error status means on this service (the OpenAPI descriptions of its answers).
ERROR_MEANINGS: dict[int, str] = {
    400: "A body that cannot be parsed at all (JSON that is not UTF-8, a multipart form "
         "without its boundary).",
    401: "No known team token (`Authorization: Bearer <team token>`) or page session.",
    403: "A write with the page's session cookie from another origin, or with no Origin.",
    404: "No such id among the team's own (another team's ids are not found either).",
    409: "The deliverable's status does not allow this decision.",
    413: "The body is over API_MAX_BODY_BYTES (declared or streamed), or the brief over its "
         "own limit.",
    415: "A Content-Type the route does not take (`text/plain` with the session cookie).",
    416: "The `Range` starts past the file's end (a malformed `Range` is ignored: 200).",
    422: "The request is not valid: `problems` lists the first "
         f"{MAX_PROBLEMS_SHOWN} with their paths, `total` counts them.",
    429: "Past the team's submissions per minute or daily GPU budget.",
    503: "Storage or a service is unavailable; try again.",
}
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    416: {"Content-Range": {"schema": {"type": "string"},
                            "description": "`bytes */<size>`: the file's size."}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's `responses` for the error statuses it can answer: each an ErrorBody (this
    also replaces FastAPI's default 422, whose `detail` list this service never sends)."""
    return {status: {"model": ErrorBody, "description": ERROR_MEANINGS[status],
                     **({"headers": ERROR_HEADERS[status]} if status in ERROR_HEADERS else {})}
            for status in statuses}


def add_error_handlers(app: FastAPI) -> None:
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
        shown = f" (first {len(err.problems)} listed)" if err.total > len(err.problems) else ""
        return JSONResponse(error_body(f"the brief has {err.total} problem(s){shown}",
                                       err.problems, err.total), status_code=422)

    async def request_invalid(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RequestValidationError)
        problems = [(".".join(str(p) for p in e["loc"] if p != "body") or "(body)",
                     validation_message(e)) for e in err.errors()]
        return JSONResponse(error_body("the request is not valid", problems), status_code=422)

    async def request_refused(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RequestInvalid)
        return JSONResponse(error_body("the request is not valid", err.problems),
                            status_code=422)

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestInvalid, request_refused)
    app.add_exception_handler(BriefInvalid, brief_invalid)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(NotFound, handler(404, str))
    app.add_exception_handler(InvalidTransition, handler(409, str))
    for transient in (TransientError, StorageError):
        app.add_exception_handler(transient, handler(
            503, lambda err: f"storage or a service is unavailable, try again: {err}"))

    async def database_down(request: Request, err: Exception) -> JSONResponse:
        # The connection failed or was lost (server down, database dropped, restarted): a JSON
        # 503 as the routes declare, the cause in the service's log rather than the answer.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    first_line(err))
        return JSONResponse(error_body("the database is unavailable; try again"),
                            status_code=503)

    for lost in (OperationalError, InterfaceError):
        app.add_exception_handler(lost, database_down)

    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        # A bug: its text may name paths, queries or settings, so it goes to the service's log
        # with its traceback, and the answer gives only the reference to find it there.
        reference = secrets.token_hex(4)
        try:
            setattr(err, _REFERENCE_ATTRIBUTE, reference)
        except AttributeError:  # an error type without attributes: the server logs it again
            pass
        log.error("internal error %s on %s %s", reference, request.method, request.url.path,
                  exc_info=err)
        # answered outside the middleware that adds the security headers: they are added here
        return JSONResponse(error_body(f"internal error {reference}: the service's log has "
                                       "its cause"), status_code=500,
                            headers=ERROR_ANSWER_HEADERS)

    app.add_exception_handler(Exception, internal_error)
    _log_server_errors_once()
