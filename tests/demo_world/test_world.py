"""The synthetic world: reproducible by seed, prompts that match the picture and the sound."""

from __future__ import annotations

import numpy as np
import pytest

from demo_world.world import (
    BACKGROUNDS,
    COLOURS,
    FPS,
    HEIGHT,
    NUM_FRAMES,
    NUM_SAMPLES,
    SAMPLE_RATE_HZ,
    SAMPLES_PER_FRAME,
    WIDTH,
    Scene,
    prompt_for,
    render,
    render_many,
)


def test_same_seed_same_clip_and_other_seed_other_clip() -> None:
    a, b, c = render_many(7, 6), render_many(7, 6), render_many(8, 6)
    for x, y in zip(a, b, strict=True):
        assert x.prompt == y.prompt
        assert np.array_equal(x.frames, y.frames) and np.array_equal(x.audio, y.audio)
    assert any(not np.array_equal(x.frames, z.frames) for x, z in zip(a, c, strict=True))


def test_sizes_match_the_tiny_preset() -> None:
    clip = render(Scene("ball", "red", "grey", "bounces", seed=1))
    assert clip.frames.shape == (NUM_FRAMES, HEIGHT, WIDTH, 3) == (25, 64, 112, 3)
    assert clip.frames.dtype == np.uint8
    # the pipeline's soundtrack length for 25 frames at 24 fps and 48 kHz
    assert clip.audio.shape == (NUM_SAMPLES,) == (50_000,)
    assert clip.audio.dtype == np.float32 and np.abs(clip.audio).max() <= 1.0


def test_example_prompt_from_the_issue() -> None:
    scene = Scene("face", "red", "blue", "still", syllable="ba", num_syllables=3, seed=0)
    assert prompt_for(scene).startswith('A red face on a blue background says "ba ba ba"')


@pytest.mark.parametrize("seed", range(12))
def test_prompt_names_the_colours_drawn(seed: int) -> None:
    clip = render_many(seed, 1)[0]
    scene = clip.scene
    words = clip.prompt.lower()
    assert f"a {scene.colour} " in words and f"{scene.background} background" in words
    frame = clip.frames[0].astype(int)
    # the top-left corner is background; its shade stays within 12 % of the named colour
    corner = frame[0, 0]
    assert np.abs(corner - np.array(BACKGROUNDS[scene.background])).max() <= 0.07 * 255
    # the named object colour is present as exact pixels
    hits = np.all(frame == np.array(COLOURS[scene.colour]), axis=-1).sum()
    assert hits > 100
    others = [c for c in COLOURS if c != scene.colour]
    for other in others:
        assert np.all(frame == np.array(COLOURS[other]), axis=-1).sum() == 0


def test_speech_is_heard_only_from_faces_and_clicks_only_from_balls() -> None:
    face = render(Scene("face", "white", "grey", "still", "bo", 2, seed=3))
    ball = render(Scene("ball", "white", "grey", "bounces", seed=3))
    box = render(Scene("box", "white", "grey", "still", seed=3))
    assert len(face.syllable_onsets_s) == 2 and face.bounce_times_s == ()
    assert ball.syllable_onsets_s == () and len(ball.bounce_times_s) >= 2
    assert '"bo bo"' in face.prompt and "click" in ball.prompt and "box" in box.prompt
    # the box clip is ambience only: much quieter than speech or clicks
    assert np.abs(box.audio).max() < 0.1 < np.abs(face.audio).max()
    assert np.abs(ball.audio).max() > 0.3


def test_mouth_opening_follows_the_audio_envelope() -> None:
    for seed in range(5):
        clip = render(Scene("face", "red", "green", "left", "ba", 3, seed=seed))
        edges = np.round(np.arange(NUM_FRAMES + 1) * SAMPLES_PER_FRAME).astype(int)
        rms = np.array([np.sqrt(np.mean(clip.audio[a:b] ** 2)) for a, b in
                        zip(edges[:-1], edges[1:], strict=True)])
        # the drawn mouth: dark pixels in the lower half of the face
        mouth_area = _dark_pixels_below_eyes(clip.frames)
        assert np.corrcoef(rms, clip.mouth_open)[0, 1] > 0.9
        assert np.corrcoef(mouth_area, clip.mouth_open)[0, 1] > 0.9
        # shifted by 3 frames the match is clearly worse
        assert np.corrcoef(np.roll(rms, 3), clip.mouth_open)[0, 1] < 0.7


def _dark(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) bool: the features' dark pixels (eyes, mouth)."""
    return frames.astype(int).sum(-1) < 120


def _dark_pixels_below_eyes(frames: np.ndarray) -> np.ndarray:
    dark = _dark(frames)
    counts = []
    for f in range(frames.shape[0]):
        rows, _ = np.nonzero(dark[f])
        cut = np.median(rows)  # eyes are above the mouth: keep the lower dark rows
        counts.append(int((rows > cut).sum()))
    return np.array(counts, dtype=float)


def test_the_mouth_centre_is_where_the_mouth_is_drawn() -> None:
    for scene in (Scene("face", "white", "blue", "right", "bi", 2, seed=4),
                  Scene("face", "yellow", "grey", "still", "ba", 3, seed=9)):
        clip = render(scene)
        dark = _dark(clip.frames)
        for f in range(NUM_FRAMES):
            x, y = clip.mouth_centre[f]
            rows, cols = np.nonzero(dark[f])
            lower = rows > y - 4  # the mouth's dark pixels, not the eyes' (11-12 rows higher)
            assert abs(rows[lower].mean() - y) < 1 and abs(cols[lower].mean() - x) < 1
    for scene in (Scene("ball", "red", "grey", "bounces", seed=1),
                  Scene("box", "red", "grey", "left", seed=2)):
        assert np.isnan(render(scene).mouth_centre).all()


def test_bounce_clicks_land_on_the_lowest_frames() -> None:
    clip = render(Scene("ball", "yellow", "blue", "bounces", seed=11))
    mask = np.all(clip.frames == np.array(COLOURS["yellow"]), axis=-1)
    centre_y = np.array([np.nonzero(m)[0].mean() for m in mask])
    for t in clip.bounce_times_s:
        f = int(round(t * FPS))
        assert centre_y[f] >= centre_y.max() - 3.5  # at the floor within a frame's travel
        start = int(round(t * SAMPLE_RATE_HZ))
        assert np.abs(clip.audio[start:start + 200]).max() > 0.3


def test_bad_scene_is_rejected_with_a_reason() -> None:
    with pytest.raises(ValueError, match="colour='purple'"):
        Scene("face", "purple", "blue", "still", num_syllables=1)
    with pytest.raises(ValueError, match="only a face speaks"):
        Scene("ball", "red", "blue", "bounces", num_syllables=2)
    with pytest.raises(ValueError, match="motion='bounces' for a face"):
        Scene("face", "red", "blue", "bounces", num_syllables=1)
