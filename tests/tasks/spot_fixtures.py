"""Small synthetic scene clips (ffmpeg lavfi, real encodes) and a two-scene, four-language brief
for the spot tests. No model: a moving test pattern and a tone per scene."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, ImageDraw

from infra.media import run_ffmpeg
from schemas.brief import Aspect, Brief, load_brief
from schemas.finishing import CaptionCue
from schemas.spot import SpotSpec
from tasks.end_card import compose_end_card, end_card_text, write_end_card
from tasks.spot import SceneClip
from tests.example_brief import example_text

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "brief.yaml"
LOCALES = ["en-US", "de-DE", "ar-SA", "zh-CN"]
# Small delivery sizes keep each spot test to seconds; the safe zones are fractions, so the
# layout is the one a 720x1280 delivery gets.
TEST_SIZES = {Aspect.LANDSCAPE: (320, 180), Aspect.PORTRAIT: (180, 320)}
SCENE_S = 2.0
# 440.25 cycles in 2 s: the first scene's tone ends at the top of a swing, so joining it to the
# next scene (which starts at zero) without a fade or crossfade is an audible click.
OPEN_TONE_HZ = 220.125
LINES = {
    "en-US": ("Every morning starts", "with one step."),
    "de-DE": ("Jeder Morgen beginnt", "mit einem Schritt."),
    "ar-SA": ("كل صباح يبدأ", "بخطوة واحدة."),
    "zh-CN": ("每天早上", "从一步开始。"),
}
CTA = {"en-US": "Run today", "de-DE": "Heute loslaufen", "ar-SA": "اركض اليوم",
       "zh-CN": "今天就跑"}
LEGAL = {"en-US": "Terms apply.", "de-DE": "Es gelten die AGB.", "ar-SA": "تطبق الشروط.",
         "zh-CN": "适用条款。"}


def make_scene_clip(path: Path, *, seconds: float = SCENE_S, tone_hz: float = 220.0,
                    size: str = "128x72") -> Path:
    """An H.264/AAC clip: testsrc2 picture at 24 fps, a tone with a 3 Hz speech-like swell."""
    run_ffmpeg(["-y", "-f", "lavfi", "-i", f"testsrc2=s={size}:r=24:d={seconds}",
                "-f", "lavfi", "-i", f"sine=f={tone_hz}:sample_rate=48000:d={seconds}",
                "-af", "tremolo=f=3:d=0.6", "-c:v", "libx264", "-preset", "ultrafast",
                "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", "-shortest", str(path)])
    return path


def spot_brief(**changes: Any) -> Brief:
    """Two scenes (the second continuing the first), four languages, 16:9 and 9:16, crossfade,
    brand kit with a 1.5 s end card; YouTube and Instagram (Reels: the tightest 9:16 zone)."""
    data: dict[str, Any] = yaml.safe_load(example_text())
    data.update(
        locales=LOCALES, aspects=["16:9", "9:16"], platforms=["youtube", "instagram"],
        transition="crossfade", crossfade_s=0.25,
        brand_kit={"logo": "logo.png", "colours": ["#101820", "#FEE715"],
                   "legal": LEGAL, "end_card_s": 1.5},
        scenes=[
            {"scene_id": "open", "visual": "runner at sunrise", "duration_s": SCENE_S,
             "dialogue": {loc: [{"speaker": "Runner", "text": LINES[loc][0]}]
                          for loc in LOCALES},
             "on_screen_text": {loc: {"brand_line": "Aurora One", "call_to_action": CTA[loc]}
                                for loc in LOCALES}},
            {"scene_id": "stride", "visual": "close on the shoes", "duration_s": SCENE_S,
             "continue_from": "open",
             "dialogue": {loc: [{"speaker": "Runner", "text": LINES[loc][1]}]
                          for loc in LOCALES}},
        ])
    data.update(changes)
    return load_brief(json.dumps(data))


def logo_image() -> Image.Image:
    logo = Image.new("RGBA", (200, 80), (0, 0, 0, 0))
    ImageDraw.Draw(logo).ellipse((0, 0, 199, 79), fill=(255, 200, 0, 255))
    return logo


def scene_clips(brief: Brief, locale: str, paths: dict[str, Path]) -> list[SceneClip]:
    """The brief's scenes as clips: one caption cue per scene over most of it."""
    clips = []
    for scene in brief.scenes:
        lines = [line.text for line in scene.dialogue.get(locale, [])]
        cues = [CaptionCue(start_s=0.1, end_s=SCENE_S - 0.1, lines=lines)] if lines else []
        clips.append(SceneClip(scene_id=scene.scene_id, path=str(paths[scene.scene_id]),
                               captions=cues,
                               on_screen_text=scene.on_screen_text.get(locale)))
    return clips


def end_card_png(brief: Brief, spec: SpotSpec, workdir: Path) -> Path:
    assert brief.brand_kit is not None
    card = compose_end_card(size=TEST_SIZES[spec.aspect], text=end_card_text(brief, spec.locale),
                            logo=logo_image(), colours=brief.brand_kit.colours,
                            safe_zone=spec.safe_zone)
    return write_end_card(card, workdir / f"{spec.spot_id.replace('/', '_')}.card.png")


# What four_market_brief_text plans: two scenes, a crossfade between them, then the end card
# on the brand background.
FOUR_MARKET_SCENE_S, FOUR_MARKET_CROSSFADE_S, FOUR_MARKET_END_CARD_S = 1.5, 0.25, 1.0
BRAND_BACKGROUND = "#101820"


def four_market_brief_text(**changes: Any) -> str:
    """Two 1.5 s scenes (the first with on-screen text), four languages, 9:16, crossfade, a
    brand kit naming logo.png (next to the brief) with a 1 s end card."""
    brief: dict[str, Any] = {
        "campaign": "aurora-four-markets", "brand": "Aurora", "product": "Aurora One",
        "locales": LOCALES, "aspects": ["9:16"], "platforms": ["youtube", "instagram"],
        "transition": "crossfade", "crossfade_s": FOUR_MARKET_CROSSFADE_S, "max_qc_retries": 0,
        "brand_kit": {"logo": "logo.png", "colours": [BRAND_BACKGROUND, "#FEE715"],
                      "legal": LEGAL, "call_to_action": CTA, "end_card_s": FOUR_MARKET_END_CARD_S},
        "scenes": [
            {"scene_id": "open", "visual": "runner at sunrise", "duration_s": FOUR_MARKET_SCENE_S,
             "dialogue": {loc: [{"speaker": "Runner", "text": LINES[loc][0]}]
                          for loc in LOCALES},
             "on_screen_text": {loc: {"brand_line": "Aurora One"} for loc in LOCALES}},
            {"scene_id": "stride", "visual": "close on the shoes",
             "duration_s": FOUR_MARKET_SCENE_S,
             "dialogue": {loc: [{"speaker": "Runner", "text": LINES[loc][1]}]
                          for loc in LOCALES}},
        ]}
    brief.update(changes)
    return yaml.safe_dump(brief, allow_unicode=True)
