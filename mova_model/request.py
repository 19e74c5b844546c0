"""The one render request: every setting of a generation, validated once when it is built.

Standard library only (plus the package's own error classes), so the planning layer can build and
check requests without importing torch: a bad size fails where the plan is made, not on a GPU
worker. `MovaPipeline.generate` takes the request as is.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

from mova_model.checks import check_range
from mova_model.errors import InvalidRequest

VAE_TEMPORAL_STRIDE = 4
SIZE_MULTIPLE = 16  # VAE stride 8 x video patch 2
MAX_SEED = 2**63
# Upper bounds, generously above the release's use (720p preset: 720x1280 or 1280x720, 193
# frames at 24 fps, 50 steps), so a typo is refused before anything is allocated instead of
# asking for terabytes (16000x16000x401 frames) or running for years (10**10 steps).
MAX_SIDE = 2048
MAX_FRAMES = 4 * 120 + 1  # 20 s at 24 fps, 2.5x the release's 193
MAX_STEPS = 1000  # the training grid has 1000 points
# Frame rates of real video. Below 1 fps the soundtrack grows without bound; far above, it
# shrinks below one audio latent frame (48000 * frames / fps < 1 sample crashes the DAC).
MIN_FPS, MAX_FPS = 1.0, 120.0

# The release inference script's default negative prompt (spec §5; §13.2).
RELEASE_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
    "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指"
)


class GuidanceMode(StrEnum):
    """reference: V₋ + s(V₊ − V₋) with the bridge on (the release); dual: the paper's Dual CFG."""

    REFERENCE = "reference"
    DUAL = "dual"


class RenderMode(StrEnum):
    """joint: picture and sound; audio_only: a new soundtrack for a given (locked) picture."""

    JOINT = "joint"
    AUDIO_ONLY = "audio_only"


class Compat(StrEnum):
    """reference: reproduce the release's numbers (spec §13.2); fast: batch guidance passes and
    use the fused attention kernel in the text encoder (different rounding, same model)."""

    REFERENCE = "reference"
    FAST = "fast"


class NoiseDevice(StrEnum):
    """render: draw the initial noise on the render device, as the release does (CPU and CUDA
    noise differ for one seed); cpu: always on the CPU, so a seed gives the same clip anywhere."""

    RENDER = "render"
    CPU = "cpu"


def validate_video_size(height: int, width: int, num_frames: int) -> None:
    """Raise InvalidRequest (one line) unless the size is renderable (spec §6.3)."""
    if height <= 0 or width <= 0 or num_frames <= 0:
        raise InvalidRequest(f"height={height}, width={width}, num_frames={num_frames} must all "
                             "be positive")
    if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        m = SIZE_MULTIPLE
        raise InvalidRequest(f"height={height} and width={width} must be multiples of {m} "
                             f"(e.g. {height // m * m or m}x{width // m * m or m})")
    check_range("height", height, SIZE_MULTIPLE, MAX_SIDE, InvalidRequest)
    check_range("width", width, SIZE_MULTIPLE, MAX_SIDE, InvalidRequest)
    check_range("num_frames", num_frames, 1, MAX_FRAMES, InvalidRequest)
    if num_frames % VAE_TEMPORAL_STRIDE != 1:
        nearest = num_frames - (num_frames - 1) % VAE_TEMPORAL_STRIDE
        raise InvalidRequest(f"num_frames={num_frames} must be 4k+1 (e.g. {max(nearest, 1)}, "
                             f"{nearest + VAE_TEMPORAL_STRIDE}, 193)")


_KIND_NAMES: dict[Any, str] = {numbers.Integral: "int", numbers.Real: "int or float"}


