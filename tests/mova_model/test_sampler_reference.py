"""The sampling loop against an independent plain loop written from spec §7.1-7.5: σ from
the schedule, the guided velocity per branch, x ← x + v·(σ_next − σ), the expert switching
once when t_video drops below 1000·boundary. Also the guidance settings that are refused."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from mova_model.errors import InvalidRequest
from mova_model.request import GenerationRequest
from mova_model.sampler import Guidance, sample
from tests.mova_model.test_sampler import SCHEDULER, AnalyticDenoiser, _inputs

STEPS = 10  # divides 1000: the schedule's σ lookup is exact


def reference_loop(guidance: Guidance, steps: int, boundary_ratio: float,
                   inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    sigmas = SCHEDULER.sigmas(steps).tolist() + [0.0]
    denoiser = AnalyticDenoiser()
    z_v, z_a = inputs["video_noise"].clone(), inputs["audio_noise"].clone()
    expert = 0
    for k in range(steps):
        t = torch.tensor([1000.0 * sigmas[k]])
        if 1000.0 * sigmas[k] < 1000.0 * boundary_ratio:
            expert = 1
        x = torch.cat([z_v, inputs["video_condition"]], dim=1)

        def run(positive: bool, lam: float) -> tuple[Tensor, Tensor]:
            ctx = inputs["context"] if positive else inputs["negative_context"]
            return denoiser(expert, x, z_a, ctx, t, t, 24.0, lam)  # noqa: B023

        if guidance.mode == "dual":
            (u_v, u_a), (pt_v, pt_a), (pf_v, pf_a) = run(False, 0.0), run(True, 0.0), \
                run(True, 1.0)
            s_t, s_b = guidance.text_scale, guidance.bridge_scale
            v_v = u_v + s_t * (pt_v - u_v) + s_b * (pf_v - pt_v)
            v_a = u_a + s_t * (pt_a - u_a) + s_b * (pf_a - pt_a)
        elif guidance.text_scale == 1.0:
            v_v, v_a = run(True, 1.0)
        else:
            (p_v, p_a), (n_v, n_a) = run(True, 1.0), run(False, 1.0)
            v_v = n_v + guidance.text_scale * (p_v - n_v)
            v_a = n_a + guidance.text_scale * (p_a - n_a)
        z_v = z_v + (sigmas[k + 1] - sigmas[k]) * v_v
        z_a = z_a + (sigmas[k + 1] - sigmas[k]) * v_a
    return z_v, z_a


# Guidance is built inside the test (not at collection) so a broken Guidance fails the test.
@pytest.mark.parametrize("settings", [
    {"text_scale": 4.0}, {"text_scale": 4.0, "batched": False}, {"text_scale": 1.0},
    {"mode": "dual", "text_scale": 4.0, "bridge_scale": 2.0},
    {"mode": "dual", "text_scale": 4.0, "bridge_scale": 2.0, "batched": False}])
@pytest.mark.parametrize("boundary_ratio", [0.9, 0.5])
def test_the_loop_matches_a_plain_reference(settings: dict[str, object],
                                            boundary_ratio: float) -> None:
    guidance = Guidance(**settings)  # type: ignore[arg-type]
    inputs = _inputs(seed=3)
    denoiser = AnalyticDenoiser()
    found = sample(denoiser, scheduler=SCHEDULER, num_steps=STEPS,
                   boundary_ratio=boundary_ratio, video_fps=24.0, guidance=guidance, **inputs)
    expected = reference_loop(guidance, STEPS, boundary_ratio, inputs)
    for f, e in zip(found, expected, strict=True):
        assert f.dtype == torch.float32
        torch.testing.assert_close(f, e, rtol=1e-4, atol=1e-5)
    switched = sum(1 for expert, _, _ in denoiser.calls if expert == 1)
    assert switched > 0 and denoiser.calls[0][0] == 0


def test_the_loop_casts_half_precision_inputs_to_float32() -> None:
    inputs = _inputs(seed=4)
    half = {**inputs, "video_noise": inputs["video_noise"].half(),
            "audio_noise": inputs["audio_noise"].half()}
    video, audio = sample(AnalyticDenoiser(), scheduler=SCHEDULER, num_steps=2,
                          boundary_ratio=0.9, video_fps=24.0, guidance=Guidance(), **half)
    assert video.dtype == audio.dtype == torch.float32


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"guidance_mode": "triple"}, "guidance_mode='triple'; expected reference or dual"),
    ({"cfg_scale": 0.0}, "cfg_scale=0.0 must be > 0 and bridge_scale=1.0 >= 0"),
    ({"cfg_scale": -1.0}, "cfg_scale=-1.0 must be > 0"),
    ({"bridge_scale": -0.5}, "bridge_scale=-0.5 >= 0"),
])
def test_bad_guidance_is_refused(kwargs: dict[str, object], message: str) -> None:
    # Guidance is checked once, where a render is requested; the sampler trusts the request.
    with pytest.raises(InvalidRequest) as info:
        GenerationRequest("a prompt", **kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_zero_bridge_scale_and_small_text_scales_are_allowed() -> None:
    assert Guidance(bridge_scale=0.0).bridge_scale == 0.0
    assert Guidance(text_scale=0.5).branches() == [(True, 1.0), (False, 1.0)]


def test_which_guidance_needs_a_negative_prompt() -> None:
    assert Guidance(text_scale=5.0).needs_negative
    assert not Guidance(text_scale=1.0).needs_negative
    assert Guidance("dual", 1.0, 1.0).needs_negative
    assert Guidance().mode == "reference" and Guidance().text_scale == 5.0
    assert Guidance().bridge_scale == 1.0 and Guidance().batched


@pytest.mark.parametrize("batched", [True, False])
def test_a_missing_negative_context_is_refused(batched: bool) -> None:
    inputs = {**_inputs(), "negative_context": None}
    with pytest.raises(InvalidRequest) as info:
        sample(AnalyticDenoiser(), scheduler=SCHEDULER, num_steps=2, boundary_ratio=0.9,
               video_fps=24.0, guidance=Guidance(batched=batched), **inputs)
    assert str(info.value) == "this guidance needs a negative prompt context"
    # scale 1 runs the conditional pass alone: no negative prompt needed
    sample(AnalyticDenoiser(), scheduler=SCHEDULER, num_steps=2, boundary_ratio=0.9,
           video_fps=24.0, guidance=Guidance(text_scale=1.0), **inputs)


def test_the_fps_reaches_the_denoiser() -> None:
    seen: list[float] = []
    inner = AnalyticDenoiser()

    def denoiser(*args: object) -> tuple[Tensor, Tensor]:
        seen.append(args[6])  # type: ignore[arg-type]
        return inner(*args)  # type: ignore[arg-type]

    sample(denoiser, scheduler=SCHEDULER, num_steps=2, boundary_ratio=0.9, video_fps=12.5,
           guidance=Guidance(), **_inputs())
    assert seen == [12.5, 12.5]


def test_a_batched_step_passes_one_float_lambda_when_the_branches_agree() -> None:
    """Reference guidance runs both branches bridged (λ = 1): one float λ for the stacked batch,
    which lets the joint forward take its plain path (and skip the bridge when λ = 0)."""
    denoiser = AnalyticDenoiser()
    sample(denoiser, scheduler=SCHEDULER, num_steps=2, boundary_ratio=0.9, video_fps=24.0,
           guidance=Guidance(text_scale=3.0), **_inputs())
    assert denoiser.calls == [(0, 2, 1.0), (1, 2, 1.0)]


def test_the_high_noise_expert_keeps_a_step_exactly_at_the_boundary() -> None:
    """Spec §1/§7: the high-noise expert runs while t_video >= 1000·boundary_ratio."""
    t = SCHEDULER.timesteps(STEPS)
    denoiser = AnalyticDenoiser()
    sample(denoiser, scheduler=SCHEDULER, num_steps=STEPS, boundary_ratio=float(t[3]) / 1000,
           video_fps=24.0, guidance=Guidance(), **_inputs())
    assert [expert for expert, _, _ in denoiser.calls] == [0] * 4 + [1] * (STEPS - 4)
