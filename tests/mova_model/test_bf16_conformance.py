"""bf16 on the CPU against the independent float64 reference of the spec (test_joint.py).

The release runs every network in bf16. These tests run the towers, the bridge and a short
guided generation in bf16 and bound their distance to the float64 reference evaluated on the
same (bf16-rounded) weights, so what is measured is the bf16 arithmetic alone. Tolerances are
relative to the largest reference value (`rel_err`) and stated next to each assertion, with
the value measured when they were set; bf16 keeps 8 significant bits (unit roundoff 2^-9 ≈ 0.2%).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from mova_model.config import RELEASE_SCHEDULER
from mova_model.joint import joint_forward
from mova_model.sampler import Guidance, sample
from mova_model.schedule import FlowMatchPairScheduler
from tests.mova_model.test_joint import (
    attention,
    block,
    head,
    layer_norm,
    reference_joint,
    rotate_half,
    rotate_pairs,
    tower_prelude,
    video_angles,
)
from tests.mova_model.tiny_models import rel_err, tiny_inputs, tiny_models

# Measured on 2 CPU cores, torch 2.13: video tower alone 0.0069; joint forward 0.0062 (video),
# 0.0083 (audio); one bridge exchange 0.0052 (a2v), 0.0072 (v2a); 4 guided steps at CFG 5 with
# the expert switch 0.025 (video latents), 0.014 (audio latents). Bounds: about 2.5x those.
BF16_TOWER = 0.02
BF16_BRIDGE = 0.02
BF16_GENERATION = 0.06


def _bf16(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).to(torch.bfloat16).eval()


def _double_state(module: nn.Module) -> dict[str, Tensor]:
    """The module's (bf16-rounded) weights in float64: the reference sees the same values."""
    return {k: t.double() for k, t in module.state_dict().items()}


@pytest.fixture(scope="module")
def models_bf16() -> tuple[nn.Module, nn.Module, nn.Module]:
    video, audio, bridge = tiny_models(seed=1)
    return _bf16(video), _bf16(audio), _bf16(bridge)


def _reference_video_tower(video: nn.Module, inputs: dict[str, Tensor]) -> Tensor:
    """The video tower alone (no bridge), spec §3, float64, tokens out of the head."""
    sd, cfg = _double_state(video), video.config
    x = inputs["video_input"].double()
    b, c, f, hh, ww = x.shape
    h, w = hh // 2, ww // 2
    patches = x.reshape(b, c, f, h, 2, w, 2).permute(0, 2, 3, 5, 1, 4, 6).reshape(b, f * h * w, -1)
    v = patches @ sd["patch_embedding.weight"].reshape(cfg.dim, -1).T + sd["patch_embedding.bias"]
    t_emb, t_mod, ctx = tower_prelude(sd, cfg, inputs["context"].double(), inputs["t_video"])
    angles = video_angles(f, h, w, cfg.head_dim)
    for i in range(cfg.num_layers):
        v = block(sd, f"blocks.{i}", v, ctx, t_mod, cfg.num_heads,
                  lambda u: rotate_pairs(u, angles))
    return head(sd, v, t_emb)  # (B, L, 64)


@torch.no_grad()
def test_video_tower_in_bf16(models_bf16: tuple[nn.Module, nn.Module, nn.Module]) -> None:
    video, _, _ = models_bf16
    inputs = tiny_inputs(seed=7)
    tokens, grid = video.embed_inputs(inputs["video_input"].to(torch.bfloat16))
    t_emb, t_mod = video.time_modulation(inputs["t_video"])
    ctx, rope = video.text_context(inputs["context"]), video.rotary(grid, tokens.device)
    for blk in video.blocks:
        tokens = blk(tokens, ctx, t_mod, rope)
    found = video.head(tokens, t_emb)
    assert found.dtype == torch.bfloat16
    assert rel_err(found, _reference_video_tower(video, inputs)) <= BF16_TOWER


