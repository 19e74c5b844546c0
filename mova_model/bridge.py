"""Dual-tower bridge (`dual_tower_bridge`): bidirectional cross-attention between the towers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mova_model.config import BridgeConfig
from mova_model.errors import ConfigError
from mova_model.layers import Attention, Rotary
from mova_model.rope import aligned_rotaries

BRIDGE_EPS = 1e-6  # not a config field; fixed in the reference
_CUSTOM_LAYERS = (0, 2, 4, 6, 8, 12, 16, 20)


def interaction_layers(strategy: str, visual_layers: int, audio_layers: int) -> list[int]:
    """Layer indices i where video block i and audio block i exchange states (spec §4.3)."""
    n = min(visual_layers, audio_layers)
    if strategy == "shallow_focus":
        return list(range(min(10, n // 3)))
    if strategy == "distributed":
        return list(range(0, n, 3))
    if strategy == "progressive":
        return list(range(min(8, n))) + list(range(8, n, 3))
    if strategy == "custom":
        return [i for i in _CUSTOM_LAYERS if i < n]
    if strategy == "full":
        return list(range(n))
    raise ConfigError(
        f"interaction_strategy={strategy!r}; expected shallow_focus, distributed, progressive, "
        "custom or full"
    )


class Conditioner(nn.Module):
    """Cross-attention from a primary stream x to an affine-LayerNormed condition stream y."""

    def __init__(self, dim: int, cond_dim: int, head_dim: int) -> None:
        super().__init__()
        self.y_norm = nn.LayerNorm(cond_dim, eps=BRIDGE_EPS)
        self.inner = Attention(dim, cond_dim, dim // head_dim, BRIDGE_EPS)

    def forward(self, x: Tensor, y: Tensor, x_rope: Rotary | None, y_rope: Rotary | None) -> Tensor:
        # x: (B, L_x, D_x) is not normalised; y: (B, L_y, D_y) -> delta (B, L_x, D_x)
        return self.inner(x, self.y_norm(y), x_rope, y_rope)


class DualTowerBridge(nn.Module):
    """a2v and v2a conditioners for each interaction layer, keyed by the decimal layer index."""

    def __init__(self, config: BridgeConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = interaction_layers(
            config.interaction_strategy, config.visual_layers, config.audio_layers
        )
        v, a, d = config.visual_hidden_dim, config.audio_hidden_dim, config.head_dim
        self.audio_to_video_conditioners = nn.ModuleDict(
            {str(i): Conditioner(v, a, d) for i in self.layers}
        )
        self.video_to_audio_conditioners = nn.ModuleDict(
            {str(i): Conditioner(a, v, d) for i in self.layers}
        )
        if config.trainable_condition_scale:
            # Stored for checkpoint fidelity only: inference passes an explicit scale to
            # `exchange` (1.0 unless asked otherwise), which overrides it as in the original.
            self.condition_scale = nn.Parameter(torch.ones(1, dtype=torch.float32))

    def aligned_rope(
        self,
        video_grid: tuple[int, ...],
        audio_len: int,
        video_fps: float,
        dtype: torch.dtype,
        device: torch.device,
    ) -> tuple[Rotary | None, Rotary | None]:
        """(video, audio) rotations on aligned time positions; (None, None) without cross RoPE."""
        if not self.config.apply_cross_rope:
            return None, None
        f, h, w = video_grid
        return aligned_rotaries(
            (f, h, w),
            audio_len,
            self.config.head_dim,
            self.config.audio_fps,
            video_fps,
            self.config.apply_first_frame_bias_in_rope,
            dtype,
            device,
        )

    def exchange(
        self,
        layer: int,
        video: Tensor,
        audio: Tensor,
        video_rope: Rotary | None,
        audio_rope: Rotary | None,
        scale: float | Tensor = 1.0,
    ) -> tuple[Tensor, Tensor]:
        """Both directions on the pre-bridge states: (V + scale*dV, A + scale*dA).

        video: (B, L_v, D_v)  audio: (B, L_a, D_a)  scale: float or (B, 1, 1) tensor.
        """
        a2v = self.audio_to_video_conditioners[str(layer)]
        v2a = self.video_to_audio_conditioners[str(layer)]
        # 1. audio -> video: q from video (video positions), k/v from audio (audio positions)
        delta_v = a2v(video, audio, video_rope, audio_rope)
        # 2. video -> audio, reading the same pre-bridge video states
        delta_a = v2a(audio, video, audio_rope, video_rope)
        # 3. residual with the bridge strength lambda
        return video + delta_v * scale, audio + delta_a * scale
