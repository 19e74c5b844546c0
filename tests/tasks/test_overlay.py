"""Burned-in text through libass: captions in Latin, CJK and Arabic script, on-screen text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infra.media import decode_video_frames
from schemas.brief import Aspect, LoudnessProfile, OnScreenText
from schemas.finishing import LOUDNESS_TARGETS, CaptionCue, FinishSpec
from tasks.finishing import finish_clip
from tasks.overlay import build_ass
from tests.tasks.test_finishing import synthetic_clip

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "captions"
LINES = {"en-US": "Every morning starts with one step.", "zh-CN": "每天早上都有新鲜的咖啡",
         "ar": "قهوة طازجة كل صباح"}


@pytest.mark.parametrize("locale", list(LINES))
def test_burned_in_captions_change_the_caption_area(tmp_path: Path, locale: str) -> None:
    frames, audio = synthetic_clip(2.0)
    spec = FinishSpec(aspect=Aspect.LANDSCAPE, locale=locale,
                      loudness=LOUDNESS_TARGETS[LoudnessProfile.WEB],
                      captions=[CaptionCue(start_s=0.0, end_s=1.9, lines=[LINES[locale]])])
    result = finish_clip(frames, audio, 24.0, 48_000, spec, tmp_path)
    assert result.burned_path is not None and result.qc.passed, result.qc.failures
    plain = decode_video_frames(Path(result.video_path))[12].astype(np.int16)
    burned = decode_video_frames(Path(result.burned_path))[12].astype(np.int16)
    band = slice(int(720 * 0.75), int(720 * 0.92))  # the caption band above the safe margin
    changed = np.abs(burned[band] - plain[band]).max(axis=-1) > 40
    assert changed.mean() > 0.005, "no caption drawn in the caption band"
    top = np.abs(burned[:300] - plain[:300]).max(axis=-1) > 40
    assert top.mean() < 0.001, "text drawn outside the caption band"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(burned.astype(np.uint8)).save(ARTIFACTS / f"{locale}.png")


def test_on_screen_text_stays_inside_the_title_safe_area() -> None:
    ass = build_ass(width=720, height=1280, locale="de-DE", duration_s=2.0, captions=[],
                    on_screen=OnScreenText(brand_line="Aurora One", call_to_action="Jetzt {los}",
                                           price="129 €"))
    styles = [line for line in ass.splitlines() if line.startswith("Style: ")]
    for line in styles:
        margin_l, margin_r, margin_v = (int(v) for v in line.split(",")[-4:-1])
        assert margin_l >= 72 and margin_r >= 72 and margin_v >= 128  # 10 % of 720 / 1280
    assert "Jetzt \\{los\\}" in ass  # braces escaped: no accidental override tags
    assert ass.count("Dialogue:") == 3