@torch.no_grad()
def test_joint_forward_towers_and_bridge_in_bf16(
        models_bf16: tuple[nn.Module, nn.Module, nn.Module]) -> None:
    video, audio, bridge = models_bf16
    inputs = tiny_inputs(seed=8)
    out_v, out_a = joint_forward(video, audio, bridge, **inputs, video_fps=24.0)
    ref_v, ref_a = reference_joint(video, audio, bridge, inputs, 24.0)
    assert rel_err(out_v, ref_v) <= BF16_TOWER
    assert rel_err(out_a, ref_a) <= BF16_TOWER


@torch.no_grad()
def test_bridge_exchange_in_bf16(models_bf16: tuple[nn.Module, nn.Module, nn.Module]) -> None:
    _, _, bridge = models_bf16
    cfg = bridge.config
    gen = torch.Generator().manual_seed(9)
    f, h, w, length, fps = 3, 2, 3, 10, 24.0
    video = torch.randn(1, f * h * w, cfg.visual_hidden_dim, generator=gen)
    audio = torch.randn(1, length, cfg.audio_hidden_dim, generator=gen)
    rope_v, rope_a = bridge.aligned_rope((f, h, w), length, fps, torch.bfloat16,
                                         torch.device("cpu"))
    out_v, out_a = bridge.exchange(0, video.bfloat16(), audio.bfloat16(), rope_v, rope_a, 1.0)
    sd = _double_state(bridge)
    pos_v = torch.tensor([k * cfg.audio_fps * 4 / fps for k in range(f)]).repeat_interleave(h * w)
    pos_a = torch.arange(length, dtype=torch.float64)
    v, a = video.bfloat16().double(), audio.bfloat16().double()
    pa, pv = "audio_to_video_conditioners.0", "video_to_audio_conditioners.0"
    ya = layer_norm(a, sd[f"{pa}.y_norm.weight"], sd[f"{pa}.y_norm.bias"])
    yv = layer_norm(v, sd[f"{pv}.y_norm.weight"], sd[f"{pv}.y_norm.bias"])
    heads_v, heads_a = cfg.visual_hidden_dim // cfg.head_dim, cfg.audio_hidden_dim // cfg.head_dim
    ref_v = v + attention(sd, f"{pa}.inner", v, ya, heads_v, lambda u: rotate_half(u, pos_v),
                          lambda u: rotate_half(u, pos_a))
    ref_a = a + attention(sd, f"{pv}.inner", a, yv, heads_a, lambda u: rotate_half(u, pos_a),
                          lambda u: rotate_half(u, pos_v))
    assert rel_err(out_v - v, ref_v - v) <= BF16_BRIDGE  # the update itself, not the residual
    assert rel_err(out_a - a, ref_a - a) <= BF16_BRIDGE


class _Bf16Denoiser:
    def __init__(self, experts: tuple[nn.Module, nn.Module], audio: nn.Module,
                 bridge: nn.Module) -> None:
        self.experts, self.audio, self.bridge = experts, audio, bridge

    def __call__(self, expert: int, video_input: Tensor, audio_input: Tensor, context: Tensor,
                 t_video: Tensor, t_audio: Tensor, video_fps: float,
                 bridge_scale: float | Tensor) -> tuple[Tensor, Tensor]:
        return joint_forward(self.experts[expert], self.audio, self.bridge, video_input,
                             audio_input, context, t_video, t_audio, video_fps, bridge_scale)


class _ReferenceDenoiser(_Bf16Denoiser):
    def __call__(self, expert: int, video_input: Tensor, audio_input: Tensor, context: Tensor,
                 t_video: Tensor, t_audio: Tensor, video_fps: float,
                 bridge_scale: float | Tensor) -> tuple[Tensor, Tensor]:
        assert bridge_scale == 1.0
        inputs = {"video_input": video_input, "audio_input": audio_input, "context": context,
                  "t_video": t_video, "t_audio": t_audio}
        v, a = reference_joint(self.experts[expert], self.audio, self.bridge, inputs, video_fps)
        return v.float(), a.float()


