"""An independent true-peak meter for the finishing tests (not ffmpeg's)."""

from __future__ import annotations

import numpy as np
from scipy.signal import resample_poly


def true_peak_dbtp(audio: np.ndarray) -> float:
    """Highest sample peak in dBTP after 4x oversampling (the ITU-R BS.1770-4 annex 2
    estimate), over every channel of `audio` (channels, samples)."""
    oversampled = resample_poly(audio.astype(np.float64), 4, 1, axis=-1)
    return float(20 * np.log10(np.max(np.abs(oversampled))))
