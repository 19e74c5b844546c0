"""infra.media: decoding chosen frames of a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infra.media import MediaError, decode_video_frames, decode_video_frames_at, run_ffmpeg


@pytest.fixture(scope="module")
def counter_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of ffmpeg's test pattern (its frames all differ: a running counter)."""
    path = tmp_path_factory.mktemp("media") / "counter.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=96x64:rate=24:duration=1",
                "-pix_fmt", "yuv420p", "-vcodec", "libx264", "-preset", "veryfast", str(path)])
    return path


def test_chosen_frames_are_those_of_the_whole_decode(counter_clip: Path) -> None:
    every = decode_video_frames(counter_clip)
    assert every.shape == (24, 64, 96, 3)
    chosen = decode_video_frames_at(counter_clip, [23, 0, 11, 11])
    assert sorted(chosen) == [0, 11, 23]
    for index, frame in chosen.items():
        assert frame.dtype == np.uint8
        np.testing.assert_array_equal(frame, every[index])
    assert not np.array_equal(chosen[0], chosen[11])
    assert decode_video_frames_at(counter_clip, []) == {}


def test_a_frame_past_the_end_is_named(counter_clip: Path) -> None:
    asked = r"counter.mp4: has no frame 24 \(frames asked: \[3, 24\]\)"
    with pytest.raises(MediaError, match=asked):
        decode_video_frames_at(counter_clip, [3, 24])
