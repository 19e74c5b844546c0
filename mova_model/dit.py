"""The DiT block and the pieces both towers share: text MLP, time embedding, output head."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mova_model.config import DiTConfig
from mova_model.layers import (
    Attention,
    Linear,
    Rotary,
    gelu_mlp,
    linear_fp32,
    modulate,
    sinusoidal_embedding,
)
from mova_model.padded_text import PaddedText

NUM_MODULATIONS = 6  # shift/scale/gate for attention, then shift/scale/gate for the FFN


class DiTBlock(nn.Module):
    """AdaLN-modulated self-attention, text cross-attention (affine norm3, no gate), FFN."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.self_attn = Attention(dim, dim, num_heads, eps)
        self.cross_attn = Attention(dim, dim, num_heads, eps)
        self.norm1 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.ffn = gelu_mlp(dim, ffn_dim, dim)
        self.modulation = nn.Parameter(torch.randn(1, NUM_MODULATIONS, dim) / math.sqrt(dim))

    def forward(self, x: Tensor, context: Tensor | PaddedText, t_mod: Tensor,
                rope: Rotary) -> Tensor:
        # x: (B, L, D)  context: (B, <=L_t, D) folded text  t_mod: (B, 6, D)
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = (self.modulation + t_mod).chunk(
            NUM_MODULATIONS, dim=1
        )  # each (B, 1, D)
        # 1. self-attention with RoPE on q and k
        a = modulate(self.norm1(x), shift_a, scale_a)
        x = x + gate_a * self.self_attn(a, a, rope, rope)
        # 2. cross-attention to every text row (no RoPE, no mask, no gate)
        x = x + self.cross_attn(self.norm3(x), context)
        # 3. feed-forward
        return x + gate_f * self.ffn(modulate(self.norm2(x), shift_f, scale_f))


class Head(nn.Module):
    """Final non-affine LayerNorm, modulated by the raw time embedding, then a linear map."""

    def __init__(self, dim: int, out_features: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.head = Linear(dim, out_features)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / math.sqrt(dim))

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:
        # x: (B, L, D)  t_emb: (B, D); the batch axis on t_emb fixes the reference's B>1 bug
        shift, scale = (self.modulation + t_emb[:, None, :]).chunk(2, dim=1)  # each (B, 1, D)
        # eager, as the release's head (unlike the blocks' compiled modulate): in bf16 each
        # operation rounds
        return self.head(self.norm(x) * (1 + scale) + shift)  # (B, L, out_features)


class DiTTower(nn.Module, ABC):
    """Shared tower body; subclasses add the patch embedding, RoPE grid and unpatchify."""

    def __init__(self, config: DiTConfig, patch_embedding: nn.Module) -> None:
        super().__init__()
        self.config = config
        d = config.dim
        self.patch_embedding = patch_embedding
        self.text_embedding = gelu_mlp(config.text_dim, d, d)
        self.time_embedding = nn.Sequential(
            nn.Linear(config.freq_dim, d), nn.SiLU(), nn.Linear(d, d)
        )
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, NUM_MODULATIONS * d))
        self.blocks = nn.ModuleList(
            DiTBlock(d, config.ffn_dim, config.num_heads, config.eps)
            for _ in range(config.num_layers)
        )
        out_features = config.out_dim * math.prod(config.patch_size)
        self.head = Head(d, out_features, config.eps)

    @property
    def dtype(self) -> torch.dtype:
        """The weight dtype the blocks compute in."""
        return self.head.head.weight.dtype

    @abstractmethod
    def embed_inputs(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Latent -> (tokens (B, L, D), token grid)."""

    @abstractmethod
    def rotary(self, grid: tuple[int, ...], device: torch.device) -> Rotary:
        """Self-attention RoPE for this token grid."""

    @abstractmethod
    def unpatchify(self, out: Tensor, grid: tuple[int, ...]) -> Tensor:
        """Head output (B, L, out*prod(patch)) -> latent layout."""

    def time_modulation(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) timesteps -> (t_emb (B, D), t_mod (B, 6, D)), computed in fp32, cast to dtype."""
        e = sinusoidal_embedding(t, self.config.freq_dim)  # (B, freq_dim) fp32
        with torch.autocast(device_type=e.device.type, enabled=False):
            hidden = F.silu(linear_fp32(cast(nn.Linear, self.time_embedding[0]), e))
            t_emb = linear_fp32(cast(nn.Linear, self.time_embedding[2]), hidden)  # (B, D)
            t_mod = linear_fp32(cast(nn.Linear, self.time_projection[1]), F.silu(t_emb))  # (B, 6D)
        t_mod = t_mod.unflatten(1, (NUM_MODULATIONS, -1))  # (B, 6, D)
        return t_emb.to(self.dtype), t_mod.to(self.dtype)

    def text_context(self, context: Tensor | PaddedText) -> PaddedText:
        """UMT5 states (B, L_t, text_dim) -> the text MLP's (B, <=L_t, D), its trailing zero
        rows folded into one that stands for all of them (they stay in the key set)."""
        folded = context if isinstance(context, PaddedText) else PaddedText.fold(context)
        return folded.map(lambda rows: self.text_embedding(rows.to(self.dtype)))

    def output(self, x: Tensor, t_emb: Tensor, grid: tuple[int, ...]) -> Tensor:
        """Head + unpatchify, upcast to float32 (the velocity)."""
        return self.unpatchify(self.head(x, t_emb), grid).float()

    def forward(self, x: Tensor, context: Tensor, t: Tensor) -> Tensor:
        """The tower alone (no bridge): latent in, float32 velocity out."""
        # 1. tokens (B, L, D) and their grid
        tokens, grid = self.embed_inputs(x.to(self.dtype))
        # 2. time embedding (B, D) and block modulations (B, 6, D)
        t_emb, t_mod = self.time_modulation(t)
        # 3. text context (B, <=L_t, D), padding folded, and RoPE for the grid
        ctx = self.text_context(context)
        rope = self.rotary(grid, tokens.device)
        # 4. blocks
        for block in self.blocks:
            tokens = block(tokens, ctx, t_mod, rope)
        # 5. head and unpatchify
        return self.output(tokens, t_emb, grid)
