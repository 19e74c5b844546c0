"""The example brief (examples/brief.yaml) as tests use it."""

from __future__ import annotations

from pathlib import Path

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
