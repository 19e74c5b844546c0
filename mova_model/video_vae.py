"""The Wan 2.1 video VAE (diffusers `AutoencoderKLWan`) and the latents MOVA conditions on.

Denoising happens in normalised latent space: z_norm = (z − mean) / std per channel (§6.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from diffusers.video_processor import VideoProcessor
from PIL import Image
from torch import Tensor

from mova_model.config import VideoVAEConfig
from mova_model.errors import GenerationFailed, InvalidRequest
from mova_model.lengths import VAE_SPATIAL_STRIDE, latent_frames

MASK_CHANNELS = 4  # the pixel-frame mask folded 4 frames per latent frame (§3.1)


def build_video_vae(config: VideoVAEConfig) -> AutoencoderKLWan:
    """An AutoencoderKLWan with the config's sizes (works under torch.device('meta'))."""
    return AutoencoderKLWan(
        base_dim=config.base_dim, z_dim=config.z_dim, dim_mult=list(config.dim_mult),
        num_res_blocks=config.num_res_blocks, attn_scales=list(config.attn_scales),
        temperal_downsample=list(config.temperal_downsample), dropout=config.dropout,
        latents_mean=list(config.latents_mean), latents_std=list(config.latents_std),
    )


def _stats(config: VideoVAEConfig, like: Tensor) -> tuple[Tensor, Tensor]:
    shape = (1, config.z_dim, 1, 1, 1)
    mean = torch.tensor(config.latents_mean, dtype=like.dtype, device=like.device).view(shape)
    std = torch.tensor(config.latents_std, dtype=like.dtype, device=like.device).view(shape)
    return mean, std


def normalize_latents(z: Tensor, config: VideoVAEConfig) -> Tensor:
    mean, std = _stats(config, z)
    # times the reciprocal, as the release (diffusers' Wan convention): dividing rounds
    # differently in the last bit of about a fifth of the float32 elements
    return (z - mean) * (1.0 / std)


def denormalize_latents(z: Tensor, config: VideoVAEConfig) -> Tensor:
    mean, std = _stats(config, z)
    return z * std + mean


