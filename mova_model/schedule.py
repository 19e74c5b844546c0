"""Flow-matching schedule with shift, as (video t, audio t) pairs (spec §7.1-7.2).

Noising is x_σ = (1 − σ)·x₀ + σ·ε, the model predicts v = ε − x₀ and sees t = 1000·σ.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mova_model.config import SchedulerConfig
from mova_model.errors import InvalidRequest


def shifted_sigmas(config: SchedulerConfig, num_steps: int, shift: float | None = None) -> Tensor:
    """σ for `num_steps` steps: linear from σ_max to σ_min, then σ ← sσ / (1 + (s − 1)σ).

    float32, as the reference builds it with torch.linspace (bit-compatible timesteps)."""
    if num_steps < 1:
        raise InvalidRequest(f"num_steps={num_steps} must be at least 1")
    s = config.shift if shift is None else shift
    if config.extra_one_step:
        # N + 1 points from σ_max to σ_min, the last dropped: the final step lands on σ = 0.
        base = torch.linspace(config.sigma_max, config.sigma_min, num_steps + 1)[:-1]
    else:
        base = torch.linspace(config.sigma_max, config.sigma_min, num_steps)
    return s * base / (1 + (s - 1) * base)


class FlowMatchPairScheduler:
    """Timestep pairs for the two towers and the Euler update per modality."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        # The 1000-point training grid: the reference looks σ up here at every update (§7.1).
        self.train_sigmas = shifted_sigmas(config, config.num_train_timesteps)
        self.train_timesteps = self.train_sigmas * config.num_train_timesteps

    def sigmas(self, num_steps: int) -> Tensor:
        """[N] float32 σ of the inference grid."""
        return shifted_sigmas(self.config, num_steps)

    def timesteps(self, num_steps: int) -> Tensor:
        """[N] float32 t = 1000·σ."""
        return self.sigmas(num_steps) * self.config.num_train_timesteps

    def pair_timesteps(self, num_steps: int, *, video_shift: float | None = None,
                       audio_shift: float | None = None, video_fixed: bool = False) -> Tensor:
        """[N, 2] (t_video, t_audio). Identical columns by default; a per-modality shift
        rebuilds one column; `video_fixed` (audio-only mode) pins the video column at 0."""
        scale = self.config.num_train_timesteps
        video = shifted_sigmas(self.config, num_steps, video_shift) * scale
        audio = shifted_sigmas(self.config, num_steps, audio_shift) * scale
        if video_fixed:
            video = torch.zeros_like(video)
        return torch.stack([video, audio], dim=1)

    def sigma_for(self, t: Tensor | float) -> Tensor:
        """σ of the training-grid point nearest to t (the reference's lookup; exact for N | 1000
        with extra_one_step). Returns a 0-dim float32 tensor."""
        t = torch.as_tensor(t, dtype=torch.float32)
        index = torch.argmin((self.train_timesteps - t).abs())
        return self.train_sigmas[index]

    def step(self, x: Tensor, velocity: Tensor, t: Tensor | float,
             t_next: Tensor | float | None) -> Tensor:
        """Euler step x + v·(σ_next − σ); σ_next = 0 after the last step."""
        sigma = self.sigma_for(t)
        sigma_next = torch.zeros(()) if t_next is None else self.sigma_for(t_next)
        return x + velocity * (sigma_next - sigma).to(x.device)
