"""Render jobs stored by earlier versions (the flat spec layout, keys that hashed the locale)
are read, rendered and reused by this one, on SQLite and PostgreSQL; a rerun renders nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import text

from infra import repository as repo
from infra.db import session_scope
from infra.settings import load_settings
from schemas.plan import RenderSpec
from tasks.ingest import plan_brief
from tasks.render import pending_payloads
from tasks.services import Services
from tasks.submission import submit_brief
from tests.example_brief import example_text
from tests.tasks.in_process import finish_and_publish, render_all

ROOT = Path(__file__).resolve().parents[2]
# The example (1 scene x 2 languages x 2 aspects), voice-over so dubs name their master's key;
# half a second keeps the four tiny renders short.
BRIEF = example_text() \
    .replace("dubbing: lipsync", "dubbing: voiceover").replace("duration_s: 1.0", "duration_s: 0.5")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mova_model.make_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


@pytest.fixture(params=["sqlite", "postgres"])
def services(request: pytest.FixtureRequest, tmp_path: Path,
             checkpoint: Path) -> Iterator[Services]:
    values = {"MOVA_DATA_DIR": str(tmp_path), "MOVA_CHECKPOINT": str(checkpoint)}
    if request.param == "postgres":
        values["DATABASE_URL"] = request.getfixturevalue("fresh_postgres_url")
    with Services(load_settings(values)) as services:
        yield services


def _flat(spec: dict[str, Any], locale: str, keys: dict[str, str]) -> dict[str, Any]:
    """The spec as the code before commit a6a6627 stored it: request fields at the top level
    (`steps`), the locale, and the master named by its old key."""
    request = spec["request"]
    return {
        "scene_id": spec["scene_id"], "locale": locale, "orientation": spec["orientation"],
        "prompt": request["prompt"], "negative_prompt": request["negative_prompt"],
        "first_frame": spec["first_frame"], "height": request["height"],
        "width": request["width"], "num_frames": request["num_frames"],
        "video_fps": request["video_fps"], "steps": request["num_inference_steps"],
        "cfg_scale": request["cfg_scale"], "guidance_mode": request["guidance_mode"],
        "bridge_scale": request["bridge_scale"], "seed": request["seed"],
        "mode": request["mode"], "master_key": keys.get(spec["master_key"]),
        "checkpoint": spec["checkpoint"],
    }


def _old_key(flat: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()


def _store_as_old_code(services: Services, brief_id: UUID) -> dict[str, str]:
    """Rewrite the brief's render jobs and variants with raw SQL as the old code had stored
    them (flat specs under their old keys); returns new key -> old key."""
    with services.engine.begin() as connection:
        rows = connection.execute(text(
            "SELECT d.render_key, d.locale, j.spec FROM deliverable d "
            "JOIN render_job j ON j.spec_key = d.render_key WHERE d.brief_id = :b"),
            {"b": brief_id if services.engine.dialect.name == "postgresql" else brief_id.hex}
        ).all()
        specs = {key: (json.loads(spec) if isinstance(spec, str) else spec, locale)
                 for key, locale, spec in sorted(rows, key=lambda r: r[1], reverse=True)}
        keys: dict[str, str] = {}
        # Masters first: a dub's old spec names its master's old key.
        for new_key, (spec, locale) in sorted(specs.items(),
                                              key=lambda item: item[1][0]["master_key"] or ""):
            flat = _flat(spec, locale, keys)
            keys[new_key] = _old_key(flat)
            connection.execute(text("UPDATE render_job SET spec_key = :old, spec = :spec "
                                    "WHERE spec_key = :new"),
                               {"old": keys[new_key], "spec": json.dumps(flat), "new": new_key})
            connection.execute(text("UPDATE deliverable SET render_key = :old "
                                    "WHERE render_key = :new"),
                               {"old": keys[new_key], "new": new_key})
    return keys


def _jobs(services: Services) -> dict[str, tuple[str, int, dict[str, Any]]]:
    with services.engine.connect() as connection:
        rows = connection.execute(text("SELECT spec_key, status, attempts, spec FROM render_job"))
        return {key: (status, attempts, json.loads(spec) if isinstance(spec, str) else spec)
                for key, status, attempts, spec in rows}


@pytest.mark.slow
def test_old_layout_jobs_are_rendered_reused_and_not_rendered_again(
        services: Services) -> None:
    brief_id = submit_brief(services, BRIEF)
    with session_scope(services.engine) as session:
        repo.claim_submitted_briefs(session, 1, "test")
    plan_brief(services, brief_id)
    # Voice-over with speech: a master and a dub per orientation (en-US, de-DE), 4 renders.
    keys = _store_as_old_code(services, brief_id)
    assert len(set(keys.values())) == 4
    stored = _jobs(services)
    assert set(stored) == set(keys.values())
    assert all("prompt" in spec and "request" not in spec for _, _, spec in stored.values())

    render_all(services, brief_id)  # old rows load; dubs wait for masters named by old keys
    rows = finish_and_publish(services, brief_id)
    assert [r.status for r in rows] == ["published"] * 4
    assert {r.render_key for r in rows} == set(keys.values())
    done = _jobs(services)
    assert set(done) == set(stored)  # no job added: every render ran under its old key
    assert all(status == "done" and attempts == 1 for status, attempts, _ in done.values())
    assert all(RenderSpec.model_validate(spec).request.num_inference_steps == 8
               for _, _, spec in done.values())
    with session_scope(services.engine) as session:
        clips = {job.clip.sha256 for job in repo.render_jobs(session, done).values()
                 if job.clip is not None}
    assert len(clips) == 4

    # A rerun of the done brief: nothing to render, nothing waits for finishing.
    assert pending_payloads(services, brief_id) == []
    render_all(services, brief_id)
    assert _jobs(services) == done
    with session_scope(services.engine) as session:
        # the scene finishes stay published; the 4 spots (not assembled in this test) wait
        assert repo.deliverable_counts(session, brief_id) == {"published": 4, "pending": 4}
