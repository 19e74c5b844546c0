"""The end card: brand colours, logo, CTA and legal line inside the safe zone, in each script."""

from __future__ import annotations

import struct
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from infra.fonts import font_files
from schemas.brief import Aspect, Platform, load_brief
from schemas.finishing import TARGET_SIZES
from schemas.platforms import safe_zone
from tasks.end_card import (
    CallToActionError,
    EndCardError,
    EndCardText,
    LegalLineError,
    card_colours,
    compose_end_card,
    end_card_text,
    hex_rgb,
    write_end_card,
)
from tests.tasks.spot_fixtures import CTA, LEGAL, LOCALES, logo_image, spot_brief

ZONE = safe_zone([Platform.INSTAGRAM, Platform.TIKTOK], Aspect.PORTRAIT)
SIZE = (360, 640)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "end_card"


def _card(locale: str, **text: str | None) -> np.ndarray:
    words = EndCardText(locale=locale, call_to_action=text.get("cta", CTA[locale]),
                        legal=text.get("legal", LEGAL[locale]))
    card = compose_end_card(size=SIZE, text=words, logo=logo_image(),
                            colours=["#101820", "#FEE715"], safe_zone=ZONE)
    return np.asarray(card)


def test_cta_comes_from_the_brand_kit_or_else_the_last_scene_that_has_one() -> None:
    brief = spot_brief()
    assert end_card_text(brief, "de-DE") == EndCardText(
        locale="de-DE", call_to_action=CTA["de-DE"], legal=LEGAL["de-DE"])
    assert brief.brand_kit is not None
    kit = brief.brand_kit.model_dump()
    kit["call_to_action"] = {"de-DE": "Jetzt kaufen"}
    override = spot_brief(brand_kit=kit)
    assert end_card_text(override, "de-DE").call_to_action == "Jetzt kaufen"
    assert end_card_text(override, "en-US").call_to_action == CTA["en-US"]
    with pytest.raises(EndCardError, match="no brand_kit"):
        end_card_text(spot_brief(brand_kit=None), "en-US")


@pytest.mark.parametrize("locale", LOCALES)
def test_everything_on_the_card_is_inside_the_safe_zone_on_the_brand_colour(
        locale: str, tmp_path: Path) -> None:
    pixels = _card(locale)
    background = np.array(hex_rgb("#101820"))
    drawn = np.abs(pixels.astype(np.int16) - background).max(axis=-1) > 0
    x0, y0, x1, y1 = ZONE.box(*SIZE)
    assert drawn[y0:y1, x0:x1].sum() > 1000  # logo, CTA and legal line are there
    assert drawn.sum() == drawn[y0:y1, x0:x1].sum(), "drawn outside the safe zone"
    # the CTA is in the brand's second colour, and sits between the logo and the legal line
    ink = np.all(pixels == hex_rgb("#FEE715"), axis=-1)
    rows = np.flatnonzero(ink.any(axis=1))
    assert rows.size and y0 < rows.min() and rows.max() < y1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    write_end_card(Image.fromarray(pixels), ARTIFACTS / f"{locale}.png")


def test_arabic_is_shaped_and_centred_in_the_zone() -> None:
    text = "اركض اليوم"
    path = str(font_files()["Noto Sans Arabic"])
    shaped = ImageFont.truetype(path, 40, layout_engine=ImageFont.Layout.RAQM)
    unshaped = ImageFont.truetype(path, 40, layout_engine=ImageFont.Layout.BASIC)
    # Joined (contextual) letter forms have other advances than isolated ones.
    assert shaped.getlength(text, direction="rtl") != unshaped.getlength(text)
    with_text = _card("ar-SA", legal=None)
    without = _card("ar-SA", cta=None, legal=None)
    changed = np.flatnonzero((with_text != without).any(axis=-1).any(axis=0))
    # centred in the safe box (TikTok's right rail makes it sit left of the card's middle)
    x0, _, x1, _ = ZONE.box(*SIZE)
    assert abs((changed.min() + changed.max()) / 2 - (x0 + x1) / 2) <= 3


def test_text_too_long_for_the_card_is_refused_not_shrunk_to_nothing() -> None:
    with pytest.raises(EndCardError, match="does not fit"):
        _card("en-US", legal="Terms apply. " * 80)


def test_one_colour_kits_get_the_more_legible_of_black_and_white_text() -> None:
    assert card_colours(["#101820"]) == ((16, 24, 32), (255, 255, 255))
    assert card_colours(["#FEE715"]) == ((254, 231, 21), (0, 0, 0))
    assert card_colours(["#FFFFFF", "#FF0000"])[1] == (255, 0, 0)


