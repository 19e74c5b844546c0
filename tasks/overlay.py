"""Text burned into the picture: captions (burned-in variant) and the brief's on-screen text
(brand line, call to action, price), as an ASS script rendered by libass.

Everything stays inside the title-safe area: the central 80 % of the frame (10 % margins).
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.fonts import font_family
from schemas.brief import OnScreenText
from schemas.finishing import CaptionCue
from schemas.platforms import SafeZone

TITLE_SAFE_MARGIN = 0.10
OUTLINE_PX = 3
# libass places the glyphs at the margin and strokes the outline outside them: margins grow by
# the outline (and a pixel of antialiasing) so the drawn text, outline included, stays inside.
OUTLINE_PAD_PX = OUTLINE_PX + 1
# ASS alignments (numpad layout): 1-3 bottom, 7-9 top.
BOTTOM_CENTRE, BOTTOM_RIGHT, TOP_LEFT, TOP_RIGHT = 2, 3, 7, 9


def _time(seconds: float) -> str:
    centis = round(seconds * 100)
    h, rem = divmod(centis, 360_000)
    m, rem = divmod(rem, 6000)
    s, cs = divmod(rem, 100)
    return f"{h}:{m:02d}:{s:02d}.{cs:02d}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("{", "\\{").replace("}", "\\}")


def build_ass(*, width: int, height: int, locale: str, duration_s: float,
              captions: list[CaptionCue], on_screen: OnScreenText | None) -> str:
    """An ASS script at the delivery size; empty inputs give a script with no events."""
    zone = SafeZone(top=TITLE_SAFE_MARGIN, bottom=TITLE_SAFE_MARGIN, left=TITLE_SAFE_MARGIN,
                    right=TITLE_SAFE_MARGIN)
    timed = [TimedText(start_s=0.0, end_s=duration_s, text=on_screen)] if on_screen else []
    return build_timed_ass(width=width, height=height, locale=locale, captions=captions,
                           on_screen=timed, safe_zone=zone)


@dataclass(frozen=True)
class TimedText:
    """A scene's on-screen text, shown from `start_s` to `end_s` of the spot's timeline."""

    start_s: float
    end_s: float
    text: OnScreenText


def build_timed_ass(*, width: int, height: int, locale: str, captions: list[CaptionCue],
                    on_screen: list[TimedText], safe_zone: SafeZone) -> str:
    """An ASS script at the delivery size with each text inside `safe_zone`: top styles keep the
    top margin, bottom styles the bottom margin, all the side margins."""
    family = font_family(locale)
    margin_l = round(width * safe_zone.left) + OUTLINE_PAD_PX
    margin_r = round(width * safe_zone.right) + OUTLINE_PAD_PX
    margin_top = round(height * safe_zone.top) + OUTLINE_PAD_PX
    margin_bottom = round(height * safe_zone.bottom) + OUTLINE_PAD_PX
    caption_size = round(min(height * 0.055, width * 0.065))
    title_size = round(caption_size * 1.2)
    style = ("{name},{font},{size},&H00FFFFFF,&H00FFFFFF,&H00000000,&H80000000,{bold},0,0,0,"
             "100,100,0,0,1,{outline},0,{align},{ml},{mr},{my},1")
    styles = [
        style.format(name="Caption", font=family, size=caption_size, bold=0, outline=OUTLINE_PX,
                     align=BOTTOM_CENTRE, ml=margin_l, mr=margin_r, my=margin_bottom),
        style.format(name="Brand", font=family, size=title_size, bold=1, outline=OUTLINE_PX,
                     align=TOP_LEFT, ml=margin_l, mr=margin_r, my=margin_top),
        style.format(name="Price", font=family, size=title_size, bold=1, outline=OUTLINE_PX,
                     align=TOP_RIGHT, ml=margin_l, mr=margin_r, my=margin_top),
        # The call to action sits above the caption band, bottom right.
        style.format(name="Action", font=family, size=caption_size, bold=1, outline=OUTLINE_PX,
                     align=BOTTOM_RIGHT, ml=margin_l, mr=margin_r,
                     my=margin_bottom + 3 * caption_size),
    ]
    events = []
    for timed in on_screen:
        start, end = _time(timed.start_s), _time(timed.end_s)
        for name, text in (("Brand", timed.text.brand_line), ("Price", timed.text.price),
                           ("Action", timed.text.call_to_action)):
            if text:
                events.append(f"Dialogue: 1,{start},{end},{name},,0,0,0,,{_escape(text)}")
    for cue in captions:
        text = "\\N".join(_escape(line) for line in cue.lines)
        events.append(f"Dialogue: 0,{_time(cue.start_s)},{_time(cue.end_s)},Caption,,0,0,0,,"
                      f"{text}")
    return "\n".join([
        "[Script Info]", "ScriptType: v4.00+", f"PlayResX: {width}", f"PlayResY: {height}",
        "WrapStyle: 0", "ScaledBorderAndShadow: yes", "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
        "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
        "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding",
        *[f"Style: {s}" for s in styles], "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
        *events, "",
    ])
