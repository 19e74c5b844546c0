"""A chained scene starts from the pixels its parent scene ends on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infra.media import MediaError, run_ffmpeg
from tasks.continuity import last_frame, write_last_frame


def _levels_clip(path: Path, levels: list[int]) -> Path:
    """A 64x112 clip whose frame i is a flat grey of levels[i] with a white square moving."""
    frames = np.stack([np.full((112, 64, 3), level, np.uint8) for level in levels])
    for index, frame in enumerate(frames):
        frame[10:20, 4 * index % 54:4 * index % 54 + 10] = 255
    run_ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x112", "-r", "24", "-i", "pipe:",
                "-c:v", "libx264", "-preset", "ultrafast", "-crf", "0", "-pix_fmt", "yuv444p",
                str(path)], stdin=frames.tobytes())
    return path


def test_the_last_frame_is_the_one_the_clip_ends_on(tmp_path: Path) -> None:
    levels = [40 + 10 * i for i in range(13)]
    clip = _levels_clip(tmp_path / "parent.mp4", levels)
    png = write_last_frame(clip, tmp_path / "first_frame.png")
    pixels = np.asarray(Image.open(png), dtype=np.int16)
    assert pixels.shape == (112, 64, 3)
    assert abs(int(np.median(pixels)) - levels[-1]) <= 2  # not the one before (10 levels off)
    square = 4 * 12 % 54
    assert pixels[15, square + 5].min() > 240 and pixels[15, (square + 20) % 64].max() < 200
    assert np.array_equal(np.asarray(last_frame(clip)), pixels.astype(np.uint8))


def test_a_file_without_video_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(MediaError, match="not a readable video"):
        last_frame(bad)
