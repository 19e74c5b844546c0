"""Video tower (`video_dit`, `video_dit_2`): Wan 2.2 I2V style DiT over 1x2x2 latent patches."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mova_model.config import VideoDiTConfig
from mova_model.dit import DiTTower
from mova_model.layers import Rotary
from mova_model.rope import VideoRope


class VideoDiT(DiTTower):
    """Video DiT; input (B, in_dim, F_lat, H, W), output velocity (B, out_dim, F_lat, H, W)."""

    def __init__(self, config: VideoDiTConfig) -> None:
        pt, ph, pw = config.patch_size
        patch = (pt, ph, pw)
        super().__init__(config, nn.Conv3d(config.in_dim, config.dim, patch, stride=patch))
        self.patch_size = patch
        self.rope = VideoRope(config.head_dim)

    def embed_inputs(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """(B, C, F, H, W) -> tokens (B, f*h*w, D) in (f, y, x) order, grid (f, h, w)."""
        # The release feeds the patch conv a channels-last-3d input and makes the tokens
        # contiguous; the conv kernel (and so bf16 rounding) depends on the layout (spec §13.2).
        emb = self.patch_embedding(x.contiguous(memory_format=torch.channels_last_3d))
        grid = tuple(emb.shape[2:])  # emb: (B, D, f, h, w)
        return emb.flatten(2).transpose(1, 2).contiguous(), grid  # (B, L, D)

    def rotary(self, grid: tuple[int, ...], device: torch.device) -> Rotary:
        """3-D RoPE over the (frame, row, column) grid."""
        return self.rope.rotary(grid, device)

    def unpatchify(self, out: Tensor, grid: tuple[int, ...]) -> Tensor:
        """(B, L, pt*ph*pw*c) with c fastest -> (B, c, f*pt, h*ph, w*pw)."""
        f, h, w = grid
        pt, ph, pw = self.patch_size
        b = out.shape[0]
        x = out.reshape(b, f, h, w, pt, ph, pw, -1)  # (B, f, h, w, pt, ph, pw, c)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, c, f, pt, h, ph, w, pw)
        return x.reshape(b, -1, f * pt, h * ph, w * pw)
