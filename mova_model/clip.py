"""The result of one generation: frames, soundtrack and the exact settings that made them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GenerationParams:
    """Every setting that determines a clip; with the same checkpoint it reproduces the clip."""

    prompt: str
    negative_prompt: str
    height: int
    width: int
    num_frames: int
    video_fps: float
    num_inference_steps: int
    cfg_scale: float
    bridge_scale: float
    guidance_mode: str
    seed: int
    mode: str
    conditioning: str  # "first_frame" (TI2VA), "text_only" (T2VA) or "locked_video" (audio-only)
    batched_cfg: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Clip:
    """Video (uint8 T x H x W x 3) and audio (float32 channels x samples) with their rates."""

    video: np.ndarray
    audio: np.ndarray
    fps: float
    sample_rate: int
    params: GenerationParams

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
