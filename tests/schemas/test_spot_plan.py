"""The spot plan: one spot per locale x aspect, render order along continue_from chains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.brief import Aspect, Brief, Platform, Transition, load_brief
from schemas.spot import plan_spots, render_order, scenes_to_rerender, spots_to_reassemble
from tests.example_brief import example_text

EXAMPLE = example_text()
LOCALES = ["en-US", "de-DE", "ar-SA", "zh-CN"]


def _brief(**changes: Any) -> Brief:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE)
    data.update(changes)
    return load_brief(json.dumps(data))


def _scene(scene_id: str, continue_from: str | None = None) -> dict[str, Any]:
    scene: dict[str, Any] = {"scene_id": scene_id, "visual": "a shot", "duration_s": 3.0}
    if continue_from:
        scene["continue_from"] = continue_from
    return scene


def test_two_scenes_four_languages_two_aspects_give_eight_spots() -> None:
    kit = {"logo": "logo.png", "colours": ["#101820", "#FEE715"], "end_card_s": 2.0}
    brief = _brief(locales=LOCALES, platforms=["youtube", "tiktok", "instagram"],
                   transition="crossfade", crossfade_s=0.25, brand_kit=kit,
                   scenes=[_scene("open"), _scene("product", continue_from="open")])
    spots = plan_spots(brief)
    assert [(s.locale, s.aspect) for s in spots] == [
        (loc, asp) for loc in LOCALES for asp in (Aspect.LANDSCAPE, Aspect.PORTRAIT)]
    assert len({s.spot_id for s in spots}) == 8
    portrait = spots[1]
    assert portrait.scene_ids == ["open", "product"]
    assert portrait.transition == Transition.CROSSFADE and portrait.end_card_s == 2.0
    assert portrait.duration_s == pytest.approx(3 + 3 - 0.25 + 2)
    assert portrait.loudness.integrated_lufs == -14.0
    assert portrait.safe_zone.bottom == 0.35  # Instagram Reels is the tightest at the bottom
    assert spots[0].safe_zone.bottom == 0.10  # 16:9: title-safe only
    assert portrait.file_names[Platform.TIKTOK] == (
        "aurora-spring-launch_en-US_9x16_tiktok.mp4")


def test_platforms_with_different_loudness_get_separate_spots() -> None:
    brief = _brief(platforms=["broadcast", "youtube"], aspects=["16:9"],
                   scenes=[_scene("a"), _scene("b")])
    spots = plan_spots(brief)
    assert [(s.locale, s.platforms, s.loudness.integrated_lufs) for s in spots] == [
        ("en-US", [Platform.YOUTUBE], -14.0), ("en-US", [Platform.BROADCAST], -23.0),
        ("de-DE", [Platform.YOUTUBE], -14.0), ("de-DE", [Platform.BROADCAST], -23.0)]
    assert spots[1].video_bitrate_kbps == 15000 and spots[0].video_bitrate_kbps == 5000


def test_render_order_puts_every_scene_after_the_one_it_continues() -> None:
    brief = _brief(scenes=[_scene("d", "c"), _scene("a"), _scene("c", "b"), _scene("b", "a"),
                           _scene("e")])
    order = render_order(brief)
    assert order == ["a", "b", "c", "d", "e"]
    assert render_order(_brief(scenes=[_scene("x"), _scene("y")])) == ["x", "y"]


def test_rerendering_a_scene_rerenders_its_chain_and_nothing_else() -> None:
    brief = _brief(scenes=[_scene("a"), _scene("b", "a"), _scene("c", "b"), _scene("d"),
                           _scene("e", "a")])
    assert scenes_to_rerender(brief, "a") == ["a", "b", "c", "e"]
    assert scenes_to_rerender(brief, "b") == ["b", "c"]
    assert scenes_to_rerender(brief, "d") == ["d"]
    with pytest.raises(KeyError, match="'zz' is not a scene"):
        scenes_to_rerender(brief, "zz")


def test_a_retake_in_one_locale_reassembles_only_that_locales_spots() -> None:
    brief = _brief(locales=LOCALES, scenes=[_scene("a"), _scene("b")])
    spots = plan_spots(brief)
    again = spots_to_reassemble(spots, ["b"], locale="ar-SA")
    assert [(s.locale, s.aspect) for s in again] == [("ar-SA", Aspect.LANDSCAPE),
                                                     ("ar-SA", Aspect.PORTRAIT)]
    assert len(spots_to_reassemble(spots, ["a"])) == 8
    assert spots_to_reassemble(spots, ["not-there"]) == []


def test_the_spots_example_brief_plans_eight_spots_with_its_chain() -> None:
    brief = load_brief((Path(__file__).parents[2] / "examples" / "spots-brief.yaml").read_text())
    spots = plan_spots(brief)
    assert len(spots) == 8 and {s.locale for s in spots} == set(LOCALES)
    assert render_order(brief) == ["city-dawn", "city-stride"]
    assert scenes_to_rerender(brief, "city-dawn") == ["city-dawn", "city-stride"]
    assert all(s.duration_s == pytest.approx(4 + 4 - 0.25 + 2) for s in spots)
