"""Flashing picture, read from a 16 × 9 grid of cell luminances (pure logic; QC runs it).

Two checks:
- **Flashes** (the general-flash rule of ITU-R BT.1702, which broadcasters apply to ads): a
  flash is a pair of opposing changes in luminance of 20 cd/m² or more, counted only where the
  darker picture is under 160 cd/m²; more than three flashes in any one second fails. On a
  200 cd/m² display, the guideline's reference, that is a change of 0.1 of peak white with the
  darker side under 0.8.
- **One-frame flashes**: a single frame that jumps from both its neighbours by that much, in the
  same direction, while they agree (a white, black or glitched frame between two alike). The
  rule above lets one flash pass; a reviewer does not.

Each is read two ways, and a file fails if either reading does:
- the frame's **mean** linear luminance (luma of each cell made linear with a 2.2 gamma, then
  averaged): a flash over the whole screen counts at a change of 0.1, one over a quarter of it
  from 0.4;
- **by area**, as the guideline counts: each cell's own changes, and a frame is a transition
  where cells covering a quarter of the screen or more (36 of 144) end a change that counts on
  it, whatever their direction (concurrent flashes add up: an inverting checkerboard, which
  the mean does not see, flashes over the whole screen). A change happens on the frame of its
  largest one-frame step; cells whose changes happen a frame apart are not added up.
- **Red flashes** (the guideline's red-flash rule, read as WCAG 2.2 words it after ISO
  9241-391): a pair of opposing transitions to or from a saturated red (linear R / (R + G + B)
  of 0.8 or more) whose two states lie more than 0.2 apart in the CIE 1976 u'v' chromaticity
  diagram; more than three in any one second over a quarter of the screen fails. Read by area
  only, on each cell's distance in u'v' from the sRGB red primary: two states that far apart
  along it are at least that far apart in the diagram, so every red transition counted is
  one. The reverse does not hold: saturated reds lie up to ~0.14 from the primary, so a swap
  between an orange-red and a purple-red, far apart but equally far from the primary, is
  missed; the count is a lower bound. A red that swaps for a grey of the same luminance is a
  red flash and no general flash.
The guideline's limits for regular patterns are not checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

FLASH_CHANGE = 0.1  # 20 cd/m² of a 200 cd/m² display
DARKER_UNDER = 0.8  # 160 cd/m²: a change among brighter pictures is no flash
MAX_FLASHES_PER_SECOND = 3
FLASH_AREA = 0.25  # BT.1702: concurrent flashes covering a quarter of the screen or more count
GAMMA = 2.2
SATURATED_RED = 0.8  # linear R / (R + G + B) at or above which a colour is a saturated red
RED_CHANGE = 0.2  # apart in the CIE 1976 u'v' diagram: a red transition
# linear light added to each channel before chromaticity, so that near-black (whose
# chromaticity is noise) reads as the neutral grey it looks, and a faint red as no saturated red
DARK_NEUTRAL = 1e-3
# linear sRGB -> CIE XYZ (IEC 61966-2-1, D65)
_SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805],
                         [0.2126, 0.7152, 0.0722],
                         [0.0193, 0.1192, 0.9505]])


@dataclass(frozen=True)
class Swing:
    """A monotone change of luminance between two turning points (frame indices)."""

    start: int
    end: int
    low: float
    high: float
    # the frame its largest one-frame step reaches: when it happens, for counting flashes (a
    # change's end is wherever its extreme lies, which a slow drift after a cut moves on)
    moment: int

    @property
    def counts(self) -> bool:
        """A transition of the flash rule: large enough, with its darker side dark enough."""
        return self.high - self.low >= FLASH_CHANGE and self.low < DARKER_UNDER


def linear_cells(luma_cells: np.ndarray) -> np.ndarray:
    """(frames, cells) relative luminance from (frames, cells) luma in 0..1."""
    return np.asarray(np.clip(luma_cells, 0.0, 1.0) ** GAMMA)


def swings(luminance: np.ndarray, change: float = FLASH_CHANGE) -> list[Swing]:
    """The series' rises and falls of `change` or more, between turning points. A wobble
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
            if value - luminance[lowest] >= change:
                direction, pivot, extreme = 1, lowest, i
            elif luminance[highest] - value >= change:
                direction, pivot, extreme = -1, highest, i
            continue
        if (value - luminance[extreme]) * direction > 0:
            extreme = i  # the change goes on
        elif abs(luminance[extreme] - value) >= change:  # it turned
            found.append(_swing(luminance, pivot, extreme))
            direction, pivot, extreme = -direction, extreme, i
    if direction != 0:
        found.append(_swing(luminance, pivot, extreme))
    return found


def _swing(luminance: np.ndarray, start: int, end: int) -> Swing:
    a, b = float(luminance[start]), float(luminance[end])
    steps = np.diff(luminance[start:end + 1]) * (1.0 if b > a else -1.0)
    return Swing(start, end, min(a, b), max(a, b), start + 1 + int(np.argmax(steps)))


