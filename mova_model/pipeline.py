"""MovaPipeline: load a checkpoint folder in the official layout and turn a prompt into a Clip.

Steps of `generate()` (spec §7.3):
1. validate every input before any heavy work;
2. encode the prompt and the negative prompt (UMT5, zero-padded to 512 rows; a longer
   prompt is cut at 512 tokens, as the release does, and the clip's params say so);
3. build the video condition: first-frame mask + latent (TI2VA), or the text-only condition (T2VA);
4. draw the noise from the seed exactly as the reference does (video first, then audio);
5. sample: flow matching with CFG, the expert switch at `boundary_ratio`;
6. decode the video latents (Wan VAE) and the audio latents (DAC), trim the audio to the clip.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributed import ProcessGroup

from mova_model import lengths
from mova_model.attention import SDPA, AttentionBackend, sdpa_kernel, select_attention_backend
from mova_model.audio_dit import AudioDiT
from mova_model.audio_vae import AudioVAE
from mova_model.bridge import DualTowerBridge
from mova_model.checkpoint import (
    COMPONENT_CLASSES,
    CONFIG_NAME,
    MODEL_INDEX,
    SCHEDULER_CONFIG,
    checkpoint_folder,
    fingerprint_folder,
    load_component,
    read_config,
    read_json_object,
)
from mova_model.clip import Clip, ClipParams, Conditioning, LoraUsed
from mova_model.config import (
    AudioDiTConfig,
    AudioVAEConfig,
    BridgeConfig,
    MovaConfig,
    SchedulerConfig,
    TextEncoderConfig,
    VideoDiTConfig,
    VideoVAEConfig,
)
from mova_model.context_parallel import ContextParallel
from mova_model.errors import CheckpointError, ConfigError, InvalidRequest
from mova_model.joint import joint_forward
from mova_model.layers import set_attention_kernel
from mova_model.lora import AttachedLora, LoraError, check_lora, read_lora
from mova_model.offload import OffloadMode, enable_block_streaming, on_device
from mova_model.request import Compat, GenerationRequest, NoiseDevice, RenderMode
from mova_model.sampler import Guidance, draw_noise, sample
from mova_model.schedule import FlowMatchPairScheduler
from mova_model.text_encoder import (
    FAST_ATTENTION,
    REFERENCE_ATTENTION,
    PromptTokens,
    TextEncoder,
    clean_prompt,
)
from mova_model.video_dit import VideoDiT
from mova_model.video_vae import (
    build_video_vae,
    check_finite,
    decode_latents,
    encode_first_frame,
    encode_video,
    first_frame_mask,
    prepare_first_frame,
    text_only_condition,
)

TEXT_LEN = 512
HIGH_NOISE, LOW_NOISE = 0, 1
# component folder -> (its config class, the module built from that config)
BUILDERS: dict[str, tuple[Any, Callable[[Any], nn.Module]]] = {
    "video_dit": (VideoDiTConfig, VideoDiT),
    "video_dit_2": (VideoDiTConfig, VideoDiT),
    "audio_dit": (AudioDiTConfig, AudioDiT),
    "dual_tower_bridge": (BridgeConfig, DualTowerBridge),
    "audio_vae": (AudioVAEConfig, AudioVAE),
    "video_vae": (VideoVAEConfig, build_video_vae),
}


def _dtype(value: str | torch.dtype) -> torch.dtype:
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if isinstance(value, torch.dtype) and value in table.values():
        return value
    if not isinstance(value, str) or value not in table:
        raise InvalidRequest(f"dtype {value!r}; expected one of {', '.join(table)}")
    return table[value]


def _device(value: str | torch.device) -> torch.device:
    """The render device, refused in one line when torch does not know it or cannot use it."""
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError) as err:
        raise InvalidRequest(f"device {value!r} is not a torch device ({err})") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise InvalidRequest(f"device {value!r}: this machine has {count} usable CUDA "
                                 "device(s); use --device cpu")
    return device


class MovaPipeline:
    """All MOVA components, resident or offloaded, and the one call that renders a clip."""

    def __init__(self, path: Path, *, dtype: torch.dtype, device: torch.device,
                 offload: OffloadMode, release_unused: bool) -> None:
        self.path = path
        self.dtype = dtype
        self.device = device
        self.offload = offload
        self.release_unused = release_unused
        index = self._read_model_index(path)
        self.config = self._fit_components(path, index)
        self.boundary_ratio = float(index.get("boundary_ratio", 0.9))
        # What a manifest calls the model: a name the folder gives itself (the demo model says
        # "demo model"), else the folder's own name ("MOVA-360p"). Not read by the release.
        self.model_name = str(index.get("_model_name") or path.resolve().name)
        self.scheduler = FlowMatchPairScheduler(
            read_config(path / "scheduler", SchedulerConfig, filename=SCHEDULER_CONFIG)
        )
        self.video_vae_config = read_config(path / "video_vae", VideoVAEConfig)
        self.audio_vae_config = read_config(path / "audio_vae", AudioVAEConfig)
        self._modules: dict[str, nn.Module] = {}
        self._text_encoder: TextEncoder | None = None
        self._lora: AttachedLora | None = None
        # Set by from_pretrained before any component is loaded (issue 11).
        self.attention = AttentionBackend(SDPA, sdpa_kernel)
        self.compile_blocks = False
        self.context_parallel: ContextParallel | None = None
        self.checkpoint_fingerprint = fingerprint_folder(path)

    # ---- loading -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: str | torch.dtype = "float32",
                        device: str | torch.device = "cpu", offload: str = "none",
                        release_unused: bool = False, attention: str | None = None,
                        compile_blocks: bool | None = None, context_parallel: int = 1,
                        process_group: ProcessGroup | None = None) -> MovaPipeline:
        """Load every component strictly from a MOVA checkpoint folder (official layout).

        attention: auto | sdpa | flash | sage, default $MOVA_ATTENTION or auto; compile_blocks:
        torch.compile each DiT block, default $MOVA_COMPILE == "1". These two environment reads
        are the only ones in the package. context_parallel=N splits each joint step over the N
        ranks of process_group (default: the initialised default group), spec §13.4.
        """
        if not isinstance(path, str | os.PathLike):
            raise InvalidRequest(f"checkpoint path must be a str or Path, not "
                                 f"{type(path).__name__}")
        folder = checkpoint_folder(path)
        try:
            mode = OffloadMode(offload)
        except ValueError:
            raise InvalidRequest(
                f"offload={offload!r}; expected one of {', '.join(m.value for m in OffloadMode)}"
            ) from None
        pipe = cls(folder, dtype=_dtype(dtype), device=_device(device), offload=mode,
                   release_unused=release_unused)
        requested = attention if attention is not None else os.environ.get("MOVA_ATTENTION", "auto")
        pipe.attention = select_attention_backend(requested, pipe.device, pipe.dtype)
        pipe.compile_blocks = (compile_blocks if compile_blocks is not None
                               else os.environ.get("MOVA_COMPILE", "0") == "1")
        if context_parallel < 1:
            raise InvalidRequest(f"context_parallel={context_parallel} must be at least 1")
        if context_parallel > 1 or process_group is not None:
            pipe.context_parallel = ContextParallel(process_group, expected_size=context_parallel)
            pipe.context_parallel.check_device(pipe.device)
        for name in ("video_dit", "video_dit_2", "audio_dit", "dual_tower_bridge", "audio_vae",
                     "video_vae"):
            pipe._load(name)
        pipe.text_encoder  # noqa: B018 - load eagerly so a broken folder fails here
        return pipe

    @property
    def attention_backend(self) -> str:
        """Name of the attention kernel in use (sdpa, flash_attn_3, flash_attn_2, sage)."""
        return self.attention.name

    @staticmethod
    def _read_model_index(path: Path) -> dict[str, Any]:
        index_file = path / MODEL_INDEX
        if not index_file.is_file():
            raise CheckpointError(f"{index_file}: missing; is {path} a MOVA checkpoint folder?")
        index = read_json_object(index_file)
        try:
            MovaConfig.check_index_fields(index)
        except ConfigError as err:
            raise CheckpointError(f"{index_file}: {err}") from err
        missing = [name for name in COMPONENT_CLASSES if not (path / name).is_dir()]
        if missing:
            raise CheckpointError(f"{path}: missing component folder(s): {', '.join(missing)}")
        return index

    @staticmethod
    def _fit_components(path: Path, index: dict[str, Any]) -> MovaConfig:
        """Every component's config, checked against the others (MovaConfig's checks) before
        any weight is read: a text encoder or VAE that does not fit the DiTs fails here, naming
        both, instead of with a shape error in the middle of a render."""
        def read(folder: str, config_cls: type[Any]) -> Any:
            return read_config(path / folder, config_cls)

        def fit(video_dit: VideoDiTConfig) -> MovaConfig:
            return MovaConfig(
                video_dit=video_dit, audio_dit=read("audio_dit", AudioDiTConfig),
                bridge=read("dual_tower_bridge", BridgeConfig),
                audio_vae=read("audio_vae", AudioVAEConfig),
                video_vae=read("video_vae", VideoVAEConfig),
                text_encoder=read("text_encoder", TextEncoderConfig),
                scheduler=read_config(path / "scheduler", SchedulerConfig,
                                      filename=SCHEDULER_CONFIG),
                # checked by _read_model_index; absent: the release's values
                boundary_ratio=float(index.get("boundary_ratio", 0.9)),
                audio_vae_type=str(index.get("audio_vae_type", "dac")))

        try:
            config = fit(read("video_dit", VideoDiTConfig))
            # the low-noise expert must fit the same bridge, VAEs and text encoder
            fit(read("video_dit_2", VideoDiTConfig))
        except ConfigError as err:
            raise CheckpointError(f"{path}: components do not fit each other: {err}") from err
        return config

    def _storage_device(self) -> torch.device:
        return torch.device("cpu") if self.offload is not OffloadMode.NONE else self.device

    def _load(self, name: str) -> nn.Module:
        config_cls, build = BUILDERS[name]
        module, _ = load_component(self.path / name, config_cls, build, dtype=self.dtype,
                                   device=self._storage_device())
        if name == "audio_vae" and self.device.type != "cuda":
            # Every component is loaded in the pipeline dtype, the DAC included (spec §13.2); on
            # CUDA it then runs under fp32 autocast. The CPU has no fp32 autocast: the rounded
            # weights are upcast once, the weight-norm kernels still formed in the loaded dtype.
            cast(AudioVAE, module).upcast_for_cpu()
        if self.offload is OffloadMode.BLOCK and hasattr(module, "blocks"):
            enable_block_streaming(module, self.device, storage_device="cpu")
        if name in ("video_dit", "video_dit_2", "audio_dit", "dual_tower_bridge"):
            set_attention_kernel(module, self.attention.kernel)
            if self.compile_blocks:
                for block in getattr(module, "blocks", []):
                    block.compile()  # in place: state-dict keys and hooks are unchanged
        if self._lora is not None and name in self._lora.weights.factors:
            self._lora.attach(name, module)  # a released component comes back with its LoRA
        self._modules[name] = module
        return module

    def component(self, name: str) -> nn.Module:
        """A loaded component; reloaded from the folder if it was released."""
        return self._modules.get(name) or self._load(name)

    def release(self, name: str) -> None:
        """Drop a component from memory (it is reloaded from disk when needed again)."""
        self._modules.pop(name, None)

    @property
    def text_encoder(self) -> TextEncoder:
        if self._text_encoder is None:
            self._text_encoder = TextEncoder.from_folders(
                self.path / "text_encoder", self.path / "tokenizer", dtype=self.dtype,
                device=self._storage_device(),
            )
        return self._text_encoder

    @contextmanager
    def _resident(self, *modules: nn.Module) -> Iterator[None]:
        """In component-offload mode, keep these modules on the device for the block's duration."""
        if self.offload is not OffloadMode.COMPONENT:
            yield
            return
        with ExitStack() as stack:
            for module in modules:
                stack.enter_context(on_device(module, self.device))
            yield

    # ---- generation ----------------------------------------------------------------------

    def generate(
        self,
        request: GenerationRequest,
        *,
        image: Any = None,
        video: np.ndarray | None = None,
        on_step: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Clip:
        """Render one clip. `request.mode == "audio_only"` keeps `video` (uint8 T x H x W x 3)
        and only generates a new soundtrack for it; `image` (PIL image or H x W x 3 array)
        conditions the first frame; without it the text-only condition is used (see video_vae)."""
        # 1. the request validated itself; check the inputs that travel beside it
        conditioning = self._check_inputs(request, image, video)
        guidance = Guidance.from_request(request)
        with torch.inference_mode():
            # 2. text
            context, negative_context, prompt_tokens = self._encode_text(request, guidance)
            # 3. video condition [1, 20, F_lat, h, w] (mask then first-frame latent) and,
            #    in audio-only mode, the clean video latents that stay fixed
            condition, fixed_video = self._condition(request, image, video)
            # 4. noise, exactly as the reference draws it
            _, f_lat, h, w = lengths.video_latent_shape(request.height, request.width,
                                                        request.num_frames)
            l_a = lengths.audio_latent_frames(request.num_frames, request.video_fps)
            # The release draws on its render device (CUDA noise differs from CPU noise for one
            # seed); noise_device="cpu" gives the same clip on any machine.
            noise_device = self.device if request.noise_device is NoiseDevice.RENDER \
                else torch.device("cpu")
            video_noise, audio_noise = draw_noise(request.seed, (1, 16, f_lat, h, w),
                                                  (1, self.audio_vae_config.latent_dim, l_a),
                                                  device=noise_device)
            # 5. sampling
            z_video, z_audio = self._sample(request, guidance, video_noise, audio_noise,
                                            condition, context, negative_context, fixed_video,
                                            on_step, should_cancel)
            # 6. decode
            tiled = False
            if video is not None:
                frames = video
            else:
                frames, tiled = self._decode_video(z_video, tile=request.vae_tiling)
            audio = self._decode_audio(
                z_audio, lengths.audio_samples(request.num_frames, request.video_fps))
            check_finite("audio", torch.from_numpy(audio))
        params = ClipParams(request=request, conditioning=conditioning,
                            noise_drawn_on=noise_device.type, vae_tiled=tiled,
                            prompt_tokens=prompt_tokens.count,
                            prompt_tokens_kept=prompt_tokens.kept,
                            attention_backend=self.attention_backend, lora=self._lora_used(),
                            context_parallel=(self.context_parallel.world_size
                                              if self.context_parallel else 1),
                            model=self.model_name)
        return Clip(video=frames, audio=audio, fps=request.video_fps,
                    sample_rate=self.audio_vae_config.sample_rate, params=params)

    def _check_inputs(self, request: GenerationRequest, image: Any, video: np.ndarray | None
                      ) -> Conditioning:
        """The image/video inputs against the request; returns the conditioning they imply."""
        if not isinstance(request, GenerationRequest):
            raise InvalidRequest(f"generate() takes a GenerationRequest, not "
                                 f"{type(request).__name__}")
        if not clean_prompt(request.prompt):
            raise InvalidRequest("prompt is empty after cleaning; describe the scene in words")
        if request.mode is RenderMode.AUDIO_ONLY:
            expected = (request.num_frames, request.height, request.width, 3)
            if not isinstance(video, np.ndarray) or video.dtype != np.uint8 \
                    or video.shape != expected:
                found = getattr(video, "shape", type(video).__name__)
                raise InvalidRequest(f"audio_only needs video as uint8 array {expected}; "
                                     f"got {found}")
            if image is not None:  # the locked video's own first frame conditions it
                raise InvalidRequest("audio_only takes no image: the locked video's first frame "
                                     "is the first frame")
            conditioning = Conditioning.LOCKED_VIDEO
        elif video is not None:
            raise InvalidRequest("video is only used with mode='audio_only'")
        else:
            conditioning = Conditioning.FIRST_FRAME if image is not None \
                else Conditioning.TEXT_ONLY
        if image is not None:
            # raises InvalidRequest for non-images
            prepare_first_frame(image, request.height, request.width)
        return conditioning

    def _encode_text(self, request: GenerationRequest, guidance: Guidance
                     ) -> tuple[Tensor, Tensor | None, PromptTokens]:
        """(context, negative context or None, the prompt's tokens: how many were kept)."""
        encoder = self.text_encoder
        prompts = [request.prompt] + ([request.negative_prompt] if guidance.needs_negative else [])
        with self._resident(encoder.model):
            if request.compat is Compat.FAST:
                batch, tokens = encoder.encode_counted(prompts, TEXT_LEN, attention=FAST_ATTENTION)
                encoded = list(batch.split(1))
            else:
                # The release encodes each prompt on its own with the fp32-softmax kernel.
                each = [encoder.encode_counted([p], TEXT_LEN, attention=REFERENCE_ATTENTION)
                        for p in prompts]
                encoded, tokens = [e[0] for e in each], [e[1][0] for e in each]
        context = encoded[0].to(self.device)
        return context, (encoded[1].to(self.device) if len(encoded) > 1 else None), tokens[0]

    def _condition(self, request: GenerationRequest, image: Any, video: np.ndarray | None
                   ) -> tuple[Tensor, Tensor | None]:
        vae = self.component("video_vae")
        config = self.video_vae_config
        h, w, frames = request.height, request.width, request.num_frames
        with self._resident(vae):
            fixed_video = None
            if video is not None:
                # Audio-only: the locked picture is both the fixed latent and the first frame.
                fixed_video = encode_video(vae, video, config, device=self.device)
                image = video[0]
            if image is None:
                mask, first = text_only_condition(vae, frames, h, w, config, device=self.device)
            else:
                pixels = prepare_first_frame(image, h, w).to(self.device)
                first = encode_first_frame(vae, pixels, frames, config)
                mask = first_frame_mask(first.shape[2], first.shape[3], first.shape[4])
        condition = torch.cat([mask.to(first), first], dim=1).float()
        return condition, fixed_video

    def _sample(self, request: GenerationRequest, guidance: Guidance, video_noise: Tensor,
                audio_noise: Tensor, condition: Tensor, context: Tensor,
                negative_context: Tensor | None, fixed_video: Tensor | None,
                on_step: Callable[[int, int], None] | None,
                should_cancel: Callable[[], bool] | None) -> tuple[Tensor, Tensor]:
        denoiser = _ExpertDenoiser(self)
        audio_dit, bridge = self.component("audio_dit"), self.component("dual_tower_bridge")
        with self._resident(audio_dit, bridge), denoiser:
            return sample(
                denoiser, scheduler=self.scheduler, num_steps=request.num_inference_steps,
                boundary_ratio=self.boundary_ratio, video_noise=video_noise.to(self.device),
                audio_noise=audio_noise.to(self.device), video_condition=condition.to(self.device),
                context=context, negative_context=negative_context,
                video_fps=request.video_fps,
                guidance=guidance, fixed_video=fixed_video, on_step=on_step,
                should_cancel=should_cancel,
            )

    def _decode_video(self, z_video: Tensor, *, tile: bool) -> tuple[np.ndarray, bool]:
        """(frames T x H x W x 3 uint8, whether they were decoded in tiles). Untiled unless
        asked, as the release; tiles only as the fallback when the whole decode runs out of
        device memory, which the clip's params record (mova_model does not log)."""
        vae = self.component("video_vae")
        with self._resident(vae):
            try:
                frames = decode_latents(vae, z_video, self.video_vae_config, tile=tile)
            except torch.OutOfMemoryError:
                if tile:
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                frames, tile = decode_latents(vae, z_video, self.video_vae_config,
                                              tile=True), True
        return frames[0].cpu().numpy(), tile

    def _decode_audio(self, z_audio: Tensor, num_samples: int) -> np.ndarray:
        vae = self.component("audio_vae")
        with self._resident(vae):
            weight = next(vae.parameters())
            on_cuda = weight.device.type == "cuda"
            # The release decodes the DAC in the checkpoint dtype under fp32 autocast on CUDA;
            # on the CPU (no fp32 autocast) the weights were upcast at load (upcast_for_cpu).
            with torch.autocast("cuda", dtype=torch.float32, enabled=on_cuda):
                waveform = vae.decode(z_audio.to(weight.device, torch.float32))  # [1,1,960*L_a]
        # The reference leaves 960*L_a samples and lets ffmpeg's -shortest trim at mux time; the
        # clip carries exactly the video's duration instead, which is what the mux would keep.
        return waveform[0, :, :num_samples].float().cpu().numpy()

    # ---- LoRA (spec §13.3) -----------------------------------------------------------------

    @property
    def lora(self) -> AttachedLora | None:
        """The applied LoRA (source file, sha256, scale, merged), or None."""
        return self._lora

    def load_lora(self, path: str | Path, scale: float = 1.0) -> None:
        """Apply a LoRA folder (or weights file); replaces a LoRA already loaded."""
        _check_lora_scale(scale)
        weights = read_lora(path)
        modules = {name: self.component(name) for name in weights.factors}
        check_lora(weights, modules)  # everything is checked before anything changes
        self.unload_lora()
        attached = AttachedLora(weights, scale=float(scale))
        for name, module in modules.items():
            attached.attach(name, module)
        self._lora = attached

    def set_lora_scale(self, scale: float) -> None:
        """scaling = alpha / rank * scale; 0 gives exactly the base model."""
        _check_lora_scale(scale)
        lora = self._require_lora("set_lora_scale")
        if lora.merged:  # merged weights are rebuilt from the kept originals
            self._reattach(lora, scale=float(scale), merged=True)
        lora.scale = float(scale)

    def merge_lora(self) -> None:
        """Fold W + (B @ A) * scaling into the weights (no per-call LoRA cost)."""
        lora = self._require_lora("merge_lora")
        if not lora.merged:
            self._reattach(lora, scale=lora.scale, merged=True)

    def unload_lora(self) -> None:
        """Remove the LoRA; the base weights come back bit for bit. No-op without a LoRA."""
        if self._lora is None:
            return
        for name in self._lora.components():
            if name in self._modules:  # a released component is reloaded from the folder
                self._lora.detach(name, self._modules[name])
        self._lora = None

    def _lora_used(self) -> LoraUsed | None:
        lora = self._lora
        if lora is None:
            return None
        return LoraUsed(weights_sha256=lora.weights.sha256, scale=lora.scale,
                        scaling=lora.scaling, merged=lora.merged)

    def _require_lora(self, action: str) -> AttachedLora:
        if self._lora is None:
            raise LoraError(f"{action}: no LoRA is loaded; call load_lora(folder) first")
        return self._lora

    def _reattach(self, lora: AttachedLora, *, scale: float, merged: bool) -> None:
        for name in lora.components():
            if name in self._modules:
                lora.detach(name, self._modules[name])
        lora.scale, lora.merged = scale, merged
        for name in lora.components():
            if name in self._modules:
                lora.attach(name, self._modules[name])


def check_lora_fits(lora: str | Path, checkpoint: str | Path) -> None:
    """Raise LoraError unless every key of the LoRA names a linear of this checkpoint with its
    shapes: `load_lora`'s check, on modules built from the configs on the meta device (no
    weights read), so a LoRA made for another model size is refused before any render."""
    weights = read_lora(lora)
    folder = checkpoint_folder(checkpoint)
    modules = {}
    for name in weights.factors:
        if not (folder / name / CONFIG_NAME).is_file():
            raise LoraError(f"{weights.source}: LoRA for component {name!r}, which checkpoint "
                            f"{folder} does not have")
        config_cls, build = BUILDERS[name]
        with torch.device("meta"):
            modules[name] = build(read_config(folder / name, config_cls))
    check_lora(weights, modules)


def _check_lora_scale(scale: float) -> None:
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not np.isfinite(scale):
        raise LoraError(f"LoRA scale={scale!r}; expected a finite number")


class _ExpertDenoiser:
    """The sampler's Denoiser: picks the expert, keeps it on the device, frees the other."""

    def __init__(self, pipe: MovaPipeline) -> None:
        self.pipe = pipe
        self.active: int | None = None
        self._stack = ExitStack()

    def __enter__(self) -> _ExpertDenoiser:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _expert(self, expert: int) -> nn.Module:
        names = ("video_dit", "video_dit_2")
        if expert != self.active:
            self._stack.close()
            if self.active == HIGH_NOISE and self.pipe.release_unused:
                # The switch is one-way within a generation; free the high-noise expert.
                self.pipe.release(names[HIGH_NOISE])
            module = self.pipe.component(names[expert])
            self._stack = ExitStack()
            self._stack.enter_context(self.pipe._resident(module))
            self.active = expert
        return self.pipe.component(names[expert])

    def __call__(self, expert: int, video_input: Tensor, audio_input: Tensor, context: Tensor,
                 t_video: Tensor, t_audio: Tensor, video_fps: float,
                 bridge_scale: float | Tensor) -> tuple[Tensor, Tensor]:
        video_dit = self._expert(expert)
        return joint_forward(video_dit, self.pipe.component("audio_dit"),
                             self.pipe.component("dual_tower_bridge"), video_input, audio_input,
                             context, t_video, t_audio, video_fps, bridge_scale,
                             context_parallel=self.pipe.context_parallel)

