"""QC on spots: joins (click, hole), text inside the safe zone on rendered frames, platform
duration, loudness and true peak over the whole spot; each check shown to pass and to fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from schemas.brief import Aspect, OnScreenText, Platform
from schemas.finishing import CaptionCue, LoudnessTarget
from schemas.platforms import TITLE_SAFE_ZONE, SafeZone, safe_zone
from schemas.spot import SpotSpec, plan_spots
from tasks.overlay import TimedText, build_timed_ass
from tasks.spot import SpotMeasurement, SpotResult, assemble_measured_spot, assemble_spot
from tasks.spot_qc import ass_event_times, join_problems, rendered_text_checks, run_spot_qc
from tests.tasks.spot_fixtures import (
    OPEN_TONE_HZ,
    TEST_SIZES,
    end_card_png,
    make_scene_clip,
    scene_clips,
    spot_brief,
)

RATE = 48_000
REELS = safe_zone([Platform.INSTAGRAM], Aspect.PORTRAIT)


def _tone(hz: float, seconds: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t + phase))[None].astype(np.float32)


def test_an_equal_power_crossfade_is_a_clean_join() -> None:
    first, second = _tone(220, 1.0), _tone(330, 1.0, phase=1.3)
    overlap = int(0.25 * RATE)
    ramp = np.linspace(0, np.pi / 2, overlap)
    mixed = first[:, -overlap:] * np.cos(ramp) + second[:, :overlap] * np.sin(ramp)
    audio = np.concatenate([first[:, :-overlap], mixed, second[:, overlap:]], axis=1)
    assert join_problems(audio, RATE, [0.75 + 0.125]) == []


def test_a_raw_splice_is_a_click() -> None:
    audio = np.concatenate([_tone(220, 1.0), _tone(330, 1.0, phase=np.pi / 2)], axis=1)
    [problem] = join_problems(audio, RATE, [1.0])
    assert problem.startswith("click at 1.000 s")


def test_a_dropout_at_the_join_is_a_hole_even_when_faded() -> None:
    fade = np.linspace(1, 0, int(0.005 * RATE))
    first, second = _tone(220, 1.0), _tone(220, 1.0)
    first[:, -fade.size:] *= fade
    second[:, :fade.size] *= fade[::-1]
    gap = np.zeros((1, int(0.04 * RATE)), dtype=np.float32)
    audio = np.concatenate([first, gap, second], axis=1)
    problems = join_problems(audio, RATE, [1.02])
    assert [p.split(" at")[0] for p in problems] == ["hole"]
    assert join_problems(np.concatenate([first, second], axis=1), RATE, [1.0]) == []


def _ass(tmp_path: Path, zone_for_layout: object) -> Path:
    ass = tmp_path / "text.ass"
    ass.write_text(build_timed_ass(
        width=180, height=320, locale="de-DE",
        captions=[CaptionCue(start_s=0.5, end_s=1.5, lines=["Jeder Morgen beginnt"])],
        on_screen=[TimedText(start_s=0.0, end_s=2.0, text=OnScreenText(
            brand_line="Aurora One", price="129 €", call_to_action="Heute loslaufen"))],
        safe_zone=zone_for_layout), encoding="utf-8")  # type: ignore[arg-type]
    return ass


def test_text_laid_out_for_the_zone_is_found_inside_it_on_rendered_frames(
        tmp_path: Path) -> None:
    ass = _ass(tmp_path, REELS)
    assert ass_event_times(ass.read_text(encoding="utf-8")) == [(0.0, 2.0)] * 3 + [(0.5, 1.5)]
    checks = {c.name: c for c in rendered_text_checks(ass, (180, 320), REELS, tmp_path)}
    assert checks["text_drawn"].passed and checks["text_safe_zone"].passed, checks


def test_text_laid_out_for_title_safe_fails_the_reels_zone(tmp_path: Path) -> None:
    ass = _ass(tmp_path, TITLE_SAFE_ZONE)
    checks = {c.name: c for c in rendered_text_checks(ass, (180, 320), REELS, tmp_path)}
    assert checks["text_drawn"].passed
    assert not checks["text_safe_zone"].passed
    assert "px" in checks["text_safe_zone"].measured


@pytest.fixture(scope="module")
def cut_spot(tmp_path_factory: pytest.TempPathFactory) -> tuple[SpotSpec, SpotResult, Path]:
    """A 4 s two-scene de-DE 9:16 spot on cuts, without end card."""
    folder = tmp_path_factory.mktemp("qc")
    paths = {"open": make_scene_clip(folder / "open.mp4", tone_hz=OPEN_TONE_HZ),
             "stride": make_scene_clip(folder / "stride.mp4", tone_hz=330.0)}
    brief = spot_brief(transition="cut", brand_kit=None, aspects=["9:16"])
    spec = next(s for s in plan_spots(brief) if s.locale == "de-DE")
    result = assemble_spot(spec, scene_clips(brief, "de-DE", paths), folder,
                           size=TEST_SIZES[Aspect.PORTRAIT], end_card=None)
    return spec, result, folder


def test_a_good_spot_passes_every_check(cut_spot: tuple[SpotSpec, SpotResult, Path]) -> None:
    spec, result, folder = cut_spot
    report = run_spot_qc(spec, result, folder / "qc")
    assert report.passed, report.failures
    names = {c.name for c in report.checks}
    assert {"platform_duration", "true_peak", "joins", "text_safe_zone", "captions_safe_zone",
            "loudness", "frame_count", "captions"} <= names


def test_qc_on_what_assembly_measured_is_qc_on_the_file(
        tmp_path: Path, cut_spot: tuple[SpotSpec, SpotResult, Path]) -> None:
    """The delivery path hands assembly's measurement of the spot to QC instead of measuring
    the file twice: the report is the same, and a measurement of another file is believed
    (so it must be this file's: the loudness check then reads that file's level)."""
    spec, result, folder = cut_spot
    again, measured = assemble_measured_spot(spec, scene_clips(
        spot_brief(transition="cut", brand_kit=None, aspects=["9:16"]), "de-DE",
        {"open": folder / "open.mp4", "stride": folder / "stride.mp4"}), tmp_path,
        size=TEST_SIZES[Aspect.PORTRAIT], end_card=None)
    assert again.loudness_out_lufs == result.loudness_out_lufs
    assert run_spot_qc(spec, again, tmp_path / "qc", measured) == \
        run_spot_qc(spec, again, tmp_path / "qc-own")
    silent = SpotMeasurement(analysis=measured.analysis,
                             audio=(np.zeros_like(measured.audio[0]), measured.audio[1]))
    report = run_spot_qc(spec, again, tmp_path / "qc-silent", silent)
    assert "loudness" in {f.split(":")[0] for f in report.failures}, report.failures


def test_platform_limits_loudness_and_peak_are_measured_on_the_spot(
        cut_spot: tuple[SpotSpec, SpotResult, Path]) -> None:
    spec, result, folder = cut_spot
    strict = spec.model_copy(update={
        "platforms": [Platform.TIKTOK],
        "loudness": LoudnessTarget(integrated_lufs=-23.0, true_peak_dbtp=-12.0)})
    report = run_spot_qc(strict, result, folder / "qc-strict")
    failed = {f.split(":")[0] for f in report.failures}
    assert failed == {"platform_duration", "loudness", "true_peak"}, report.failures
    assert any("tiktok takes spots of 5-60 s; this spot lasts 4.00 s" in failure
               for failure in report.failures)


def test_burned_captions_must_be_drawn_and_inside_the_safe_zone(
        cut_spot: tuple[SpotSpec, SpotResult, Path]) -> None:
    spec, result, folder = cut_spot
    # the "burned" variant is the master itself: no caption drawn at any cue
    undrawn = run_spot_qc(spec, result.model_copy(update={"burned_path": result.video_path}),
                          folder / "qc-undrawn")
    [failure] = [f for f in undrawn.failures if f.startswith("captions_safe_zone")]
    assert "no caption drawn at" in failure
    # a narrow middle column: the captions cross its sides
    column = SafeZone(top=0.0, bottom=0.0, left=0.4, right=0.4)
    outside = run_spot_qc(spec.model_copy(update={"safe_zone": column}), result,
                          folder / "qc-outside")
    [failure] = [f for f in outside.failures if f.startswith("captions_safe_zone")]
    assert "of the frame outside the zone changed at" in failure


def test_a_full_spot_with_crossfade_and_end_card_passes(tmp_path: Path) -> None:
    brief = spot_brief()
    spec = next(s for s in plan_spots(brief) if s.locale == "zh-CN"
                and s.aspect == Aspect.PORTRAIT)
    paths = {"open": make_scene_clip(tmp_path / "open.mp4", tone_hz=OPEN_TONE_HZ),
             "stride": make_scene_clip(tmp_path / "stride.mp4", tone_hz=330.0)}
    result = assemble_spot(spec, scene_clips(brief, "zh-CN", paths), tmp_path,
                           size=TEST_SIZES[Aspect.PORTRAIT],
                           end_card=end_card_png(brief, spec, tmp_path))
    report = run_spot_qc(spec, result, tmp_path / "qc")
    assert report.passed, report.failures


def test_a_quiet_tail_of_a_render_is_not_a_hole() -> None:
    first, second = _tone(220, 1.0), _tone(220, 1.0)
    first[:, -int(0.03 * RATE):] *= 0.01  # -40 dB, but not silent: the render's own quiet
    assert join_problems(np.concatenate([first, second], axis=1), RATE, [1.0]) == []
