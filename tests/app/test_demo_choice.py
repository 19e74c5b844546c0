"""What `mova-ads demo` runs: the demo model and a brief in its world's words by default; the
configured model or random weights with the example brief otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import DEMO_BRIEF, DEMO_MODEL, EXAMPLE_BRIEF, demo_choice
from infra.settings import load_settings
from mova_model.checkpoint import MODEL_INDEX
from schemas.brief import load_brief
from schemas.plan import RENDER_PROFILES, build_prompt


def test_by_default_the_demo_model_renders_the_demo_brief_at_its_own_settings() -> None:
    environment, brief = demo_choice(load_settings({}), random_weights=False)
    assert environment == {"MOVA_CHECKPOINT": str(DEMO_MODEL), "MOVA_RENDER_PROFILE": "demo"}
    assert brief == DEMO_BRIEF
    assert (DEMO_MODEL / MODEL_INDEX).is_file()
    # the settings the demo command puts in the environment are valid ones
    chosen = load_settings(environment)
    assert chosen.checkpoint == DEMO_MODEL and RENDER_PROFILES[chosen.mova_render_profile]


@pytest.mark.parametrize("env, random_weights", [
    ({}, True),
    ({"MOVA_CHECKPOINT": "/models/MOVA-360p", "MOVA_RENDER_PROFILE": "360p"}, False),
])
def test_a_configured_model_or_random_weights_run_the_example_brief(
        env: dict[str, str], random_weights: bool) -> None:
    environment, brief = demo_choice(load_settings(env), random_weights=random_weights)
    assert (environment, brief) == ({}, EXAMPLE_BRIEF)


def test_a_chosen_render_profile_is_kept_for_the_demo_model() -> None:
    environment, _ = demo_choice(load_settings({"MOVA_RENDER_PROFILE": "360p"}),
                                 random_weights=False)
    assert "MOVA_RENDER_PROFILE" not in environment


def test_the_demo_brief_speaks_the_demo_worlds_words() -> None:
    """Every prompt the demo brief plans names a colour, an object and a background of the
    world the demo model learnt (demo_world.world), and what a face says is its syllables."""
    from demo_world.world import BACKGROUNDS, COLOURS, OBJECTS, SYLLABLES

    brief = load_brief(Path(DEMO_BRIEF).read_text(encoding="utf-8"))
    for scene in brief.scenes:
        for locale in brief.locales:
            words = build_prompt(brief, scene, locale).lower().replace('"', " ").split()
            assert set(words) & set(COLOURS), scene.scene_id
            assert set(words) & set(BACKGROUNDS), scene.scene_id
            assert set(words) & set(OBJECTS), scene.scene_id
            for line in scene.dialogue.get(locale, []):
                assert set(line.text.split()) <= set(SYLLABLES), line.text


def test_serve_says_who_produces_the_briefs_it_takes(tmp_path: Path) -> None:
    """`serve --no-worker` without a Prefect server once said "Prefect deployments" while
    nothing would ever produce a brief."""
    from app.cli import _production_by

    local = load_settings({"MOVA_DATA_DIR": str(tmp_path)})
    served = load_settings({"MOVA_DATA_DIR": str(tmp_path),
                            "PREFECT_API_URL": "http://prefect:4200/api"})
    assert _production_by(True, local) == "embedded worker"
    assert _production_by(False, served) == "Prefect deployments at http://prefect:4200/api"
    assert _production_by(False, local).startswith("none: --no-worker without PREFECT_API_URL")
