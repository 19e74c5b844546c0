"""Hostile and careless briefs: bounded work, bounded answers, no exception but BriefInvalid."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.brief import Brief, _nesting_depth, load_brief
from schemas.errors import BriefInvalid
from schemas.plan import frames_for_duration

EXAMPLE = (Path(__file__).parents[2] / "examples" / "brief.yaml").read_text()


def _example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE)
    return data


def _rejected(raw: str | bytes) -> BriefInvalid:
    with pytest.raises(BriefInvalid) as info:
        load_brief(raw)
    return info.value


@pytest.mark.parametrize("raw", [
    '{"campaign": ' + "[" * 5000 + "]" * 5000 + "}",
    "campaign: " + "[" * 5000 + "]" * 5000,
    "".join(" " * depth + "a:\n" for depth in range(1000)),
    "a:\n" + "- " * 5000 + "x",  # the indentation guard saw one level: a RecursionError
], ids=["json-brackets", "yaml-flow", "yaml-block", "yaml-compact"])
def test_deeply_nested_documents_are_refused_before_parsing(raw: str) -> None:
    error = _rejected(raw)
    assert error.problems == [("(document)", error.problems[0][1])]
    assert "nested more than 16 levels" in error.problems[0][1]


def test_yaml_aliases_are_refused() -> None:
    # 9 x 9 x ... aliases: a few hundred bytes that stand for half a million dialogue lines.
    levels = ["a0: &a0 [{speaker: x, text: y}, 1, 2, 3, 4, 5, 6, 7, 8]"]
    for i in range(1, 6):
        levels.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    raw = "\n".join(levels) + "\n" + EXAMPLE
    error = _rejected(raw)
    assert "aliases" in error.problems[0][1]


def test_a_brief_with_a_hundred_thousand_problems_answers_the_first_hundred_and_the_count() -> None:
    data = _example()
    data["scenes"][0]["dialogue"]["en-US"] = [{"speaker": ""}] * 100_000
    started = time.monotonic()
    error = _rejected(json.dumps(data))
    assert len(error.problems) <= 100
    assert error.total >= 1
    assert len(str(error)) < 20_000
    assert time.monotonic() - started < 5  # bounded work, generous for a loaded 2-core machine


def test_many_problems_are_counted_beyond_the_ones_shown() -> None:
    data = _example()
    data["scenes"] = [{"scene_id": f"S{i}"} for i in range(50)]  # 50 scenes, 3 problems each
    error = _rejected(json.dumps(data))
    assert error.total == 150
    assert len(error.problems) == 100
    assert "150 problem(s) (first 100 shown)" in str(error)


@pytest.mark.parametrize("field,value", [
    ("locales", [f"en-{c}" for c in ("US", "GB", "AU", "CA", "IE", "NZ", "ZA", "IN")] * 6),
    ("scenes", None),
])
def test_lists_are_capped(field: str, value: Any) -> None:
    data = _example()
    data[field] = value if value is not None else [data["scenes"][0]] * 51
    error = _rejected(json.dumps(data))
    assert any(path == field and "at most" in message for path, message in error.problems), \
        error.problems


def test_dialogue_lines_per_locale_are_capped() -> None:
    data = _example()
    line = data["scenes"][0]["dialogue"]["en-US"][0]
    data["scenes"][0]["dialogue"]["en-US"] = [line] * 21
    error = _rejected(json.dumps(data))
    assert any(path == "scenes[0].dialogue.en-US" for path, _ in error.problems), error.problems


def test_a_scene_too_short_to_measure_loudness_is_refused_with_the_reason() -> None:
    data = _example()
    data["scenes"][0]["duration_s"] = 0.3
    error = _rejected(json.dumps(data))
    path, message = error.problems[0]
    assert path == "scenes[0].duration_s"
    assert "at least 0.5 s" in message and "QC" in message


def test_the_shortest_scene_renders_long_enough_for_a_loudness_block() -> None:
    data = _example()
    data["scenes"][0]["duration_s"] = 0.5
    brief = load_brief(json.dumps(data))
    frames = frames_for_duration(brief.scenes[0].duration_s)
    # The finished scene lasts duration_s; both it and the render must hold one 400 ms block.
    assert brief.scenes[0].duration_s >= 0.4
    assert frames / 24 >= 0.4


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_text_is_a_brief_or_a_listed_problem(raw: str) -> None:
    try:
        assert isinstance(load_brief(raw), Brief)
    except BriefInvalid as err:
        assert err.problems and all(isinstance(p, str) and isinstance(m, str)
                                    for p, m in err.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["campaign", "brand", "locales", "aspects", "scenes", "platforms",
                        "dubbing", "seed", "max_qc_retries", "scenes.0", "scenes.0.dialogue",
                        "scenes.0.dialogue.en-US", "scenes.0.on_screen_text", "scenes.0.focus",
                        "scenes.0.duration_s", "scenes.0.first_frame"]),
       _json_values)
def test_any_field_replaced_by_any_value_is_a_brief_or_a_listed_problem(
        path: str, value: Any) -> None:
    data: Any = _example()
    *parents, leaf = path.split(".")
    target = data
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if isinstance(target, list):
        target[int(leaf)] = value
    else:
        target[leaf] = value
    for raw in (json.dumps(data), yaml.safe_dump(data, allow_unicode=True)):
        try:
            load_brief(raw)
        except BriefInvalid as err:
            assert err.problems and err.total >= len(err.problems)


def test_an_alias_is_refused_where_it_stands_with_the_rule() -> None:
    error = _rejected("campaign: &name spring\nbrand: *name\n")
    assert error.problems == [("(document)", "invalid YAML at line 2 column 8: YAML aliases "
                                             "(*name) are not allowed in a brief")]


@pytest.mark.parametrize(("text", "depth"), [
    ("", 0), ("a: 1", 0), ("[]", 1), ("[][]", 1), ("[[]]", 2), ("[a[", 2),
    ("]]][[", 2),  # a stray closing bracket does not make room for more depth
    ("[[][[]]]", 3), ("{a: [1, {b: 2}]}", 3),
    ("XX: [X]", 1), ("[X[", 2),  # only brackets count, not other characters
    ("a:\n  b:\n    c: 1\n", 2), ("a:\n  - [x, [y]]\n", 2),
])
def test_nesting_depth_counts_brackets_and_indents(text: str, depth: int) -> None:
    assert _nesting_depth(text) == depth


def test_sixteen_levels_are_parsed_and_seventeen_refused() -> None:
    def nested(levels: int) -> str:
        return '{"campaign": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"

    assert _nesting_depth(nested(16)) == 16
    parsed = _rejected(nested(16))  # parsed, then refused by the schema: not by its depth
    assert all("nested more than" not in message for _, message in parsed.problems)
    assert _rejected(nested(17)).problems == [
        ("(document)", "nested more than 16 levels deep; a brief is a few levels of mappings "
                       "and lists")]


_TOO_DEEP = [("(document)", "nested more than 16 levels deep; a brief is a few levels of mappings "
                            "and lists")]


@pytest.mark.parametrize("nested", [
    lambda levels: "a:\n" + "- " * (levels - 1) + "x",  # block sequences on one line
    lambda levels: "- " * (levels - 1) + "a: x",  # a compact mapping in compact sequences
    lambda levels: "".join(" " * i + "a:\n" for i in range(levels)),  # indented mappings
    lambda levels: "a: " + "[" * (levels - 1) + "]" * (levels - 1),  # flow
    lambda levels: "a:\n- - {b: " + "[" * (levels - 4) + "]" * (levels - 4) + "}",  # mixed
], ids=["compact-sequences", "compact-mapping", "block-mappings", "flow", "mixed"])
def test_every_yaml_nesting_form_counts_towards_the_depth_limit(nested: Any) -> None:
    # `nested(levels)` holds that many mappings and lists, each inside the one before
    assert all("nested more than" not in message for _, message in _rejected(nested(16)).problems)
    for levels in (17, 1200):  # 1200: past libyaml's own limit, with no RecursionError either
        assert _rejected(nested(levels)).problems == _TOO_DEEP


def test_a_number_too_long_to_read_is_a_listed_problem_in_yaml_and_json() -> None:
    # Past 4300 digits int() raises a ValueError of its own (uncaught, an HTTP 500).
    digits = "9" * 5000
    assert _rejected(EXAMPLE.replace("seed: 1234", f"seed: {digits}")).problems == [
        ("(document)", "invalid YAML at line 13 column 7: a number of 5,000 digits; a brief's "
                       "numbers have at most 100")]
    as_json = json.dumps(_example()).replace('"seed": 1234', f'"seed": {digits}')
    assert _rejected(as_json).problems == [
        ("(document)", "invalid JSON: a number of 5,000 digits; a brief's numbers have at most "
                       "100")]
    # a long number that is still read reaches the schema, which names the field
    problems = _rejected(EXAMPLE.replace("seed: 1234", "seed: " + "9" * 100)).problems
    assert problems == [("seed", "Input should be less than 2147483648")]


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="the pure-Python YAML parser is slower")
def test_a_yaml_flow_list_of_two_thirds_of_a_megabyte_parses_in_about_a_second() -> None:
    raw = "a: [" + ",".join(["1"] * 330_000) + "]"  # 660 KB: 13 s in the pure-Python loader
    started = time.process_time()
    problems = dict(_rejected(raw).problems)
    assert "Extra inputs are not permitted" in problems["a"]
    assert time.process_time() - started < 5  # about 1 s; generous for a loaded machine


@pytest.mark.parametrize(("raw", "problem"), [
    ("campaign: !!str x\n", "invalid YAML at line 1 column 11: YAML tags (!name, !!type) are not "
                            "allowed in a brief"),
    ("campaign: !!python/object:os.system x\n", "invalid YAML at line 1 column 11: YAML tags "
                                               "(!name, !!type) are not allowed in a brief"),
    ("--- !!map\ncampaign: x\n", "invalid YAML at line 1 column 5: YAML tags (!name, !!type) "
                                 "are not allowed in a brief"),
    ("campaign: x\n---\nbrand: y\n", "invalid YAML at line 2 column 1: a second YAML document; "
                                     "a brief is a single document"),
    ("? [a, b]\n: x\n", "invalid YAML at line 1 column 3: a mapping key must be a plain value, "
                        "not a list or mapping"),
    ("campaign: {{a: 1}: x}\n", "invalid YAML at line 1 column 12: a mapping key must be a plain "
                                "value, not a list or mapping"),
], ids=["core-tag", "python-tag", "collection-tag", "two-documents", "list-key", "mapping-key"])
def test_yaml_the_parser_refuses_while_building_values(raw: str, problem: str) -> None:
    assert _rejected(raw).problems == [("(document)", problem)]


def test_a_yaml_merge_key_is_an_ordinary_key_the_schema_refuses() -> None:
    # YAML 1.2 has no merge keys: `<<` merges nothing into the brief and is named as extra.
    problems = dict(_rejected(EXAMPLE + "<<: {brand: Other}\n").problems)
    assert problems == {"<<": "Extra inputs are not permitted"}
