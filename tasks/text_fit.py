"""Burned-in text checked at submission with the fonts and the renderer that will draw it:
every character has a glyph, and every caption and on-screen line lands inside its safe zone.

Both used to fail only after the renders: characters no font has were published as empty
boxes, and a word too long to wrap (a URL, a long compound) failed the spot's QC in pixels.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infra.fonts import (
    FONTS,
    FontRejected,
    code_points,
    font_files,
    packaged_code_points,
    undrawable,
)
from schemas.brief import Brief, OnScreenText
from schemas.finishing import TARGET_SIZES, CaptionCue
from schemas.platforms import SafeZone
from schemas.spot import plan_spots
from tasks.captions import break_lines
from tasks.end_card import end_card_font, end_card_text
from tasks.overlay import TITLE_SAFE_MARGIN, TimedText, build_timed_ass
from tasks.spot_qc import TEXT_CANVAS, draw_text_layer, outside_zone, text_mask

SHOWN_CHARACTERS = 5  # a refusal names this many missing characters, then counts the rest
SHOWN_WORD_CHARS = 40
Problems = list[tuple[str, str]]


# ---- glyphs ------------------------------------------------------------------------------------


def _libass_texts(brief: Brief) -> Iterator[tuple[str, str]]:
    """(field, text) of everything libass draws: captions and on-screen text."""
    for index, scene in enumerate(brief.scenes):
        for locale, lines in scene.dialogue.items():
            for number, line in enumerate(lines):
                yield f"scenes[{index}].dialogue.{locale}[{number}].text", line.text
        for locale, text in scene.on_screen_text.items():
            for name, value in text.given():
                yield f"scenes[{index}].on_screen_text.{locale}.{name}", value


def _end_card_texts(brief: Brief) -> Iterator[tuple[str, str, str]]:
    """(field, locale, text) of what the end card draws: each locale's CTA (the kit's, or the
    last scene's on-screen one) and legal line."""
    if brief.brand_kit is None:
        return
    for locale in brief.locales:
        text = end_card_text(brief, locale)
        if text.call_to_action is not None and text.call_to_action_field is not None:
            yield text.call_to_action_field, locale, text.call_to_action
        if text.legal is not None:
            yield f"brand_kit.legal.{locale}", locale, text.legal


def _missing_message(missing: list[str], fonts: str, remedy: str) -> str:
    shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in missing[:SHOWN_CHARACTERS])
    more = f" and {len(missing) - SHOWN_CHARACTERS} more" if len(missing) > SHOWN_CHARACTERS \
        else ""
    return (f"{shown}{more}: {fonts} no glyph for {'it' if len(missing) == 1 else 'them'}, "
            f"so {'it' if len(missing) == 1 else 'they'} would show as empty boxes; {remedy}")


def glyph_problems(brief: Brief, brand_font: Path | None) -> Problems:
    """Text with characters its font cannot draw. libass falls back across the packaged
    families, so captions and on-screen text need a glyph in any of them; PIL draws each text
    of the end card in one font, the brand font when it has every glyph the text needs, else
    the packaged family of the locale's script (`end_card_font`), which must have them."""
    problems: Problems = []
    packaged = packaged_code_points()
    families = ", ".join(FONTS)
    for field, text in _libass_texts(brief):
        if missing := undrawable(text, packaged):
            problems.append((field, _missing_message(
                missing, f"the packaged fonts ({families}) have",
                "remove or replace them")))
    if brand_font is not None:
        try:
            code_points(brand_font)
        except FontRejected as err:
            return [*problems, ("brand_kit.font", str(err))]
    for field, locale, text in _end_card_texts(brief):
        font = end_card_font(locale, brand_font, text)
        if font == brand_font:
            continue  # it has them all
        family = next(name for name, path in font_files().items() if path == font)
        fonts = f"{family} (the end card's font) has"
        reported = any(field == known for known, _ in problems)  # a CTA drawn twice
        if (missing := undrawable(text, code_points(font))) and not reported:
            problems.append((field, _missing_message(missing, fonts, "remove or replace them")))
    return problems


