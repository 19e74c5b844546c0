"""Typed configuration for every MOVA component, with named presets.

Each component config reads and writes the fields of the official `config.json` in its subfolder
(field names verbatim, including the upstream spelling `seperated_timestep`). Presets:

- `tiny`: a few million parameters, one denoising step well under a second on 2 CPU cores.
- `mova-360p`, `mova-720p`: the released sizes (identical architectures; they differ in the
  default resolution only).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, NamedTuple, TypeVar

from mova_model.checks import check_range
from mova_model.errors import ConfigError
from mova_model.lengths import AUDIO_HOP, AUDIO_SAMPLE_RATE

C = TypeVar("C", bound="ComponentConfig")

INTERACTION_STRATEGIES = ("shallow_focus", "distributed", "progressive", "custom", "full")


def _plain(value: Any) -> Any:
    """JSON-friendly value: tuples become lists, recursively."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _frozen(value: Any) -> Any:
    """Hashable value: lists become tuples, recursively (frozen dataclasses stay hashable)."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


class Range(NamedTuple):
    """Allowed values of a numeric field (each element of a tuple field)."""

    low: float
    high: float = math.inf
    low_open: bool = False


POSITIVE = Range(1)  # sizes, counts, strides: 0 divides by zero or builds empty layers
POSITIVE_REAL = Range(0.0, low_open=True)

# Annotation (as written in the dataclasses) -> accepted Python types. JSON has one number
# type: an int is a valid float, a float is not a valid int (96.0 would reach torch as a size).
_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
}


def _type_error(name: str, value: Any, annotation: str) -> str | None:
    """Why `value` does not fit `annotation`, or None. Floats must also be finite; unknown
    annotations (nested configs) are not checked here."""
    if annotation.endswith(" | None"):
        return None if value is None else _type_error(name, value, annotation[:-len(" | None")])
    if annotation.startswith("tuple[") and annotation.endswith(", ...]"):
        if not isinstance(value, tuple):
            return f"{name}={value!r} must be a list of {annotation[6:-6]}"
        errors = (_type_error(f"{name}[{i}]", v, annotation[6:-6]) for i, v in enumerate(value))
        return next((e for e in errors if e), None)
    kinds = _SCALAR_TYPES.get(annotation)
    if kinds is None:
        return None
    # bool is an int in Python: `true` for a size (or 1 for a flag) is a broken config.
    if not isinstance(value, kinds) or (isinstance(value, bool) and annotation != "bool"):
        return f"{name}={value!r} must be {annotation}, not {type(value).__name__}"
    if annotation == "float" and not math.isfinite(value):  # type: ignore[arg-type]  # int|float
        return f"{name}={value!r} must be finite"
    return None


def check_fields(config: Any, ranges: Mapping[str, Range]) -> None:
    """The one type and range check of every config dataclass, run when it is built, so a
    config.json with a string, a null, a zero or a NaN in the wrong place fails at load with
    the field's name instead of deep inside a layer."""
    for f in fields(config):
        value = getattr(config, f.name)
        problem = _type_error(f.name, value, str(f.type))
        if problem:
            raise ConfigError(problem)
        bound = ranges.get(f.name)
        if bound is None or value is None:
            continue
        named = [(f"{f.name}[{i}]", v) for i, v in enumerate(value)] \
            if isinstance(value, tuple) else [(f.name, value)]
        for name, item in named:
            check_range(name, item, bound.low, bound.high, ConfigError, low_open=bound.low_open)


