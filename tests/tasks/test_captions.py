"""Caption line breaking and speech-timed cues."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from tasks.captions import break_lines, caption_cues, cue_count, speech_segments, time_cues

RATE = 48_000


def _bursts(spans: list[tuple[float, float]], total_s: float) -> np.ndarray:
    t = np.arange(int(total_s * RATE)) / RATE
    audio = 0.001 * np.random.default_rng(0).standard_normal(t.size)
    for start, end in spans:
        inside = (t >= start) & (t < end)
        audio[inside] += 0.3 * np.sin(2 * np.pi * 180 * t[inside])
    return audio[None].astype(np.float32)


def test_speech_activity_finds_tone_bursts_within_50_ms() -> None:
    spans = [(0.5, 1.4), (2.2, 3.0)]
    found = speech_segments(_bursts(spans, 4.0), RATE)
    assert len(found) == 2
    for (start, end), (f_start, f_end) in zip(spans, found, strict=True):
        assert abs(start - f_start) <= 0.05 and abs(end - f_end) <= 0.05


def test_latin_lines_break_on_words_at_42_characters_two_lines_per_cue() -> None:
    text = ("Every morning starts with one step, and every step takes you a little further "
            "than yesterday did, all the way home.")
    cues = break_lines(text)
    assert all(len(cue) <= 2 for cue in cues)
    assert all(len(line) <= 42 for cue in cues for line in cue)
    assert " ".join(line for cue in cues for line in cue) == text


def test_cjk_lines_break_at_16_characters() -> None:
    cues = break_lines("每天早上都有新鲜的咖啡，按你喜欢的方式冲泡。全新跑鞋更轻更快。")
    assert all(len(line) <= 16 for cue in cues for line in cue)
    assert "".join(line for cue in cues for line in cue).startswith("每天早上")


def test_cues_follow_the_speech_and_stay_within_one_to_seven_seconds() -> None:
    cues = caption_cues(["Every morning starts with one step."], _bursts([(0.6, 2.4)], 3.0),
                        RATE)
    assert len(cues) == 1 and abs(cues[0].start_s - 0.6) <= 0.05
    assert 1.0 <= cues[0].end_s - cues[0].start_s <= 7.0
    spread = time_cues(["Hallo."], [], duration_s=1.04)
    assert spread[0].start_s == 0.0 and spread[0].end_s == 1.04  # no speech: the whole clip


def test_no_cue_is_dropped_when_the_clip_has_a_second_for_each() -> None:
    """A long first line took its share of the time and the one-second minimum of the short
    lines after it pushed the last past the end: 'Faster.' vanished from the captions."""
    texts = ["An unusually long opening line that takes most of the time", "Go.", "Faster."]
    assert cue_count(texts) == 3  # the first line breaks into two lines of one cue
    cues = time_cues(texts, [], duration_s=3.0)
    assert [line for cue in cues for line in cue.lines][-2:] == ["Go.", "Faster."]
    assert all(cue.end_s - cue.start_s >= 1.0 - 1e-9 for cue in cues)
    assert cues[-1].end_s <= 3.0 and all(a.end_s <= b.start_s for a, b in pairwise(cues))
