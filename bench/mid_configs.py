"""The bench-only model configs between `tiny` and the release, for CPU timing, the token
counts of a clip size, and what the timed inputs share (prompt rows, the step's sigma).

Imports nothing of mova_model but its config classes, so `forward_vs_commit.py` can build the
same config with the `mova_model` of an older checkout.
"""

from __future__ import annotations

import math
from typing import Any

from mova_model.config import MovaConfig, TextEncoderConfig, VideoVAEConfig, get_preset

SIGMA, SIGMA_NEXT = 0.9959, 0.9918  # a first-step-like pair; the values do not affect timing
TEXT_ROWS = 24  # non-padding prompt rows; the rest of the context is zero, as after UMT5


def _smaller_release(video: dict[str, int], audio: dict[str, int], bridge: dict[str, Any], *,
                     height: int, width: int, frames: int) -> MovaConfig:
    """The release's 360p config with the towers and bridge resized, a 64-wide two-layer UMT5
    and the given clip size."""
    text_dim = 64
    release = get_preset("mova-360p")
    return MovaConfig(
        video_dit=release.video_dit.replace(text_dim=text_dim, **video),
        audio_dit=release.audio_dit.replace(text_dim=text_dim, **audio),
        bridge=release.bridge.replace(**bridge),
        audio_vae=release.audio_vae,
        video_vae=VideoVAEConfig(),
        scheduler=release.scheduler,
        text_encoder=TextEncoderConfig(
            vocab_size=4000, d_model=text_dim, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
        ),
        height=height,
        width=width,
        num_frames=frames,
    )  # fmt: skip


def mid_config() -> MovaConfig:
    """A CPU-sized model between `tiny` and the release: head dim 96 (RoPE blocks 32/32/32).
    The audio tower's ffn/dim is the release's 8960/1536."""
    return _smaller_release(
        video={"dim": 768, "ffn_dim": 2048, "num_heads": 8, "num_layers": 8},
        audio={"dim": 384, "ffn_dim": 2240, "num_heads": 4, "num_layers": 6},
        bridge={"visual_layers": 8, "audio_layers": 6, "visual_hidden_dim": 768,
                "audio_hidden_dim": 384, "head_dim": 96},
        height=128, width=224, frames=25,
    )


def mid_joint_config() -> MovaConfig:
    """Issue 15's mid config: video dim 1024 / 6 layers / 8 heads, audio dim 512 / 4 layers /
    4 heads, bridge head 128 on every shared layer (`full`), 17 frames at 256x448. The issue
    gives no FFN widths: they keep the release's ffn/dim ratios (13824/5120, 8960/1536),
    rounded to multiples of 64."""
    return _smaller_release(
        video={"dim": 1024, "ffn_dim": 2752, "num_heads": 8, "num_layers": 6},
        audio={"dim": 512, "ffn_dim": 2944, "num_heads": 4, "num_layers": 4},
        bridge={"visual_layers": 6, "audio_layers": 4, "visual_hidden_dim": 1024,
                "audio_hidden_dim": 512, "head_dim": 128, "interaction_strategy": "full"},
        height=256, width=448, frames=17,
    )


def token_counts(
    cfg: MovaConfig, height: int, width: int, frames: int, fps: float
) -> tuple[tuple[int, int, int], int, int]:
    """(video latent (F_lat, H, W), L_v, L_a) per spec §6.3; raises ValueError on bad sizes."""
    spatial = cfg.video_vae.scale_factor_spatial
    temporal = cfg.video_vae.scale_factor_temporal
    _, ph, pw = cfg.video_dit.patch_size
    if height % (spatial * ph) or width % (spatial * pw):
        raise ValueError(
            f"height={height}, width={width} must be multiples of {spatial * ph}x{spatial * pw}"
        )
    if frames < 1 or (frames - 1) % temporal:
        raise ValueError(f"frames={frames} must be 1 mod {temporal}")
    latent = ((frames - 1) // temporal + 1, height // spatial, width // spatial)
    video_tokens = latent[0] * (latent[1] // ph) * (latent[2] // pw)
    # audio samples N = floor(rate * F / fps), latent frames ceil(N / hop)
    samples = math.floor(round(cfg.audio_vae.sample_rate * frames / fps, 6))
    audio_tokens = (samples - 1) // cfg.audio_vae.hop_length + 1
    return latent, video_tokens, audio_tokens
