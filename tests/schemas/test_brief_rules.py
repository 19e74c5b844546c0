"""Brief rules one by one, with the exact words a team reads: paths, limits on both sides of
each bound, defaults, locale normalisation and the document-level errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.brief import Brief, _parse, load_brief, normalize_locale
from schemas.errors import BriefInvalid

EXAMPLE = (Path(__file__).parents[2] / "examples" / "brief.yaml").read_text()


def _brief(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE)
    data.update(changes)
    return data


def _scene(**changes: Any) -> dict[str, Any]:
    data = _brief()
    data["scenes"][0].update(changes)
    return data


def _problems(data: dict[str, Any] | str | bytes, fmt: str | None = None
              ) -> list[tuple[str, str]]:
    raw = json.dumps(data) if isinstance(data, dict) else data
    with pytest.raises(BriefInvalid) as info:
        load_brief(raw, fmt=fmt)
    return info.value.problems


def test_defaults() -> None:
    data = _brief()
    for key in ("platforms", "dubbing", "loudness_profile", "max_qc_retries",
                "requires_approval", "seed"):
        data.pop(key, None)
    brief = load_brief(json.dumps(data))
    assert [str(p) for p in brief.platforms] == ["web"]
    assert str(brief.dubbing) == "lipsync" and str(brief.loudness_profile) == "web"
    assert brief.max_qc_retries == 1 and brief.requires_approval is False and brief.seed == 0


@pytest.mark.parametrize(("duration", "ok"), [(193 / 24, True), (8.05, False), (0.5, True),
                                              (0.49, False), (0, False)])
def test_a_scene_lasts_between_half_a_second_and_one_193_frame_clip(duration: float,
                                                                     ok: bool) -> None:
    data = _scene(duration_s=duration)
    if ok:
        assert load_brief(json.dumps(data)).scenes[0].duration_s == duration
    else:
        assert _problems(data)[0][0] == "scenes[0].duration_s"


@pytest.mark.parametrize(("field", "value", "ok"), [
    ("max_qc_retries", 0, True), ("max_qc_retries", 5, True), ("max_qc_retries", 6, False),
    ("max_qc_retries", -1, False), ("seed", 0, True), ("seed", 2**31 - 1, True),
    ("seed", 2**31, False), ("seed", -1, False)])
def test_integer_bounds(field: str, value: int, ok: bool) -> None:
    data = _brief(**{field: value})
    if ok:
        assert getattr(load_brief(json.dumps(data)), field) == value
    else:
        assert [p for p, _ in _problems(data)] == [field]


def test_slugs_are_lowercase_and_at_most_63_characters() -> None:
    assert load_brief(json.dumps(_brief(campaign="a" * 63))).campaign == "a" * 63
    for bad in ("a" * 64, "-spring", "Spring", "spring launch"):
        [(path, message)] = _problems(_brief(campaign=bad))
        assert path == "campaign"
        assert message == (f"{bad!r} must be a slug: lower-case letters, digits and dashes, "
                           "at most 63 characters")
    [(path, message)] = _problems(_scene(scene_id="Run"))
    assert path == "scenes[0].scene_id" and message.startswith("'Run' must be a slug")


def test_repeated_entries_are_refused_with_the_list() -> None:
    [(path, message)] = _problems(_brief(aspects=["16:9", "16:9"]))
    assert path == "aspects" and message == "entries repeat: ['16:9', '16:9']"
    [(path, _)] = _problems(_brief(locales=["en-US", "en-us"]))  # the same tag once normalised
    assert path == "locales"
    [(path, _)] = _problems(_brief(platforms=["web", "web"]))
    assert path == "platforms"


def test_locale_keys_are_normalised() -> None:
    data = _brief()
    scene = data["scenes"][0]
    scene["dialogue"] = {k.lower(): v for k, v in scene["dialogue"].items()}
    brief = load_brief(json.dumps(data))
    assert brief.locales == ["en-US", "de-DE"]
    assert set(brief.scenes[0].dialogue) == {"en-US", "de-DE"}


def test_a_language_tag_longer_than_35_characters_is_refused() -> None:
    """A valid private-use chain of 255+ characters passed and then broke the spot's file
    name in ffmpeg ('File name too long'); 35 is RFC 5646's floor for what tools handle."""
    longest = "en-US-x-" + "abcdefgh-" * 2 + "abcdefg"  # 34 characters
    assert len(longest) <= 35 and normalize_locale(longest) == longest
    too_long = "en-US-x-" + "-".join(["abcdefgh"] * 30)
    with pytest.raises(ValueError, match=f"of {len(too_long)} characters; at most 35"):
        normalize_locale(too_long)
    [(path, message)] = _problems(_brief(locales=["en-US", too_long]))
    assert path == "locales[1]" and "at most 35" in message and len(message) < 200


