"""Brief validation: every problem reported at once, with its path in the brief."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.brief import Brief, load_brief
from schemas.errors import BriefInvalid

EXAMPLE = (Path(__file__).parents[2] / "examples" / "brief.yaml").read_text()


def _problems(raw: str | bytes) -> list[tuple[str, str]]:
    with pytest.raises(BriefInvalid) as info:
        load_brief(raw)
    return info.value.problems


def test_the_example_brief_is_valid() -> None:
    brief = load_brief(EXAMPLE)
    assert isinstance(brief, Brief)
    assert brief.locales == ["en-US", "de-DE"] and len(brief.scenes) == 1


def test_json_briefs_are_accepted_too() -> None:
    brief = load_brief(load_brief(EXAMPLE).model_dump_json())
    assert brief == load_brief(EXAMPLE)


@pytest.mark.parametrize(("raw", "path", "needle"), [
    ("campaign: [unclosed", "(document)", "invalid YAML at line 1"),
    (EXAMPLE.replace("[en-US, de-DE]", "[en-US, xx-QQ]"), "locales[1]",
     "'xx-QQ' is not a valid BCP-47 language tag"),
    (EXAMPLE.replace("campaign: aurora-spring-launch", "campaign: ../../etc"), "campaign",
     "must be a slug"),
    (EXAMPLE.replace("duration_s: 1.0", "duration_s: -2"), "scenes[0].duration_s",
     "a scene lasts at least 0.5 s"),
    (EXAMPLE.replace("duration_s: 1.0", "duration_s: 30"), "scenes[0].duration_s",
     "less than or equal to 8.04"),
    (EXAMPLE.replace('"$129"', '"' + "x" * 10_000 + '"'),
     "scenes[0].on_screen_text.en-US.price", "too long (10,000 characters)"),
    ("- just\n- a list\n", "(document)", "a brief is a mapping"),
])
def test_malformed_briefs_name_the_problem(raw: str, path: str, needle: str) -> None:
    problems = _problems(raw)
    assert any(p == path and needle in m for p, m in problems), problems


def test_empty_scenes_and_unknown_fields_are_reported_together() -> None:
    start = EXAMPLE.index("scenes:")
    raw = EXAMPLE[:start] + "scenes: []\nbudget: 1000\n"
    problems = dict(_problems(raw))
    assert "at least 1 item" in problems["scenes"]
    assert "Extra inputs are not permitted" in problems["budget"]


def test_a_ten_megabyte_line_is_refused_before_parsing() -> None:
    raw = "campaign: x\nbrand: " + "y" * 10_000_000 + "\n"
    [(path, message)] = _problems(raw)
    assert path == "(document)" and "the limit is 1,000,000" in message


def test_dialogue_must_cover_every_locale() -> None:
    raw = EXAMPLE.replace("      de-DE:\n        - speaker: Läuferin\n"
                          "          text: Jeder Morgen beginnt mit einem Schritt.\n", "")
    assert ("scenes[0].dialogue", "no lines for ['de-DE']") in _problems(raw)


def test_first_frame_paths_cannot_escape_the_brief_folder() -> None:
    escape = "    duration_s: 1.0\n    first_frame: ../../etc/passwd"
    raw = EXAMPLE.replace("    duration_s: 1.0", escape)
    problems = dict(_problems(raw))
    assert "relative path inside the brief's folder" in problems["scenes[0].first_frame"]


def test_error_message_lists_one_problem_per_line() -> None:
    raw = EXAMPLE.replace("campaign: aurora-spring-launch", "campaign: Bad Name") \
        .replace("duration_s: 1.0", "duration_s: 0")
    with pytest.raises(BriefInvalid) as info:
        load_brief(raw)
    lines = str(info.value).splitlines()
    assert lines[0] == "brief has 2 problem(s):"
    assert lines[1].startswith("campaign: ") and lines[2].startswith("scenes[0].duration_s: ")
