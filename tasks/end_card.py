"""The brand end card, composed in post with PIL: logo, call to action and legal line on the
brand colour, every element inside the spot's safe zone.

Text is shaped by libraqm (HarfBuzz + FriBiDi, built into Pillow's wheel), so Arabic joins and
runs right to left and CJK lines break between characters, as the burned-in captions do; the
fonts are the same packaged Noto families (`infra.fonts`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from infra.fonts import (
    RIGHT_TO_LEFT_LANGUAGES,
    FontRejected,
    code_points,
    font_family,
    font_files,
    undrawable,
)
from schemas.brief import Brief
from schemas.errors import PipelineError
from schemas.finishing import TARGET_SIZES
from schemas.platforms import SafeZone
from schemas.spot import plan_spots
from tasks.captions import is_cjk

LOGO_SHARE = (0.7, 0.4)  # the logo fits in this share of the safe box (width, height)
CTA_HEIGHT_SHARE = 0.09  # call-to-action font size, share of the safe box height
LEGAL_HEIGHT_SHARE = 0.035
MIN_LOGO_PX = 8  # a logo drawn thinner than this is a line, not a mark (a 20000x1 image)
MIN_FONT_PX = 9  # below this a legal line is not legible at 720p; refuse instead of shrinking
GAP_SHARE = 0.05  # vertical gap between logo, CTA and legal, share of the safe box height
CTA_MAX_LINES, LEGAL_MAX_LINES = 2, 4


# WCAG 2's minimum contrast for large text: the CTA and legal line must be readable.
MIN_CONTRAST = 3.0


class EndCardError(PipelineError):
    """The end card cannot be composed as asked (text too long for the card, bad logo)."""


class LegalLineError(EndCardError):
    """The legal line cannot be drawn on the card (its field: brand_kit.legal.<locale>)."""


class CallToActionError(EndCardError):
    """The call to action cannot be drawn on the card (its field: where the brief has it)."""


# A glyph advancing more than this many ems is no real design: the font's metrics are broken
# (every text "did not fit" at any size, which sent the user shortening a line).
MAX_GLYPH_ADVANCE_EMS = 4


@dataclass(frozen=True)
class EndCardText:
    locale: str
    call_to_action: str | None
    legal: str | None
    # where the CTA is written in the brief (for messages; not part of what is drawn)
    call_to_action_field: str | None = field(default=None, compare=False)


def end_card_text(brief: Brief, locale: str) -> EndCardText:
    """The CTA (the brand kit's for the locale, else the last scene's on-screen CTA) and the
    legal line of `locale`."""
    kit = brief.brand_kit
    if kit is None:
        raise EndCardError(f"brief {brief.campaign!r} has no brand_kit: no end card to compose")
    action = kit.call_to_action.get(locale)
    source = f"brand_kit.call_to_action.{locale}" if action is not None else None
    if action is None:
        for index in reversed(range(len(brief.scenes))):
            text = brief.scenes[index].on_screen_text.get(locale)
            if text is not None and text.call_to_action:
                action = text.call_to_action
                source = f"scenes[{index}].on_screen_text.{locale}.call_to_action"
                break
    return EndCardText(locale=locale, call_to_action=action, legal=kit.legal.get(locale),
                       call_to_action_field=source)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """(r, g, b) of a #RRGGBB colour."""
    value = int(colour.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def _luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG relative luminance."""
    srgb = [c / 255 for c in rgb]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in srgb]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG contrast ratio of two colours, 1 (the same) to 21 (black on white)."""
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def card_colours(colours: list[str]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(background, text): the kit's first two colours, or black/white text, whichever
    contrasts more with the background, when the kit has one colour."""
    background = hex_rgb(colours[0])
    if len(colours) > 1:
        return background, hex_rgb(colours[1])
    light = _luminance(background)
    white_contrast, black_contrast = 1.05 / (light + 0.05), (light + 0.05) / 0.05
    return background, (255, 255, 255) if white_contrast >= black_contrast else (0, 0, 0)


def end_card_font(locale: str, brand_font: Path | None, text: str) -> Path:
    """The font one text of the end card of `locale` (its CTA, its legal line) is drawn with.
    PIL does not fall back from font to font within a text, so a text is drawn whole in the
    brand font when that has a glyph for each of its characters, else in the packaged family
    of the locale's script: a Russian legal line or a price in € under a brand font without
    them is drawn in Noto Sans (it was refused), the CTA beside it still in the brand font."""
    # A brand font is a Latin design; Arabic, CJK, Hebrew and Thai text is always drawn in the
    # packaged family that covers its script.
    family = font_family(locale)
    if brand_font is not None and family == "Noto Sans":
        try:
            covered = code_points(brand_font)
        except FontRejected as err:
            raise EndCardError(f"the brand font cannot be read: {err}") from err
        if not undrawable(text, covered):
            return brand_font
    return font_files()[family]


def _direction(locale: str) -> str:
    return "rtl" if locale.split("-")[0].lower() in RIGHT_TO_LEFT_LANGUAGES else "ltr"


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, locale: str) -> list[str]:
    """Lines of at most `width` pixels: on spaces for spaced scripts, anywhere for CJK."""
    direction = _direction(locale)
    units = list(text) if is_cjk(text) else text.split()
    joiner = "" if is_cjk(text) else " "
    lines: list[str] = []
    current = ""
    for unit in units:
        candidate = f"{current}{joiner}{unit}" if current else unit
        if current and font.getlength(candidate, direction=direction) > width:
            lines.append(current)
            current = unit
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _fit(text: str, font_path: Path, size: int, box_w: int, max_lines: int,
         locale: str) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest font up to `size` px at which `text` wraps into `max_lines` lines of
    `box_w` px."""
    direction = _direction(locale)
    size = max(size, MIN_FONT_PX)  # on a small card the share would fall below legibility
    while size >= MIN_FONT_PX:
        try:
            font = ImageFont.truetype(str(font_path), size, layout_engine=ImageFont.Layout.RAQM)
        except OSError as err:  # FreeType's answer to a file that is no font
            raise EndCardError(f"the brand font cannot be read: {err}") from err
        with _drawing(text, font_path):
            lines = _wrap(text, font, box_w, locale)
            widest = max(font.getlength(line, direction=direction) for line in lines)
        if len(lines) <= max_lines and widest <= box_w:
            return font, lines
        size -= 1
    with _drawing(text, font_path):
        _check_advances(text, font)  # at MIN_FONT_PX, the last size tried
    raise EndCardError(f"end card text for {locale} does not fit in {max_lines} line(s) of "
                       f"{box_w} px at {MIN_FONT_PX} px or more: {text[:80]!r}")


@contextmanager
def _drawing(text: str, font_path: Path) -> Iterator[None]:
    """FreeType's errors while laying out or drawing `text` (a font that opens but whose glyphs
    are damaged) as the EndCardError they are, not a crash at submission."""
    try:
        yield
    except OSError as err:
        raise EndCardError(f"the font {font_path.name} cannot draw {text[:80]!r} ({err})") \
            from err


def _check_advances(text: str, font: ImageFont.FreeTypeFont) -> None:
    """An EndCardError when a character of `text` advances absurdly far (broken metrics)."""
    em = font.size
    for char in sorted(set(text) - {" "}):
        advance = font.getlength(char)
        if advance > MAX_GLYPH_ADVANCE_EMS * em:
            raise EndCardError(f"the font's metrics are broken: {char!r} advances {advance:.0f} "
                               f"px at {em} px (a character takes about one em); use another "
                               "font file")


def compose_end_card(*, size: tuple[int, int], text: EndCardText, logo: Image.Image,
                     colours: list[str], safe_zone: SafeZone,
                     brand_font: Path | None = None) -> Image.Image:
    """An RGB card of `size` (width, height): logo in the upper part of the safe box, the CTA
    below it, the legal line at the bottom of the safe box; all centred."""
    width, height = size
    background, ink = card_colours(colours)
    card = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(card)
    x0, y0, x1, y1 = safe_zone.box(width, height)
    box_w, box_h = x1 - x0, y1 - y0
    gap = round(box_h * GAP_SHARE)
    font_of = partial(end_card_font, text.locale, brand_font)
    direction = _direction(text.locale)
    language = text.locale.split("-")[0].lower()

    def draw_lines(lines: list[str], font: ImageFont.FreeTypeFont, top: int) -> int:
        ascent, descent = font.getmetrics()
        for line in lines:
            with _drawing(line, Path(str(font.path))):
                line_w = font.getlength(line, direction=direction)
                draw.text((x0 + (box_w - line_w) / 2, top), line, font=font, fill=ink,
                          direction=direction, language=language)
            top += ascent + descent
        return top

    # 1. legal line, anchored to the bottom of the safe box
    legal_top = y1
    if text.legal:
        with _as(LegalLineError):
            font, lines = _fit(text.legal, font_of(text.legal),
                               round(box_h * LEGAL_HEIGHT_SHARE), box_w, LEGAL_MAX_LINES,
                               text.locale)
            ascent, descent = font.getmetrics()
            legal_top = y1 - len(lines) * (ascent + descent)
            draw_lines(lines, font, legal_top)
    # 2. logo, scaled to fit its share of the box, at the top of the box
    try:
        mark = logo.convert("RGBA")
    except OSError as err:
        raise EndCardError(f"logo image cannot be read: {err}") from err
    scale = min(box_w * LOGO_SHARE[0] / mark.width, box_h * LOGO_SHARE[1] / mark.height)
    drawn = (round(mark.width * scale), round(mark.height * scale))
    if min(drawn) < MIN_LOGO_PX:
        raise EndCardError(f"the {mark.width}x{mark.height} logo would be drawn {drawn[0]}x"
                           f"{drawn[1]} px on the {width}x{height} card: too thin to see; use a "
                           "logo closer to square")
    mark = mark.resize(drawn, Image.Resampling.LANCZOS)
    card.paste(mark, (x0 + (box_w - mark.width) // 2, y0), mark)
    # 3. call to action between the logo and the legal line
    if text.call_to_action:
        with _as(CallToActionError):
            font, lines = _fit(text.call_to_action, font_of(text.call_to_action),
                               round(box_h * CTA_HEIGHT_SHARE), box_w, CTA_MAX_LINES,
                               text.locale)
            ascent, descent = font.getmetrics()
            top = y0 + mark.height + gap
            if top + len(lines) * (ascent + descent) > legal_top - gap:
                raise EndCardError(f"call to action for {text.locale} collides with the legal "
                                   "line on the end card; shorten one of them")
            draw_lines(lines, font, top)
    return card


@contextmanager
def _as(kind: type[EndCardError]) -> Iterator[None]:
    """An EndCardError raised within, as `kind`: which text of the card it is about."""
    try:
        yield
    except EndCardError as err:
        if isinstance(err, kind):
            raise
        raise kind(str(err)) from err


def end_card_problems(brief: Brief, logo: Image.Image, brand_font: Path | None
                      ) -> list[tuple[str, str]]:
    """What would stop a spot at its end card (a legal line or call to action too long for a
    format), found at submission rather than after the renders: the card of every distinct
    (locale, size, safe zone) among the brief's spots is composed once."""
    kit = brief.brand_kit
    if kit is None:
        return []
    problems: list[tuple[str, str]] = []
    background, ink = card_colours(kit.colours)
    if contrast_ratio(background, ink) < MIN_CONTRAST:
        problems.append(("brand_kit.colours", f"{kit.colours[1]} text on {kit.colours[0]} has a "
                         f"contrast of {contrast_ratio(background, ink):.1f}:1; the end card's "
                         f"text needs at least {MIN_CONTRAST:g}:1 (WCAG, large text)"))
    composed: set[tuple[str, tuple[int, int], SafeZone]] = set()
    for spot in plan_spots(brief):
        size = TARGET_SIZES[spot.aspect]
        if spot.end_card_s == 0 or (spot.locale, size, spot.safe_zone) in composed:
            continue
        composed.add((spot.locale, size, spot.safe_zone))
        text = end_card_text(brief, spot.locale)
        try:
            compose_end_card(size=size, text=text, logo=logo, colours=kit.colours,
                             safe_zone=spot.safe_zone, brand_font=brand_font)
        except EndCardError as err:
            where = (f"brand_kit.legal.{spot.locale}" if isinstance(err, LegalLineError) else
                     text.call_to_action_field if isinstance(err, CallToActionError) else None)
            problems.append((where or "brand_kit", f"{err} (the {spot.aspect.value} end card)"))
    return problems


def write_end_card(card: Image.Image, path: Path) -> Path:
    """The card as a PNG (lossless: the encoder sees exactly what was drawn)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path, format="PNG")
    return path
