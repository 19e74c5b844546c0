"""Sessions and request hardening of the review service (issue 12, part 5), on the real
`mova-ads serve` process over loopback: server-side page sessions, token revoke/rotate from
the CLI, the Origin / text/plain checks on cookie writes, security headers, offline docs."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import text

from infra.db import make_engine
from tests.app.conftest import ROOT, Service

UNKNOWN = "/api/deliverables/00000000-0000-0000-0000-000000000000/approve"


@pytest.fixture(scope="module")
def service(service_factory: Callable[..., Service],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data = tmp_path_factory.mktemp("sessions")
    yield service_factory(data, f"sqlite:///{data / 'mova_ads.db'}",
                          teams=("emea", "apac", "nordics"), worker=False)


def login(service: Service, team: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{service.url}/login", data={"token": service.tokens[team]},
                      headers={"Origin": service.url, **headers})


def session_rows(service: Service) -> list[str]:
    engine = make_engine(service.database_url)
    with engine.connect() as connection:
        rows = [r[0] for r in connection.execute(text("SELECT id_sha256 FROM web_session"))]
    engine.dispose()
    return rows


def test_login_starts_a_hashed_server_side_session_that_logout_ends(service: Service) -> None:
    response = login(service, "emea")
    assert response.status_code == 303
    header = response.headers["set-cookie"]
    session_id = response.cookies["mova_session"]
    assert session_id != service.tokens["emea"] and service.tokens["emea"] not in header
    assert "HttpOnly" in header and "SameSite=strict" in header and "Secure" not in header
    # only the hash is stored: the table cannot be replayed as a cookie
    stored = session_rows(service)
    assert hashlib.sha256(session_id.encode()).hexdigest() in stored
    assert session_id not in stored
    cookies = {"mova_session": session_id}
    assert httpx.get(f"{service.url}/api/briefs", cookies=cookies).status_code == 200
    out = httpx.post(f"{service.url}/logout", cookies=cookies, headers={"Origin": service.url})
    assert out.status_code == 303
    # the same cookie, replayed after logout, is refused: the session is gone server-side
    assert httpx.get(f"{service.url}/api/briefs", cookies=cookies).status_code == 401
    assert hashlib.sha256(session_id.encode()).hexdigest() not in session_rows(service)


def test_the_session_cookie_is_secure_when_served_over_https(service: Service) -> None:
    # uvicorn trusts X-Forwarded-Proto from loopback (its default forwarded_allow_ips), as
    # from a TLS-terminating proxy on the same host.
    https_origin = service.url.replace("http://", "https://")
    response = login(service, "emea", Origin=https_origin, **{"X-Forwarded-Proto": "https"})
    header = response.headers["set-cookie"]
    assert "Secure" in header


def test_cookie_writes_need_the_own_origin_and_no_text_plain(service: Service) -> None:
    cookies = {"mova_session": login(service, "apac").cookies["mova_session"]}

    def post(**headers: str) -> httpx.Response:
        return httpx.post(f"{service.url}{UNKNOWN}", cookies=cookies, headers=headers,
                          content=b'{"comment": ""}')

    evil = post(Origin="http://evil.example", **{"Content-Type": "application/json"})
    assert evil.status_code == 403 and "Origin" in evil.json()["detail"]
    assert post(**{"Content-Type": "application/json"}).status_code == 403  # no Origin at all
    plain = post(Origin=service.url, **{"Content-Type": "text/plain"})
    assert plain.status_code == 415
    # same origin and JSON: the route runs (this deliverable does not exist)
    assert post(Origin=service.url, **{"Content-Type": "application/json"}).status_code == 404
    # a cross-site login post is refused too (login CSRF)
    forged = httpx.post(f"{service.url}/login", data={"token": service.tokens["apac"]},
                        headers={"Origin": "http://evil.example"})
    assert forged.status_code == 403
    # API clients (Bearer) are not browsers: no Origin needed
    api = httpx.post(f"{service.url}{UNKNOWN}", json={"comment": ""},
                     headers={"Authorization": f"Bearer {service.tokens['apac']}"})
    assert api.status_code == 404


def test_every_answer_carries_the_security_headers(service: Service) -> None:
    for path in ("/login", "/api/health", "/api/briefs", "/docs", "/openapi.json"):
        headers = httpx.get(f"{service.url}{path}").headers
        assert headers["x-frame-options"] == "DENY", path
        assert headers["x-content-type-options"] == "nosniff", path
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self' 'nonce-" in csp, path
        assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0], path


def test_api_docs_load_no_script_or_style_from_another_host(service: Service) -> None:
    response = httpx.get(f"{service.url}/docs")
    assert response.status_code == 200
    html = response.text
    nonce = re.search(r"'nonce-([^']+)'", response.headers["content-security-policy"])
    assert nonce is not None
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/") for s in sources), sources
    for source in sources:
        assert httpx.get(f"{service.url}{source}").status_code == 200, source
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html)
    assert inline and all(f'nonce="{nonce.group(1)}"' in attrs for attrs in inline)


def _cli(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MOVA_"))}
    env.update({"MOVA_DATA_DIR": str(service.data_dir), "DATABASE_URL": service.database_url,
                "PYTHONPATH": str(ROOT)})
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_tokens_are_listed_rotated_and_revoked_and_end_page_sessions(service: Service) -> None:
    def status(token: str) -> int:
        return httpx.get(f"{service.url}/api/briefs",
                         headers={"Authorization": f"Bearer {token}"}).status_code

    old = service.tokens["nordics"]
    cookies = {"mova_session": login(service, "nordics").cookies["mova_session"]}
    listed = _cli(service, "team", "token", "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"nordics\s+active\s+sha256:[0-9a-f]{12}\s+sessions=1", listed.stdout)
    assert old not in listed.stdout

    rotated = _cli(service, "team", "token", "rotate", "nordics")
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    assert new.startswith("mova_") and new != old
    assert (status(old), status(new)) == (401, 200)
    assert httpx.get(f"{service.url}/api/briefs", cookies=cookies).status_code == 401

    assert _cli(service, "team", "token", "revoke", "nordics").returncode == 0
    assert status(new) == 401
    assert re.search(r"nordics\s+revoked", _cli(service, "team", "token", "list").stdout)
    missing = _cli(service, "team", "token", "revoke", "nobody")
    assert missing.returncode == 2 and "nobody" in missing.stderr
