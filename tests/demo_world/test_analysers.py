"""Each analyser reads the right answer from ground-truth clips and the wrong one from a clip
whose picture and sound were deliberately mismatched."""

from __future__ import annotations

import math

import numpy as np
import pytest

from demo_world import analysers
from demo_world.world import (
    BOX_HALF_H,
    BOX_HALF_W,
    SAMPLES_PER_FRAME,
    Scene,
    render,
    render_many,
)

CLIPS = render_many(2024, 45)


def test_colour_object_and_background_are_read_from_frames() -> None:
    for clip in CLIPS:
        scene = clip.scene
        assert analysers.read_object(clip.frames) == scene.obj, clip.prompt
        assert analysers.read_colour(clip.frames) == scene.colour, clip.prompt
        assert analysers.read_background(clip.frames) == scene.background, clip.prompt


def test_attribute_readers_tell_apart_a_different_scene() -> None:
    face = render(Scene("face", "red", "blue", "still", "ba", 2, seed=1))
    box = render(Scene("box", "yellow", "green", "left", seed=1))
    assert analysers.read_object(box.frames) != "face"
    assert analysers.read_colour(box.frames) != "red"
    assert analysers.read_background(box.frames) != "blue"
    assert (analysers.read_object(face.frames), analysers.read_colour(face.frames)) == \
        ("face", "red")


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_the_object_is_read_through_a_blur(sigma: float) -> None:
    """A blur rounds the box's corners; the box is still read as a box, not as a face (a rule
    on how much of its bounding box the object fills read 2 of these boxes as faces)."""
    for clip in CLIPS:
        assert analysers.read_object(_blurred(clip.frames, sigma)) == clip.scene.obj, clip.prompt


