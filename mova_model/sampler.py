"""The sampling loop: flow-matching Euler steps, guidance and the expert switch (spec §7.3-7.5).

Networks don't sample; this module owns everything between the noise and the clean latents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from mova_model.errors import GenerationCancelled, InvalidRequest
from mova_model.request import GenerationRequest, GuidanceMode
from mova_model.schedule import FlowMatchPairScheduler

HIGH_NOISE_EXPERT, LOW_NOISE_EXPERT = 0, 1


class Denoiser(Protocol):
    """One joint forward with the chosen video expert; returns float32 velocities."""

    def __call__(self, expert: int, video_input: Tensor, audio_input: Tensor, context: Tensor,
                 t_video: Tensor, t_audio: Tensor, video_fps: float,
                 bridge_scale: float | Tensor) -> tuple[Tensor, Tensor]: ...


@dataclass(frozen=True)
class Guidance:
    """How the branches are combined.

    reference: V₋ + s·(V₊ − V₋), the bridge on in both passes (what the release runs).
    dual:      u + s_T·(p_T − u) + s_B·(p_F − p_T) with u = V(c₋, no bridge),
               p_T = V(c₊, no bridge), p_F = V(c₊, bridge) (the paper's Dual CFG, §7.5).
    """

    # Values come from a GenerationRequest, which validated them; not checked again here.
    mode: GuidanceMode = GuidanceMode.REFERENCE
    text_scale: float = 5.0
    bridge_scale: float = 1.0
    batched: bool = True  # all branches of a step in one denoiser call (batch axis)
    audio_text_scale: float | None = None  # the audio's text scale; None: text_scale

    @classmethod
    def from_request(cls, request: GenerationRequest) -> Guidance:
        """The request's guidance; batched passes only in compat="fast" (§13.2)."""
        return cls(mode=request.guidance_mode, text_scale=request.cfg_scale,
                   bridge_scale=request.bridge_scale, batched=request.batched_guidance,
                   audio_text_scale=request.audio_cfg_scale)

    def text_scale_of(self, audio: bool) -> float:
        """The text scale of one tower's velocity."""
        if audio and self.audio_text_scale is not None:
            return self.audio_text_scale
        return self.text_scale

    def branches(self) -> list[tuple[bool, float]]:
        """(use the positive prompt, bridge λ) per branch, in the order combine() expects."""
        if self.mode == GuidanceMode.DUAL:
            return [(False, 0.0), (True, 0.0), (True, 1.0)]
        if self.text_scale_of(audio=False) == self.text_scale_of(audio=True) == 1.0:
            return [(True, 1.0)]  # scale 1: the conditional pass alone (as the reference)
        return [(True, 1.0), (False, 1.0)]

    @property
    def needs_negative(self) -> bool:
        return any(not positive for positive, _ in self.branches())


def combine_guidance(guidance: Guidance, outputs: Sequence[Tensor], *, audio: bool = False
                     ) -> Tensor:
    """The guided velocity of one tower (the audio's if `audio`) from branch outputs ordered as
    `guidance.branches()` (float32)."""
    text_scale = guidance.text_scale_of(audio)
    if guidance.mode == GuidanceMode.DUAL:
        unconditional, text_only, full = outputs
        return (unconditional + text_scale * (text_only - unconditional)
                + guidance.bridge_scale * (full - text_only))
    if len(outputs) == 1:
        return outputs[0]
    positive, negative = outputs
    return negative + text_scale * (positive - negative)


def draw_noise(seed: int, video_shape: Sequence[int], audio_shape: Sequence[int],
               device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
    """Initial noise as the reference draws it: one generator seeded once, float32 standard
    normal, the video latent first, then the audio latent (spec §8)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    video = torch.randn(tuple(video_shape), generator=generator, device=device,
                        dtype=torch.float32)
    audio = torch.randn(tuple(audio_shape), generator=generator, device=device,
                        dtype=torch.float32)
    return video, audio


def _run_branches(denoiser: Denoiser, guidance: Guidance, expert: int, video_input: Tensor,
                  audio_input: Tensor, context: Tensor, negative_context: Tensor | None,
                  t_video: Tensor, t_audio: Tensor, video_fps: float
                  ) -> tuple[list[Tensor], list[Tensor]]:
    """Evaluate every guidance branch; batched along the batch axis in one call if asked."""
    branches = guidance.branches()
    contexts = [context if positive else negative_context for positive, _ in branches]
    if any(c is None for c in contexts):
        raise InvalidRequest("this guidance needs a negative prompt context")
    batch = video_input.shape[0]
    if guidance.batched and len(branches) > 1:
        n = len(branches)
        scales = [scale for _, scale in branches]
        # One call: branches stacked along the batch axis, a per-sample bridge λ when they differ.
        bridge: float | Tensor = scales[0] if len(set(scales)) == 1 else torch.tensor(
            [s for s in scales for _ in range(batch)], device=video_input.device)
        video_out, audio_out = denoiser(
            expert, video_input.repeat(n, 1, 1, 1, 1), audio_input.repeat(n, 1, 1),
            torch.cat(contexts, dim=0), t_video.repeat(n), t_audio.repeat(n), video_fps, bridge,
        )
        return list(video_out.split(batch)), list(audio_out.split(batch))
    video_outs, audio_outs = [], []
    for ctx, (_, scale) in zip(contexts, branches, strict=True):
        v, a = denoiser(expert, video_input, audio_input, ctx, t_video, t_audio, video_fps,
                        scale)
        video_outs.append(v)
        audio_outs.append(a)
    return video_outs, audio_outs


def sample(
    denoiser: Denoiser,
    *,
    scheduler: FlowMatchPairScheduler,
    num_steps: int,
    boundary_ratio: float,
    video_noise: Tensor,
    audio_noise: Tensor,
    video_condition: Tensor,
    context: Tensor,
    negative_context: Tensor | None,
    video_fps: float,
    guidance: Guidance,
    fixed_video: Tensor | None = None,
    on_step: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[Tensor, Tensor]:
    """Denoise from noise to clean (video [B,16,F,H,W], audio [B,C,L]) latents, float32.

    `video_condition` is the mask + first-frame latent [B,20,F,H,W] concatenated after the noisy
    latent. With `fixed_video` (audio-only mode) the video latent is that clean tensor at t = 0
    for every step and is never updated; only the audio is denoised.
    """
    audio_only = fixed_video is not None
    z_video = fixed_video.float() if fixed_video is not None else video_noise.float()
    z_audio = audio_noise.float()
    pairs = scheduler.pair_timesteps(num_steps, video_fixed=audio_only)
    boundary = boundary_ratio * scheduler.config.num_train_timesteps
    batch = z_video.shape[0]
    expert = HIGH_NOISE_EXPERT
    for k in range(num_steps):
        if should_cancel is not None and should_cancel():
            raise GenerationCancelled(f"cancelled before step {k + 1} of {num_steps}")
        t_video, t_audio = pairs[k, 0], pairs[k, 1]
        # 1. the expert switch is one-way and tests only the video timestep
        if expert == HIGH_NOISE_EXPERT and t_video < boundary:
            expert = LOW_NOISE_EXPERT
        # 2. every guidance branch: [z_v, M, Y] -> 36 channels
        video_input = torch.cat([z_video, video_condition.to(z_video)], dim=1)
        video_outs, audio_outs = _run_branches(
            denoiser, guidance, expert, video_input, z_audio, context, negative_context,
            t_video.expand(batch).to(z_video.device), t_audio.expand(batch).to(z_video.device),
            video_fps,
        )
        # 3. guidance in float32, then one Euler step per modality
        t_next = pairs[k + 1] if k + 1 < num_steps else None
        if not audio_only:
            v_video = combine_guidance(guidance, [v.float() for v in video_outs])
            z_video = scheduler.step(z_video, v_video, t_video,
                                     None if t_next is None else t_next[0])
        v_audio = combine_guidance(guidance, [a.float() for a in audio_outs], audio=True)
        z_audio = scheduler.step(z_audio, v_audio, t_audio, None if t_next is None else t_next[1])
        if on_step is not None:
            on_step(k + 1, num_steps)
    return z_video, z_audio
