"""What the API and the page say about a variant's progress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from app.views import variant_view
from infra import repository as repo
from infra.db import make_engine, session_scope, upgrade_to_head
from infra.statuses import DeliverableStatus
from tests.example_brief import example_text


@pytest.mark.parametrize(("publish_scenes", "stage", "progress"), [
    (False, "finished (in its spots)", 1.0), (True, "publishing", 0.9)])
def test_a_finished_scene_is_done_unless_it_is_published_itself(
        tmp_path: Path, publish_scenes: bool, stage: str, progress: float) -> None:
    """A scene finish the spots are made from is never published: it read 'publishing' at 90 %
    after its brief was done."""
    engine = make_engine(f"sqlite:///{tmp_path / 'mova_ads.db'}")
    upgrade_to_head(engine)
    brief = yaml.safe_load(example_text())
    brief["publish_scenes"] = publish_scenes
    with session_scope(engine) as session:
        row = repo.add_brief(session, campaign_slug=brief["campaign"], brand="Aurora",
                             raw=json.dumps(brief), sha256="c" * 64)
        scene = repo.ensure_deliverable(session, row, name="morning-run/en-US/16:9",
                                        scene_id="morning-run", locale="en-US", aspect="16:9",
                                        render_key="k" * 64)
        scene.status = DeliverableStatus.FINISHED
        view = variant_view(session, scene)
    engine.dispose()
    assert (view["stage"], view["progress"]) == (stage, progress)
