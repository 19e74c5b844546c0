"""Schedule numbers (spec §12.3), guidance algebra, expert switch, audio-only mode, determinism."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from mova_model.config import RELEASE_SCHEDULER
from mova_model.errors import GenerationCancelled
from mova_model.joint import joint_forward
from mova_model.request import Compat, GenerationRequest, GuidanceMode
from mova_model.sampler import Guidance, combine_guidance, draw_noise, sample
from mova_model.schedule import FlowMatchPairScheduler
from tests.mova_model.tiny_models import tiny_models

SCHEDULER = FlowMatchPairScheduler(RELEASE_SCHEDULER)


def test_release_schedule_matches_the_reference_values() -> None:
    t = SCHEDULER.timesteps(50)
    expected = {0: 1000.0, 1: 995.947, 2: 991.761, 16: 914.324, 17: 906.977, 18: 899.301,
                49: 105.035}
    for k, value in expected.items():
        assert round(float(t[k]), 3) == value
    sigmas = SCHEDULER.sigmas(50)
    assert all(SCHEDULER.sigma_for(t[k]) == sigmas[k] for k in range(50)), "lookup not exact"


def test_sigma_lookup_is_quantised_when_steps_do_not_divide_1000() -> None:
    t, sigmas = SCHEDULER.timesteps(30), SCHEDULER.sigmas(30)
    errors = [abs(float(SCHEDULER.sigma_for(t[k]) - sigmas[k])) for k in range(30)]
    assert 0 < max(errors) < 2e-3


def test_pair_table_columns_and_audio_only_video_column() -> None:
    pairs = SCHEDULER.pair_timesteps(8)
    assert pairs.shape == (8, 2) and torch.equal(pairs[:, 0], pairs[:, 1])
    fixed = SCHEDULER.pair_timesteps(8, video_fixed=True)
    assert torch.all(fixed[:, 0] == 0) and torch.equal(fixed[:, 1], pairs[:, 1])
    shifted = SCHEDULER.pair_timesteps(8, audio_shift=3.0)
    assert torch.equal(shifted[:, 0], pairs[:, 0]) and not torch.equal(shifted[:, 1], pairs[:, 1])


def test_last_step_lands_on_clean_sample() -> None:
    x0, noise = torch.randn(4), torch.randn(4)
    t = SCHEDULER.timesteps(50)
    x = noise.clone()
    for k in range(50):
        sigma = SCHEDULER.sigma_for(t[k])
        x_exact_velocity = noise - x0  # the true flow-matching velocity
        x = SCHEDULER.step(x, x_exact_velocity, t[k], t[k + 1] if k < 49 else None)
        assert sigma > 0
    assert torch.allclose(x, x0, atol=1e-5)


# ---- guidance algebra ------------------------------------------------------------------------

def _branches(seed: int) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 5, generator=g) for _ in range(3)]


def test_reference_guidance_with_scale_one_is_the_conditional_branch() -> None:
    guidance = Guidance(mode="reference", text_scale=1.0)
    assert guidance.branches() == [(True, 1.0)]
    positive = _branches(0)[0]
    assert torch.equal(combine_guidance(guidance, [positive]), positive)


def test_reference_guidance_formula() -> None:
    positive, negative, _ = _branches(1)
    out = combine_guidance(Guidance(text_scale=5.0), [positive, negative])
    assert torch.allclose(out, negative + 5.0 * (positive - negative))


def test_the_audio_tower_takes_its_own_scale_and_the_video_keeps_the_text_scale() -> None:
    positive, negative, _ = _branches(4)
    guidance = Guidance(text_scale=3.0, audio_text_scale=1.5)
    assert torch.allclose(combine_guidance(guidance, [positive, negative]),
                          negative + 3.0 * (positive - negative))
    assert torch.allclose(combine_guidance(guidance, [positive, negative], audio=True),
                          negative + 1.5 * (positive - negative))
    # the negative pass runs unless both scales are 1
    assert Guidance(text_scale=1.0, audio_text_scale=1.5).branches() == [(True, 1.0),
                                                                         (False, 1.0)]
    assert Guidance(text_scale=1.0, audio_text_scale=1.0).branches() == [(True, 1.0)]
    u, p_text, p_full = _branches(5)
    dual = Guidance("dual", 4.0, 2.0, audio_text_scale=0.5)
    assert torch.allclose(combine_guidance(dual, [u, p_text, p_full], audio=True),
                          u + 0.5 * (p_text - u) + 2.0 * (p_full - p_text))


def test_a_voice_over_depends_on_the_audio_scale_alone() -> None:
    """The picture is fixed, so the video's scale has nothing to guide."""
    fixed = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(6))
    _, split = _run(AnalyticDenoiser(), Guidance(text_scale=7.0, audio_text_scale=2.0),
                    steps=6, fixed_video=fixed)
    _, single = _run(AnalyticDenoiser(), Guidance(text_scale=2.0), steps=6, fixed_video=fixed)
    _, other = _run(AnalyticDenoiser(), Guidance(text_scale=7.0), steps=6, fixed_video=fixed)
    assert torch.equal(split, single) and not torch.allclose(split, other)