@dataclass(frozen=True)
class ComponentConfig:
    """Base: conversion to and from the official `config.json` dictionaries."""

    # `_class_name` written to config.json; subclasses override.
    CLASS_NAME = ""
    # Numeric fields' allowed values, checked with every field's type by __post_init__.
    RANGES: ClassVar[Mapping[str, Range]] = {}

    def __post_init__(self) -> None:
        check_fields(self, self.RANGES)

    @classmethod
    def from_config_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Build from a parsed config.json. Keys starting with `_` (diffusers metadata) and
        fields this implementation does not know are ignored; the reference constructors accept
        and drop extra keys too, and a real release may carry bookkeeping fields."""
        known = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls)
                    if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            # The upstream constructor has no default for these either.
            raise ConfigError(f"{cls.CLASS_NAME or cls.__name__}: required field(s) absent: "
                              f"{', '.join(missing)}")
        # Absent optional fields take the upstream constructor's default (the dataclass default).
        return cls(**{k: _frozen(v) for k, v in data.items() if k in known})

    @classmethod
    def unknown_fields(cls, data: Mapping[str, Any]) -> list[str]:
        """Keys of a config.json that this class ignores (metadata keys excluded)."""
        known = {f.name for f in fields(cls)}
        return sorted(k for k in data if k not in known and not k.startswith("_"))

    def to_config_dict(self) -> dict[str, Any]:
        """The config.json content, with `_class_name` first."""
        out: dict[str, Any] = {"_class_name": self.CLASS_NAME} if self.CLASS_NAME else {}
        for f in fields(self):
            out[f.name] = _plain(getattr(self, f.name))
        return out

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------
# Diffusion towers
# ---------------------------------------------------------------------------------------------

# Flags of the upstream WanModel that build layers MOVA does not have (the CLIP image-embedding
# MLP, the reference conv); a folder that sets one cannot be loaded faithfully: an error.
STRUCTURAL_DIT_FLAGS = ("has_image_input", "has_ref_conv")
# Flags the upstream WanModel / WanAudioModel only store: no tensor, and the inference pipeline
# never reads them. They are accepted whatever their value (a folder saved by the original says
# `"require_clip_embedding": true`, its constructor default). Read off the original's
# constructors, against spec §13.1 which lists the last two as adding tensors: the camera
# adapter is always None (`self.control_adapter = None`), and the image position embedding
# lives inside the image MLP, built only with has_image_input.
INERT_DIT_FLAGS = ("seperated_timestep", "require_vae_embedding", "require_clip_embedding",
                   "fuse_vae_embedding_in_latents", "add_control_adapter", "has_image_pos_emb")


@dataclass(frozen=True)
class DiTConfig(ComponentConfig):
    """Fields shared by the video and audio DiT (`WanModel` / `WanAudioModel` config.json).

    Fields without a default are required by the upstream constructor too; the others default to
    the upstream constructor's value (diffusers fills an absent field from the signature), which
    is not always the release value (spec §13.1)."""

    dim: int
    in_dim: int
    ffn_dim: int
    out_dim: int
    text_dim: int
    freq_dim: int
    eps: float
    patch_size: tuple[int, ...]
    num_heads: int
    num_layers: int
    has_image_input: bool
    has_image_pos_emb: bool = False
    has_ref_conv: bool = False
    add_control_adapter: bool = False
    in_dim_control_adapter: int = 24
    seperated_timestep: bool = False  # upstream spelling
    require_vae_embedding: bool = True
    require_clip_embedding: bool = True
    fuse_vae_embedding_in_latents: bool = False

    RANGES: ClassVar[Mapping[str, Range]] = {
        **{name: POSITIVE for name in ("dim", "in_dim", "ffn_dim", "out_dim", "text_dim",
                                       "freq_dim", "num_heads", "num_layers", "patch_size")},
        "eps": Range(0.0, 1.0, low_open=True),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dim % self.num_heads:
            raise ConfigError(f"dim={self.dim} must be divisible by num_heads={self.num_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if self.freq_dim % 2:
            raise ConfigError(f"freq_dim={self.freq_dim} must be even")
        for flag in STRUCTURAL_DIT_FLAGS:
            if getattr(self, flag):
                raise ConfigError(f"{flag}=true adds layers MOVA does not use; it is not supported")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


@dataclass(frozen=True)
class VideoDiTConfig(DiTConfig):
    """`video_dit` / `video_dit_2`: Wan 2.2 I2V style DiT over 3-D latent patches."""

    CLASS_NAME = "WanModel"

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.patch_size) != 3:
            raise ConfigError(f"video patch_size={self.patch_size} must have 3 entries (t, h, w)")
        # 3-D RoPE splits the head dim into (d - 2*(d//3), d//3, d//3); each block must be even.
        axis = self.head_dim // 3
        if axis % 2 or (self.head_dim - 2 * axis) % 2:
            raise ConfigError(
                f"head_dim={self.head_dim} splits into uneven RoPE axis blocks "
                f"({self.head_dim - 2 * axis}, {axis}, {axis}); use e.g. 24, 48 or 128"
            )


@dataclass(frozen=True)
class AudioDiTConfig(DiTConfig):
    """`audio_dit`: Wan 2.1-1.3B shaped DiT over 1-D DAC latents."""

    CLASS_NAME = "WanAudioModel"
    # Upstream default "oobleck" (a 44.1 kHz audio RoPE); only the release's "dac" is implemented.
    vae_type: str = "oobleck"

    def __post_init__(self) -> None:
        super().__post_init__()
        if tuple(self.patch_size) != (1,):
            raise ConfigError(f"audio patch_size={self.patch_size} must be [1]")
        if self.vae_type != "dac":
            raise ConfigError(f"vae_type={self.vae_type!r} is not supported: only 'dac' (the "
                              "release's audio RoPE) is implemented; 'oobleck' is the upstream "
                              "default when the field is absent")


@dataclass(frozen=True)
class BridgeConfig(ComponentConfig):
    """`dual_tower_bridge`: bidirectional cross-attention between the towers.

    Defaults are the upstream constructor's (used when config.json lacks a field), not the
    release's: the release presets write every field explicitly."""

    CLASS_NAME = "DualTowerConditionalBridge"
    visual_layers: int = 30
    audio_layers: int = 30
    visual_hidden_dim: int = 3072
    audio_hidden_dim: int = 1536
    audio_fps: float = 44100.0 / 2048.0
    head_dim: int = 128
    interaction_strategy: str = "shallow_focus"
    apply_cross_rope: bool = False
    apply_first_frame_bias_in_rope: bool = False
    # Adds one fp32 parameter `condition_scale` [1] (init 1.0); inference always passes an
    # explicit scale, which overrides it, as the original pipeline does.
    trainable_condition_scale: bool = False
    pooled_adaln: bool = False

    RANGES: ClassVar[Mapping[str, Range]] = {
        **{name: POSITIVE for name in ("visual_layers", "audio_layers", "visual_hidden_dim",
                                       "audio_hidden_dim", "head_dim")},
        "audio_fps": POSITIVE_REAL,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.interaction_strategy not in INTERACTION_STRATEGIES:
            raise ConfigError(
                f"interaction_strategy={self.interaction_strategy!r}; "
                f"expected one of {', '.join(INTERACTION_STRATEGIES)}"
            )
        for name in ("visual_hidden_dim", "audio_hidden_dim"):
            if getattr(self, name) % self.head_dim:
                raise ConfigError(
                    f"{name}={getattr(self, name)} must be divisible by head_dim={self.head_dim}"
                )
        if self.head_dim % 2:
            raise ConfigError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if self.pooled_adaln:
            raise ConfigError("pooled_adaln=true adds per-frame pooling and AdaLN layers the "
                              "release does not have; it is not supported")


# ---------------------------------------------------------------------------------------------
# Codecs, text encoder, scheduler
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioVAEConfig(ComponentConfig):
    """`audio_vae`: continuous DAC-style autoencoder (48 kHz, hop 960, 128-d latents)."""

    CLASS_NAME = "DAC"
    # Defaults: the upstream DAC constructor's (44.1 kHz, quantised), used for absent fields.
    encoder_dim: int = 64
    encoder_rates: tuple[int, ...] = (2, 4, 8, 8)
    latent_dim: int | None = None  # upstream: encoder_dim * 2**len(encoder_rates) when absent
    decoder_dim: int = 1536
    decoder_rates: tuple[int, ...] = (8, 8, 4, 2)
    n_codebooks: int = 9
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: bool = False
    sample_rate: int = 44100
    continuous: bool = False
    use_weight_norm: bool = True

    RANGES: ClassVar[Mapping[str, Range]] = {
        name: POSITIVE for name in ("encoder_dim", "encoder_rates", "latent_dim", "decoder_dim",
                                    "decoder_rates", "sample_rate")
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.latent_dim is None:
            object.__setattr__(self, "latent_dim",
                               self.encoder_dim * 2 ** len(self.encoder_rates))
        if not self.continuous:
            raise ConfigError("continuous=false (quantised DAC) is not used by MOVA")
        if sorted(self.encoder_rates) != sorted(self.decoder_rates):
            raise ConfigError(
                f"encoder_rates={self.encoder_rates} and decoder_rates={self.decoder_rates} "
                "must have the same product"
            )

    @property
    def hop_length(self) -> int:
        """Samples per latent frame: the product of the encoder strides (960 for the release)."""
        hop = 1
        for rate in self.encoder_rates:
            hop *= rate
        return hop


# Wan 2.1 VAE latent statistics (diffusers defaults; §2.2 of the spec).
WAN_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


@dataclass(frozen=True)
class VideoVAEConfig(ComponentConfig):
    """`video_vae`: diffusers `AutoencoderKLWan` (Wan 2.1 causal 3-D VAE)."""

    CLASS_NAME = "AutoencoderKLWan"
    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temperal_downsample: tuple[bool, ...] = (False, True, True)  # diffusers spelling
    dropout: float = 0.0
    latents_mean: tuple[float, ...] = WAN_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN_LATENTS_STD

    RANGES: ClassVar[Mapping[str, Range]] = {
        "base_dim": POSITIVE, "z_dim": POSITIVE, "dim_mult": POSITIVE,
        "num_res_blocks": Range(0), "dropout": Range(0.0, 1.0),
        # latents are multiplied by std when decoding: 0 decodes every latent to the mean.
        "latents_std": POSITIVE_REAL,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.latents_mean) != self.z_dim or len(self.latents_std) != self.z_dim:
            raise ConfigError(f"latents_mean/std need {self.z_dim} values each")

    @property
    def scale_factor_temporal(self) -> int:
        return 2 ** sum(self.temperal_downsample)

    @property
    def scale_factor_spatial(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)


@dataclass(frozen=True)
class TextEncoderConfig(ComponentConfig):
    """`text_encoder`: transformers `UMT5EncoderModel` sizes, plus the prompt length."""

    CLASS_NAME = "UMT5EncoderModel"
    vocab_size: int = 256384
    d_model: int = 4096
    d_kv: int = 64
    d_ff: int = 10240
    num_layers: int = 24
    num_heads: int = 64
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    feed_forward_proj: str = "gated-gelu"
    text_len: int = 512

    RANGES: ClassVar[Mapping[str, Range]] = {
        name: POSITIVE for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers",
                                    "num_heads", "relative_attention_num_buckets",
                                    "relative_attention_max_distance", "text_len")
    }


@dataclass(frozen=True)
class SchedulerConfig(ComponentConfig):
    """`scheduler/scheduler_config.json`: flow matching with shift, (video, audio) pairs."""

    CLASS_NAME = "FlowMatchPairScheduler"
    # Defaults: the upstream constructor's (shift 3, no extra step); the release writes 5 / true.
    num_train_timesteps: int = 1000
    shift: float = 3.0
    sigma_max: float = 1.0
    sigma_min: float = 0.003 / 1.002
    extra_one_step: bool = False
    inverse_timesteps: bool = False
    reverse_sigmas: bool = False
    exponential_shift: bool = False
    exponential_shift_mu: float | None = None
    shift_terminal: float | None = None

    RANGES: ClassVar[Mapping[str, Range]] = {
        # The training grid is built in memory (4 bytes a point, twice): 3e9 asked for 24 GB.
        # 100000 is 100x the release's 1000.
        "num_train_timesteps": Range(1, 100_000),
        "shift": POSITIVE_REAL,
        "sigma_max": Range(0.0, 1.0), "sigma_min": Range(0.0, 1.0),
    }

    @classmethod
    def from_config_dict(cls, data: Mapping[str, Any]) -> SchedulerConfig:
        """As the base, but another scheduler class is refused: its fields (a diffusers
        FlowMatchEulerDiscreteScheduler also has `shift`) would be read as this one's and give
        other sigmas than the original, which builds the class the folder names."""
        named = data.get("_class_name", cls.CLASS_NAME)
        if named != cls.CLASS_NAME:
            raise ConfigError(f"_class_name={named!r}: MOVA samples with {cls.CLASS_NAME} "
                              "only (its pair schedule); this folder's scheduler is another")
        return super().from_config_dict(data)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sigma_min >= self.sigma_max:
            raise ConfigError(f"sigma_min={self.sigma_min} must be below "
                              f"sigma_max={self.sigma_max}")
        if self.inverse_timesteps or self.reverse_sigmas or self.exponential_shift:
            raise ConfigError(
                "inverse_timesteps / reverse_sigmas / exponential_shift are not used by MOVA"
            )
        if self.shift_terminal is not None:
            raise ConfigError("shift_terminal is not used by MOVA")


# ---------------------------------------------------------------------------------------------
# The whole model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MovaConfig:
    """Every component plus the pipeline fields of `model_index.json`."""

    video_dit: VideoDiTConfig
    audio_dit: AudioDiTConfig
    bridge: BridgeConfig
    audio_vae: AudioVAEConfig
    video_vae: VideoVAEConfig
    text_encoder: TextEncoderConfig
    scheduler: SchedulerConfig
    boundary_ratio: float = 0.9
    audio_vae_type: str = "dac"
    # Default render settings of the preset (pixels); 360 is not divisible by 16, hence 352.
    height: int = 352
    width: int = 640
    num_frames: int = 193
    video_fps: float = 24.0
    num_inference_steps: int = 50

    def __post_init__(self) -> None:
        self.check_index_fields(self.model_index_fields())
        v, a, b, dac = self.video_dit, self.audio_dit, self.bridge, self.audio_vae
        te, vae = self.text_encoder, self.video_vae
        # (found, its component.field, expected, the component.field it must fit); names are
        # the checkpoint's folder names, so a load error points at both files. The bridge's
        # layer counts need not equal the towers': as in the original, they only choose which
        # conditioners exist, and those within the towers' shared depth run (spec §4.3-4.4).
        checks = [
            (b.visual_hidden_dim, "dual_tower_bridge.visual_hidden_dim", v.dim, "video_dit.dim"),
            (b.audio_hidden_dim, "dual_tower_bridge.audio_hidden_dim", a.dim, "audio_dit.dim"),
            (a.in_dim, "audio_dit.in_dim", dac.latent_dim, "audio_vae.latent_dim"),
            (v.out_dim, "video_dit.out_dim", vae.z_dim, "video_vae.z_dim"),
            # TI2VA input: noisy latent + 4-channel mask + first-frame latent.
            (v.in_dim, "video_dit.in_dim", 2 * vae.z_dim + 4, "2 * video_vae.z_dim + 4"),
            (v.text_dim, "video_dit.text_dim", te.d_model, "text_encoder.d_model"),
            (a.text_dim, "audio_dit.text_dim", te.d_model, "text_encoder.d_model"),
            # The clip lengths (lengths.py) and the bridge's audio RoPE assume the release's DAC.
            (dac.sample_rate, "audio_vae.sample_rate", AUDIO_SAMPLE_RATE, "the implemented rate"),
            (dac.hop_length, "audio_vae hop (product of encoder_rates)", AUDIO_HOP,
             "the implemented hop"),
        ]  # fmt: skip
        for found, name, expected, other in checks:
            if found != expected:
                raise ConfigError(f"{name}={found} does not fit {other}={expected}")

    @staticmethod
    def check_index_fields(data: Mapping[str, Any]) -> None:
        """The pipeline fields of a model_index.json (absent ones take the defaults)."""
        for name, annotation in (("boundary_ratio", "float"), ("audio_vae_type", "str")):
            problem = _type_error(name, data.get(name), annotation) if name in data else None
            if problem:
                raise ConfigError(problem)
        if "boundary_ratio" in data:
            check_range("boundary_ratio", data["boundary_ratio"], 0.0, 1.0, ConfigError,
                        low_open=True)
        if data.get("audio_vae_type", "dac") != "dac":
            raise ConfigError(f"audio_vae_type={data['audio_vae_type']!r}: only 'dac' is "
                              "supported")

    def model_index_fields(self) -> dict[str, Any]:
        """The pipeline fields of `model_index.json`."""
        return {"audio_vae_type": self.audio_vae_type, "boundary_ratio": self.boundary_ratio}


# Release values of the components whose upstream constructor defaults differ (spec §2.2).
RELEASE_AUDIO_VAE = AudioVAEConfig(
    encoder_dim=128, encoder_rates=(2, 3, 4, 5, 8), latent_dim=128, decoder_dim=2048,
    decoder_rates=(8, 5, 4, 3, 2), sample_rate=48000, continuous=True,
)
RELEASE_SCHEDULER = SchedulerConfig(shift=5.0, extra_one_step=True)
# The DiT fields every release tower writes (besides its sizes).
_RELEASE_DIT_FLAGS: dict[str, Any] = dict(
    text_dim=4096, freq_dim=256, eps=1e-6, has_image_input=False, require_vae_embedding=True,
    require_clip_embedding=False,
)


def _release_config(height: int, width: int) -> MovaConfig:
    return MovaConfig(
        video_dit=VideoDiTConfig(
            dim=5120, in_dim=36, ffn_dim=13824, out_dim=16, num_heads=40, num_layers=40,
            patch_size=(1, 2, 2), **_RELEASE_DIT_FLAGS,
        ),
        audio_dit=AudioDiTConfig(
            dim=1536, in_dim=128, ffn_dim=8960, out_dim=128, num_heads=12, num_layers=30,
            patch_size=(1,), vae_type="dac", **_RELEASE_DIT_FLAGS,
        ),
        bridge=BridgeConfig(
            visual_layers=40, audio_layers=30, visual_hidden_dim=5120, audio_hidden_dim=1536,
            audio_fps=50.0, head_dim=128, interaction_strategy="full", apply_cross_rope=True,
        ),
        audio_vae=RELEASE_AUDIO_VAE,
        video_vae=VideoVAEConfig(),
        text_encoder=TextEncoderConfig(),
        scheduler=RELEASE_SCHEDULER,
        height=height,
        width=width,
    )  # fmt: skip


def _tiny_config() -> MovaConfig:
    text_dim = 32
    return MovaConfig(
        # head dim 24: RoPE axis blocks 8/8/8 (video) and 12 pairs (audio), as in spec §12.6.
        video_dit=VideoDiTConfig(
            dim=96, in_dim=36, ffn_dim=192, out_dim=16, num_heads=4, num_layers=3,
            patch_size=(1, 2, 2), **{**_RELEASE_DIT_FLAGS, "text_dim": text_dim, "freq_dim": 64},
        ),
        audio_dit=AudioDiTConfig(
            dim=48, in_dim=128, ffn_dim=96, out_dim=128, num_heads=2, num_layers=2,
            patch_size=(1,), vae_type="dac",
            **{**_RELEASE_DIT_FLAGS, "text_dim": text_dim, "freq_dim": 64},
        ),
        bridge=BridgeConfig(
            visual_layers=3, audio_layers=2, visual_hidden_dim=96, audio_hidden_dim=48,
            audio_fps=50.0, head_dim=24, interaction_strategy="full", apply_cross_rope=True,
        ),
        audio_vae=RELEASE_AUDIO_VAE.replace(encoder_dim=8, decoder_dim=64),
        scheduler=RELEASE_SCHEDULER,
        video_vae=VideoVAEConfig(base_dim=8, num_res_blocks=1),
        text_encoder=TextEncoderConfig(
            vocab_size=4000, d_model=text_dim, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
        ),
        height=64,
        width=112,
        num_frames=25,
        num_inference_steps=8,
    )  # fmt: skip


PRESETS: dict[str, MovaConfig] = {
    "tiny": _tiny_config(),
    "mova-360p": _release_config(height=352, width=640),
    "mova-720p": _release_config(height=720, width=1280),
}


def get_preset(name: str) -> MovaConfig:
    """The named preset, or a ConfigError listing the available names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}") from None