def test_locale_keys_are_normalised_up_to_the_locale_limit() -> None:
    """40 locales (MAX_LOCALES), every mapping keyed in lower case: still one campaign."""
    tags = [f"{language}-{region}" for language in ("en", "de", "fr", "es", "it", "pt", "nl",
                                                     "sv", "da", "fi", "pl", "cs", "ja", "ko",
                                                     "zh", "ar", "tr", "el", "hu", "ro")
            for region in ("us", "gb")]
    data = _brief(locales=tags)
    for scene in data["scenes"]:
        for field in ("dialogue", "on_screen_text"):
            if scene.get(field):
                first = next(iter(scene[field].values()))
                scene[field] = {tag: first for tag in tags}
    for field in ("legal", "call_to_action"):
        if data.get("brand_kit", {}).get(field):
            first = next(iter(data["brand_kit"][field].values()))
            data["brand_kit"][field] = {tag: first for tag in tags}
    brief = load_brief(json.dumps(data))
    standard = [f"{t[:2]}-{t[3:].upper()}" for t in tags]
    assert brief.locales == standard
    assert all(set(s.dialogue) in (set(), set(standard)) for s in brief.scenes)
    assert any(s.dialogue for s in brief.scenes)
    if brief.brand_kit is not None:
        assert set(brief.brand_kit.legal) in (set(), set(standard))


def test_whole_brief_problems_each_carry_their_path() -> None:
    data = _brief()
    data["scenes"].append(dict(data["scenes"][0]))  # the same scene_id twice
    data["scenes"][1]["on_screen_text"] = {"fr-FR": {"brand_line": "Aurora"}}
    problems = _problems(data)
    assert ("scenes", "scene_id values repeat: ['morning-run', 'morning-run']") in problems
    assert ("scenes[1].on_screen_text",
            "locale(s) ['fr-FR'] are not in locales ['en-US', 'de-DE']") in problems


def test_a_silent_scene_needs_no_dialogue() -> None:
    brief = load_brief(json.dumps(_scene(dialogue={})))
    assert brief.scenes[0].dialogue == {}


@pytest.mark.parametrize(("focus", "ok"), [([0.0, 1.0], True), ([0.5, 0.5], True),
                                           ([1.01, 0.5], False), ([0.5, -0.01], False)])
def test_focus_is_inside_the_frame(focus: list[float], ok: bool) -> None:
    data = _scene(focus=focus)
    if ok:
        assert load_brief(json.dumps(data)).scenes[0].focus == tuple(focus)
    else:
        [(path, message)] = _problems(data)
        assert path == "scenes[0].focus" and "must be two numbers in [0, 1]" in message


@pytest.mark.parametrize(("reference", "ok"), [
    ("frames/hero.png", True), ("s3://bucket/hero.png", True), ("/etc/passwd", False),
    ("a/../../x.png", False), ("a\\b.png", False), ("..", False)])
def test_first_frame_references(reference: str, ok: bool) -> None:
    data = _scene(first_frame=reference)
    if ok:
        assert load_brief(json.dumps(data)).scenes[0].first_frame == reference
    else:
        [(path, message)] = _problems(data)
        assert path == "scenes[0].first_frame"
        assert message == (f"{reference!r} must be a relative path inside the brief's folder "
                           "or an s3:// URI")