@pytest.mark.parametrize("aspect", [Aspect.LANDSCAPE, Aspect.PORTRAIT])
def test_the_spots_example_brief_composes_a_card_for_every_locale(aspect: Aspect) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    brief = load_brief((examples / "spots-brief.yaml").read_text())
    assert brief.brand_kit is not None
    zone = safe_zone(brief.platforms, aspect)
    size = TARGET_SIZES[aspect]
    for locale in brief.locales:
        text = end_card_text(brief, locale)
        assert text.call_to_action and text.legal  # CTA from the last scene, legal from the kit
        card = compose_end_card(size=size, text=text,
                                logo=Image.open(examples / brief.brand_kit.logo),
                                colours=brief.brand_kit.colours, safe_zone=zone)
        drawn = np.abs(np.asarray(card, np.int16) - hex_rgb(brief.brand_kit.colours[0])).max(-1)
        x0, y0, x1, y1 = zone.box(*size)
        assert drawn[y0:y1, x0:x1].sum() == drawn.sum() > 0


def test_a_brand_font_that_is_no_font_is_an_end_card_error(tmp_path: Path) -> None:
    """FreeType's bare OSError ('unknown file format') named nothing the team could act on."""
    not_a_font = tmp_path / "font.ttf"
    logo_image().save(not_a_font, format="PNG")
    words = EndCardText(locale="en-US", call_to_action=CTA["en-US"], legal=LEGAL["en-US"])
    with pytest.raises(EndCardError, match="the brand font cannot be read"):
        compose_end_card(size=SIZE, text=words, logo=logo_image(),
                         colours=["#101820", "#FEE715"], safe_zone=ZONE, brand_font=not_a_font)


def _damaged(table: bytes, fill: int, dest: Path) -> Path:
    """Noto Sans with one table's bytes overwritten by `fill`: a file FreeType still opens."""
    data = bytearray(font_files()["Noto Sans"].read_bytes())
    (tables,) = struct.unpack(">H", data[4:6])
    for entry in range(12, 12 + 16 * tables, 16):
        tag, _, offset, length = struct.unpack(">4sIII", data[entry:entry + 16])
        if tag == table:
            data[offset:offset + length] = bytes([fill]) * length
            dest.write_bytes(bytes(data))
            return dest
    raise AssertionError(f"no {table!r} table")


def test_a_brand_font_with_damaged_glyphs_or_metrics_is_an_end_card_error(
        tmp_path: Path) -> None:
    """A font that opens but cannot draw crashed submission (FreeType's OSError 'invalid
    composite glyph': a 500); one whose advances are absurd was 'text does not fit'."""
    words = EndCardText(locale="en-US", call_to_action=CTA["en-US"], legal="Terms apply.")
    compose = partial(compose_end_card, size=SIZE, text=words, logo=logo_image(),
                      colours=["#101820", "#FEE715"], safe_zone=ZONE)
    with pytest.raises(LegalLineError, match=r"the font .* cannot draw 'Terms apply.' \("):
        compose(brand_font=_damaged(b"glyf", 0xA5, tmp_path / "glyf.ttf"))
    with pytest.raises(LegalLineError, match="the font's metrics are broken: '.' advances"):
        compose(brand_font=_damaged(b"hmtx", 0xFF, tmp_path / "hmtx.ttf"))
    with pytest.raises(CallToActionError, match="cannot draw"):
        compose(brand_font=_damaged(b"glyf", 0xA5, tmp_path / "glyf.ttf"),
                text=EndCardText(locale="en-US", call_to_action=CTA["en-US"], legal=None))


def test_a_logo_too_thin_to_see_on_the_card_is_an_end_card_error() -> None:
    """A 20000x1 logo was published as a one-pixel line; the door composes the card, so the
    brief is refused with this reason before anything renders."""
    words = EndCardText(locale="en-US", call_to_action=CTA["en-US"], legal=LEGAL["en-US"])
    with pytest.raises(EndCardError, match=r"the 20000x1 logo would be drawn \d+x0 px"):
        compose_end_card(size=SIZE, text=words, logo=Image.new("RGB", (20000, 1), "red"),
                         colours=["#101820", "#FEE715"], safe_zone=ZONE)
    compose_end_card(size=SIZE, text=words, logo=Image.new("RGB", (400, 60), "red"),
                     colours=["#101820", "#FEE715"], safe_zone=ZONE)  # a wide wordmark is fine
