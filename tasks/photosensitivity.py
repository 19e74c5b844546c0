"""Flashing picture, read from each frame's mean relative luminance (pure logic; QC runs it).

Two checks:
- **Flashes** (the general-flash rule of ITU-R BT.1702, which broadcasters apply to ads): a
  flash is a pair of opposing changes in luminance of 20 cd/m² or more, counted only where the
  darker picture is under 160 cd/m²; more than three flashes in any one second fails. On a
  200 cd/m² display, the guideline's reference, that is a change of 0.1 of peak white with the
  darker side under 0.8.
- **One-frame flashes**: a single frame that jumps from both its neighbours by that much, in the
  same direction, while they agree (a white, black or glitched frame between two alike). The
  rule above lets one flash pass; a reviewer does not.

What is measured is the frame's mean linear luminance (luma of a 16 × 9 grid of cell means,
each made linear with a 2.2 gamma, then averaged), not the guideline's per-area reading: a
flash over the whole screen counts at 0.1, one over a quarter of it from 0.4. The guideline's
red-flash rule and its limits for regular patterns are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLASH_CHANGE = 0.1  # 20 cd/m² of a 200 cd/m² display
DARKER_UNDER = 0.8  # 160 cd/m²: a change among brighter pictures is no flash
MAX_FLASHES_PER_SECOND = 3
GAMMA = 2.2


@dataclass(frozen=True)
class Swing:
    """A monotone change of luminance between two turning points (frame indices)."""

    start: int
    end: int
    low: float
    high: float

    @property
    def counts(self) -> bool:
        """A transition of the flash rule: large enough, with its darker side dark enough."""
        return self.high - self.low >= FLASH_CHANGE and self.low < DARKER_UNDER


def linear_luminance(luma_cells: np.ndarray) -> np.ndarray:
    """(frames,) mean relative luminance from (frames, cells) luma in 0..1."""
    return np.asarray((np.clip(luma_cells, 0.0, 1.0) ** GAMMA).mean(axis=1))


def swings(luminance: np.ndarray) -> list[Swing]:
    """The series' rises and falls of FLASH_CHANGE or more, between turning points. A wobble
    smaller than that inside a rise does not split it (hysteresis)."""
    found: list[Swing] = []
    if luminance.size == 0:
        return found
    lowest = highest = 0  # turning-point candidates while no direction is known
    direction = 0
    pivot = extreme = 0
    for i, value in enumerate(luminance.tolist()):
        if direction == 0:
            if value < luminance[lowest]:
                lowest = i
            if value > luminance[highest]:
                highest = i
            if value - luminance[lowest] >= FLASH_CHANGE:
                direction, pivot, extreme = 1, lowest, i
            elif luminance[highest] - value >= FLASH_CHANGE:
                direction, pivot, extreme = -1, highest, i
            continue
        if (value - luminance[extreme]) * direction > 0:
            extreme = i  # the change goes on
        elif abs(luminance[extreme] - value) >= FLASH_CHANGE:  # it turned
            found.append(_swing(luminance, pivot, extreme))
            direction, pivot, extreme = -direction, extreme, i
    if direction != 0:
        found.append(_swing(luminance, pivot, extreme))
    return found


def _swing(luminance: np.ndarray, start: int, end: int) -> Swing:
    a, b = float(luminance[start]), float(luminance[end])
    return Swing(start, end, min(a, b), max(a, b))


def most_flashes_in_a_second(luminance: np.ndarray, fps: float) -> int:
    """The most flashes (whole pairs of counted transitions) ending within any one second."""
    ends = [s.end for s in swings(luminance) if s.counts]
    window = int(round(fps))  # frames in one second
    most = 0
    for first, start in enumerate(ends):
        most = max(most, sum(1 for end in ends[first:] if end - start < window))
    return most // 2  # a transition left over is half a flash, which the rule does not count


def one_frame_flashes(luminance: np.ndarray) -> list[int]:
    """Frames that differ from both neighbours by FLASH_CHANGE or more, the same way, while the
    neighbours differ from each other by less than half of that (the darker side under
    DARKER_UNDER, as for a flash)."""
    lum = luminance.tolist()
    return [i for i in range(1, len(lum) - 1)
            if min(abs(lum[i] - lum[i - 1]), abs(lum[i] - lum[i + 1])) >= FLASH_CHANGE
            and (lum[i] - lum[i - 1]) * (lum[i] - lum[i + 1]) > 0
            and abs(lum[i + 1] - lum[i - 1]) < FLASH_CHANGE / 2
            and min(lum[i - 1:i + 2]) < DARKER_UNDER]
