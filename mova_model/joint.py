"""The dual-tower joint forward (spec §4.4): both towers side by side, bridged layer by layer."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor

from mova_model.audio_dit import AudioDiT
from mova_model.bridge import DualTowerBridge
from mova_model.context_parallel import AUDIO, VIDEO, ContextParallel
from mova_model.errors import ConfigError, InvalidRequest
from mova_model.padded_text import PaddedText
from mova_model.video_dit import VideoDiT


def _check_bridge(video_dit: VideoDiT, audio_dit: AudioDiT, bridge: DualTowerBridge) -> None:
    """The bridge must have been built for these two towers' widths. Its layer counts may
    differ from theirs, as the original allows: they choose which conditioners exist, and only
    those within the towers' shared depth run."""
    cfg = bridge.config
    pairs = [
        ("visual_hidden_dim", cfg.visual_hidden_dim, video_dit.config.dim),
        ("audio_hidden_dim", cfg.audio_hidden_dim, audio_dit.config.dim),
    ]
    for name, found, expected in pairs:
        if found != expected:
            raise ConfigError(f"bridge.{name}={found} does not match the towers ({expected})")


def _bridge_strength(scale: float | Tensor, batch: int, dtype: torch.dtype) -> float | Tensor:
    """Lambda as a float, or a (B, 1, 1) tensor in the activation dtype for per-sample values."""
    if not isinstance(scale, Tensor):
        return float(scale)
    if scale.ndim == 0:
        return float(scale.item())
    if scale.shape != (batch,):
        raise InvalidRequest(f"bridge_scale has shape {tuple(scale.shape)}; expected ({batch},)")
    return scale.to(dtype).reshape(batch, 1, 1)


def joint_forward(
    video_dit: VideoDiT,
    audio_dit: AudioDiT,
    bridge: DualTowerBridge | None,
    video_input: Tensor,
    audio_input: Tensor,
    context: Tensor | PaddedText,
    t_video: Tensor,
    t_audio: Tensor,
    video_fps: float,
    bridge_scale: float | Tensor = 1.0,
    context_parallel: ContextParallel | None = None,
) -> tuple[Tensor, Tensor]:
    """One joint denoiser evaluation -> (video velocity (B,16,F,H,W), audio (B,128,L_a)), fp32.

    video_input (B, 36, F_lat, H, W) = [z_t, mask, first-frame latent]; audio_input (B, 128, L_a);
    context (B, L_t, text_dim) with zero padding rows, or already folded (a PaddedText);
    t_video, t_audio (B,) = 1000*sigma.
    bridge_scale 0 (scalar) or bridge None: the towers run independently.
    context_parallel: every rank of the group calls this with the same inputs; each runs the
    blocks on 1/N of the tokens (spec §13.4) and all return the full outputs.
    """
    batch = video_input.shape[0]
    scale = _bridge_strength(bridge_scale, batch, video_dit.dtype)
    use_bridge = bridge is not None and not (isinstance(scale, float) and scale == 0.0)
    # 1. patch embeddings: V (B, L_v, D_v) on grid (f, h, w); A (B, L_a, D_a)
    v, grid_v = video_dit.embed_inputs(video_input.to(video_dit.dtype))
    a, grid_a = audio_dit.embed_inputs(audio_input.to(audio_dit.dtype))
    # 2. time embeddings (B, D) and block modulations (B, 6, D), per tower and per timestep
    t_emb_v, t_mod_v = video_dit.time_modulation(t_video)
    t_emb_a, t_mod_a = audio_dit.time_modulation(t_audio)
    # 3. text context through each tower's own MLP: (B, L_t, D), the trailing zero rows folded
    #    into one that stands for them all (mova_model/padded_text.py)
    text = context if isinstance(context, PaddedText) else PaddedText.fold(context)
    ctx_v = video_dit.text_context(text)
    ctx_a = audio_dit.text_context(text)
    # 4. tower RoPE (self-attention) and aligned bridge RoPE
    rope_v = video_dit.rotary(grid_v, v.device)
    rope_a = audio_dit.rotary(grid_a, a.device)
    layers: set[int] = set()
    bridge_rope_v = bridge_rope_a = None
    if use_bridge:
        assert bridge is not None
        _check_bridge(video_dit, audio_dit, bridge)
        bridge_rope_v, bridge_rope_a = bridge.aligned_rope(
            grid_v, a.shape[1], video_fps, v.dtype, v.device
        )
        layers = set(bridge.layers)
    # 4b. context parallel: this rank keeps 1/N of each modality's tokens (the RoPE tables stay
    #     whole: the exchanging attentions apply them after gathering the sequence)
    cp = context_parallel
    if cp is not None:
        v, a = cp.shard(v, VIDEO), cp.shard(a, AUDIO)
    exchange = cp.attached(video_dit, audio_dit, bridge if use_bridge else None, layers) \
        if cp is not None else nullcontext()
    with exchange:
        # 5. shared depth: bridge exchange on the pre-block states, then both blocks
        shared = min(len(video_dit.blocks), len(audio_dit.blocks))
        for i in range(shared):
            if i in layers:
                assert bridge is not None
                v, a = bridge.exchange(i, v, a, bridge_rope_v, bridge_rope_a, scale)
            v = video_dit.blocks[i](v, ctx_v, t_mod_v, rope_v)
            a = audio_dit.blocks[i](a, ctx_a, t_mod_a, rope_a)
        # 6. the video tower's deeper blocks (30..39 in the release), no bridge. An audio tower
        #    deeper than the video one stops at the shared depth: spec §4.4's loop and the
        #    original's pipeline run only the video tower past it (no release has that shape).
        for i in range(shared, len(video_dit.blocks)):
            v = video_dit.blocks[i](v, ctx_v, t_mod_v, rope_v)
    # 6b. context parallel: every rank gets all tokens back before the heads
    if cp is not None:
        v, a = cp.gather(v, VIDEO), cp.gather(a, AUDIO)
    # 7. heads + unpatchify, upcast to float32
    return video_dit.output(v, t_emb_v, grid_v), audio_dit.output(a, t_emb_a, grid_a)
