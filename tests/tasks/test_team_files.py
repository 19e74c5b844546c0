"""Two teams, one campaign slug, produced for real (SQLite, local storage, the tiny model
in-process): separate rows, files, manifests and pages, and the move of a store from the old
key layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.auth import create_team
from app.cli import app
from app.service import create_app
from infra import repository as repo
from infra.db import session_scope
from infra.db_models import Deliverable
from infra.settings import Settings, load_settings
from infra.storage import LocalStore, legacy_deliverable_key
from tasks.deliver import REVIEW_PREFIX, move_team_keys, published_key
from tasks.ingest import plan_brief
from tasks.services import Services
from tasks.submission import submit
from tests.example_brief import example_text
from tests.tasks.in_process import finish_and_publish, render_all

ROOT = Path(__file__).resolve().parents[2]
SLUG = "aurora-spring-launch"
pytestmark = pytest.mark.slow  # real renders and ffmpeg: minutes on 2 shared cores


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mova_model.make_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


def _brief(brand_line: str) -> str:
    """The example at one aspect; the teams' briefs differ in their on-screen brand line."""
    brief = yaml.safe_load(example_text())
    brief["aspects"] = ["16:9"]
    for text in brief["scenes"][0]["on_screen_text"].values():
        text["brand_line"] = brand_line
    return yaml.safe_dump(brief)


def _produce(services: Services, brief_id: UUID, *, spots: bool = False) -> list[Deliverable]:
    """The brief produced in-process: its spots published (`spots`), or, as stores from
    before spots hold them, its scene finishes."""
    with session_scope(services.engine) as session:
        repo.claim_brief(session, brief_id, "test")
    plan_brief(services, brief_id)
    render_all(services, brief_id)
    return finish_and_publish(services, brief_id, scenes=not spots, spots=spots)


def _spot_file(team: str, locale: str) -> str:
    return f"campaigns/{team}/{SLUG}/{locale}/16x9/{SLUG}_{locale}_16x9_youtube.mp4"


def _settings(tmp_path: Path, checkpoint: Path) -> Settings:
    return load_settings({"MOVA_DATA_DIR": str(tmp_path), "MOVA_CHECKPOINT": str(checkpoint)})


def test_two_teams_with_one_slug_get_separate_files_manifests_and_pages(
        tmp_path: Path, checkpoint: Path) -> None:
    settings = _settings(tmp_path, checkpoint)
    with Services(settings) as services:
        with session_scope(services.engine) as session:
            tokens = {team: create_team(session, team) for team in ("emea", "apac")}
        emea = submit(services, _brief("Aurora One"), team="emea").brief_id
        apac = submit(services, _brief("Aurora Uno"), team="apac").brief_id
        rows = {"emea": _produce(services, emea, spots=True),
                "apac": _produce(services, apac, spots=True)}
        store = services.store
        assert isinstance(store, LocalStore)
        for team, team_rows in rows.items():
            assert {r.status for r in team_rows} == {"published"}
            for row in team_rows:
                key = _spot_file(team, row.locale)
                assert row.published_uri == store.uri_for(key) and store.exists(key)
                manifest = json.loads(store.local_path(
                    key.replace(".mp4", ".manifest.json")).read_text())  # type: ignore[union-attr]
                assert manifest["team"] == team and manifest["campaign"] == SLUG
                assert manifest["gpu_seconds"] > 0  # measured on the render worker
        # the same slug, two files: apac's publish did not overwrite emea's
        emea_video, apac_video = (store.head(_spot_file(t, "en-US")) for t in ("emea", "apac"))
        assert emea_video is not None and apac_video is not None
        assert emea_video.sha256 != apac_video.sha256
        assert not store.list(f"campaigns/{SLUG}/")  # nothing in the old global layout

    with TestClient(create_app(settings)) as client:
        def get(team: str, path: str) -> int:
            return client.get(path, headers={"Authorization": f"Bearer {tokens[team]}"},
                              follow_redirects=False).status_code

        video = rows["emea"][0].id
        assert get("emea", f"/briefs/{emea}") == 200
        assert get("apac", f"/briefs/{emea}") == 404
        assert get("emea", f"/api/deliverables/{video}/files/video") == 200
        assert get("apac", f"/api/deliverables/{video}/files/video") == 404
        listed = client.get("/api/briefs", headers={"Authorization": f"Bearer {tokens['apac']}"})
        assert [b["id"] for b in listed.json()] == [str(apac)]
        page = client.get(f"/briefs/{apac}", headers={"Authorization": f"Bearer "
                                                                        f"{tokens['apac']}"})
        assert "Estimated cost" in page.text and "GPU-seconds" in page.text


