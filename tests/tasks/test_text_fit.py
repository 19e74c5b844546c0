"""Burned-in text checked at submission as it will be drawn: glyphs in the fonts that draw it,
and every caption and on-screen text inside its safe zone, in agreement with the spot's QC."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fontTools import subset
from PIL import Image

from infra.fonts import FONTS, code_points, font_files, packaged_code_points, undrawable
from schemas.brief import Brief, load_brief
from schemas.finishing import TARGET_SIZES, CaptionCue
from schemas.platforms import SafeZone
from schemas.spot import plan_spots
from tasks.captions import break_lines
from tasks.end_card import compose_end_card, end_card_font, end_card_text
from tasks.overlay import TimedText, build_timed_ass
from tasks.spot_qc import rendered_text_checks
from tasks.text_fit import glyph_problems, text_problems, zone_problems
from tests.example_brief import example_text

ROOT = Path(__file__).resolve().parents[2]


def _brief(edit: object = None, *, brand_kit: bool = False) -> Brief:
    data = yaml.safe_load(example_text(brand_kit=brand_kit))
    if callable(edit):
        edit(data)
    return load_brief(yaml.safe_dump(data, allow_unicode=True))


def _say(locale: str, text: str) -> object:
    def edit(data: dict) -> None:
        data["scenes"][0]["dialogue"][locale][0]["text"] = text
    return edit


def _latin_only_font(tmp_path: Path) -> Path:
    """A brand font with Basic Latin only (Noto Sans cut down): no Cyrillic, no €."""
    out = tmp_path / "brand.ttf"
    options = subset.Options()
    font = subset.load_font(str(font_files()["Noto Sans"]), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=range(0x20, 0x7F))
    subsetter.subset(font)
    subset.save_font(font, str(out), options)
    return out


def test_characters_without_glyphs_are_found_and_invisible_ones_are_not() -> None:
    packaged = packaged_code_points()
    # Latin, Cyrillic, Greek, Devanagari, Arabic, Hebrew, Thai and CJK are drawn (libass falls
    # back across families)
    assert undrawable("Straße Жж Ωω नमस्ते مرحبا שלום สวัสดี 你好 こんにちは 안녕", packaged) == []
    # spaces, ZWJ, bidi marks and variation selectors need no glyph
    assert undrawable("a\u00a0b\u200dc\u200fd\ufe0fe", packaged) == []
    assert undrawable("ሰላም ሰላም 😀", packaged) == ["ሰ", "ላ", "ም", "😀"]  # Ethiopic


def test_dialogue_in_a_script_no_packaged_font_has_names_the_line_and_the_characters() -> None:
    brief = _brief(_say("de-DE", "Guten Morgen ሰላም"))
    [(field, message)] = glyph_problems(brief, None)
    assert field == "scenes[0].dialogue.de-DE[0].text"
    assert message.startswith("'ሰ' (U+1230), 'ላ' (U+120B), 'ም' (U+121D): ")
    assert f"the packaged fonts ({', '.join(FONTS)}) have no glyph for them" in message
    assert "empty boxes" in message


def test_more_than_five_missing_characters_are_counted_not_listed() -> None:
    brief = _brief(_say("en-US", "ሀሁሂሃሄህሆሇ"))
    [(_, message)] = glyph_problems(brief, None)
    assert "'ሄ' (U+1204) and 3 more:" in message


def test_an_emoji_in_an_on_screen_cta_drawn_twice_is_reported_once() -> None:
    """The scene's CTA is burned into the scene and, with no CTA in the kit, drawn on the end
    card too: one problem for the one field."""
    def edit(data: dict) -> None:
        data["scenes"][0]["on_screen_text"]["en-US"]["call_to_action"] = "Run today 🏃"
        data["brand_kit"] = {"logo": "logo.png", "colours": ["#101820", "#FEE715"]}
    problems = glyph_problems(_brief(edit), None)
    assert problems == [("scenes[0].on_screen_text.en-US.call_to_action",
                         f"'🏃' (U+1F3C3): the packaged fonts ({', '.join(FONTS)}) have no glyph "
                         "for it, so it would show as empty boxes; remove or replace them")]


def test_an_end_card_text_the_brand_font_cannot_draw_is_drawn_in_noto_sans(
        tmp_path: Path) -> None:
    """PIL draws each text of the end card in one font: a Russian legal line under a brand font
    without Cyrillic was refused; it is drawn in Noto Sans, the English line still in the brand
    font. A character neither has is refused, naming the font that would draw it."""
    brand = _latin_only_font(tmp_path)
    assert ord("Ж") not in code_points(brand) and ord("A") in code_points(brand)

    def russian(data: dict) -> None:
        data["locales"] = ["en-US", "ru-RU"]
        scene = data["scenes"][0]
        scene["dialogue"]["ru-RU"] = scene["dialogue"].pop("de-DE")
        scene["dialogue"]["ru-RU"][0]["text"] = "Каждое утро начинается с шага."
        scene["on_screen_text"]["ru-RU"] = {"call_to_action": "Бегите сегодня"}
        del scene["on_screen_text"]["de-DE"]
        data["brand_kit"] = {"logo": "logo.png", "colours": ["#101820", "#FEE715"],
                             "font": "brand.ttf", "legal": {"en-US": "Terms apply.",
                                                            "ru-RU": "Действуют условия."}}
    assert glyph_problems(_brief(russian), brand) == []
    noto = font_files()["Noto Sans"]
    assert end_card_font("ru-RU", brand, "Действуют условия.") == noto
    assert end_card_font("en-US", brand, "Terms apply.") == brand
    assert end_card_font("en-US", brand, "From 129 €") == noto  # no € in the brand font

    def card(locale: str, font: Path | None) -> bytes:
        return compose_end_card(
            size=(1280, 720), text=end_card_text(_brief(russian), locale),
            logo=Image.new("RGB", (64, 64), (250, 250, 250)), colours=["#101820", "#FEE715"],
            safe_zone=SafeZone(top=0.1, bottom=0.1, left=0.1, right=0.1),
            brand_font=font).tobytes()
    # the Russian card is drawn in Noto Sans, as without a brand font (in the brand font its
    # Cyrillic would be empty boxes)
    assert card("ru-RU", brand) == card("ru-RU", None)

    def ethiopic(data: dict) -> None:
        russian(data)
        data["brand_kit"]["legal"]["ru-RU"] = "Действуют условия ሰላም."
    [(field, message)] = glyph_problems(_brief(ethiopic), brand)
    assert field == "brand_kit.legal.ru-RU"
    assert message.startswith("'ሰ' (U+1230), 'ላ' (U+120B), 'ም' (U+121D): Noto Sans (the end "
                              "card's font) has no glyph for them")


def test_the_example_briefs_fit_in_every_script_and_aspect() -> None:
    """No false refusals: the shipped briefs, and the example in CJK and Arabic at every
    aspect, are accepted."""
    for name in ("brief.yaml", "demo-brief.yaml", "spots-brief.yaml"):
        assert text_problems(load_brief((ROOT / "examples" / name).read_text()), None) == []

    def cjk_arabic(data: dict) -> None:
        data["locales"] = ["zh-CN", "ar-EG"]
        data["aspects"] = ["16:9", "9:16", "1:1"]
        scene = data["scenes"][0]
        scene["dialogue"] = {
            "zh-CN": [{"speaker": "A", "text": "每天早上都从迈出第一步开始，" * 3}],
            "ar-EG": [{"speaker": "A", "text": "كل صباح يبدأ بخطوة واحدة نحو هدفك الكبير"}]}
        scene["on_screen_text"] = {
            "zh-CN": {"brand_line": "极光一号", "call_to_action": "今天就跑", "price": "¥899"},
            "ar-EG": {"brand_line": "أورورا ون", "call_to_action": "اركض اليوم",
                      "price": "٤٥٠٠ ج.م"}}
    assert text_problems(_brief(cjk_arabic), None) == []

    # Noto Sans Thai, and Heebo (right to left): captions, on-screen text and the end card
    for locale, line, on_screen, legal in (
            ("th-TH", "ทุกเช้า เริ่มต้นด้วย ก้าวแรก",
             {"brand_line": "ออโรร่า วัน", "call_to_action": "วิ่งวันนี้", "price": "฿4,990"},
             "ราคารวมภาษีมูลค่าเพิ่มแล้ว"),
            ("he-IL", "כל בוקר מתחיל בצעד אחד",
             {"brand_line": "אורורה 1", "call_to_action": "רוצו היום", "price": "₪499"},
             "המחיר כולל מע״מ")):
        def one_locale(data: dict, locale: str = locale, line: str = line,
                       on_screen: dict = on_screen, legal: str = legal) -> None:
            data["locales"] = [locale]
            data["aspects"] = ["16:9", "9:16", "1:1"]
            scene = data["scenes"][0]
            scene["dialogue"] = {locale: [{"speaker": "A", "text": line}]}
            scene["on_screen_text"] = {locale: on_screen}
            data["brand_kit"]["legal"] = {locale: legal}
        assert text_problems(_brief(one_locale, brand_kit=True), None) == [], locale


def test_a_word_too_long_to_wrap_is_refused_naming_the_field_and_the_formats() -> None:
    brief = _brief(_say("de-DE", "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbau"
                                 "unterbeamtengesellschaft"))
    [(field, message)] = zone_problems(brief)
    assert field == "scenes[0].dialogue.de-DE[0].text"
    assert message.startswith("does not fit inside the safe zone of the 16:9 spot (1280x720) "
                              "and the 9:16 spot (720x1280): libass wraps lines only at spaces, "
                              "and 'Donaudampfschifffahrtselektrizitätenhaup…' is too wide")

    def long_url(data: dict) -> None:
        data["scenes"][0]["on_screen_text"]["en-US"]["brand_line"] = \
            "aurora.example.com/spring-launch-2026/offers"
    [(field, message)] = zone_problems(_brief(long_url))
    assert field == "scenes[0].on_screen_text.en-US"
    assert "of the 9:16 spot (720x1280):" in message  # 16:9 has the room

    def published_scenes(data: dict) -> None:  # the cut-downs carry the on-screen text too
        long_url(data)
        data["publish_scenes"] = True
    [(field, message)] = zone_problems(_brief(published_scenes))
    assert "of the 9:16 spot (720x1280) and the 9:16 scene cut-down (720x1280):" in message


def _spot_qc_passes(brief: Brief, locale: str, workdir: Path) -> bool:
    """The spot QC's own text check on the burned-in layer the spot draws (each line one cue,
    the scene's on-screen text for the whole scene)."""
    scene = brief.scenes[0]
    cues = [block for line in scene.dialogue[locale] for block in break_lines(line.text)]
    captions = [CaptionCue(start_s=float(k), end_s=float(k) + 0.8, lines=block)
                for k, block in enumerate(cues)]
    timed = [TimedText(start_s=0.0, end_s=float(len(cues)), text=scene.on_screen_text[locale])]
    for spot in plan_spots(brief):
        if spot.locale != locale:
            continue
        size = TARGET_SIZES[spot.aspect]
        ass = build_timed_ass(width=size[0], height=size[1], locale=locale, captions=captions,
                              on_screen=timed, safe_zone=spot.safe_zone)
        path = workdir / f"{spot.aspect.value.replace(':', 'x')}.ass"
        path.write_text(ass, encoding="utf-8")
        checks = {c.name: c.passed for c in rendered_text_checks(
            path, size, spot.safe_zone, workdir / f"{path.stem}-frames")}
        if not checks["text_safe_zone"]:
            return False
    return True


@pytest.mark.parametrize("length", [12, 18, 20, 22, 24, 40])
def test_the_door_and_the_spot_qc_agree_on_what_fits(length: int, tmp_path: Path) -> None:
    """Words around the width of a portrait line: the door refuses exactly those the spot's
    QC would fail after the renders."""
    word = "Wm" * (length // 2)
    brief = _brief(_say("en-US", f"Go {word} now"))
    refused = bool(zone_problems(brief))
    assert refused == (not _spot_qc_passes(brief, "en-US", tmp_path)), (length, refused)
