"""Hand-written measurements of clips of the demo world (no learned models).

They read what a viewer would check on a generated clip: which colour, object and background
are on screen; whether the mouth moves with the voice (lag of the best cross-correlation, in
frames); how many syllables are heard; whether the ball's clicks land on its bounces; and how
close the first frame is to a given image (PSNR). Each works on uint8 frames (T, H, W, 3) and a
mono float waveform at 48 kHz, so the same code scores ground truth and generated clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage  # type: ignore[import-untyped]  # no stubs installed

from demo_world.world import (
    BACKGROUNDS,
    COLOURS,
    DARK,
    FPS,
    SAMPLE_RATE_HZ,
    SAMPLES_PER_FRAME,
    box_silhouette,
    face_silhouette,
)

# A pixel belongs to the object when it is this far (Euclidean RGB) from its row's background.
OBJECT_DISTANCE = 70.0
# Features (eyes, mouth, box outline) are darker than any object colour and any background.
DARK_MAX_CHANNEL = 80
FEATURE_DARK = float(max(DARK))  # the brightness the world draws features at
# pixels: the ball is ~200, the face ~900 and the box ~780; anything under this is the ball
BALL_MAX_AREA = 480
VOICE_BAND_HZ = (150.0, 3500.0)
CLICK_BAND_HZ = 1500.0
# Below this a mouth does not follow the voice at any lag: among 11 lags, noise alone would
# land within one frame of zero 3 times in 11. In sync the world's clips correlate at 0.99 and
# through the demo model's codecs at 0.64-0.96.
MIN_SYNC_CORRELATION = 0.5
SPEECH_MIN_RMS = 0.04  # below this voice-band level nothing is being said
HOP_S = 0.01


def _nearest(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    names = list(palette)
    dist = [float(np.linalg.norm(rgb - np.array(palette[n], dtype=float))) for n in names]
    return names[int(np.argmin(dist))]


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3); got {frames.dtype} {frames.shape}")


def _check_audio(audio: np.ndarray) -> np.ndarray:
    wave = np.asarray(audio, dtype=np.float64)
    if wave.ndim == 2 and wave.shape[0] == 1:
        wave = wave[0]  # a (1, N) clip soundtrack
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"audio must be mono (N,) or (1, N); got shape {np.shape(audio)}")
    return wave


# ---- picture ---------------------------------------------------------------------------------


def row_background(frame: np.ndarray) -> np.ndarray:
    """(H, 3) background colour per row: median of the two leftmost and two rightmost columns
    (objects never touch the side edges in this world)."""
    edge = np.concatenate([frame[:, :2], frame[:, -2:]], axis=1).astype(float)
    return np.asarray(np.median(edge, axis=1))


def object_mask(frame: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels that differ from their row's background."""
    background = row_background(frame)
    distance = np.linalg.norm(frame.astype(float) - background[:, None, :], axis=-1)
    return np.asarray(distance > OBJECT_DISTANCE)


def read_background(frames: np.ndarray) -> str:
    """Name of the background colour (the side edges, averaged over all frames)."""
    _check_frames(frames)
    edges = np.concatenate([frames[:, :, :2], frames[:, :, -2:]], axis=2).astype(float)
    return _nearest(edges.reshape(-1, 3).mean(axis=0), BACKGROUNDS)


def read_colour(frames: np.ndarray) -> str | None:
    """Name of the object's colour (its bright pixels), or None when nothing is on screen."""
    _check_frames(frames)
    pixels = []
    for frame in frames:
        mask = object_mask(frame) & (frame.max(axis=-1) > DARK_MAX_CHANNEL)
        pixels.append(frame[mask].astype(float))
    stacked = np.concatenate(pixels)
    if len(stacked) < 20:
        return None
    return _nearest(np.median(stacked, axis=0), COLOURS)