def test_document_errors_name_line_and_column() -> None:
    [(path, message)] = _problems('{"campaign": "x",\n  "brand": }', fmt="json")
    assert path == "(document)" and message.startswith("invalid JSON at line 2 column 12: ")
    [(path, message)] = _problems("campaign: x\nbrand: [a\n")
    assert path == "(document)"
    # the parser's own problem, not its context line ("while parsing a flow sequence"); libyaml
    # words it "did not find expected ',' or ']'", the pure-Python parser "expected ',' or ']',
    # but got '<stream end>'"
    assert message.startswith("invalid YAML at line 3 column 1: ")
    assert "expected ',' or ']'" in message and "while parsing" not in message
    assert _problems(b"campaign: \xff\xfe") == [
        ("(document)", "not UTF-8 text (invalid start byte at byte 10)")]
    assert _problems("campaign: x", fmt="toml") == [
        ("(document)", "unknown format 'toml'; use yaml or json")]
    [(_, message)] = _problems("just text")
    assert message == "a brief is a mapping of fields (campaign, brand, ...), found str"
    for empty in ("", "  \n", "# campaign: later\n", "---\n"):  # was "found NoneType"
        assert _problems(empty) == [("(document)", "the brief is empty: a brief is a mapping "
                                                   "of fields (campaign, brand, ...)")]


def test_format_is_detected_and_bytes_are_accepted() -> None:
    as_json = json.dumps(_brief())
    assert load_brief(as_json.encode()) == load_brief(EXAMPLE.encode()) == \
        load_brief("  \n" + as_json)
    assert isinstance(load_brief(EXAMPLE, fmt="yaml"), Brief)
    assert isinstance(load_brief(as_json, fmt="yaml"), Brief)  # JSON is YAML too


def test_the_size_limit_is_one_megabyte_exactly() -> None:
    padding = "#" * (1_000_000 - len(EXAMPLE.encode()) - 1) + "\n"
    assert isinstance(load_brief(EXAMPLE + padding), Brief)  # exactly 1,000,000 bytes
    [(_, message)] = _problems(EXAMPLE + "#" + padding)
    assert message == "brief is 1,000,001 bytes; the limit is 1,000,000"


def test_too_long_texts_say_how_long() -> None:
    [(path, message)] = _problems(_brief(brand="b" * 201))
    assert path == "brand" and message.startswith("too long (201 characters); ")
    assert load_brief(json.dumps(_brief(brand="b" * 200))).brand == "b" * 200


def test_json_is_detected_by_its_opening_brace_even_after_whitespace() -> None:
    # the parser named in the error shows which one ran
    [(_, message)] = _problems('  \n {"campaign": }')
    assert message.startswith("invalid JSON at line 2 column 15: ")
    # told YAML, the same text parses (as YAML: campaign is null) and fails validation instead
    problems = dict(_problems('{"campaign": }', fmt="yaml"))
    assert problems["campaign"] == "Input should be a valid string"


def test_a_yaml_error_without_a_position_still_reads_well() -> None:
    [(path, message)] = _problems("campaign: \x07")  # a control character: no line mark
    assert path == "(document)"
    assert message.startswith("invalid YAML: ") and "#x0007" in message


def test_a_scene_lora_overrides_the_brief_lora_and_every_use_is_listed_with_its_path() -> None:
    data = _brief(lora={"name": "house-style", "scale": 0.8})
    second = {**data["scenes"][0], "scene_id": "second", "lora": {"name": "night-look"}}
    third = {**data["scenes"][0], "scene_id": "third"}
    data["scenes"] += [second, third]
    brief = load_brief(json.dumps(data))
    first, second_scene, third_scene = brief.scenes
    assert brief.lora_for(first) == brief.lora_for(third_scene) == brief.lora
    chosen = brief.lora_for(second_scene)
    assert chosen is not None and (chosen.name, chosen.scale) == ("night-look", 1.0)
    assert brief.lora_uses() == [("lora.name", "house-style"),
                                 ("scenes[1].lora.name", "night-look")]
    # without a brief-wide LoRA: scenes keep their own, the others render without
    del data["lora"]
    alone = load_brief(json.dumps(data))
    assert alone.lora_for(alone.scenes[0]) is None
    assert alone.lora_for(alone.scenes[1]) == alone.scenes[1].lora
    assert alone.lora_uses() == [("scenes[1].lora.name", "night-look")]
    assert load_brief(EXAMPLE).lora_uses() == []