def _background_where(frames: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The frames with the pixels of `where` (H, W) painted in their row's background colour."""
    out = frames.copy()
    for frame in out:
        background = analysers.row_background(frame).round().astype(np.uint8)
        frame[where] = np.broadcast_to(background[:, None, :], frame.shape)[where]
    return out


def test_a_box_with_round_corners_and_a_see_through_label_is_a_box() -> None:
    """What the demo model draws for a box: the corners rounded off (radius 7) and the dark
    label band in the background's colour, a hole in the object. Its outline is still a
    rectangle wider than tall; a disc of a face's size with the same hole is a face."""
    box = render(Scene("box", "white", "grey", "still", seed=3))
    ys, xs = np.nonzero(analysers.object_mask(box.frames[0]))
    cy, cx = analysers.mask_centre(ys, xs)
    yy, xx = np.mgrid[0:box.frames.shape[1], 0:box.frames.shape[2]]
    dy = np.maximum(np.abs(yy - cy) - (BOX_HALF_H - 7), 0)
    dx = np.maximum(np.abs(xx - cx) - (BOX_HALF_W - 7), 0)
    corners = dx**2 + dy**2 > 7**2
    band = (np.abs(yy - cy) <= 2.5) & (np.abs(xx - cx) <= BOX_HALF_W - 5)
    rounded = _background_where(box.frames, corners | band)
    assert analysers.read_object(rounded) == "box"
    assert analysers.read_object(_blurred(rounded, 2.0)) == "box"

    face = render(Scene("face", "white", "grey", "still", "ba", 1, seed=3))
    ys, xs = np.nonzero(analysers.object_mask(face.frames[0]))
    cy, cx = analysers.mask_centre(ys, xs)
    band = (np.abs(yy - cy) <= 2.5) & (np.abs(xx - cx) <= BOX_HALF_W - 5)
    assert analysers.read_object(_background_where(face.frames, band)) == "face"


def test_a_small_smeared_object_is_the_ball() -> None:
    """A ball drawn as a tall streak (the demo model's fast fall) is still the smallest object."""
    ball = render(Scene("ball", "white", "grey", "bounces", seed=5))
    streak = ball.frames.copy()
    for frame, next_frame in zip(streak, ball.frames[1:], strict=False):
        frame[:] = np.maximum(frame, next_frame)  # white on grey: the union of two positions
    assert analysers.read_object(streak) == "ball"


def test_empty_frames_have_no_object() -> None:
    blank = np.full((25, 64, 112, 3), 120, dtype=np.uint8)
    assert analysers.read_object(blank) is None and analysers.read_colour(blank) is None


@pytest.mark.parametrize("shift_frames", [-3, -2, 2, 4])
def test_lip_sync_lag_is_zero_in_sync_and_finds_a_shifted_voice(shift_frames: int) -> None:
    for seed in range(4):
        clip = render(Scene("face", "white", "grey", "still", "bo", 3, seed=seed))
        assert analysers.lip_sync_lag(clip.frames, clip.audio) == 0
        shifted = np.roll(clip.audio, int(shift_frames * SAMPLES_PER_FRAME))
        assert analysers.lip_sync_lag(clip.frames, shifted) == shift_frames


def test_no_face_or_no_voice_has_no_lip_sync() -> None:
    face = render(Scene("face", "red", "blue", "still", "ba", 2, seed=1))
    ball = render(Scene("ball", "red", "blue", "bounces", seed=1))
    silence = np.zeros_like(face.audio)
    assert analysers.lip_sync_lag(ball.frames, face.audio) is None  # no mouth
    assert analysers.lip_sync_lag(face.frames, silence) is None  # no voice


def _blurred(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each frame (what a video VAE at 1/8 of the size does to a small mouth:
    at sigma 3.5 an open mouth is no darker than ~120 on the face)."""
    radius = int(3 * sigma)
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
    taps /= taps.sum()
    out = frames.astype(float)
    for axis in (1, 2):
        padding = [(0, 0)] * 4
        padding[axis] = (radius, radius)
        padded = np.pad(out, padding, mode="edge")
        out = sum(weight * np.take(padded, range(i, i + out.shape[axis]), axis=axis)
                  for i, weight in enumerate(taps))
    return np.asarray(np.round(out), dtype=np.uint8)


def test_lip_sync_is_read_from_a_blurred_mouth() -> None:
    """A blur leaves no dark pixel (the mouth is a grey smudge) but keeps the mouth's ink: the
    lag is still 0 in sync and 3 with the voice 3 frames late."""
    faces = [clip for clip in CLIPS if clip.scene.obj == "face"]
    assert len(faces) >= 10
    for clip in faces:
        blurred = _blurred(clip.frames, sigma=3.5)
        assert (blurred.max(axis=-1) <= analysers.DARK_MAX_CHANNEL).sum() == 0
        assert analysers.lip_sync_lag(blurred, clip.audio) == 0, clip.prompt
        late = np.roll(clip.audio, int(3 * SAMPLES_PER_FRAME))
        assert analysers.lip_sync_lag(blurred, late) == 3, clip.prompt


def test_a_mouth_that_only_flickers_is_not_in_sync() -> None:
    """A still face under noise: the mouth's ink varies at random. Were the best of 11 lags
    taken whatever its correlation, about 3 in 11 would land within a frame of zero."""
    clip = render(Scene("face", "red", "blue", "still", "ba", 3, seed=1))
    still = np.repeat(clip.frames[:1], clip.frames.shape[0], axis=0).astype(float)
    in_sync = 0
    for seed in range(30):
        noise = np.random.default_rng(seed).normal(0.0, 8.0, still.shape)
        noisy = np.clip(still + noise, 0, 255).astype(np.uint8)
        lag = analysers.lip_sync_lag(noisy, clip.audio)
        in_sync += lag is not None and abs(lag) <= 1
    assert in_sync <= 2


def test_mouth_opening_tracks_a_moving_face() -> None:
    clip = render(Scene("face", "yellow", "green", "right", "bi", 2, seed=5))
    assert np.corrcoef(analysers.mouth_opening(clip.frames), clip.mouth_open)[0, 1] > 0.9


def test_syllable_count_heard() -> None:
    faces = [c for c in CLIPS if c.scene.obj == "face"]
    assert len({c.scene.num_syllables for c in faces}) == 3  # 1, 2 and 3 all covered
    for clip in CLIPS:
        assert analysers.count_syllables(clip.audio) == clip.scene.num_syllables, clip.prompt
    # the soundtrack of a 3-syllable clip under a 1-syllable picture is heard as 3, not 1
    one = render(Scene("face", "red", "blue", "still", "ba", 1, seed=2))
    three = render(Scene("face", "red", "blue", "still", "ba", 3, seed=2))
    assert analysers.count_syllables(three.audio) != one.scene.num_syllables


def test_bounce_clicks_align_and_a_foreign_soundtrack_does_not() -> None:
    balls = [c for c in CLIPS if c.scene.obj == "ball"]
    for clip in balls:
        sync = analysers.bounce_click_sync(clip.frames, clip.audio)
        assert sync.aligned, (sync, clip.bounce_times_s)
        assert abs(sync.mean_offset_frames) <= 0.5
    a = render(Scene("ball", "red", "grey", "bounces", seed=4))
    late = np.roll(a.audio, int(4 * SAMPLES_PER_FRAME))  # every click four frames late
    assert not analysers.bounce_click_sync(a.frames, late).aligned
    box = render(Scene("box", "red", "grey", "still", seed=4))  # no clicks at all
    assert not analysers.bounce_click_sync(a.frames, box.audio).aligned


def test_psnr() -> None:
    frame = CLIPS[0].frames[0]
    assert analysers.psnr(frame, frame) == math.inf
    noisy = np.clip(frame.astype(int) + np.random.default_rng(0).integers(-8, 9, frame.shape),
                    0, 255).astype(np.uint8)
    assert 28 < analysers.psnr(frame, noisy) < 35  # uniform +-8 noise: about 30.6 dB
    assert analysers.psnr(frame, CLIPS[1].frames[0]) < 20
    with pytest.raises(ValueError, match="equal shapes"):
        analysers.psnr(frame, frame[:10])


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="uint8"):
        analysers.read_object(np.zeros((25, 64, 112, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="mono"):
        analysers.count_syllables(np.zeros((2, 100), dtype=np.float32))