@torch.no_grad()
def test_short_guided_generation_in_bf16(
        models_bf16: tuple[nn.Module, nn.Module, nn.Module]) -> None:
    video, audio, bridge = models_bf16
    low_noise = _bf16(tiny_models(seed=4)[0])  # a second expert: the switch is exercised
    gen = torch.Generator().manual_seed(10)
    context = tiny_inputs(seed=11)["context"]
    negative = tiny_inputs(seed=12)["context"]
    kwargs = dict(
        scheduler=FlowMatchPairScheduler(RELEASE_SCHEDULER), num_steps=4, boundary_ratio=0.9,
        video_noise=torch.randn(1, 16, 3, 4, 6, generator=gen),
        audio_noise=torch.randn(1, 128, 10, generator=gen),
        video_condition=torch.randn(1, 20, 3, 4, 6, generator=gen), context=context,
        negative_context=negative, video_fps=24.0,
        guidance=Guidance(text_scale=5.0, batched=False),  # the release: sequential passes
    )
    experts: list[int] = []
    denoiser = _Bf16Denoiser((video, low_noise), audio, bridge)
    found_v, found_a = sample(
        lambda expert, *rest: experts.append(expert) or denoiser(expert, *rest),  # type: ignore[func-returns-value]
        **kwargs)  # type: ignore[arg-type]
    ref_v, ref_a = sample(_ReferenceDenoiser((video, low_noise), audio, bridge),
                          **kwargs)  # type: ignore[arg-type]
    assert set(experts) == {0, 1}
    assert rel_err(found_v, ref_v) <= BF16_GENERATION
    assert rel_err(found_a, ref_a) <= BF16_GENERATION


def _release_rotate_half(x: Tensor) -> Tensor:
    return torch.cat((-x[..., x.shape[-1] // 2:], x[..., : x.shape[-1] // 2]), dim=-1)


@torch.no_grad()
def test_block_modulation_and_bridge_rope_round_as_the_releases_compiled_functions() -> None:
    """The release wraps the blocks' modulate and the bridge RoPE product in
    torch.compile(fullgraph=True) (spec §13.2): compiled, bf16 operands are computed in float32
    and rounded once, so their bits differ from eager bf16 in about a third of the elements.
    The release's expressions are compiled here and compared bit for bit."""
    from mova_model.layers import modulate
    from mova_model.rope import apply_rotate_half

    release_modulate = torch.compile(lambda x, shift, scale: x * (1 + scale) + shift,
                                     fullgraph=True)
    release_rope = torch.compile(lambda q, cos, sin: q * cos + _release_rotate_half(q) * sin,
                                 fullgraph=True)
    gen = torch.Generator().manual_seed(3)

    def bf16(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen).bfloat16()

    x, shift, scale = bf16(2, 300, 64), bf16(2, 1, 64), bf16(2, 1, 64)
    compiled = release_modulate(x, shift, scale)
    assert not torch.equal(compiled, x * (1 + scale) + shift)  # eager rounding is not it
    assert torch.equal(modulate(x, shift, scale), compiled)

    q, angles = bf16(2, 300, 4, 32), torch.randn(300, 32, generator=gen)
    cos, sin = angles.cos().bfloat16(), angles.sin().bfloat16()  # cast before the product
    compiled = release_rope(q, cos[None, :, None, :], sin[None, :, None, :])
    assert torch.equal(apply_rotate_half(q, cos, sin), compiled)


@torch.no_grad()
def test_audio_tokens_are_laid_out_as_the_releases(
    models_bf16: tuple[nn.Module, nn.Module, nn.Module],
) -> None:
    """The release makes the audio tokens contiguous after its patchify; a bf16 linear layer
    (the first bridge exchange's) rounds differently on a transposed view."""
    _, audio, bridge = models_bf16
    inputs = tiny_inputs(seed=11, audio_len=40)
    tokens, _ = audio.embed_inputs(inputs["audio_input"].to(torch.bfloat16))
    release_tokens = audio.patch_embedding(inputs["audio_input"].to(torch.bfloat16))
    release_tokens = release_tokens.transpose(1, 2).contiguous()
    layer = bridge.video_to_audio_conditioners[str(bridge.layers[0])].inner.q
    assert torch.equal(layer(tokens), layer(release_tokens))