def test_an_s3_first_frame_is_a_key_not_a_path() -> None:
    # S3 keys are opaque: '..' and '\\' are characters of the key, not steps out of a folder
    # (which buckets and prefixes a team may read is checked at submission)
    for uri in ("s3://bucket/shots/../hero.png", "s3://bucket/a\\b.png"):
        assert load_brief(json.dumps(_scene(first_frame=uri))).scenes[0].first_frame == uri
    for path in ("../hero.png", "/abs/hero.png", "a\\b.png", "S3://bucket/../x.png"):
        problems = _problems(_scene(first_frame=path))
        assert problems[0][0] == "scenes[0].first_frame", path


def test_a_scene_too_short_to_measure_is_told_why() -> None:
    assert _problems(_scene(duration_s=0.2)) == [
        ("scenes[0].duration_s", "0.2 s is too short: a scene lasts at least 0.5 s (loudness "
                                 "is measured over 0.4 s blocks, so a shorter scene can never "
                                 "pass QC)")]


@pytest.mark.parametrize(("plain", "value"), [
    ("16:9", "16:9"), ("1:30", "1:30"),  # YAML 1.1: base-60 numbers (969, 90)
    ("no", "no"), ("yes", "yes"), ("on", "on"), ("off", "off"), ("n", "n"),  # 1.1: booleans
    ("2024-05-01", "2024-05-01"), ("0b101", "0b101"), ("1_000", "1_000"), ("tRUE", "tRUE"),
    ("true", True), ("True", True), ("TRUE", True), ("false", False), ("FALSE", False),
    ("null", None), ("~", None), ("", None),
    ("17", 17), ("-017", -17), ("+3", 3), ("0o17", 15), ("0x1F", 31),
    ("1.5", 1.5), ("-.5", -0.5), ("2.", 2.0), ("1e3", 1000.0), ("-.inf", float("-inf")),
    (".NaN", float("nan")),
])
def test_unquoted_yaml_values_are_typed_by_the_yaml_1_2_core_schema(plain: str,
                                                                    value: Any) -> None:
    assert repr(_parse(f"v: {plain}\n", "yaml")) == repr({"v": value})  # 1 is not True, nor 1.0
    assert _parse(f"v: '{plain}'\n", "yaml") == {"v": plain}  # quoted: always text


def test_unquoted_aspects_and_the_norwegian_locale_read_as_written() -> None:
    raw = EXAMPLE.replace('aspects: ["16:9", "9:16"]', "aspects: [16:9, 9:16]") \
        .replace("de-DE", "no").replace("requires_approval: false", "requires_approval: true")
    assert "aspects: [16:9, 9:16]" in raw and "locales: [en-US, no]" in raw
    brief = load_brief(raw)
    assert [str(a) for a in brief.aspects] == ["16:9", "9:16"]
    assert brief.locales == ["en-US", "no"] and set(brief.scenes[0].dialogue) == {"en-US", "no"}
    assert brief.requires_approval is True
    # the schema's booleans still read yes/no, now from text
    assert load_brief(raw.replace("requires_approval: true", "requires_approval: yes")) \
        .requires_approval is True


def test_a_byte_order_mark_may_open_json_as_it_may_yaml() -> None:
    as_json = json.dumps(_brief())
    expected = load_brief(as_json)
    for raw in ("\ufeff" + as_json, ("\ufeff" + as_json).encode()):
        assert load_brief(raw) == load_brief(raw, fmt="json") == expected
    assert load_brief("\ufeff" + EXAMPLE) == expected


@pytest.mark.parametrize(("field", "value", "stored"), [
    ("brand_line", "Aurora\nOne running shoe", "Aurora One running shoe"),  # burned as 'Aurora'
    ("price", "$129\r\n$99", "$129  $99"),
    ("brand_line", "Tab\tstop", "Tab stop"),
])
def test_line_breaks_in_on_screen_text_become_spaces(field: str, value: str,
                                                     stored: str) -> None:
    data = _brief()
    data["scenes"][0]["on_screen_text"] = {"en-US": {field: value}}
    assert load_brief(json.dumps(data)).scenes[0].on_screen_text["en-US"].model_dump()[field] \
        == stored


