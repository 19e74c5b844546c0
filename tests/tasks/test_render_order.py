"""The render order completes spots the soonest (issue 15's brief shape: a silent scene shared by
every language, a spoken one per language; landscape renders feed 16:9 and 1:1, portrait 9:16)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tasks.render_order import spots_first

LOCALES = ["ar", "de", "en", "zh"]


def _issue15_shape() -> tuple[list[frozenset[str]], dict[str, int]]:
    needs = []
    for locale in LOCALES:
        needs += [frozenset({"shot-L", f"run-{locale}-L"})] * 2  # 16:9 and 1:1
        needs.append(frozenset({"shot-P", f"run-{locale}-P"}))  # 9:16
    uses = {"shot-L": 8, "shot-P": 4} | {f"run-{loc}-{o}": 2 if o == "L" else 1
                                         for loc in LOCALES for o in "LP"}
    return needs, uses


def _spots_done_after(order: list[str], needs: list[frozenset[str]]) -> list[int]:
    return [sum(1 for need in needs if need <= set(order[:n + 1])) for n in range(len(order))]


def test_the_shared_render_then_each_render_that_completes_spots() -> None:
    needs, uses = _issue15_shape()
    order = spots_first(uses, needs, uses)
    assert order[0] == "shot-L"  # every landscape spot needs it
    assert order[1:5] == [f"run-{loc}-L" for loc in LOCALES]  # each completes two spots
    assert order[5] == "shot-P"  # then the shared portrait: four spots wait on it
    assert _spots_done_after(order, needs) == [0, 2, 4, 6, 8, 8, 9, 10, 11, 12]


def test_renders_stored_by_an_earlier_run_count_as_done() -> None:
    needs, uses = _issue15_shape()
    stored = [key for key in uses if key.endswith("-L")]
    portrait = ["run-de-P", "shot-P", "run-ar-P"]
    # the landscape spots are complete already; a portrait spot needs the shared shot first
    assert spots_first(portrait, needs, uses, done=stored) == ["shot-P", "run-ar-P", "run-de-P"]
    # and a render that completes a spot with a stored one goes before one that does not
    assert spots_first(["run-zh-P", "run-ar-L"], needs, uses, done=["shot-P"]) == \
        ["run-zh-P", "run-ar-L"]


@given(st.lists(st.frozensets(st.sampled_from("abcdef"), min_size=1), max_size=8),
       st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 9)))
def test_every_candidate_once_and_stable(needs: list[frozenset[str]], uses: dict[str, int]
                                         ) -> None:
    candidates = ["f", "a", "c", "b"]
    order = spots_first(candidates, needs, uses)
    assert sorted(order) == sorted(candidates)
    assert order == spots_first(list(reversed(candidates)), needs, uses)