def test_moving_a_store_from_the_old_layout_is_complete_and_idempotent(
        tmp_path: Path, checkpoint: Path) -> None:
    """A store written before teams: files at campaigns/<slug>/..., rows pointing there."""
    with Services(_settings(tmp_path, checkpoint)) as services:
        with session_scope(services.engine) as session:
            create_team(session, "emea")
        brief_id = submit(services, _brief("Aurora One"), team="emea").brief_id
        rows = _produce(services, brief_id)
        store = services.store
        assert isinstance(store, LocalStore)
        # put the store back the way the old code left it
        new_keys = [k for k in store.list("campaigns/emea/")]
        assert new_keys
        for key in new_keys:
            old = "campaigns/" + key.removeprefix("campaigns/emea/")
            store.copy(key, old)
            path = store.local_path(key)
            assert path is not None
            path.unlink()
            path.with_name(path.name + ".meta.json").unlink()
        with session_scope(services.engine) as session:
            for row in rows:
                db_row = repo.get_deliverable(session, row.id)
                old_video = legacy_deliverable_key(SLUG, row.locale, row.aspect,
                                                   row.scene_id + ".mp4")
                repo.set_published(db_row, published_uri=store.uri_for(old_video),
                                   manifest_uri=store.uri_for(
                                       old_video.replace(".mp4", ".manifest.json")))
        assert not store.list("campaigns/emea/")

        with session_scope(services.engine) as session:
            copied, kept = move_team_keys(session, store)
        assert (copied, kept) == (len(new_keys), 0)
        assert sorted(store.list("campaigns/emea/")) == sorted(new_keys)
        with session_scope(services.engine) as session:
            for row in rows:
                moved = repo.get_deliverable(session, row.id)
                assert moved.published_uri is not None and "/campaigns/emea/" in \
                    moved.published_uri
                manifest = json.loads(Path(
                    (moved.manifest_uri or "").removeprefix("file://")).read_text())
                assert manifest["team"] == "emea"
                assert all("/campaigns/emea/" in f["uri"] for f in manifest["files"])
        with session_scope(services.engine) as session:  # again: nothing left to do
            assert move_team_keys(session, store) == (0, len(new_keys))
        assert not store.list(f"{REVIEW_PREFIX}/")
    # the command run with another STORAGE_URL than the files were published to said
    # "0 copied, 0 already in place" with exit 0: read as done
    runner = CliRunner(env={"MOVA_DATA_DIR": str(tmp_path), "MOVA_CHECKPOINT": str(checkpoint),
                            "STORAGE_URL": str(tmp_path / "another-store")})
    elsewhere = runner.invoke(app, ["storage", "move-team-keys"])
    assert elsewhere.exit_code == 1, elsewhere.output
    assert f"none of the files of {len(rows)} published deliverable(s) is in" in " ".join(
        elsewhere.output.split())
    runner.env.pop("STORAGE_URL")
    here = runner.invoke(app, ["storage", "move-team-keys"])
    assert here.exit_code == 0 and f"0 file(s) copied to team keys, {len(new_keys)} already" \
        in " ".join(here.output.split())


def test_two_briefs_of_one_campaign_in_review_keep_their_own_files(
        tmp_path: Path, checkpoint: Path) -> None:
    """An edited brief sent again while the first waits for review: each keeps its own review
    files, and the service shows each deliverable its own video and manifest, before and after
    the later approval publishes over the earlier one at the campaign's keys. (The review area
    and the file URLs were per campaign: the second brief's files replaced the first's, and a
    reviewer judged the wrong ad.)"""
    from tasks.review import approve

    settings = _settings(tmp_path, checkpoint)
    with Services(settings) as services:
        with session_scope(services.engine) as session:
            token = create_team(session, "emea")
        ids = {}
        for name, line in (("first", "Aurora One"), ("second", "Aurora Two")):
            brief = yaml.safe_load(_brief(line))
            brief["requires_approval"] = True
            brief["locales"] = ["en-US"]
            for scene in brief["scenes"]:
                for field in ("dialogue", "on_screen_text"):
                    scene[field] = {"en-US": scene[field]["en-US"]}
            brief_id = submit(services, yaml.safe_dump(brief), team="emea").brief_id
            ids[name] = _produce(services, brief_id, spots=True)[0].id
        store = services.store

        def facts() -> dict[str, dict[str, Any]]:
            with session_scope(services.engine) as session:
                rows = {n: repo.get_deliverable(session, i) for n, i in ids.items()}
                return {n: {"status": r.status, "uri": r.published_uri, "brief": r.brief_id,
                            "brief_sha256": r.brief.sha256, "locale": r.locale,
                            "video_sha256": r.video.sha256 if r.video else None,
                            "review_key": published_key(r, "video", review=True)}
                        for n, r in rows.items()}

        before = facts()
        assert {f["status"] for f in before.values()} == {"in_review"}
        assert before["first"]["review_key"] != before["second"]["review_key"]
        for fact in before.values():
            assert f"/brief-{fact['brief']}/" in fact["review_key"]
            assert fact["uri"] == store.uri_for(fact["review_key"])
            reviewed = store.head(fact["review_key"])
            assert reviewed is not None and reviewed.sha256 == fact["video_sha256"]

        def check_own_files(client: TestClient) -> dict[str, Any]:
            manifests = {}
            for name, fact in before.items():
                url = f"/api/deliverables/{ids[name]}/files"
                auth = {"Authorization": f"Bearer {token}"}
                video = client.get(f"{url}/video", headers=auth)
                assert video.status_code == 200, video.text
                assert hashlib.sha256(video.content).hexdigest() == fact["video_sha256"]
                manifest = client.get(f"{url}/manifest", headers=auth)
                assert manifest.status_code == 200, manifest.text
                manifests[name] = manifest.json()
                assert manifests[name]["brief_sha256"] == fact["brief_sha256"]
            return manifests

        with TestClient(create_app(settings)) as client:
            check_own_files(client)
        for name in ("second", "first"):  # the earlier brief approved last: its spot is live
            approve(services, ids[name], team="emea", reviewer="ana")
        after = facts()
        assert {f["status"] for f in after.values()} == {"published"}
        assert after["first"]["uri"] == after["second"]["uri"]
        live = store.head(_spot_file("emea", after["first"]["locale"]))
        assert live is not None and live.sha256 == after["first"]["video_sha256"]
        with TestClient(create_app(settings)) as client:
            manifests = check_own_files(client)
        assert all(m["approval"]["reviewer"] == "ana" for m in manifests.values())
