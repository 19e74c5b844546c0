"""HTTP errors of the review service: one readable JSON body for every failure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from infra.storage_errors import StorageError
from schemas.errors import (
    MAX_PROBLEMS_SHOWN,
    BriefInvalid,
    InvalidTransition,
    NotFound,
    TransientError,
)


class ServiceError(Exception):
    """An HTTP error with a readable message (and, for 422, the problems with their paths)."""

    def __init__(self, status: int, detail: str, problems: list[tuple[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.problems, self.headers = status, detail, problems, headers


def error_body(detail: str, problems: list[tuple[str, str]] | None = None,
               total: int | None = None) -> dict[str, Any]:
    """`problems`: at most the first MAX_PROBLEMS_SHOWN; `total`: how many there were."""
    body: dict[str, Any] = {"detail": detail}
    if problems is not None:
        body["problems"] = [{"path": path, "message": message}
                            for path, message in problems[:MAX_PROBLEMS_SHOWN]]
        body["total"] = len(problems) if total is None else total
    return body


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