def prepare_first_frame(image: Any, height: int, width: int) -> Tensor:
    """[1, 3, H, W] in [−1, 1]: centre crop to the target aspect, resize (PIL default filter),
    as the release script's `crop_and_resize` does it (spec §13.2)."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidRequest(f"first frame array must be uint8 (H, W, 3); got {image.dtype} "
                                 f"{image.shape}")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise InvalidRequest(f"first frame must be a PIL image or an (H, W, 3) uint8 array; got "
                             f"{type(image).__name__}")
    image = image.convert("RGB")
    src_w, src_h = image.size
    if not src_w or not src_h:  # the aspect below divides by the size
        raise InvalidRequest(f"first frame is empty ({src_w}x{src_h} pixels)")
    # Crop the longer side so the aspect matches, keeping the centre. The float comparison,
    # the floor of the crop size and the else-branch for equal aspects are the release's.
    if src_h / src_w < height / width:
        crop_w = int(src_h / height * width)
        left = (src_w - crop_w) // 2
        image = image.crop((left, 0, left + crop_w, src_h))
    else:
        crop_h = int(src_w / width * height)
        top = (src_h - crop_h) // 2
        image = image.crop((0, top, src_w, top + crop_h))
    image = image.resize((width, height))
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255)
    return (pixels * 2 - 1).unsqueeze(0)


def _encode_mode(vae: AutoencoderKLWan, clip: Tensor) -> Tensor:
    """Posterior mode (no sampling) of a pixel clip [B, 3, F, H, W] in [−1, 1]."""
    weight = next(vae.parameters())
    with spatial_tiling(vae, False):  # the release encodes the first frame untiled
        return vae.encode(clip.to(device=weight.device, dtype=weight.dtype)).latent_dist.mode()


def encode_first_frame(vae: AutoencoderKLWan, pixels: Tensor, num_frames: int,
                       config: VideoVAEConfig) -> Tensor:
    """Y = normalise(encode([I, 0, …, 0])): the first image followed by num_frames − 1 zero
    (mid-grey) frames, posterior mode -> [B, 16, F_lat, H/8, W/8] float32."""
    b, c, h, w = pixels.shape
    clip = torch.zeros(b, c, num_frames, h, w, dtype=pixels.dtype, device=pixels.device)
    clip[:, :, 0] = pixels
    return normalize_latents(_encode_mode(vae, clip).float(), config)


def first_frame_mask(num_latent_frames: int, height: int, width: int) -> Tensor:
    """M [1, 4, F_lat, h, w]: 1 on latent frame 0 (all 4 channels), 0 elsewhere."""
    mask = torch.zeros(1, MASK_CHANNELS, num_latent_frames, height, width)
    mask[:, :, 0] = 1.0
    return mask


def text_only_condition(vae: AutoencoderKLWan, num_frames: int, height: int, width: int,
                        config: VideoVAEConfig, device: str | torch.device = "cpu"
                        ) -> tuple[Tensor, Tensor]:
    """T2VA without a dummy white frame: (M = 0, Y = normalise(encode(all-zero clip))).

    Choice (spec §11.3): the release always conditions on a real first frame, and the white-frame
    workaround fails often. Text-only generation says "no frame is known" the way the training
    input already says it for frames 1..F−1: mask 0 everywhere and the latent of mid-grey pixels
    (computed with this VAE, since a zero pixel clip does not encode to a zero latent)."""
    f_lat = latent_frames(num_frames)
    h, w = height // VAE_SPATIAL_STRIDE, width // VAE_SPATIAL_STRIDE
    grey = torch.zeros(1, 3, num_frames, height, width, device=device)
    latent = normalize_latents(_encode_mode(vae, grey).float(), config)
    return torch.zeros(1, MASK_CHANNELS, f_lat, h, w, device=device), latent


def encode_video(vae: AutoencoderKLWan, frames: np.ndarray, config: VideoVAEConfig,
                 device: str | torch.device = "cpu") -> Tensor:
    """Normalised latents of uint8 frames [T, H, W, 3] (posterior mode) -> [1, 16, F_lat, h, w]."""
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(device).float().div(255) * 2 - 1
    clip = pixels.permute(3, 0, 1, 2).unsqueeze(0)  # (T, H, W, 3) -> (1, 3, T, H, W)
    return normalize_latents(_encode_mode(vae, clip).float(), config)


@contextmanager
def spatial_tiling(vae: AutoencoderKLWan, enabled: bool) -> Iterator[None]:
    """Tile the decode inside the block only: the VAE always leaves it untiled, so a later
    first-frame encode never inherits tiling from an earlier large decode (spec §13.2)."""
    if enabled:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    try:
        yield
    finally:
        vae.disable_tiling()


def check_finite(name: str, values: Tensor) -> None:
    """NaN or inf in a decoded clip comes from broken weights or config numbers; converting it
    gives black frames (or a soundtrack no encoder accepts) without a word: refuse it."""
    if not bool(torch.isfinite(values).all()):
        raise GenerationFailed(f"the decoded {name} contains NaN or infinite values; the "
                               "checkpoint's weights or config numbers are the likely cause")


def decode_latents(vae: AutoencoderKLWan, z_norm: Tensor, config: VideoVAEConfig, *,
                   tile: bool = False) -> Tensor:
    """uint8 frames [B, T, H, W, 3] from normalised latents, as the release decodes them.

    The whole latent is decoded at once (bf16 autocast on CUDA, as the release), unless `tile`
    splits each frame into overlapping spatial tiles. The decoder output goes as it comes out
    (in its own dtype) through diffusers' video post-processing, which the release uses too."""
    weight = next(vae.parameters())
    z = denormalize_latents(z_norm.float(), config).to(weight.device)
    on_cuda = weight.device.type == "cuda"
    if not on_cuda:
        z = z.to(weight.dtype)  # CPU has no autocast here: feed the weights' dtype
    with spatial_tiling(vae, tile), torch.autocast("cuda", dtype=torch.bfloat16,
                                                   enabled=on_cuda):
        video = vae.decode(z).sample  # [B, 3, T, H, W]
    check_finite("video", video)
    # (x/2 + 0.5).clamp(0, 1) in the decoder's dtype, ×255, round, uint8 (diffusers' order).
    pil_frames = VideoProcessor(vae_scale_factor=VAE_SPATIAL_STRIDE).postprocess_video(
        video, output_type="pil")
    frames = np.stack([np.stack([np.asarray(f) for f in clip]) for clip in pil_frames])
    return torch.from_numpy(frames)  # (B, T, H, W, 3) uint8