def _check_type(name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    # bool is an int in Python; a flag passed as a size (or the reverse) is a caller's bug.
    if isinstance(value, bool) and kind is not bool:
        raise InvalidRequest(f"{name}={value!r} must be a number, not a bool")
    if not isinstance(value, kind):
        names = _KIND_NAMES.get(kind) or (kind.__name__ if isinstance(kind, type)
                                          else " or ".join(k.__name__ for k in kind))
        raise InvalidRequest(f"{name}={value!r} must be {names}, not {type(value).__name__}")


@dataclass(frozen=True)
class GenerationRequest:
    """Every setting that, with the checkpoint and the input image or video, determines a clip.

    Defaults are the release script's (50 steps, CFG 5, seed 42, its negative prompt, 193
    frames at 24 fps) in the release-matching mode, at 352x640, the 360p checkpoint's size (the
    script's own default, 720x1280, is the 720p checkpoint's).
    """

    prompt: str
    negative_prompt: str = RELEASE_NEGATIVE_PROMPT
    height: int = 352
    width: int = 640
    num_frames: int = 193
    video_fps: float = 24.0
    num_inference_steps: int = 50
    cfg_scale: float = 5.0
    bridge_scale: float = 1.0
    guidance_mode: GuidanceMode = GuidanceMode.REFERENCE
    seed: int = 42
    mode: RenderMode = RenderMode.JOINT
    compat: Compat = Compat.REFERENCE
    noise_device: NoiseDevice = NoiseDevice.RENDER
    # True: decode in spatial tiles. False: never tile by choice; the pipeline still falls back
    # to tiles when the whole decode runs out of device memory, and records that it did.
    vae_tiling: bool = False
    # The audio tower's guidance scale, where it differs from the video's (None: cfg_scale for
    # both, as the release). Spec §7.5 lets dual guidance set its scales per modality; the
    # demo model counts syllables right far more often with its sound guided less than its
    # picture (bench/README.md). Left out of the request's dict when None, so a render's key
    # stays what it was before the field existed.
    audio_cfg_scale: float | None = None

    def __post_init__(self) -> None:
        _check_type("prompt", self.prompt, str)
        if not self.prompt.strip():
            raise InvalidRequest("prompt is empty; describe the scene (and its speech) in words")
        _check_type("negative_prompt", self.negative_prompt, str)
        # numpy scalars (a size read from an array, a config loaded with numpy) are numbers
        # too: stored as Python's own, so the request's dict and JSON stay plain (Python's
        # own ints and floats are kept as given: the render key hashes them).
        for name in ("height", "width", "num_frames", "num_inference_steps", "seed"):
            _check_type(name, getattr(self, name), numbers.Integral)
            if type(getattr(self, name)) is not int:
                object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("video_fps", "cfg_scale", "bridge_scale"):
            self._store_real(name)
            if not math.isfinite(getattr(self, name)):
                raise InvalidRequest(f"{name}={getattr(self, name)} must be finite")
        if self.audio_cfg_scale is not None:
            self._store_real("audio_cfg_scale")
            if not (math.isfinite(self.audio_cfg_scale) and self.audio_cfg_scale > 0):
                raise InvalidRequest(f"audio_cfg_scale={self.audio_cfg_scale} must be a finite "
                                     "number > 0 (or left out: cfg_scale guides both towers)")
        _check_type("vae_tiling", self.vae_tiling, bool)
        validate_video_size(self.height, self.width, self.num_frames)
        check_range("video_fps", self.video_fps, MIN_FPS, MAX_FPS, InvalidRequest)
        check_range("num_inference_steps", self.num_inference_steps, 1, MAX_STEPS, InvalidRequest)
        if self.cfg_scale <= 0 or self.bridge_scale < 0:
            raise InvalidRequest(f"cfg_scale={self.cfg_scale} must be > 0 and bridge_scale="
                                 f"{self.bridge_scale} >= 0")
        if not 0 <= self.seed < MAX_SEED:
            raise InvalidRequest(f"seed={self.seed} must be in [0, 2**63)")
        # Enum fields accept their string values (requests arrive as JSON); stored as the enum.
        for name, enum in (("guidance_mode", GuidanceMode), ("mode", RenderMode),
                           ("compat", Compat), ("noise_device", NoiseDevice)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                raise InvalidRequest(f"{name}={value!r}; expected "
                                     f"{' or '.join(m.value for m in enum)}") from None
        if self.guidance_mode is GuidanceMode.REFERENCE and self.bridge_scale != 1.0:
            # Reference guidance runs the release's bridge at full strength in both passes;
            # the scale would be silently ignored there.
            raise InvalidRequest(f"bridge_scale={self.bridge_scale} weighs the bridge in "
                                 "guidance_mode='dual' only; 'reference' guidance runs the "
                                 "bridge at 1 as the release does")

    def _store_real(self, name: str) -> None:
        """Refuse a field that is no real number; store a numpy one as Python's float."""
        _check_type(name, getattr(self, name), numbers.Real)
        if type(getattr(self, name)) not in (int, float):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def batched_guidance(self) -> bool:
        """Guidance passes in one batched call (fast) or one after the other (the release)."""
        return self.compat is Compat.FAST

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: enums as their string values."""
        return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in asdict(self).items()
                if not (k == "audio_cfg_scale" and v is None)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationRequest:
        """Build from `to_dict()` output (or JSON); unknown keys are an error, not ignored."""
        if not isinstance(data, Mapping):
            raise InvalidRequest(f"a generation request must be a mapping, not "
                                 f"{type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest(f"unknown request field(s): {', '.join(unknown)}")
        if "prompt" not in data:
            raise InvalidRequest("a generation request needs a prompt")
        return cls(**dict(data))
