"""Shared pieces of the demo-model training: budgets, progress lines, resumable state files."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mova_model.checkpoint import MODEL_INDEX

log = logging.getLogger("training")

# diffusers' AutoencoderKLWan (built by mova_model.video_vae.build_video_vae). Its classes are
# invisible to mypy as nn.Modules (diffusers' mixins are untyped), hence Any.
VideoVAE = Any

# A learning rate: 0 trains nothing, nan poisons every weight, one above 1 diverges at once.
RATE_RULE = "a rate in (0, 1]"


def is_rate(rate: float) -> bool:
    """Whether `rate` may be a learning rate (RATE_RULE)."""
    return math.isfinite(rate) and 0 < rate <= 1


@dataclass(frozen=True)
class Budget:
    """How much of each stage to run. `full`: 75 minutes on 2 CPU cores (`make demo-model`
    timed whole, 2-core EPYC, 2026-12-05; 111 by its phases on 2026-12-04, before the video VAE
    ran its convolutions channels-last and the diffusion folded the text padding)."""

    video_vae_steps: int
    video_vae_batch: int
    video_vae_frames: int  # 4k+1 frames cut from a clip (the VAE is causal: 1 + 4 + 4 ...)
    audio_vae_steps: int
    audio_vae_batch: int
    audio_vae_samples: int  # waveform segment length per example
    num_clips: int  # clips encoded once for the diffusion stage
    dit_steps: int
    dit_batch: int
    dit_lr: float = 1e-3
    video_vae_lr: float = 2e-3
    # Then whole clips: trained on short windows only, the causal VAE never ran its caches
    # past the second chunk, and decoded frames 9-24 of a clip at 12-15 dB (0-8 at 23-24).
    video_vae_clip_steps: int = 0
    video_vae_clip_batch: int = 2
    video_vae_clip_lr: float = 5e-4
    # Window steps the video VAE runs beside the DAC on half the threads; from this step on it
    # takes them all (the DAC is done by then). Set by step, not by the DAC's actual finish, so
    # the numbers a run gives (which depend on the thread count) do not depend on timing.
    video_vae_steps_beside_dac: int = 0
    # Last, the decoder alone on whole frames of whole clips (batch video_vae_clip_batch), the
    # encoder frozen: the latents the diffusion stage learns do not change, and the pictures
    # decoded from them come out sharper.
    video_vae_decoder_steps: int = 0
    video_vae_decoder_lr: float = 3e-4
    # The DAC (Snake activations, weight norm) diverged at 2e-3 within 10 steps under the old
    # waveform + STFT loss; 1e-3 under the log-mel loss trained steadily (600-step trials).
    audio_vae_lr: float = 1e-3
    warmup_steps: int = 100
    # Fresh clips the codecs are measured on once trained: the video VAE's latent statistics,
    # the DAC's per-channel scale and its decoder level.
    calibration_clips: int = 24
    checkpoint_every: int = 250
    log_every: int = 25
    ema_decay: float = 0.999

    def __post_init__(self) -> None:
        if self.video_vae_frames % 4 != 1:
            raise ValueError(f"video_vae_frames={self.video_vae_frames} must be 4k+1")
        if self.audio_vae_samples % 960:
            raise ValueError(f"audio_vae_samples={self.audio_vae_samples} must be a multiple "
                             "of the DAC hop (960)")
        if self.video_vae_steps_beside_dac < 0:
            raise ValueError(f"video_vae_steps_beside_dac={self.video_vae_steps_beside_dac} "
                             "must not be negative")
        for name in ("video_vae_steps", "audio_vae_steps", "num_clips", "dit_steps",
                     "video_vae_batch", "audio_vae_batch", "dit_batch", "video_vae_clip_batch",
                     "calibration_clips", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        for name in ("video_vae_clip_steps", "video_vae_decoder_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must not be negative (0: no "
                                 "such phase)")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps} must not be negative")
        for name in ("dit_lr", "video_vae_lr", "video_vae_clip_lr", "video_vae_decoder_lr",
                     "audio_vae_lr"):
            if not is_rate(getattr(self, name)):
                raise ValueError(f"{name}={getattr(self, name)} must be {RATE_RULE}")
        if not (math.isfinite(self.ema_decay) and 0 <= self.ema_decay < 1):
            raise ValueError(f"ema_decay={self.ema_decay} must be in [0, 1)")


BUDGETS: dict[str, Budget] = {
    # Video VAE on 9-frame windows, batch 4: its loss fell from 0.36 to ~0.17 in 500 steps,
    # while whole 25-frame clips at batch 2 stayed at ~0.4 for 350 steps (trials on this CPU).
    # 3000 video VAE steps at width 12 (~44 min, 2026-12-04) while the DAC takes ~19 beside them;
    # then 500 on whole clips: 300 of them (trial) lifted frames 9-24 from 12-15 to 21-23 dB.
    # The DAC is done after about a third of the windows (step ~1120 on 2026-12-04): from step
    # 1000 the video VAE takes both threads (1.2x faster per step than one: 0.83 vs 0.99 s, A/B).
    # Then 400 decoder steps (~15 min at 2.3 s): on the evaluation set through the codecs,
    # colour 0.92 -> 1.00, lip sync 0.75 -> 0.92, first frame 23.8 -> 24.5 dB (2026-12-04).
    # Timed whole on 2026-12-05 (75 min): DAC 11 min beside windows 25, whole clips 6, decoder
    # 9, encoding 4, diffusion 31 (0.156 s a step).
    "full": Budget(video_vae_steps=3000, video_vae_batch=4, video_vae_frames=9,
                   video_vae_clip_steps=500, video_vae_steps_beside_dac=1000,
                   video_vae_decoder_steps=400,
                   audio_vae_steps=1500, audio_vae_batch=8, audio_vae_samples=9600,
                   num_clips=1200, dit_steps=12000, dit_batch=8),
    # More diffusion from a trained folder (`--init-from`): codecs and tokenizer are taken as
    # they are; twice the clips (the world is combinatorial: colour x object x background x
    # motion) and a lower peak rate, since the weights start trained.
    "continue": Budget(video_vae_steps=1, video_vae_batch=4, video_vae_frames=9,
                       audio_vae_steps=1, audio_vae_batch=8, audio_vae_samples=9600,
                       num_clips=2400, dit_steps=8000, dit_batch=8, dit_lr=5e-4,
                       warmup_steps=200),
    # a few steps of everything: for tests and for checking the pipeline end to end
    "smoke": Budget(video_vae_steps=6, video_vae_batch=2, video_vae_frames=5,
                    video_vae_clip_steps=2, video_vae_clip_batch=1, video_vae_decoder_steps=2,
                    audio_vae_steps=6, audio_vae_batch=2, audio_vae_samples=4800,
                    num_clips=8, dit_steps=30, dit_batch=4, dit_lr=2e-3, warmup_steps=2,
                    calibration_clips=4, checkpoint_every=10, log_every=10, ema_decay=0.5),
}


class Progress:
    """`stage=... step=i/n loss=... elapsed=..s eta=..s` lines, every `every` steps."""

    def __init__(self, stage: str, total: int, every: int, start_step: int = 0) -> None:
        self.stage, self.total, self.every = stage, total, every
        self.start_step = start_step
        self.started = time.monotonic()

    def __call__(self, step: int, **values: float) -> None:
        if step % self.every and step != self.total:
            return
        elapsed = time.monotonic() - self.started
        done = step - self.start_step
        eta = elapsed / done * (self.total - step) if done > 0 else float("nan")
        shown = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        log.info("stage=%s step=%d/%d %s elapsed=%.0fs eta=%.0fs", self.stage, step, self.total,
                 shown, elapsed, eta)


# A loss weight counts some pixels or cells that many times. Below 1 they would count less than
# the rest, not what these weights are for; far above the largest tried (20) the rest of the
# picture stops counting, and past float32's range the weighted loss is no number at all.
MAX_LOSS_WEIGHT = 10_000
LOSS_WEIGHT_RULE = f"a number from 1 to {MAX_LOSS_WEIGHT}"


def is_loss_weight(weight: float) -> bool:
    """Whether `weight` may weight a loss (LOSS_WEIGHT_RULE); NaN and infinities may not."""
    return math.isfinite(weight) and 1 <= weight <= MAX_LOSS_WEIGHT


class TrainingDiverged(RuntimeError):
    """A step's loss or gradient is not finite. The step is not taken, so the weights and every
    state file saved before it stay finite (a resumed run replays the same step: it needs a
    new request, e.g. a smaller loss weight, in a new work folder)."""


def optimiser_step(parameters: Iterable[torch.nn.Parameter], optimiser: torch.optim.Optimizer,
                   loss: Tensor, stage: str, step: int) -> None:
    """Backward, gradients clipped to norm 1, one optimiser step; refused (TrainingDiverged)
    when the loss or the gradient's norm is not finite: clipping an infinite norm gives NaN
    gradients, and one NaN step makes every weight NaN."""
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"stage={stage} step={step + 1}: the loss is {loss.item()}; "
                               "training stopped before taking the step")
    optimiser.zero_grad(set_to_none=True)
    torch.autograd.backward(loss)
    norm = torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    if not torch.isfinite(norm):
        raise TrainingDiverged(f"stage={stage} step={step + 1}: the gradient's norm is "
                               f"{norm.item()}; training stopped before taking the step")
    optimiser.step()


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write leaves the previous state file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load_state(path: Path) -> dict[str, Any] | None:
    """The saved training state, or None when the stage has not been started."""
    if not path.is_file():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return state


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine down to 5 % of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item()))


def out_folder_problem(out: Path) -> str | None:
    """Why `out` may not be written as a checkpoint folder (None: it may). Writing replaces the
    folder whole, so an existing path is taken only when it is a checkpoint folder already."""
    if out.exists() and not (out / MODEL_INDEX).is_file():
        what = "a folder" if out.is_dir() else "a file"
        return (f"{out} exists and is {what} that is no checkpoint folder (no {MODEL_INDEX}); "
                "writing would replace it: give a new path, or remove it first")
    return None
