"""The flash rule and the one-frame flash on luminance series, the red-flash rule on colour
cells (the file-level checks are in test_qc_analysis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.photosensitivity import (
    FLASH_AREA,
    FLASH_CHANGE,
    RED_CHANGE,
    Swing,
    area_transition_frames,
    linear_cells,
    most_area_flashes_in_a_second,
    most_flashes_in_a_second,
    most_red_flashes_in_a_second,
    one_frame_flashes,
    one_frame_flashes_by_area,
    red_states,
    swings,
)


def test_a_rise_with_small_wobbles_is_one_swing_and_a_turn_starts_the_next() -> None:
    series = np.array([0.1, 0.15, 0.13, 0.3, 0.28, 0.5, 0.45, 0.2, 0.22, 0.1])
    assert swings(series) == [Swing(0, 5, 0.1, 0.5, moment=5),
                              Swing(5, 9, 0.1, 0.5, moment=7)]
    assert swings(np.array([0.3, 0.35, 0.32, 0.38])) == []  # never FLASH_CHANGE apart
    assert swings(np.array([])) == []


def test_a_slow_start_is_measured_from_its_lowest_point() -> None:
    # the rise from 0.45 to 0.56 is 0.11, though 0.56 is only 0.06 above the first frame
    assert swings(np.array([0.5, 0.45, 0.56])) == [Swing(1, 2, 0.45, 0.56, moment=2)]


@pytest.mark.parametrize(("period", "flashes"), [(3, 4.0), (4, 3.0), (6, 2.0)])
def test_flashes_in_a_second_of_a_square_strobe(period: int, flashes: float) -> None:
    # frames alternate dark/bright every `period` frames at 24 fps: 24 / period transitions
    # a second, two to a flash
    series = np.where((np.arange(96) // period) % 2 == 1, 0.6, 0.1)
    assert most_flashes_in_a_second(series, fps=24) == flashes


def test_a_transition_left_over_is_not_a_flash() -> None:
    # seven changes within a second: three whole flashes and half of one, within the rule
    series = np.array([0.1] * 3 + [0.6, 0.1] * 3 + [0.6] * 40)
    assert len([s for s in swings(series) if s.counts]) == 7
    assert most_flashes_in_a_second(series, fps=24) == 3


def test_changes_among_bright_pictures_are_no_flashes() -> None:
    # the darker side must be under 0.8 of peak white (160 of 200 cd/m²)
    bright = np.where(np.arange(48) % 2 == 1, 0.95, 0.82)
    assert most_flashes_in_a_second(bright, fps=24) == 0
    assert one_frame_flashes(np.array([0.85, 0.97, 0.85])) == []


def test_a_one_frame_flash_is_one_frame_apart_from_two_neighbours_that_agree() -> None:
    assert one_frame_flashes(np.array([0.2, 0.2, 0.6, 0.21, 0.2, 0.0, 0.2])) == [2, 5]
    # a cut (the neighbours disagree) and a two-frame flash are not one-frame flashes
    assert one_frame_flashes(np.array([0.2, 0.2, 0.6, 0.6, 0.6])) == []
    assert one_frame_flashes(np.array([0.2, 0.6, 0.6, 0.2])) == []
    # just under the change that counts
    change = FLASH_CHANGE * 0.99
    assert one_frame_flashes(np.array([0.2, 0.2 + change, 0.2])) == []


def test_luminance_is_the_mean_of_linearised_cells() -> None:
    # half the screen white and half black is half of peak white, not 0.5 ** 2.2
    cells = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert linear_cells(cells).mean(axis=1) == pytest.approx([0.5, 0.5 ** 2.2])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), max_size=60))
def test_swings_alternate_join_end_to_start_and_each_is_a_change_that_counts(
        values: list[float]) -> None:
    series = np.array(values)
    found = swings(series)
    for swing in found:
        assert swing.high - swing.low >= FLASH_CHANGE and swing.start < swing.end
        assert swing.start < swing.moment <= swing.end
        assert {series[swing.start], series[swing.end]} == {swing.low, swing.high}
    for before, after in zip(found, found[1:], strict=False):
        assert before.end == after.start
        rising = series[before.end] > series[before.start]
        assert rising != (series[after.end] > series[after.start])
    # every frame between the turning points lies within their span (no missed turn)
    for swing in found:
        assert series[swing.start:swing.end + 1].min() >= swing.low - 1e-12
        assert series[swing.start:swing.end + 1].max() <= swing.high + 1e-12


CELLS = 144  # the 16 x 9 grid QC reads


def _strobe_over(cells_flashing: int, change: float, frames: int = 48, period: int = 3,
                 invert_half: bool = False) -> np.ndarray:
    """(frames, CELLS) linear luminance at 0.3, `cells_flashing` of the cells up by `change`
    every other `period` frames (4 flashes a second at 24 fps for period 3); with
    `invert_half`, half of those cells go down while the others go up."""
    cells = np.full((frames, CELLS), 0.3)
    on = (np.arange(frames) // period) % 2 == 1
    sign = np.ones(cells_flashing)
    if invert_half:
        sign[::2] = -1
    cells[:, :cells_flashing] += np.where(on[:, None], change, 0.0) * sign
    if invert_half:
        cells[:, :cells_flashing] += np.where(sign < 0, change, 0.0)  # the inverted start lit
    return cells


def test_a_strobe_over_a_quarter_of_the_screen_is_counted_though_the_mean_barely_moves() -> None:
    """The mean reading alone needed a change of 0.4 over a quarter of the screen."""
    quarter = int(FLASH_AREA * CELLS)
    cells = _strobe_over(quarter, 0.2)
    assert most_flashes_in_a_second(cells.mean(axis=1), 24.0) == 0  # the mean moves 0.05
    assert most_area_flashes_in_a_second(cells, 24.0) == 4


def test_a_strobe_under_a_quarter_of_the_screen_is_not_counted_by_area() -> None:
    cells = _strobe_over(int(FLASH_AREA * CELLS) - 1, 0.9)
    assert area_transition_frames(cells) == []
    assert most_area_flashes_in_a_second(cells, 24.0) == 0


def test_an_inverting_checkerboard_flashes_though_its_mean_is_still() -> None:
    """Concurrent flashes add up whatever their direction (BT.1702 counts their combined
    area); the screen's mean does not move at all."""
    cells = _strobe_over(CELLS, 0.3, invert_half=True)
    assert np.ptp(cells.mean(axis=1)) < 1e-12
    assert most_flashes_in_a_second(cells.mean(axis=1), 24.0) == 0
    assert most_area_flashes_in_a_second(cells, 24.0) == 4


