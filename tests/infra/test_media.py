"""infra.media: decoding chosen frames of a file."""

from __future__ import annotations

import os
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


def _niceness_of_process_with(marker: str, timeout_s: float = 10.0) -> int | None:
    """The niceness (from /proc) of the running process whose command line holds `marker`."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                command = cmdline.read_bytes()
                if marker.encode() in command and b"ffmpeg" in command.split(b"\0")[0]:
                    # fields after "(comm)": state is field 3, nice field 19
                    stat = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()
                    return int(stat[16])
            except OSError:  # the process ended while it was read
                continue
        time.sleep(0.05)
    return None


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
@pytest.mark.parametrize("niceness", [0, 7])
def test_ffmpeg_runs_at_the_niceness_the_flow_sets(niceness: int) -> None:
    """Finishing's ffmpeg yields its core to a render when both want one (FINISH_NICENESS)."""
    import threading
    import uuid

    from infra.media import set_ffmpeg_niceness

    own = os.nice(0)
    marker = f"nice-test-{uuid.uuid4().hex}"
    set_ffmpeg_niceness(niceness)
    try:
        run = threading.Thread(target=run_ffmpeg, args=([
            "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=24:duration=60", "-metadata",
            f"comment={marker}", "-t", "4", "-f", "null", "-"],))
        run.start()
        seen = _niceness_of_process_with(marker)
        run.join(60)
    finally:
        set_ffmpeg_niceness(0)
    assert seen == min(own + niceness, 19)
    with pytest.raises(ValueError, match="not in 0..19"):
        set_ffmpeg_niceness(20)


def test_an_encode_that_fills_the_disk_says_so(small_disk: Path) -> None:
    # ffmpeg exits 228 (-ENOSPC) and says "No space left on device" early in its output; the
    # reason kept only its last lines, the encoder's statistics
    with pytest.raises(MediaError) as info:
        run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=24:duration=8",
                    "-c:v", "rawvideo", "-y", str(small_disk / "out.avi")], timeout_s=120)
    reason = str(info.value)
    assert reason.startswith("ffmpeg exited 228 (No space left on device):"), reason
    assert reason.count("\n") <= 10