def _transition_frames_by_area(series: np.ndarray, change: float,
                               counts: Callable[[int, Swing], bool]) -> list[int]:
    """Frames on which cells covering FLASH_AREA of the screen or more, from (frames, cells)
    series, each make a swing of `change` that `counts(cell, swing)` (at its moment)."""
    changing = np.zeros(series.shape[0])
    for index, cell in enumerate(series.T):
        for swing in swings(cell, change):
            if counts(index, swing):
                changing[swing.moment] += 1
    return [int(f) for f in np.flatnonzero(changing >= FLASH_AREA * series.shape[1])]


def _most_flashes_in_a_second(moments: list[int], fps: float) -> int:
    """The most flashes (whole pairs of transitions at these frames) within any one second."""
    window = int(round(fps))  # frames in one second
    most = 0
    for first, start in enumerate(moments):
        most = max(most, sum(1 for end in moments[first:] if end - start < window))
    return most // 2  # a transition left over is half a flash, which the rule does not count


def area_transition_frames(cells: np.ndarray) -> list[int]:
    """Frames on which cells covering FLASH_AREA of the screen or more, from (frames, cells)
    linear luminance, each make a change that counts (its moment)."""
    return _transition_frames_by_area(cells, FLASH_CHANGE, lambda _, swing: swing.counts)


def most_area_flashes_in_a_second(cells: np.ndarray, fps: float) -> int:
    """The most flashes (whole pairs of transitions) of the area reading happening within any
    one second."""
    return _most_flashes_in_a_second(area_transition_frames(cells), fps)


def red_states(rgb_cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames, cells) distance in u'v' from the sRGB red primary and whether the colour is a
    saturated red, from (frames, cells, 3) gamma-encoded R'G'B' in 0..1."""
    linear = np.clip(rgb_cells, 0.0, 1.0) ** GAMMA + DARK_NEUTRAL
    saturated = linear[..., 0] / linear.sum(axis=-1) >= SATURATED_RED
    red_u, red_v = _chromaticity(_SRGB_TO_XYZ[:, 0])
    u, v = _chromaticity(linear @ _SRGB_TO_XYZ.T)
    return np.asarray(np.hypot(u - red_u, v - red_v)), np.asarray(saturated)


def _chromaticity(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CIE 1976 (u', v') of (..., 3) XYZ."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    denominator = x + 15 * y + 3 * z
    return 4 * x / denominator, 9 * y / denominator


def red_transition_frames(rgb_cells: np.ndarray) -> list[int]:
    """Frames on which cells covering FLASH_AREA of the screen or more, from (frames, cells, 3)
    R'G'B', each make a red transition: RED_CHANGE or more along the distance from red, its
    redder state a saturated red."""
    distance, saturated = red_states(rgb_cells)

    def to_or_from_red(cell: int, swing: Swing) -> bool:
        redder = min(swing.start, swing.end, key=lambda frame: distance[frame, cell])
        return bool(saturated[redder, cell])

    return _transition_frames_by_area(distance, RED_CHANGE, to_or_from_red)


def most_red_flashes_in_a_second(rgb_cells: np.ndarray, fps: float) -> int:
    """The most red flashes (whole pairs of red transitions) within any one second."""
    return _most_flashes_in_a_second(red_transition_frames(rgb_cells), fps)


def most_flashes_in_a_second(luminance: np.ndarray, fps: float) -> int:
    """The mean reading's: the area reading of a screen of one cell, the (frames,) mean."""
    return most_area_flashes_in_a_second(luminance[:, None], fps)


def one_frame_flashes_by_area(cells: np.ndarray) -> list[int]:
    """Frames on which cells covering FLASH_AREA of the screen or more, from (frames, cells)
    linear luminance, are each a one-frame flash: apart from both neighbours by FLASH_CHANGE or
    more, the same way, while the neighbours differ from each other by less than half of that
    (the darker side under DARKER_UNDER, as for a flash)."""
    if cells.shape[0] < 3:
        return []
    before, frame, after = cells[:-2], cells[1:-1], cells[2:]
    flashing = ((np.minimum(np.abs(frame - before), np.abs(frame - after)) >= FLASH_CHANGE)
                & ((frame - before) * (frame - after) > 0)
                & (np.abs(after - before) < FLASH_CHANGE / 2)
                & (np.minimum(np.minimum(before, frame), after) < DARKER_UNDER))
    return [int(i) + 1 for i in np.flatnonzero(flashing.mean(axis=1) >= FLASH_AREA)]


def one_frame_flashes(luminance: np.ndarray) -> list[int]:
    """The mean reading's: the area reading of a screen of one cell, the (frames,) mean."""
    return one_frame_flashes_by_area(luminance[:, None])