@pytest.mark.parametrize("period", [1, 2, 3, 6, 12])
def test_a_whole_screen_strobe_reads_the_same_by_mean_and_by_area(period: int) -> None:
    cells = _strobe_over(CELLS, 0.5, period=period)
    assert most_area_flashes_in_a_second(cells, 24.0) == \
        most_flashes_in_a_second(cells.mean(axis=1), 24.0)


def test_changes_among_bright_cells_are_no_flashes_by_area() -> None:
    cells = _strobe_over(CELLS, 0.15) + 0.55  # 0.85 <-> 1.0: the darker side is too bright
    assert most_area_flashes_in_a_second(cells, 24.0) == 0


def test_a_one_frame_flash_over_a_third_of_the_screen_is_named() -> None:
    cells = np.full((10, CELLS), 0.3)
    cells[4, :48] = 0.5  # a third of the screen; the mean moves 0.067, under the change
    assert one_frame_flashes(cells.mean(axis=1)) == []
    assert one_frame_flashes_by_area(cells) == [4]
    cells[4, :48], cells[4, 48:90] = 0.3, 0.5  # 42 cells: under a third, over a quarter
    assert one_frame_flashes_by_area(cells) == [4]
    cells[4, 48:90], cells[4, 48:83] = 0.3, 0.5  # 35 cells: under a quarter
    assert one_frame_flashes_by_area(cells) == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=0, max_size=60))
def test_a_screen_of_equal_cells_reads_the_same_by_mean_and_by_area(values: list[float]) -> None:
    cells = np.repeat(np.array(values, dtype=float)[:, None], CELLS, axis=1).reshape(-1, CELLS)
    luminance = np.array(values, dtype=float)  # the mean, without its rounding
    assert most_area_flashes_in_a_second(cells, 24.0) == most_flashes_in_a_second(luminance, 24.0)
    assert one_frame_flashes_by_area(cells) == one_frame_flashes(luminance)


def _colour_strobe(colour: tuple[float, float, float], other: tuple[float, float, float],
                   cells_flashing: int = CELLS, period: int = 3) -> np.ndarray:
    """(48, CELLS, 3) R'G'B': `cells_flashing` cells swap `colour` for `other` every `period`
    frames (4 flashes a second at 24 fps for period 3), the rest stay `colour`."""
    cells = np.empty((48, CELLS, 3))
    cells[:] = colour
    on = (np.arange(48) // period) % 2 == 1
    cells[np.ix_(on, np.arange(cells_flashing))] = other
    return cells


def test_red_swapping_with_grey_is_a_red_flash_over_a_quarter_of_the_screen() -> None:
    red, grey = (1.0, 0.0, 0.0), (0.5, 0.5, 0.5)
    assert most_red_flashes_in_a_second(_colour_strobe(red, grey), 24.0) == 4
    assert most_red_flashes_in_a_second(_colour_strobe(grey, red), 24.0) == 4
    assert most_red_flashes_in_a_second(_colour_strobe(red, grey, period=4), 24.0) == 3
    quarter = int(np.ceil(FLASH_AREA * CELLS))  # 36 cells
    assert most_red_flashes_in_a_second(_colour_strobe(red, grey, quarter), 24.0) == 4
    assert most_red_flashes_in_a_second(_colour_strobe(red, grey, quarter - 1), 24.0) == 0


def test_no_red_flash_without_a_saturated_red_or_far_enough_from_it() -> None:
    distance, saturated = red_states(np.array([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.5],
                                                [1.0, 0.6, 0.6], [0.0, 0.0, 1.0]]]))
    assert saturated[0].tolist() == [True, False, False, False]
    assert distance[0, 0] < 0.01 and distance[0, 1] > RED_CHANGE
    # pink and blue: far apart in chromaticity, neither a saturated red
    assert most_red_flashes_in_a_second(_colour_strobe((1.0, 0.6, 0.6), (0.0, 0.0, 1.0)),
                                        24.0) == 0
    # red and orange: a saturated red, but too close to it
    assert most_red_flashes_in_a_second(_colour_strobe((1.0, 0.0, 0.0), (1.0, 0.5, 0.0)),
                                        24.0) == 0


def test_a_dark_red_against_black_flashes_and_near_black_noise_does_not() -> None:
    black = (0.0, 0.0, 0.0)
    assert most_red_flashes_in_a_second(_colour_strobe((0.6, 0.0, 0.0), black), 24.0) == 4
    assert most_red_flashes_in_a_second(_colour_strobe((0.03, 0.0, 0.0), black), 24.0) == 0
