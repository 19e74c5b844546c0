"""Analytic FLOP counts of the joint denoiser (spec §10): one forward and one guided step.

Convention: 2 FLOPs per multiply-add. Norms, RoPE, softmax, modulation, activations and the text
encoder are excluded (the encoder runs once per prompt, not per step). Counts are per sample
(batch element); a batched forward of B samples costs B times as much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from mova_model.bridge import interaction_layers
from mova_model.config import DiTConfig, MovaConfig
from mova_model.errors import ConfigError


@dataclass(frozen=True)
class ForwardFlops:
    """FLOPs of one joint forward (or a sum of forwards), split by the rows of spec §10."""

    video_linear: float  # q, k, v, o, cross q, o and FFN of every video block
    video_self_attn_core: float  # q·kᵀ and attn·v over the video tokens
    video_text_cross: float  # cross-attention core to the text plus the text K/V projections
    audio_tower: float  # every audio block, all terms
    bridge_linear: float  # a2v and v2a q, k, v, o projections
    bridge_core: float  # a2v and v2a attention cores
    embeddings: float  # patch embeddings, text MLPs, time MLPs, output heads of both towers

    @property
    def total(self) -> float:
        """Sum of all parts."""
        return sum(getattr(self, f.name) for f in fields(self))

    def scaled(self, factor: float) -> ForwardFlops:
        """Every part multiplied by factor (e.g. the number of passes)."""
        return ForwardFlops(**{f.name: getattr(self, f.name) * factor for f in fields(self)})

    def __add__(self, other: ForwardFlops) -> ForwardFlops:
        return ForwardFlops(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def as_dict(self) -> dict[str, float]:
        """Parts and total by name, in FLOPs."""
        out = {f.name: float(getattr(self, f.name)) for f in fields(self)}
        out["total"] = float(self.total)
        return out


def _block_linear(tokens: int, dim: int, ffn_dim: int) -> int:
    """Self q, k, v, o + cross q, o (12 L D²) and the FFN (4 L D F) of one block."""
    return tokens * (12 * dim * dim + 4 * dim * ffn_dim)


def _self_attn_core(tokens: int, dim: int) -> int:
    """Scores and weighted values over all heads: 2·(2 L² D)."""
    return 4 * tokens * tokens * dim


def _text_cross(tokens: int, text_tokens: int, dim: int) -> int:
    """Cross k, v on the text rows (4 L_t D²) and the cross-attention core (4 L L_t D)."""
    return 4 * text_tokens * dim * dim + 4 * tokens * text_tokens * dim


def _tower_embeddings(cfg: DiTConfig, tokens: int, text_tokens: int) -> int:
    """Patch embedding, text MLP, time MLP + projection and the output head of one tower."""
    d = cfg.dim
    patch = math.prod(cfg.patch_size)
    patch_embed = tokens * cfg.in_dim * patch * d
    text_mlp = text_tokens * (cfg.text_dim * d + d * d)
    time_mlp = cfg.freq_dim * d + d * d + d * 6 * d  # once per sample, not per token
    head = tokens * d * cfg.out_dim * patch
    return 2 * (patch_embed + text_mlp + time_mlp + head)


def joint_forward_flops(
    config: MovaConfig,
    video_tokens: int,
    audio_tokens: int,
    text_tokens: int | None = None,
    bridge_pairs: int | None = None,
) -> ForwardFlops:
    """FLOPs of one joint forward for one sample.

    text_tokens defaults to the prompt length of the config (512), the keys spec §3.6 attends;
    the model folds the trailing padding rows (mova_model/padded_text.py), so what a forward
    computes is the count for `kept_rows(n, L_t)` of them (n prompt rows). bridge_pairs defaults
    to the number of interaction layers of the bridge strategy (30 for the release); 0 = bridge
    off.
    """
    v, a = config.video_dit, config.audio_dit
    lt = config.text_encoder.text_len if text_tokens is None else text_tokens
    if bridge_pairs is None:
        b = config.bridge
        shared = min(v.num_layers, a.num_layers)  # conditioners past it never run
        bridge_pairs = sum(
            1 for i in interaction_layers(b.interaction_strategy, b.visual_layers, b.audio_layers)
            if i < shared
        )
    for name, value in (
        ("video_tokens", video_tokens),
        ("audio_tokens", audio_tokens),
        ("text_tokens", lt),
        ("bridge_pairs", bridge_pairs),
    ):
        if value < 0:
            raise ConfigError(f"{name}={value} must be non-negative")
    max_pairs = min(v.num_layers, a.num_layers)
    if bridge_pairs > max_pairs:
        raise ConfigError(
            f"bridge_pairs={bridge_pairs} exceeds the shared depth of the towers ({max_pairs})"
        )
    lv, la, dv, da = video_tokens, audio_tokens, v.dim, a.dim
    audio_block = (
        _block_linear(la, da, a.ffn_dim) + _self_attn_core(la, da) + _text_cross(la, lt, da)
    )
    # a2v: q, o on video (D_v→D_v), k, v on audio (D_a→D_v); v2a: q, o on audio, k, v on video
    bridge_linear = 4 * lv * dv * dv + 4 * la * da * dv + 4 * la * da * da + 4 * lv * dv * da
    bridge_core = 4 * lv * la * (dv + da)  # both directions attend the same L_v × L_a pairs
    return ForwardFlops(
        video_linear=float(v.num_layers * _block_linear(lv, dv, v.ffn_dim)),
        video_self_attn_core=float(v.num_layers * _self_attn_core(lv, dv)),
        video_text_cross=float(v.num_layers * _text_cross(lv, lt, dv)),
        # the audio blocks past the video tower's depth never run (spec §4.4)
        audio_tower=float(min(a.num_layers, v.num_layers) * audio_block),
        bridge_linear=float(bridge_pairs * bridge_linear),
        bridge_core=float(bridge_pairs * bridge_core),
        embeddings=float(_tower_embeddings(v, lv, lt) + _tower_embeddings(a, la, lt)),
    )


def guided_step_flops(
    config: MovaConfig,
    video_tokens: int,
    audio_tokens: int,
    text_tokens: int | None = None,
    branches: int = 2,
    bridged_branches: int | None = None,
) -> ForwardFlops:
    """FLOPs of one sampling step with `branches` joint forwards per sample.

    branches: 1 without CFG, 2 for the reference CFG (cond + negative, both bridged), 3 for dual
    CFG. bridged_branches: how many of them run the bridge (default all; dual CFG runs it in 1,
    spec §7.5). The CFG combine and the Euler update are elementwise and not counted.
    """
    bridged = branches if bridged_branches is None else bridged_branches
    if branches < 1 or not 0 <= bridged <= branches:
        raise ConfigError(
            f"branches={branches}, bridged_branches={bridged}: expected branches >= 1 and "
            "0 <= bridged_branches <= branches"
        )
    with_bridge = joint_forward_flops(config, video_tokens, audio_tokens, text_tokens)
    total = with_bridge.scaled(bridged)
    if branches > bridged:
        without = joint_forward_flops(config, video_tokens, audio_tokens, text_tokens, 0)
        total = total + without.scaled(branches - bridged)
    return total
