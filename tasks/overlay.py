"""Text burned into the picture: captions (burned-in variant) and the brief's on-screen text
(brand line, call to action, price), as an ASS script rendered by libass.

Everything stays inside the title-safe area: the central 80 % of the frame (10 % margins).
"""

from __future__ import annotations

from infra.fonts import font_family
from schemas.brief import OnScreenText
from schemas.finishing import CaptionCue

TITLE_SAFE_MARGIN = 0.10
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
    family = font_family(locale)
    margin_x, margin_y = round(width * TITLE_SAFE_MARGIN), round(height * TITLE_SAFE_MARGIN)
    caption_size = round(min(height * 0.055, width * 0.065))
    title_size = round(caption_size * 1.2)
    style = ("{name},{font},{size},&H00FFFFFF,&H00FFFFFF,&H00000000,&H80000000,{bold},0,0,0,"
             "100,100,0,0,1,{outline},0,{align},{mx},{mx},{my},1")
    styles = [
        style.format(name="Caption", font=family, size=caption_size, bold=0, outline=3,
                     align=BOTTOM_CENTRE, mx=margin_x, my=margin_y),
        style.format(name="Brand", font=family, size=title_size, bold=1, outline=3,
                     align=TOP_LEFT, mx=margin_x, my=margin_y),
        style.format(name="Price", font=family, size=title_size, bold=1, outline=3,
                     align=TOP_RIGHT, mx=margin_x, my=margin_y),
        # The call to action sits above the caption band, bottom right.
        style.format(name="Action", font=family, size=caption_size, bold=1, outline=3,
                     align=BOTTOM_RIGHT, mx=margin_x, my=margin_y + 3 * caption_size),
    ]
    events = []
    end = _time(duration_s)
    if on_screen is not None:
        for name, text in (("Brand", on_screen.brand_line), ("Price", on_screen.price),
                           ("Action", on_screen.call_to_action)):
            if text:
                events.append(f"Dialogue: 1,0:00:00.00,{end},{name},,0,0,0,,{_escape(text)}")
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
