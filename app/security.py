"""Request hardening of the review service: security headers on every answer, and the checks
a cookie-authenticated write must pass (same Origin, no `text/plain` body).

Why these two checks: a browser sends the session cookie with a cross-site form post
(SameSite=Strict stops most, not a sibling subdomain), and `text/plain` is the one body type a
cross-site form or a no-CORS fetch can send without a preflight. API clients authenticate with
`Authorization: Bearer`, which a browser never adds on its own, so they are not checked.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_body
from app.headers import FIXED_SECURITY_HEADERS

SESSION_COOKIE = "mova_session"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def media_sources(s3_endpoint_url: str | None, storage_url: str) -> str:
    """Where the page's <video> may load from: this origin, and the object store its file
    routes redirect to (presigned URLs) when storage is S3."""
    sources = ["'self'"]
    if s3_endpoint_url:
        parts = urlsplit(s3_endpoint_url)
        sources.append(f"{parts.scheme}://{parts.netloc}")
    elif storage_url.startswith("s3://"):
        sources.append("https://*.amazonaws.com")
    return " ".join(sources)


def content_security_policy(nonce: str, media: str) -> str:
    # Inline <style> blocks and style attributes stay allowed (the templates size the players
    # with them; CSS cannot run code); scripts only from this origin or carrying the nonce.
    return "; ".join([
        "default-src 'self'", f"script-src 'self' 'nonce-{nonce}'",
        "style-src 'self' 'unsafe-inline'", "img-src 'self' data:", f"media-src {media}",
        "connect-src 'self'", "object-src 'none'", "base-uri 'none'",
        "frame-ancestors 'none'", "form-action 'self'"])


class SecurityHeaders:
    """CSP (with a per-response script nonce in `request.state.csp_nonce`), X-Frame-Options,
    nosniff and a same-origin referrer policy on every HTTP answer."""

    def __init__(self, app: ASGIApp, media: str = "'self'") -> None:
        self.app, self.media = app, media

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        extra = [(b"content-security-policy", content_security_policy(nonce, self.media)
                  .encode()),
                 *((name.encode(), value.encode()) for name, value in
                   FIXED_SECURITY_HEADERS.items())]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header ("" when it names none), or None
    for no Bearer header. The scheme is case-insensitive (RFC 7235 §2.1): `bearer` is
    `Bearer`."""
    scheme, space, token = authorization.partition(" ")
    return token.strip() if space and scheme.lower() == "bearer" else None


def _own_origin(scope: Scope, headers: Headers) -> str:
    scheme = scope.get("scheme", "http")
    host = headers.get("host")
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    return f"{scheme}://{host}"


def cookie_write_refusal(scope: Scope) -> tuple[int, str] | None:
    """Why a write must be refused (status, reason), or None. Only requests that would act on
    a browser session are checked: an unsafe method without a Bearer header."""
    if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
        return None
    headers = Headers(scope=scope)
    if bearer_token(headers.get("authorization", "")) is not None:
        return None
    origin = headers.get("origin")
    if origin is None:
        referer = headers.get("referer")
        if referer:
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
    if origin is None:
        if SESSION_COOKIE not in headers.get("cookie", ""):
            return None  # no cookie, no Origin: not a browser session (the route asks a token)
        return 403, "a write with the session cookie must carry an Origin header"
    if origin != _own_origin(scope, headers):
        return 403, f"cross-site write refused (Origin {origin})"
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "text/plain":
        return 415, "text/plain bodies are refused: send application/json or a form"
    return None


class CookieWriteGuard:
    """Refuse cross-origin and `text/plain` writes made with the browser's session."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = cookie_write_refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, reason = refusal
        await JSONResponse(error_body(reason), status_code=status)(scope, receive, send)
