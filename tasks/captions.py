"""Caption cues from the brief's approved lines, timed to the speech in the generated audio.

No speech recogniser is available offline, so timing comes from speech activity: frames whose
energy rises above an adaptive noise floor, merged across short pauses.
"""

from __future__ import annotations

import math
import unicodedata

import numpy as np

from schemas.finishing import CaptionCue

FRAME_S = 0.02
MIN_SPEECH_S = 0.15
MERGE_GAP_S = 0.3
CUE_MIN_S, CUE_MAX_S = 1.0, 7.0
LATIN_CHARS_PER_LINE, CJK_CHARS_PER_LINE = 42, 16
LINES_PER_CUE = 2


def speech_segments(audio: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """(start_s, end_s) spans of speech-like activity in mono/stereo float audio."""
    mono = audio.mean(axis=0) if audio.ndim == 2 else audio
    mono = mono - mono.mean()
    hop = max(1, int(FRAME_S * sample_rate))
    frames = len(mono) // hop
    if frames == 0:
        return []
    energy = np.sqrt(np.mean(mono[: frames * hop].reshape(frames, hop) ** 2, axis=1)) + 1e-9
    level = 20 * np.log10(energy)
    floor = np.percentile(level, 10)
    # Active: 10 dB over the noise floor and within 35 dB of the loudest frame.
    active = (level > floor + 10) & (level > level.max() - 35)
    segments: list[list[float]] = []
    for index in np.flatnonzero(active):
        start, end = index * FRAME_S, (index + 1) * FRAME_S
        if segments and start - segments[-1][1] <= MERGE_GAP_S:
            segments[-1][1] = end
        else:
            segments.append([start, end])
    return [(s, e) for s, e in segments if e - s >= MIN_SPEECH_S]


def is_cjk(text: str) -> bool:
    """True when most letters are Han, Kana or Hangul (no spaces between words)."""
    letters = [c for c in text if c.isalpha()]
    wide = sum(unicodedata.east_asian_width(c) in ("W", "F") for c in letters)
    return bool(letters) and wide * 2 > len(letters)


def break_lines(text: str) -> list[list[str]]:
    """Cues of at most two lines: ~42 characters per line on word boundaries for spaced
    scripts (Latin, Arabic, ...), 16 characters anywhere for CJK."""
    text = " ".join(text.split())
    lines: list[str] = []
    if is_cjk(text):
        lines = [text[i:i + CJK_CHARS_PER_LINE] for i in range(0, len(text), CJK_CHARS_PER_LINE)]
    else:
        current = ""
        for word in text.split(" "):
            if current and len(current) + 1 + len(word) > LATIN_CHARS_PER_LINE:
                lines.append(current)
                current = word
            else:
                current = f"{current} {word}".strip()
        if current:
            lines.append(current)
    return [lines[i:i + LINES_PER_CUE] for i in range(0, len(lines), LINES_PER_CUE)]


def cue_count(texts: list[str]) -> int:
    """How many caption cues `texts` make (`break_lines`): each needs CUE_MIN_S on screen."""
    return sum(len(break_lines(text)) for text in texts)


def time_cues(texts: list[str], segments: list[tuple[float, float]],
              duration_s: float) -> list[CaptionCue]:
    """Spread the cues over the speech spans (or the whole clip when none was found), in
    proportion to their length, each 1-7 s and inside the clip. Every cue fits when the clip
    has CUE_MIN_S per cue (`cue_count`; the brief is checked for it at submission)."""
    blocks = [block for text in texts for block in break_lines(text)]
    if not blocks:
        return []
    start = segments[0][0] if segments else 0.0
    end = segments[-1][1] if segments else duration_s
    if end - start < CUE_MIN_S * len(blocks):  # too little speech: use the whole clip
        start, end = 0.0, duration_s
    weights = [sum(len(line) for line in block) for block in blocks]
    total = sum(weights)
    span = end - start
    lengths = [min(max(span * weight / total, CUE_MIN_S), CUE_MAX_S) for weight in weights]
    if sum(lengths) > span:
        # The minimum given to short cues pushed the last ones past the end (they were
        # dropped): each cue gets the minimum, the time left is shared by length.
        spare = max(span - CUE_MIN_S * len(blocks), 0.0)
        lengths = [min(CUE_MIN_S + spare * weight / total, CUE_MAX_S) for weight in weights]
    cues, cursor = [], start
    for block, length in zip(blocks, lengths, strict=True):
        cue_end = min(cursor + length, duration_s)
        if cue_end - cursor <= 0:
            break
        cues.append(CaptionCue(start_s=round(cursor, 3), end_s=round(cue_end, 3), lines=block))
        cursor = cue_end
    return cues


def caption_cues(texts: list[str], audio: np.ndarray, sample_rate: int) -> list[CaptionCue]:
    """Cues for the approved lines, timed to the speech found in `audio`."""
    duration = audio.shape[-1] / sample_rate
    return time_cues(texts, speech_segments(audio, sample_rate), math.floor(duration * 1000) / 1000)
