"""Audio tower (`audio_dit`): Wan 2.1-1.3B shaped DiT over 1-D DAC latents (50 per second)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mova_model.config import AudioDiTConfig
from mova_model.dit import DiTTower
from mova_model.layers import Rotary
from mova_model.rope import AudioRope


class AudioDiT(DiTTower):
    """Audio DiT; input (B, in_dim, L_a), output velocity (B, out_dim, L_a)."""

    def __init__(self, config: AudioDiTConfig) -> None:
        # kernel = stride = 1: a per-frame linear map stored as a Conv1d
        super().__init__(config, nn.Conv1d(config.in_dim, config.dim, 1, stride=1))
        self.rope = AudioRope(config.head_dim)

    def embed_inputs(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """(B, C, L_a) -> tokens (B, L_a, D), grid (L_a,)."""
        emb = self.patch_embedding(x)  # (B, D, L_a)
        # contiguous, as the release makes them: a bf16 linear on the transposed view rounds
        # differently (the first bridge exchange would already differ from the release)
        return emb.transpose(1, 2).contiguous(), (emb.shape[2],)

    def rotary(self, grid: tuple[int, ...], device: torch.device) -> Rotary:
        """1-D RoPE over audio latent steps."""
        return self.rope.rotary(grid, device)

    def unpatchify(self, out: Tensor, grid: tuple[int, ...]) -> Tensor:
        """(B, L_a, c) -> (B, c, L_a)."""
        return out.transpose(1, 2)