@pytest.mark.parametrize(("value", "says"), [
    ("Aurora\x00One", "control character U+0000 at position 6"),  # erased all later text
    ("\x1b[31mred", "control character U+001B"),
    ("\u200b\u200b\u200b", "no visible character"),  # zero-width only passed min_length
    ("\u0301\u0308", "no visible character"),
    ("\u2060 \ufeff", "no visible character"),
])
def test_text_that_draws_nothing_or_holds_control_characters_is_refused(value: str,
                                                                        says: str) -> None:
    data = _brief()
    data["scenes"][0]["dialogue"]["en-US"][0]["text"] = value
    [(path, message)] = _problems(data)
    assert path == "scenes[0].dialogue.en-US[0].text" and says in message, (path, message)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_a_number_that_is_not_finite_is_named_as_such(value: str) -> None:
    """A NaN failed the range check with 'should be less than or equal to 8.04...', which
    reads as if the number were too large."""
    raw = EXAMPLE.replace("duration_s: 1.0", f"duration_s: {value}")
    with pytest.raises(BriefInvalid) as info:
        load_brief(raw)
    assert info.value.problems == [("scenes[0].duration_s", "Input should be a finite number")]


def test_a_key_given_twice_is_refused_not_silently_replaced() -> None:
    # a copy-pasted `scenes:` block further down replaced the first one: a scene was lost
    twice = EXAMPLE + "\nseed: 7\n"
    line = twice.count("\n")  # the added key's line, counted from 1
    assert _problems(twice) == [
        ("(document)", f"invalid YAML at line {line} column 1: the key 'seed' appears twice "
                       "in one mapping")]
    nested = EXAMPLE.replace("    duration_s: 1.0\n", "    duration_s: 1.0\n    duration_s: 2.0\n",
                             1)
    assert "appears twice" in _problems(nested)[0][1]
    as_json = json.dumps(_brief())[:-1] + ', "aspects": ["9:16"]}'
    assert _problems(as_json) == [
        ("(document)", "invalid JSON: the key 'aspects' appears twice in one object")]


@pytest.mark.parametrize("field", ["legal", "call_to_action"])
def test_two_spellings_of_one_language_are_refused_in_every_locale_keyed_field(
        field: str) -> None:
    # `en-US` and `EN-us` both became en-US and the later one's line replaced the first
    data = _brief()
    data["brand_kit"] = {**data.get("brand_kit", {"logo": "logo.png", "colours": ["#101820"]}),
                         field: {"en-US": "Terms apply.", "EN_us": "Nothing applies."}}
    problems = _problems(json.dumps(data))
    assert problems == [(f"brand_kit.{field}", "'en-US' and 'EN_us' are the same language "
                                               "(en-US): give its lines once")]
    scenes = _brief()
    scenes["scenes"][0]["dialogue"]["en_us"] = [{"speaker": "A", "text": "Other line"}]
    assert _problems(json.dumps(scenes))[0][0] == "scenes[0].dialogue"


@pytest.mark.parametrize(("field", "value"), [("seed", True), ("max_qc_retries", "1"),
                                              ("crossfade_s", "0.5")])
def test_a_number_given_as_a_boolean_or_text_is_refused(field: str, value: Any) -> None:
    problems = _problems(json.dumps(_brief(**{field: value})))
    assert [path for path, _ in problems] == [field]
    scene = _brief()
    scene["scenes"][0]["duration_s"] = "1.0"
    assert [path for path, _ in _problems(json.dumps(scene))] == ["scenes[0].duration_s"]


@pytest.mark.parametrize(("key", "kind"), [("1", "a number"), ("null", "nothing (null)"),
                                           ("true", "a true/false value")])
def test_a_mapping_key_that_is_not_text_is_refused_where_it_is_written(key: str,
                                                                       kind: str) -> None:
    # `1: x` was reported at the path `[1]` (as if a list index) and `null: y` at `None`
    raw = EXAMPLE + f"\n{key}: x\n"
    line = raw.count("\n")  # the added key's line, counted from 1
    assert _problems(raw) == [("(document)", f"invalid YAML at line {line} column 1: a mapping "
                                             f"key must be text, not {kind} '{key}'")]
