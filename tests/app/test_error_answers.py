"""Requests a hostile user sends (the app in-process on SQLite): each is answered as the
README says, never with a plain-text 500."""

from __future__ import annotations

import pytest
import yaml
from fastapi.testclient import TestClient

from app import pages
from tests.example_brief import example_text


def test_a_briefs_page_past_the_last_shows_the_last(client: TestClient,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Its offset was too large for SQLite's integers: a plain-text 500."""
    monkeypatch.setattr(pages, "BRIEFS_PER_PAGE", 1)
    for seed in (1, 2):
        assert client.post("/api/briefs", json={**yaml.safe_load(example_text()),
                                                "seed": seed}).status_code == 201
    oldest = client.get("/api/briefs").json()[-1]["id"]
    answer = client.get("/briefs?page=99999999999999999")
    assert answer.status_code == 200, answer.text
    assert "page 2 of 2" in answer.text and f'href="/briefs/{oldest}"' in answer.text
