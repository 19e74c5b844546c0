"""True peaks of a finished file stay at or below -1 dBTP even when the render has sharp
transients that the loudness gain alone would push past full scale (measured here with an
independent 4x-oversampled peak, not with ffmpeg's own meter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyloudnorm

from infra.media import decode_audio
from schemas.brief import Aspect, LoudnessProfile
from schemas.finishing import LOUDNESS_TARGETS, FinishSpec
from tasks.finishing import finish_clip
from tests.tasks.peaks import true_peak_dbtp

FPS, RATE = 24.0, 48_000


def test_transients_are_limited_to_minus_one_dbtp(tmp_path: Path) -> None:
    seconds = 2.0
    t = np.arange(int(seconds * RATE)) / RATE
    audio = 0.02 * np.sin(2 * np.pi * 220 * t)
    audio[::RATE // 8] = 0.9  # a click every 125 ms: high crest factor
    frames = np.repeat(np.linspace(0, 255, 64 * 36, dtype=np.uint8).reshape(1, 36, 64, 1),
                       int(seconds * FPS), axis=0).repeat(3, axis=-1)
    frames = (frames + np.arange(len(frames))[:, None, None, None] * 5).astype(np.uint8)
    quiet = float(pyloudnorm.Meter(RATE).integrated_loudness(audio))
    assert quiet < -14.0 - 6 and true_peak_dbtp(audio[None]) > -1.0 - (-14.0 - quiet), \
        "the source must need more gain than its peaks allow"
    spec = FinishSpec(aspect=Aspect.LANDSCAPE, locale="en-US",
                      loudness=LOUDNESS_TARGETS[LoudnessProfile.WEB])
    result = finish_clip(frames, audio[None].astype(np.float32), FPS, RATE, spec, tmp_path)
    out, rate = decode_audio(Path(result.video_path))
    assert true_peak_dbtp(out) <= -1.0
    assert abs(pyloudnorm.Meter(rate).integrated_loudness(out.T) - -14.0) <= 1.0