def test_dual_guidance_reduces_to_plain_cfg_when_bridge_scale_is_one() -> None:
    u, p_text, p_full = _branches(2)
    # s_B = 1: u + s_T (p_T - u) + (p_F - p_T); with s_T = 1 that is the full branch itself.
    assert torch.allclose(combine_guidance(Guidance("dual", 1.0, 1.0), [u, p_text, p_full]),
                          p_full, atol=1e-6)
    out = combine_guidance(Guidance("dual", 4.0, 1.0), [u, p_text, p_full])
    assert torch.allclose(out, u + 4.0 * (p_text - u) + (p_full - p_text), atol=1e-6)
    # s_T = s_B = s: plain CFG against a bridge-free unconditional branch.
    same = combine_guidance(Guidance("dual", 3.0, 3.0), [u, p_text, p_full])
    assert torch.allclose(same, u + 3.0 * (p_full - u), atol=1e-5)


# ---- the loop with an analytic denoiser ------------------------------------------------------

class AnalyticDenoiser:
    """Velocity = a different linear map per expert, context and bridge λ; records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, float | tuple[float, ...]]] = []

    def __call__(self, expert: int, video_input: Tensor, audio_input: Tensor, context: Tensor,
                 t_video: Tensor, t_audio: Tensor, video_fps: float,
                 bridge_scale: float | Tensor) -> tuple[Tensor, Tensor]:
        scale = (tuple(bridge_scale.tolist()) if isinstance(bridge_scale, Tensor)
                 else float(bridge_scale))
        self.calls.append((expert, video_input.shape[0], scale))
        lam = torch.as_tensor(bridge_scale, dtype=torch.float32).reshape(-1)
        lam = lam.expand(video_input.shape[0])
        ctx = context.mean(dim=(1, 2))  # [B]
        gain = 0.3 + 0.2 * expert + 0.1 * lam
        v = video_input[:, :16] * gain.view(-1, 1, 1, 1, 1) + ctx.view(-1, 1, 1, 1, 1) \
            + (t_video / 1000).view(-1, 1, 1, 1, 1) + 0.05 * audio_input.mean((1, 2)).view(
                -1, 1, 1, 1, 1) * lam.view(-1, 1, 1, 1, 1)
        a = audio_input * (0.5 - 0.1 * expert) + ctx.view(-1, 1, 1) - 0.2 * lam.view(-1, 1, 1) \
            + (t_audio / 1000).view(-1, 1, 1)
        return v, a


def _inputs(seed: int = 0) -> dict[str, Tensor]:
    video, audio = draw_noise(seed, (1, 16, 2, 4, 4), (1, 8, 6))
    g = torch.Generator().manual_seed(seed + 1)
    return {"video_noise": video, "audio_noise": audio,
            "video_condition": torch.randn(1, 20, 2, 4, 4, generator=g),
            "context": torch.randn(1, 7, 4, generator=g),
            "negative_context": torch.randn(1, 7, 4, generator=g)}


def _run(denoiser: AnalyticDenoiser, guidance: Guidance, steps: int = 50,
         **overrides: object) -> tuple[Tensor, Tensor]:
    kwargs = {**_inputs(), **overrides}
    return sample(denoiser, scheduler=SCHEDULER, num_steps=steps, boundary_ratio=0.9,
                  video_fps=24.0, guidance=guidance, **kwargs)  # type: ignore[arg-type]


def test_expert_switches_once_at_step_18_of_50() -> None:
    denoiser = AnalyticDenoiser()
    _run(denoiser, Guidance(batched=True))
    experts = [expert for expert, _, _ in denoiser.calls]
    assert experts == [0] * 18 + [1] * 32


def test_batched_branches_equal_sequential_branches() -> None:
    for mode in ("reference", "dual"):
        batched = AnalyticDenoiser()
        sequential = AnalyticDenoiser()
        out_b = _run(batched, Guidance(mode=mode, text_scale=4.0, bridge_scale=2.0), steps=10)
        out_s = _run(sequential, Guidance(mode=mode, text_scale=4.0, bridge_scale=2.0,
                                          batched=False), steps=10)
        assert len(batched.calls) == 10 and len(sequential.calls) == 10 * (3 if mode == "dual"
                                                                           else 2)
        for b, s in zip(out_b, out_s, strict=True):
            assert torch.allclose(b, s, atol=1e-5)
    # dual stacks three branches with a per-sample bridge λ (0, 0, 1)
    assert batched.calls[0][1:] == (3, (0.0, 0.0, 1.0))


def test_audio_only_keeps_the_video_bit_identical_and_changes_the_audio() -> None:
    fixed = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(5))
    denoiser = AnalyticDenoiser()
    video, audio = _run(denoiser, Guidance(), steps=8, fixed_video=fixed)
    assert torch.equal(video, fixed)
    assert not torch.allclose(audio, _inputs()["audio_noise"])
    assert {expert for expert, _, _ in denoiser.calls} == {1}, "t_video = 0 is low-noise"


def test_progress_cancellation_and_determinism() -> None:
    steps: list[tuple[int, int]] = []
    first = _run(AnalyticDenoiser(), Guidance(), steps=6, on_step=lambda k, n: steps.append((k, n)))
    assert steps == [(k, 6) for k in range(1, 7)]
    second = _run(AnalyticDenoiser(), Guidance(), steps=6)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    calls = iter([False, False, True])
    with pytest.raises(GenerationCancelled, match="step 3 of 6"):
        _run(AnalyticDenoiser(), Guidance(), steps=6, should_cancel=lambda: next(calls))


def test_draw_noise_matches_the_reference_global_seeding() -> None:
    video, audio = draw_noise(42, (1, 16, 3, 4, 6), (1, 128, 11))
    torch.manual_seed(42)
    assert torch.equal(video, torch.randn(1, 16, 3, 4, 6))
    assert torch.equal(audio, torch.randn(1, 128, 11))


# ---- with the real tiny networks -------------------------------------------------------------

def test_tiny_model_sampling_is_deterministic_and_batched_matches_sequential() -> None:
    video_dit, audio_dit, bridge = tiny_models(seed=0)
    video_dit_2, _, _ = tiny_models(seed=10)
    experts = (video_dit, video_dit_2)

    def denoiser(expert: int, video_input: Tensor, audio_input: Tensor, context: Tensor,
                 t_video: Tensor, t_audio: Tensor, video_fps: float,
                 bridge_scale: float | Tensor) -> tuple[Tensor, Tensor]:
        return joint_forward(experts[expert], audio_dit, bridge, video_input, audio_input,
                             context, t_video, t_audio, video_fps, bridge_scale)

    video_noise, audio_noise = draw_noise(3, (1, 16, 2, 4, 6), (1, 128, 9))
    g = torch.Generator().manual_seed(9)
    kwargs = dict(scheduler=SCHEDULER, num_steps=4, boundary_ratio=0.9, video_noise=video_noise,
                  audio_noise=audio_noise, video_condition=torch.randn(1, 20, 2, 4, 6, generator=g),
                  context=torch.randn(1, 16, 32, generator=g),
                  negative_context=torch.randn(1, 16, 32, generator=g), video_fps=24.0)
    with torch.inference_mode():
        one = sample(denoiser, guidance=Guidance(), **kwargs)  # type: ignore[arg-type]
        two = sample(denoiser, guidance=Guidance(), **kwargs)  # type: ignore[arg-type]
        seq = sample(denoiser, guidance=Guidance(batched=False), **kwargs)  # type: ignore[arg-type]
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(one, seq, strict=True))


def test_guidance_takes_every_setting_from_the_request() -> None:
    request = GenerationRequest(prompt="a red ball", guidance_mode=GuidanceMode.DUAL,
                                cfg_scale=3.5, bridge_scale=0.25, compat=Compat.FAST)
    assert Guidance.from_request(request) == Guidance(mode=GuidanceMode.DUAL, text_scale=3.5,
                                                      bridge_scale=0.25, batched=True)
    split = GenerationRequest(prompt="a red ball", cfg_scale=3.0, audio_cfg_scale=1.5)
    assert Guidance.from_request(split).text_scale_of(audio=True) == 1.5
    assert Guidance.from_request(split).text_scale_of(audio=False) == 3.0
    release = GenerationRequest(prompt="a red ball")  # the release's settings
    assert Guidance.from_request(release) == Guidance(mode=GuidanceMode.REFERENCE,
                                                      text_scale=5.0, bridge_scale=1.0,
                                                      batched=False)


def test_noise_is_float32_whatever_the_default_dtype() -> None:
    expected = draw_noise(7, (1, 16, 2, 4, 4), (1, 128, 10))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        drawn = draw_noise(7, (1, 16, 2, 4, 4), (1, 128, 10))
    finally:
        torch.set_default_dtype(previous)
    for got, want in zip(drawn, expected, strict=True):
        assert got.dtype == torch.float32 and torch.equal(got, want)
