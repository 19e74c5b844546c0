"""Latent-length formulas (spec §6.3) and the size checks done before any heavy work."""

from __future__ import annotations

import math

from mova_model.request import VAE_TEMPORAL_STRIDE, validate_video_size

VAE_SPATIAL_STRIDE = 8
PATCH = 2  # video patch (1, 2, 2): pixel sizes must divide by 8 * 2 = 16 (request.SIZE_MULTIPLE)
VIDEO_LATENT_CHANNELS = 16
AUDIO_SAMPLE_RATE = 48_000
AUDIO_HOP = 960  # DAC: 2 * 3 * 4 * 5 * 8 samples per latent frame


def latent_frames(num_frames: int) -> int:
    """F_lat = (F − 1)/4 + 1 (causal VAE: the first frame is kept alone)."""
    return (num_frames - 1) // VAE_TEMPORAL_STRIDE + 1


def video_latent_shape(height: int, width: int, num_frames: int) -> tuple[int, int, int, int]:
    """(16, F_lat, H/8, W/8)."""
    validate_video_size(height, width, num_frames)
    return (VIDEO_LATENT_CHANNELS, latent_frames(num_frames), height // VAE_SPATIAL_STRIDE,
            width // VAE_SPATIAL_STRIDE)


def video_tokens(height: int, width: int, num_frames: int) -> int:
    """L_v = F_lat · (H/16) · (W/16)."""
    _, f_lat, h, w = video_latent_shape(height, width, num_frames)
    return f_lat * (h // PATCH) * (w // PATCH)


def audio_samples(num_frames: int, fps: float, sample_rate: int = AUDIO_SAMPLE_RATE) -> int:
    """N = ⌊sample_rate · F / fps⌋, the clip's soundtrack length."""
    return math.floor(sample_rate * num_frames / fps)


def audio_latent_frames(num_frames: int, fps: float, sample_rate: int = AUDIO_SAMPLE_RATE,
                        hop: int = AUDIO_HOP) -> int:
    """L_a = ⌊(N − 1)/hop⌋ + 1 = ⌈N / hop⌉."""
    return (audio_samples(num_frames, fps, sample_rate) - 1) // hop + 1


def decoded_audio_samples(num_frames: int, fps: float, sample_rate: int = AUDIO_SAMPLE_RATE,
                          hop: int = AUDIO_HOP) -> int:
    """hop · L_a: what the DAC decoder returns before trimming to N."""
    return hop * audio_latent_frames(num_frames, fps, sample_rate, hop)
