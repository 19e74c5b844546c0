"""A spot is assembled as soon as its own scenes are finished, not after the brief's last
render: `spots_ready` picks exactly those spots (real planning, SQLite; statuses set as the
scene finishes would set them)."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from infra import repository as repo
from infra.db import session_scope
from infra.repository import DeliverableKind
from infra.settings import load_settings
from infra.statuses import DeliverableStatus
from tasks.ingest import plan_brief
from tasks.production import spots_ready
from tasks.services import Services
from tasks.submission import submit_brief
from tests.tasks.spot_fixtures import four_market_brief_text

LOGO = Path(__file__).resolve().parents[2] / "examples" / "logo.png"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Planning fingerprints the model folder; nothing here runs the model."""
    from mova_model.make_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


def _set(services: Services, brief_id: UUID, scene: str, locale: str,
         status: DeliverableStatus) -> None:
    with session_scope(services.engine) as session:
        [row] = [d for d in repo.get_brief(session, brief_id).deliverables
                 if d.kind == DeliverableKind.SCENE and d.scene_id == scene and d.locale == locale]
        row.status = status


def _ready_locales(services: Services, brief_id: UUID) -> list[str]:
    ready = set(spots_ready(services, brief_id))
    with session_scope(services.engine) as session:
        return sorted(d.locale for d in repo.get_brief(session, brief_id).deliverables
                      if d.id in ready)


def _planned_four_markets(tmp_path: Path, checkpoint: Path,
                          **changes: object) -> tuple[Services, UUID]:
    services = Services(load_settings({"MOVA_DATA_DIR": str(tmp_path / "data"),
                                       "MOVA_CHECKPOINT": str(checkpoint)}))
    folder = tmp_path / "brief"
    folder.mkdir()
    (folder / "logo.png").write_bytes(LOGO.read_bytes())
    brief_id = submit_brief(services, four_market_brief_text(**changes), base_dir=folder)
    with session_scope(services.engine) as session:
        repo.claim_submitted_briefs(session, 1, "test")
    plan_brief(services, brief_id)
    return services, brief_id


def test_a_spot_is_ready_once_its_own_scenes_are_all_finished(tmp_path: Path,
                                                             checkpoint: Path) -> None:
    services, brief_id = _planned_four_markets(tmp_path, checkpoint)
    assert _ready_locales(services, brief_id) == []

    _set(services, brief_id, "open", "en-US", DeliverableStatus.FINISHED)
    assert _ready_locales(services, brief_id) == [], "ready with its second scene unfinished"
    _set(services, brief_id, "stride", "en-US", DeliverableStatus.FINISHED)
    assert _ready_locales(services, brief_id) == ["en-US"]
    # a scene in review or published counts as finished; a failed one does not (that spot
    # fails with the scene's reason when the renders are over)
    _set(services, brief_id, "open", "de-DE", DeliverableStatus.IN_REVIEW)
    _set(services, brief_id, "stride", "de-DE", DeliverableStatus.PUBLISHED)
    _set(services, brief_id, "open", "ar-SA", DeliverableStatus.FAILED)
    _set(services, brief_id, "stride", "ar-SA", DeliverableStatus.FINISHED)
    assert _ready_locales(services, brief_id) == ["de-DE", "en-US"]

    with session_scope(services.engine) as session:  # an assembled spot is not taken again
        [spot] = [d for d in repo.get_brief(session, brief_id).deliverables
                  if d.kind == DeliverableKind.SPOT and d.locale == "en-US"]
        spot.status = DeliverableStatus.FINISHED
    assert _ready_locales(services, brief_id) == ["de-DE"]


def test_a_spot_is_made_of_the_scenes_of_its_own_language_and_format(
        tmp_path: Path, checkpoint: Path) -> None:
    services, brief_id = _planned_four_markets(tmp_path, checkpoint, aspects=["16:9", "9:16"])
    with session_scope(services.engine) as session:
        rows = repo.get_brief(session, brief_id).deliverables
        spots = [d for d in rows if d.kind == DeliverableKind.SPOT]
        assert len(spots) == 8  # four languages x two formats
        for spot in spots:
            scenes = repo.spot_scenes(session, spot)
            assert sorted(scenes) == ["open", "stride"]
            assert {(d.kind, d.locale, d.aspect) for d in scenes.values()} == \
                {(DeliverableKind.SCENE, spot.locale, spot.aspect)}
            assert all(scene_id == d.scene_id for scene_id, d in scenes.items())