def mask_centre(ys: np.ndarray, xs: np.ndarray) -> tuple[float, float]:
    """(y, x) midpoint of the bounding box of a mask's pixels (np.nonzero's rows and columns)."""
    return (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (H, W) bool masks."""
    return float((a & b).sum() / max((a | b).sum(), 1))


def read_object(frames: np.ndarray) -> str | None:
    """'face', 'ball' or 'box', or None when nothing is on screen.

    By size first: the ball is far smaller than the other two. Then by outline: the object's
    mask, its holes filled, against the world's disc and rectangle placed on its bounding box's
    centre; the better overlap wins (medians over frames). Outlines, not how much of its
    bounding box the mask fills: a blur rounds a rectangle's corners and a box's dark label band
    drawn faintly leaves a hole, so a filled-fraction rule read blurred boxes as faces (the
    ground truth itself at a 1-pixel blur, and most of the demo model's boxes), while a
    rectangle 31 x 25 stays closer to itself than to a disc 35 across."""
    _check_frames(frames)
    areas: list[int] = []
    overlaps: dict[str, list[float]] = {"face": [], "box": []}
    for frame in frames:
        mask = ndimage.binary_fill_holes(object_mask(frame))
        ys, xs = np.nonzero(mask)
        if len(ys) < 20:
            continue
        areas.append(len(ys))
        cy, cx = mask_centre(ys, xs)
        overlaps["face"].append(_overlap(mask, face_silhouette(cx, cy)))
        overlaps["box"].append(_overlap(mask, box_silhouette(cx, cy)))
    if not areas:
        return None
    if float(np.median(areas)) < BALL_MAX_AREA:
        return "ball"
    return max(overlaps, key=lambda name: float(np.median(overlaps[name])))


def object_centres(frames: np.ndarray) -> np.ndarray:
    """(T, 2) centroid (y, x) of the object per frame; NaN where nothing is on screen."""
    _check_frames(frames)
    out = np.full((frames.shape[0], 2), np.nan)
    for i, frame in enumerate(frames):
        ys, xs = np.nonzero(object_mask(frame))
        if len(ys) >= 20:
            out[i] = ys.mean(), xs.mean()
    return out


def mouth_opening(frames: np.ndarray) -> np.ndarray:
    """(T,) the mouth's ink per frame: inside the lower half of the face, each pixel counts by
    how far it has darkened from the face's own brightness toward the features' dark (1 for a
    fully dark pixel, 0 for the face colour). On a sharp frame that is the number of dark pixels
    (a closed mouth is a line); a blur spreads the same ink over more, fainter pixels, and the
    sum keeps it. (A fixed dark threshold does not: the demo model's video VAE draws an open
    mouth at ~135 on a face at 220, which a threshold at 80 reads as no mouth at all.)

    The face's centre is the midpoint of its mask's bounding box; the mouth sits below it. The
    face's brightness is a high percentile of its mask, above the eyes' and mouth's few pixels."""
    _check_frames(frames)
    out = np.zeros(frames.shape[0])
    for i, frame in enumerate(frames):
        mask = object_mask(frame)
        ys, xs = np.nonzero(mask)
        if len(ys) < 20:
            continue
        brightness = frame.max(axis=-1).astype(float)
        face = float(np.percentile(brightness[mask], 75))
        cy, cx = mask_centre(ys, xs)
        rows = slice(max(int(round(cy + 1)), 0), int(round(cy + 14)))
        cols = slice(max(int(round(cx - 9)), 0), int(round(cx + 9)))
        darkening = (face - brightness[rows, cols]) / max(face - FEATURE_DARK, 1.0)
        out[i] = float((np.clip(darkening, 0.0, 1.0) * mask[rows, cols]).sum())
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images of the same shape (dB; inf if equal)."""
    if a.shape != b.shape:
        raise ValueError(f"PSNR needs equal shapes; got {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


# ---- sound -----------------------------------------------------------------------------------


def _band(wave: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """Brick-wall band-pass by FFT (clips are one second; no streaming needed)."""
    spectrum = np.fft.rfft(wave)
    freqs = np.fft.rfftfreq(wave.size, 1 / SAMPLE_RATE_HZ)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    return np.fft.irfft(spectrum, n=wave.size)


def voice_envelope_per_frame(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """(T,) RMS of the voice band over each video frame's span of samples."""
    voice = _band(_check_audio(audio), *VOICE_BAND_HZ)
    edges = np.round(np.arange(num_frames + 1) * SAMPLES_PER_FRAME).astype(int)
    return np.array([np.sqrt(np.mean(voice[a:b] ** 2)) if b > a else 0.0
                     for a, b in zip(edges[:-1], edges[1:], strict=True)])


def best_cross_correlation(mouth: np.ndarray, voice: np.ndarray, max_lag: int = 5
                           ) -> tuple[float, int | None]:
    """(score, lag) of the best normalised cross-correlation of two (T,) signals over lags
    -max_lag..max_lag, the lag in frames by which `voice` trails `mouth`; (-inf, None) when
    either is flat at every lag. Searched from lag 0 outwards, so ties go to the smallest."""
    best, best_lag = -math.inf, None
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        m = mouth[max(0, -lag):len(mouth) - max(0, lag)]
        v = voice[max(0, lag):len(voice) - max(0, -lag)]
        if m.std() == 0 or v.std() == 0:
            continue
        score = float(np.corrcoef(m, v)[0, 1])
        if score > best + 1e-9:
            best, best_lag = score, lag
    return best, best_lag


def lip_sync_lag(frames: np.ndarray, audio: np.ndarray, max_lag: int = 5) -> int | None:
    """Frames by which the voice trails the mouth (negative: leads), at the best normalised
    cross-correlation of mouth opening and voice envelope over lags -max_lag..max_lag.

    None when there is nothing to correlate (no moving mouth, or no voice) or when the mouth
    follows the voice at no lag (best correlation below MIN_SYNC_CORRELATION), so that a clip
    without a talking face, or with a mouth that flickers at random, never passes as in sync."""
    best, best_lag = best_cross_correlation(mouth_opening(frames),
                                            voice_envelope_per_frame(audio, frames.shape[0]),
                                            max_lag)
    return best_lag if best >= MIN_SYNC_CORRELATION else None


def _hop_rms(wave: np.ndarray, hop_s: float = HOP_S) -> np.ndarray:
    hop = int(round(hop_s * SAMPLE_RATE_HZ))
    usable = wave[: wave.size // hop * hop].reshape(-1, hop)
    return np.asarray(np.sqrt(np.mean(usable**2, axis=1)))


def _runs(active: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index ranges where `active` is True."""
    padded = np.concatenate([[False], active, [False]])
    change = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(change[::2], change[1::2], strict=True))


def count_syllables(audio: np.ndarray) -> int:
    """Voiced bursts heard: voice-band RMS (10 ms hops) above 35 % of its peak for >= 60 ms,
    gaps under 30 ms bridged; 0 when the voice band stays below speaking level."""
    rms = _hop_rms(_band(_check_audio(audio), *VOICE_BAND_HZ))
    rms = np.convolve(rms, np.ones(3) / 3, mode="same")  # 30 ms smoothing
    if rms.size == 0 or rms.max() < SPEECH_MIN_RMS:
        return 0
    runs = _runs(rms > 0.35 * rms.max())
    merged: list[tuple[int, int]] = []
    for start, end in runs:
        if merged and start - merged[-1][1] < 3:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return sum(1 for start, end in merged if end - start >= 6)


def click_times(audio: np.ndarray, min_gap_s: float = 0.1) -> list[float]:
    """Onset times (s) of sharp broadband knocks: peaks of the >1.5 kHz energy (2.5 ms hops)
    that stand far above that band's median level."""
    high = _band(_check_audio(audio), CLICK_BAND_HZ, SAMPLE_RATE_HZ / 2)
    rms = _hop_rms(high, 0.0025)
    if rms.size == 0 or rms.max() < 0.05:
        return []
    threshold = max(0.3 * rms.max(), 6 * float(np.median(rms)))
    peaks = [i for i in range(rms.size) if rms[i] >= threshold
             and rms[i] == rms[max(0, i - 2):i + 3].max()]
    times: list[float] = []
    for i in peaks:
        t = i * 0.0025
        if not times or t - times[-1] >= min_gap_s:
            times.append(t)
    return times


def bounce_times(frames: np.ndarray) -> list[float]:
    """Times (s) where the object is at its lowest: interior local maxima of the centroid row
    within 4 px of the lowest point seen."""
    ys = object_centres(frames)[:, 0]
    if np.isnan(ys).all():
        return []
    ys = np.where(np.isnan(ys), np.nanmin(ys), ys)
    floor = ys.max()
    out: list[float] = []
    for f in range(len(ys)):
        left = ys[f - 1] if f > 0 else -math.inf
        right = ys[f + 1] if f + 1 < len(ys) else -math.inf
        # the world keeps contacts 1.5 frames away from the clip's ends, so an end frame is
        # never a bounce (it would only be a ball on its way down or up)
        lowest = 0 < f < len(ys) - 1 and ys[f] >= left and ys[f] >= right \
            and ys[f] > min(left, right)
        # a contact between two frames shows as two equal lowest frames: keep the first
        if ys[f] >= floor - 4 and lowest and not (out and f / FPS - out[-1] <= 1.5 / FPS):
            out.append(f / FPS)
    return out


@dataclass(frozen=True)
class BounceSync:
    """How clicks and bounces line up."""

    bounces: int
    clicks: int
    matched: int  # bounces with a click within one frame
    mean_offset_frames: float  # over matched bounces (NaN if none)

    @property
    def aligned(self) -> bool:
        """Every bounce clicks and every click is at a bounce (within one frame)."""
        return self.bounces > 0 and self.matched == self.bounces == self.clicks


def bounce_click_sync(frames: np.ndarray, audio: np.ndarray) -> BounceSync:
    """Match each bounce seen to the nearest click heard (within one frame)."""
    seen, heard = bounce_times(frames), click_times(audio)
    offsets = []
    for t in seen:
        if heard:
            nearest = min(heard, key=lambda c: abs(c - t))
            if abs(nearest - t) * FPS <= 1.0:
                offsets.append((nearest - t) * FPS)
    mean = float(np.mean(offsets)) if offsets else math.nan
    return BounceSync(bounces=len(seen), clicks=len(heard), matched=len(offsets),
                      mean_offset_frames=mean)
