"""Platform presets and the brief's new spot fields: what a team is told at submission."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from schemas.brief import Aspect, LoudnessProfile, Platform, Transition, load_brief
from schemas.errors import BriefInvalid
from schemas.platforms import (
    PLATFORM_PRESETS,
    TITLE_SAFE_ZONE,
    SafeZone,
    deliverable_name,
    loudness_target,
    safe_zone,
)
from tests.example_brief import example_text

EXAMPLE = example_text()  # without its brand kit: a one-scene, 1.0 s spot


def _example(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE)
    data.update(changes)
    return data


def _scene(scene_id: str, duration_s: float = 4.0, **extra: Any) -> dict[str, Any]:
    return {"scene_id": scene_id, "visual": f"{scene_id} shot", "duration_s": duration_s, **extra}


def _problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(BriefInvalid) as info:
        load_brief(json.dumps(data))
    return info.value.problems


def test_the_example_brief_is_still_valid_and_unchanged_in_meaning() -> None:
    brief = load_brief(example_text(brand_kit=True))
    assert brief.transition == Transition.CUT and brief.brand_kit is not None
    assert brief.end_card_s == 1.0 and brief.spot_duration_s == pytest.approx(2.0)
    assert all(scene.continue_from is None for scene in brief.scenes)


def test_every_platform_has_a_preset_with_the_published_numbers() -> None:
    assert set(PLATFORM_PRESETS) == set(Platform)
    tiktok = PLATFORM_PRESETS[Platform.TIKTOK]
    assert (tiktok.min_duration_s, tiktok.max_duration_s) == (5.0, 60.0)
    assert PLATFORM_PRESETS[Platform.BROADCAST].aspects == (Aspect.LANDSCAPE,)
    assert loudness_target(Platform.BROADCAST, LoudnessProfile.WEB).integrated_lufs == -23.0
    assert loudness_target(Platform.TIKTOK, LoudnessProfile.BROADCAST).integrated_lufs == -14.0
    # web follows the brief's own profile, as before presets existed
    assert loudness_target(Platform.WEB, LoudnessProfile.BROADCAST).integrated_lufs == -23.0
    assert all(p.loudness is None or p.loudness.true_peak_dbtp == -1.0
               for p in PLATFORM_PRESETS.values())
    assert PLATFORM_PRESETS[Platform.YOUTUBE].video_bitrate_kbps == 5000  # 720p SDR, YouTube help


def test_portrait_safe_zone_is_the_tightest_of_the_platforms_and_never_below_title_safe() -> None:
    reels = safe_zone([Platform.INSTAGRAM], Aspect.PORTRAIT)
    assert (reels.top, reels.bottom) == (0.14, 0.35)
    assert reels.left == reels.right == 0.10  # Meta's 6 % sides raised to title-safe
    both = safe_zone([Platform.TIKTOK, Platform.INSTAGRAM], Aspect.PORTRAIT)
    assert both.bottom == 0.35 and both.right == pytest.approx(150 / 1080)
    assert safe_zone([Platform.TIKTOK], Aspect.LANDSCAPE) == TITLE_SAFE_ZONE
    assert SafeZone(top=0.14, bottom=0.35, left=0.1, right=0.1).box(720, 1280) == (
        72, 179, 648, 832)
    with pytest.raises(ValueError, match="less than 10 %"):
        SafeZone(top=0.45, bottom=0.45, left=0.1, right=0.1)


def test_deliverable_names_are_per_platform_and_file_system_safe() -> None:
    name = deliverable_name("aurora-spring-launch", "de-DE", Aspect.PORTRAIT, Platform.TIKTOK)
    assert name == "aurora-spring-launch_de-DE_9x16_tiktok.mp4"


def test_a_spot_too_short_for_tiktok_is_rejected_with_the_reason_and_path() -> None:
    problems = _problems(_example(platforms=["youtube", "tiktok"]))
    assert problems == [("platforms[1]", "tiktok takes spots of 5-60 s; this spot lasts 1.00 s")]


def test_a_spot_too_long_for_tiktok_is_rejected() -> None:
    scenes = [_scene(f"s{i}", 8.0) for i in range(8)]  # 64 s
    problems = _problems(_example(platforms=["tiktok"], scenes=scenes))
    assert problems == [("platforms[0]", "tiktok takes spots of 5-60 s; this spot lasts 64.00 s")]


def test_broadcast_refuses_portrait_and_square() -> None:
    data = _example(platforms=["broadcast"], aspects=["16:9", "9:16", "1:1"],
                    scenes=[_scene("a", 6.0)])
    paths = [path for path, _ in _problems(data)]
    messages = [message for _, message in _problems(data)]
    assert paths == ["platforms[0]", "platforms[0]"]
    assert messages[0].startswith("broadcast does not take 9:16 spots (allowed: 16:9)")
    assert "1:1" in messages[1]


def test_crossfades_and_end_card_count_towards_the_platform_limit() -> None:
    kit = {"logo": "logo.png", "colours": ["#101820", "#FEE715"], "end_card_s": 2.0}
    # 3 x 2 s - 2 x 0.5 s crossfade + 2 s card = 7 s: fits TikTok's 5 s minimum
    ok = load_brief(json.dumps(_example(
        platforms=["tiktok"], transition="crossfade", crossfade_s=0.5, brand_kit=kit,
        scenes=[_scene("a", 2.0), _scene("b", 2.0), _scene("c", 2.0)])))
    assert ok.spot_duration_s == pytest.approx(7.0)
    # without the end card, with 0.95 s (23-frame) crossfades: 3 x 48 - 2 x 23 frames = 4.08 s
    problems = _problems(_example(
        platforms=["tiktok"], transition="crossfade", crossfade_s=0.95,
        scenes=[_scene("a", 2.0), _scene("b", 2.0), _scene("c", 2.0)]))
    assert problems == [("platforms[0]", "tiktok takes spots of 5-60 s; this spot lasts 4.08 s")]


def test_a_scene_shorter_than_two_crossfades_is_rejected() -> None:
    problems = _problems(_example(transition="crossfade", crossfade_s=0.4,
                                  scenes=[_scene("a", 0.7), _scene("b", 2.0)]))
    assert problems == [("scenes[0].duration_s",
                         "a 10-frame crossfade (0.417 s) at each end needs scenes longer than 20 "
                         "frames (0.833 s); this scene gives 17 frames (0.708 s)")]


def test_a_crossfade_at_the_limit_assembly_refuses_is_refused_at_submission() -> None:
    # Hostile pass #5: 0.5 s scenes render 13 frames, trimmed to 12; a 0.25 s crossfade is 6
    # frames, and assembly needs more than 2 x 6. `0.5 < 2 * 0.25` is false, so it was accepted.
    problems = _problems(_example(
        transition="crossfade", crossfade_s=0.25,
        scenes=[_scene("long", 8.0416666), _scene("mid", 0.5), _scene("last", 0.5)]))
    why = ("a 6-frame crossfade (0.250 s) at each end needs scenes longer than 12 frames "
           "(0.500 s); this scene gives 12 frames (0.500 s)")
    assert problems == [("scenes[1].duration_s", why), ("scenes[2].duration_s", why)]
    # one frame more is enough, for submission as for assembly
    load_brief(json.dumps(_example(transition="crossfade", crossfade_s=0.25,
                                   scenes=[_scene("a", 2.0), _scene("b", 0.55)])))


def test_the_platform_limit_is_checked_against_the_frames_the_spot_will_have() -> None:
    # Hostile pass #4 (b5): planned 1.29 + 1.29 + 1.4567 + 1.0 = 5.04 s, but 1.29 s renders 29
    # frames (not 31) and 1.4567 s renders 33 (not 35): 29 + 29 + 33 + 24 = 115 frames, 4.79 s.
    kit = {"logo": "logo.png", "colours": ["#101820", "#FEE715"], "end_card_s": 1.0}
    problems = _problems(_example(
        platforms=["tiktok"], aspects=["9:16"], brand_kit=kit,
        scenes=[_scene("a", 1.29), _scene("b", 1.29), _scene("c", 1.4567)]))
    assert problems == [("platforms[0]", "tiktok takes spots of 5-60 s; this spot lasts 4.79 s")]
    # b8: 3.0 + 2.23 - 0.23 = 5.00 s planned; the crossfade is 6 whole frames and 2.23 s renders
    # 53 frames: 72 + 53 - 6 = 119 frames, 4.96 s.
    problems = _problems(_example(
        platforms=["broadcast"], aspects=["16:9"], loudness_profile="broadcast",
        transition="crossfade", crossfade_s=0.23,
        scenes=[_scene("a", 3.0), _scene("b", 2.23)]))
    assert problems == [("platforms[0]",
                         "broadcast takes spots of 5-120 s; this spot lasts 4.96 s")]
    # planned on whole 4k+1 renders, the same spot fits
    brief = load_brief(json.dumps(_example(
        platforms=["broadcast"], aspects=["16:9"], loudness_profile="broadcast",
        transition="crossfade", crossfade_s=0.25,
        scenes=[_scene("a", 3.0), _scene("b", 2.375)])))  # 57 frames: 72 + 57 - 6 = 123
    assert brief.spot_duration_s == pytest.approx(123 / 24)


def test_continue_from_must_name_another_existing_scene() -> None:
    scenes = [_scene("a", continue_from="a"), _scene("b", continue_from="nope"),
              _scene("c", continue_from="a", first_frame="c.png")]
    problems = _problems(_example(scenes=scenes))
    assert problems[0] == ("scenes[0].continue_from", "a scene cannot continue from itself")
    assert problems[1][0] == "scenes[1].continue_from" and "'nope' is not a scene" in problems[1][1]
    assert problems[2][0] == "scenes[2].continue_from" and "first_frame" in problems[2][1]


def test_continue_from_loops_are_rejected_on_every_scene_of_the_loop() -> None:
    scenes = [_scene("a", continue_from="c"), _scene("b", continue_from="a"),
              _scene("c", continue_from="b"), _scene("d", continue_from="a")]
    problems = _problems(_example(scenes=scenes))
    assert [path for path, _ in problems] == [f"scenes[{i}].continue_from" for i in range(3)]
    assert problems[0][1] == "the chain loops back to this scene: a -> c -> b -> a"


def test_a_chain_to_a_later_scene_is_allowed() -> None:
    brief = load_brief(json.dumps(_example(scenes=[_scene("a", continue_from="b"),
                                                   _scene("b")])))
    assert brief.scenes[0].continue_from == "b"


def test_brand_kit_is_checked_like_the_rest_of_the_brief() -> None:
    kit = {"logo": "../secret.png", "colours": ["red", "#00FF00"], "font": "/etc/font.ttf",
           "legal": {"en-US": "Terms apply.", "fr-FR": "Voir conditions."},
           "call_to_action": {"de-DE": "Jetzt kaufen"}, "end_card_s": 30}
    paths = {path for path, _ in _problems(_example(brand_kit=kit))}
    assert {"brand_kit.logo", "brand_kit.colours[0]", "brand_kit.font",
            "brand_kit.end_card_s"} <= paths
    kit = {"logo": "brand/logo.png", "colours": ["#101820"],
           "legal": {"en-US": "Terms apply.", "fr-FR": "Voir conditions."}}
    problems = _problems(_example(brand_kit=kit))
    assert ("brand_kit.legal", "locale(s) ['fr-FR'] are not in locales ['en-US', 'de-DE']") \
        in problems
    assert ("brand_kit.legal", "no line for ['de-DE']") in problems


def test_a_valid_brand_kit_normalises_locales() -> None:
    kit = {"logo": "brand/logo.png", "colours": ["#101820", "#fee715"],
           "legal": {"en-us": "Terms apply.", "de-de": "Es gelten die AGB."},
           "call_to_action": {"en-us": "Run today"}}
    brief = load_brief(json.dumps(_example(brand_kit=kit)))
    assert brief.brand_kit is not None
    assert set(brief.brand_kit.legal) == {"en-US", "de-DE"}
    assert brief.brand_kit.end_card_s == 2.0 and brief.spot_duration_s == pytest.approx(3.0)


def test_a_scene_continuing_from_itself_is_told_once() -> None:
    assert _problems(_example(scenes=[_scene("a", continue_from="a")])) == [
        ("scenes[0].continue_from", "a scene cannot continue from itself")]


def test_a_two_scene_loop_is_reported_on_both() -> None:
    problems = _problems(_example(scenes=[_scene("a", continue_from="b"),
                                          _scene("b", continue_from="a")]))
    assert problems == [
        ("scenes[0].continue_from", "the chain loops back to this scene: a -> b -> a"),
        ("scenes[1].continue_from", "the chain loops back to this scene: b -> a -> b")]


def test_a_bad_continuation_after_an_unchained_scene_is_still_reported() -> None:
    problems = _problems(_example(scenes=[_scene("a"), _scene("b", continue_from="a",
                                                              first_frame="b.png")]))
    assert problems == [("scenes[1].continue_from", "the scene also has a first_frame; it "
                                                    "starts from one or the other")]


def test_no_crossfade_no_crossfade_length_rule() -> None:
    # one scene has nothing to dissolve into; a cut dissolves nothing
    load_brief(json.dumps(_example(transition="crossfade", crossfade_s=0.4,
                                   scenes=[_scene("a", 0.7)])))
    load_brief(json.dumps(_example(transition="cut", crossfade_s=0.4,
                                   scenes=[_scene("a", 0.7), _scene("b", 0.7)])))
