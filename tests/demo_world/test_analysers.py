"""Each analyser reads the right answer from ground-truth clips and the wrong one from a clip
whose picture and sound were deliberately mismatched."""

from __future__ import annotations

import math

import numpy as np
import pytest

from demo_world import analysers
from demo_world.world import SAMPLES_PER_FRAME, Scene, render, render_many

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
