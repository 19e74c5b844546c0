"""Shared helpers for the network tests: tiny towers and bridge with random (non-zero) weights."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mova_model.audio_dit import AudioDiT
from mova_model.bridge import DualTowerBridge
from mova_model.config import get_preset
from mova_model.video_dit import VideoDiT


def randomize_(module: nn.Module, seed: int) -> None:
    """Overwrite every parameter with seeded random values so every path affects the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith("modulation"):
                value = 0.3 * noise
            elif p.ndim >= 2:
                value = noise / math.sqrt(math.prod(p.shape[1:]))
            elif name.endswith("bias"):
                value = 0.2 * noise
            else:  # norm gains
                value = 1.0 + 0.2 * noise
            p.copy_(value.to(p.dtype))


def tiny_models(seed: int = 0) -> tuple[VideoDiT, AudioDiT, DualTowerBridge]:
    """The `tiny` preset towers and bridge in float32 with random weights, in eval mode."""
    cfg = get_preset("tiny")
    video, audio, bridge = (
        VideoDiT(cfg.video_dit),
        AudioDiT(cfg.audio_dit),
        DualTowerBridge(cfg.bridge),
    )
    for i, m in enumerate((video, audio, bridge)):
        randomize_(m, seed + i)
        m.eval()
    return video, audio, bridge


def tiny_inputs(
    batch: int = 1,
    frames: int = 3,
    height: int = 4,
    width: int = 6,
    audio_len: int = 10,
    text_len: int = 8,
    text_rows: int = 5,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Random joint-forward inputs; text rows >= text_rows are exactly zero (padding)."""
    gen = torch.Generator().manual_seed(seed)
    cfg = get_preset("tiny")
    context = torch.randn(batch, text_len, cfg.video_dit.text_dim, generator=gen)
    context[:, text_rows:] = 0.0
    return {
        "video_input": torch.randn(batch, 36, frames, height, width, generator=gen),
        "audio_input": torch.randn(batch, 128, audio_len, generator=gen),
        "context": context,
        "t_video": 1000.0 * torch.rand(batch, generator=gen),
        "t_audio": 1000.0 * torch.rand(batch, generator=gen),
    }


def rel_err(found: Tensor, expected: Tensor) -> float:
    """max |found - expected| / max |expected|."""
    diff = (found.double() - expected.double()).abs().max()
    return float(diff / expected.double().abs().max())
