"""The result of one generation: frames, soundtrack and the exact settings that made them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from mova_model.request import GenerationRequest


class Conditioning(StrEnum):
    """What the first latent frame was conditioned on, derived from the inputs."""

    FIRST_FRAME = "first_frame"  # TI2VA: an image was given
    TEXT_ONLY = "text_only"  # T2VA: no image
    LOCKED_VIDEO = "locked_video"  # audio-only: the given picture is kept


@dataclass(frozen=True)
class LoraUsed:
    """The LoRA applied while rendering: its weights file's digest and the scales in effect."""

    weights_sha256: str
    scale: float  # the user's scale
    scaling: float  # alpha / rank * scale, what multiplies B A x
    merged: bool

    def to_dict(self) -> dict[str, Any]:
        return {"weights_sha256": self.weights_sha256, "scale": self.scale,
                "scaling": self.scaling, "merged": self.merged}


@dataclass(frozen=True)
class ClipParams:
    """The request that made a clip, plus what the pipeline derived or decided while running it."""

    request: GenerationRequest
    conditioning: Conditioning
    noise_drawn_on: str  # device type the initial noise came from ("cpu", "cuda")
    vae_tiled: bool  # the video was decoded in spatial tiles (asked for, or memory fallback)
    prompt_tokens: int  # the cleaned prompt's tokens, EOS included
    prompt_tokens_kept: int  # those the model read: fewer when the prompt was cut at 512
    attention_backend: str = "sdpa"  # the kernel that ran (MOVA_ATTENTION's choice, after fallback)
    lora: LoraUsed | None = None
    context_parallel: int = 1  # ranks the joint steps were split over
    model: str = ""  # the checkpoint's name (model_index.json `_model_name`, else its folder's)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-friendly record for lineage: the request's fields and the derived ones."""
        return {**self.request.to_dict(), "model": self.model,
                "conditioning": self.conditioning.value,
                "noise_drawn_on": self.noise_drawn_on, "vae_tiled": self.vae_tiled,
                "prompt_tokens": self.prompt_tokens,
                "prompt_tokens_kept": self.prompt_tokens_kept,
                "prompt_truncated": self.prompt_tokens_kept < self.prompt_tokens,
                "attention_backend": self.attention_backend,
                "context_parallel": self.context_parallel,
                "lora": self.lora.to_dict() if self.lora is not None else None}


@dataclass(frozen=True)
class Clip:
    """Video (uint8 T x H x W x 3) and audio (float32 channels x samples) with their rates."""

    video: np.ndarray
    audio: np.ndarray
    fps: float
    sample_rate: int
    params: ClipParams

    def __post_init__(self) -> None:
        if self.video.dtype != np.uint8 or self.video.ndim != 4 or self.video.shape[-1] != 3:
            raise ValueError(f"video must be uint8 (T, H, W, 3); got {self.video.dtype} "
                             f"{self.video.shape}")
        if self.audio.dtype != np.float32 or self.audio.ndim != 2:
            raise ValueError(f"audio must be float32 (channels, samples); got {self.audio.dtype} "
                             f"{self.audio.shape}")

    @property
    def duration_s(self) -> float:
        return self.video.shape[0] / self.fps