# ---- safe zones --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """One way text is laid out: a locale at a delivery size inside a safe zone (a spot's,
    or the title-safe area of a published scene cut-down), captions and on-screen text."""

    locale: str
    size: tuple[int, int]
    zone: SafeZone
    what: str  # "the 9:16 spot", for messages


def _layouts(brief: Brief) -> list[_Layout]:
    layouts: dict[tuple[str, tuple[int, int], SafeZone], _Layout] = {}
    for spot in plan_spots(brief):
        size = TARGET_SIZES[spot.aspect]
        layouts.setdefault((spot.locale, size, spot.safe_zone), _Layout(
            spot.locale, size, spot.safe_zone, f"the {spot.aspect.value} spot"))
    if brief.publish_scenes:  # scene cut-downs burn their text inside the title-safe area
        title_safe = SafeZone(top=TITLE_SAFE_MARGIN, bottom=TITLE_SAFE_MARGIN,
                              left=TITLE_SAFE_MARGIN, right=TITLE_SAFE_MARGIN)
        for locale in brief.locales:
            for aspect in brief.aspects:
                size = TARGET_SIZES[aspect]
                layouts.setdefault((locale, size, title_safe), _Layout(
                    locale, size, title_safe, f"the {aspect.value} scene cut-down"))
    return list(layouts.values())


@dataclass(frozen=True)
class _Event:
    field: str
    text: str
    caption: CaptionCue | None
    on_screen: OnScreenText | None


def _events(brief: Brief, layout: _Layout, skip: set[str]) -> list[_Event]:
    """Each text of the layout's locale on its own second: every caption cue (as the spot
    breaks the lines) and every scene's on-screen text."""
    events: list[_Event] = []
    for index, scene in enumerate(brief.scenes):
        for number, line in enumerate(scene.dialogue.get(layout.locale, [])):
            field = f"scenes[{index}].dialogue.{layout.locale}[{number}].text"
            if field in skip:
                continue
            for block in break_lines(line.text):
                second = len(events)
                cue = CaptionCue(start_s=float(second), end_s=float(second + 1), lines=block)
                events.append(_Event(field, " ".join(block), cue, None))
        text = scene.on_screen_text.get(layout.locale)
        field = f"scenes[{index}].on_screen_text.{layout.locale}"
        if text is not None and not any(f.startswith(field) for f in skip):
            shown = " ".join(value for _, value in text.given())
            events.append(_Event(field, shown, None, text))
    return events


def _longest_word(text: str) -> str:
    word = max(text.split(), key=len, default=text)
    return word if len(word) <= SHOWN_WORD_CHARS else word[:SHOWN_WORD_CHARS] + "…"


def _probe_script(layout: _Layout, events: list[_Event]) -> str:
    """The ASS script drawing each event alone on its own second, as the spot styles it."""
    width, height = layout.size
    captions = [e.caption for e in events if e.caption is not None]
    timed = [TimedText(start_s=float(k), end_s=float(k + 1), text=e.on_screen)
             for k, e in enumerate(events) if e.on_screen is not None]
    return build_timed_ass(width=width, height=height, locale=layout.locale, captions=captions,
                           on_screen=timed, safe_zone=layout.zone)


@functools.lru_cache(maxsize=512)
def _outside_pixels(script: str, size: tuple[int, int], zone: SafeZone, count: int
                    ) -> tuple[int, ...]:
    """Pixels outside `zone` of each of the script's `count` seconds, drawn by libass. Cached:
    a brief sent again (or another with the same texts) is not drawn again."""
    with tempfile.TemporaryDirectory(prefix="text-fit-") as tmp:
        ass = Path(tmp) / "probe.ass"
        ass.write_text(script, encoding="utf-8")
        drawn = draw_text_layer(ass, size, 1.0, list(range(count)), Path(tmp))
        return tuple(outside_zone(text_mask(frame, TEXT_CANVAS), zone) for frame in drawn)


def zone_problems(brief: Brief, skip: set[str] | None = None) -> Problems:
    """Captions and on-screen text drawn by libass, as the spots will draw them, one text at a
    time: any pixel outside the safe zone is a word too long to wrap (libass breaks lines only
    at spaces). Fields in `skip` (already refused) are not drawn."""
    skip = skip or set()
    outside: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for layout in _layouts(brief):
        events = _events(brief, layout, skip)
        if not events:
            continue
        counts = _outside_pixels(_probe_script(layout, events), layout.size, layout.zone,
                                 len(events))
        for event, count in zip(events, counts, strict=True):
            if count:
                where = outside.setdefault(event.field, [])
                width, height = layout.size
                if (what := f"{layout.what} ({width}x{height})") not in where:
                    where.append(what)
                texts.setdefault(event.field, event.text)
    return [(field, f"does not fit inside the safe zone of {' and '.join(where)}: libass "
                    f"wraps lines only at spaces, and {_longest_word(texts[field])!r} is too "
                    "wide for one line; shorten it or add spaces")
            for field, where in outside.items()]


def text_problems(brief: Brief, brand_font: Path | None) -> Problems:
    """Everything the brief burns in, checked as it will be drawn (glyphs, then fit)."""
    glyphs = glyph_problems(brief, brand_font)
    return glyphs + zone_problems(brief, skip={field for field, _ in glyphs})
