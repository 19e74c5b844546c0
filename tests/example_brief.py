"""The example brief (examples/brief.yaml) as tests use it."""

from __future__ import annotations

from pathlib import Path

import yaml

EXAMPLE_PATH = Path(__file__).resolve().parents[1] / "examples" / "brief.yaml"
BRAND_KIT = "\nbrand_kit:"


def example_text(*, brand_kit: bool = False) -> str:
    """The example brief's text. Without its brand kit by default: the kit names a logo file
    beside the brief, which a test that submits the text alone does not send (a brief naming a
    file it does not bring is refused). Tests of the end card submit the file itself."""
    text = EXAMPLE_PATH.read_text()
    if brand_kit:
        return text
    # the kit is the last block of the file (kept so on purpose: see the comment there)
    return text[:text.index(BRAND_KIT) + 1]


def single_variant_text(*, campaign: str | None = None, **scene: object) -> str:
    """The example cut to one variant (en-US, 16:9, a 0.5 s scene: one render), with `scene`
    fields changed."""
    brief = yaml.safe_load(example_text())
    brief.update(locales=["en-US"], aspects=["16:9"])
    if campaign is not None:
        brief["campaign"] = campaign
    first = brief["scenes"][0]
    first.update(duration_s=0.5, **scene)
    for per_locale in (first["dialogue"], first["on_screen_text"]):
        per_locale.pop("de-DE")
    return yaml.safe_dump(brief, allow_unicode=True)
