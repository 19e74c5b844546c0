"""The service while its PostgreSQL database is gone: JSON 503s, as the routes declare, not
plain-text 500s."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.auth import create_team
from app.service import create_app
from infra.db import make_engine, session_scope, upgrade_to_head
from infra.settings import load_settings
from tests.conftest import postgres_admin_url


def test_a_dropped_database_answers_json_503s(fresh_postgres_url: str, tmp_path: Path) -> None:
    engine = make_engine(fresh_postgres_url)
    upgrade_to_head(engine)
    with session_scope(engine) as session:
        token = create_team(session, "emea")
    engine.dispose()
    settings = load_settings({"DATABASE_URL": fresh_postgres_url,
                              "MOVA_DATA_DIR": str(tmp_path)})
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/api/health").json() == {"status": "ok"}
        assert client.get("/api/briefs", headers=auth).status_code == 200
        name = fresh_postgres_url.rsplit("/", 1)[1]
        admin = create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:  # FORCE ends the service's open connections too
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
        for path, headers in (("/api/health", {}), ("/api/briefs", auth)):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 503, answer.text
            assert answer.json()["detail"] == "the database is unavailable; try again"
