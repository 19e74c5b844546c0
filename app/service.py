"""The review service: `create_app(settings)` assembles the FastAPI app that `mova-ads serve`
runs under uvicorn, from the JSON API (app/api.py) and the review page (app/pages.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import api, pages
from app.errors import add_error_handlers, error_body
from app.security import CookieWriteGuard, SecurityHeaders, media_sources
from infra.images import limit_decoded_pixels
from infra.settings import Settings
from tasks.services import Services

# Swagger UI's files from a PyPI wheel (fastapi-offline), so /docs works with no network.
DOCS_ASSETS = Path(fastapi_offline.__file__).with_name("static")


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="MOVA ad factory: review service", version="1", lifespan=_lifespan,
                  description="Submit campaign briefs, follow their production, play and "
                              "approve or reject every localized variant.",
                  docs_url=None, redoc_url=None)
    app.state.services = Services(settings)  # read by app.deps.get_services
    limit_decoded_pixels(settings.max_first_frame_pixels)  # PIL's own guard, behind verify_image
    # Outermost last: headers go on every answer (refusals too); the write check runs before
    # any body is read.
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    app.add_middleware(CookieWriteGuard)
    app.add_middleware(SecurityHeaders,
                       media=media_sources(settings.s3_endpoint_url, settings.storage))
    add_error_handlers(app)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    app.add_api_route("/docs", _docs, include_in_schema=False, response_class=HTMLResponse)
    return app


def _docs(request: Request) -> HTMLResponse:
    """Swagger UI with local scripts; its one inline script carries the CSP nonce."""
    page = get_swagger_ui_html(openapi_url="/openapi.json",
                               title="MOVA ad factory: review service - API",
                               swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                               swagger_css_url="/docs-assets/swagger-ui.css",
                               swagger_favicon_url="/docs-assets/favicon.png")
    nonce = request.state.csp_nonce
    html = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
    return HTMLResponse(html)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        app.state.services.close()  # the database pool, once the server stops


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
                raise _TooLarge(self.limit)
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(error_body(_too_large(self.limit)), status_code=413)
        await response({"type": "http"}, _no_receive, send)


def _too_large(limit: int) -> str:
    return f"request body is larger than the limit of {limit:,} bytes (API_MAX_BODY_BYTES)"


class _TooLarge(HTTPException):
    """An HTTPException, not a plain error: FastAPI turns any other error raised while it
    parses a route's JSON or form body into 400 "There was an error parsing the body", but
    passes an HTTPException on, and the app answers it as this 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit))


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
