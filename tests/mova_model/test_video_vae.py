"""Video VAE wrapper: shapes, normalisation, first-frame condition, tiling, image checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mova_model.config import VideoVAEConfig, get_preset
from mova_model.errors import InvalidRequest
from mova_model.video_vae import (
    build_video_vae,
    decode_latents,
    denormalize_latents,
    encode_first_frame,
    encode_video,
    first_frame_mask,
    normalize_latents,
    prepare_first_frame,
    text_only_condition,
)

TINY = get_preset("tiny").video_vae


@pytest.fixture(scope="module")
def vae() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_video_vae(TINY).eval()


def test_release_config_parameter_count() -> None:
    with torch.device("meta"):
        model = build_video_vae(VideoVAEConfig())
    assert sum(p.numel() for p in model.parameters()) == 126_892_531


def test_first_frame_condition_and_decode_shapes(vae: torch.nn.Module) -> None:
    pixels = prepare_first_frame(np.full((80, 160, 3), 200, np.uint8), 64, 112)
    with torch.inference_mode():
        first = encode_first_frame(vae, pixels, 25, TINY)
        frames = decode_latents(vae, first, TINY, tile=False)
    assert first.shape == (1, 16, 7, 8, 14) and first.dtype == torch.float32
    assert frames.shape == (1, 25, 64, 112, 3) and frames.dtype == torch.uint8


def test_mask_marks_only_the_first_latent_frame() -> None:
    mask = first_frame_mask(7, 8, 14)
    assert mask.shape == (1, 4, 7, 8, 14)
    assert torch.all(mask[:, :, 0] == 1) and torch.all(mask[:, :, 1:] == 0)


def test_normalisation_round_trip() -> None:
    z = torch.randn(1, 16, 3, 4, 4)
    assert torch.allclose(denormalize_latents(normalize_latents(z, TINY), TINY), z, atol=1e-6)
    # channel 0 uses mean -0.7571, std 2.8184
    assert torch.allclose(normalize_latents(z, TINY)[:, 0], (z[:, 0] + 0.7571) / 2.8184)


def test_normalisation_multiplies_by_the_reciprocal_as_the_release() -> None:
    """The release normalises the first-frame latent as (z - mean) * (1 / std) in float32
    (diffusers' Wan convention); a division gives other last bits in ~a fifth of the elements."""
    z = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    mean = torch.tensor(TINY.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(TINY.latents_std).view(1, 16, 1, 1, 1)
    released = (z - mean) * (1.0 / std)
    assert not torch.equal(released, (z - mean) / std)
    assert torch.equal(normalize_latents(z, TINY), released)


def test_text_only_condition_is_zero_mask_and_the_encoded_grey_clip(vae: torch.nn.Module) -> None:
    with torch.inference_mode():
        mask, latent = text_only_condition(vae, 9, 32, 48, TINY)
        grey = encode_video(vae, np.full((9, 32, 48, 3), 127.5, np.float32).astype(np.uint8),
                            TINY)
    assert torch.all(mask == 0) and mask.shape == (1, 4, 3, 4, 6)
    assert latent.shape == (1, 16, 3, 4, 6)
    assert latent.abs().sum() > 0, "a zero pixel clip does not encode to a zero latent"
    # uint8 127 is -0.0039 in [-1, 1]: close to, but not exactly, the zero clip
    assert torch.allclose(latent, grey, atol=0.1)


def test_tiled_decode_matches_untiled(vae: torch.nn.Module) -> None:
    z = torch.randn(1, 16, 2, 24, 40, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        whole = decode_latents(vae, z, TINY, tile=False).float()
        vae.tile_sample_min_height = vae.tile_sample_min_width = 128
        vae.tile_sample_stride_height = vae.tile_sample_stride_width = 64
        tiled = decode_latents(vae, z, TINY, tile=True).float()
        vae.disable_tiling()
    assert tiled.shape == whole.shape == (1, 5, 192, 320, 3)
    # Tiles are blended over their overlap; the VAE's mid-block attention is global per frame,
    # so with random weights every pixel moves a little. Bound the mean error at 15 % of the
    # picture's own spread (measured: ~10 %); trained weights are far smoother.
    assert (tiled - whole).abs().mean() < 0.15 * whole.std()


def test_first_frame_is_centre_cropped_to_the_target_aspect() -> None:
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 100:200] = 255  # the centre third is white
    pixels = prepare_first_frame(Image.fromarray(image), 32, 32)
    assert pixels.shape == (1, 3, 32, 32)
    assert pixels.min() > 0.9, "the crop must keep the centre"


@pytest.mark.parametrize("bad", ["not an image", np.zeros((4, 4), np.uint8),
                                 np.zeros((4, 4, 3), np.float32)])
def test_non_images_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="first frame"):
        prepare_first_frame(bad, 32, 32)


def test_first_frame_crop_floors_like_the_release_script() -> None:
    # 100 x 333 to 48 x 80: crop width int(100 / 48 * 80) = int(166.67) = 166 (rounding would
    # take 167), left = (333 - 166) // 2 = 83, then PIL's default resize to 80 x 48.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (100, 333, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image[:, 83:83 + 166]).resize((80, 48)))
    pixels = prepare_first_frame(image, 48, 80)
    found = ((pixels[0].permute(1, 2, 0) + 1) / 2 * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(found, expected)
    # Taller than the target: crop height int(w / W * H), centred.
    tall = rng.integers(0, 256, (300, 100, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(tall[90:90 + 120]).resize((80, 96)))
    assert (int(100 / 80 * 96), (300 - 120) // 2) == (120, 90)
    found = ((prepare_first_frame(tall, 96, 80)[0].permute(1, 2, 0) + 1) / 2 * 255).round()
    assert np.array_equal(found.to(torch.uint8).numpy(), expected)


def test_decode_leaves_no_tiling_behind(vae: torch.nn.Module) -> None:
    z = torch.randn(1, 16, 2, 4, 6, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        decode_latents(vae, z, TINY, tile=True)
        assert not vae.use_tiling, "a tiled decode must not leave tiling on for the next encode"
        vae.enable_tiling()  # even if someone switched it on, the release encode is untiled
        first = encode_first_frame(vae, torch.zeros(1, 3, 32, 48), 5, TINY)
        assert not vae.use_tiling
        again = encode_first_frame(vae, torch.zeros(1, 3, 32, 48), 5, TINY)
    assert torch.equal(first, again)


def test_uint8_frames_are_the_rounded_decoder_output(vae: torch.nn.Module) -> None:
    z = torch.randn(1, 16, 2, 4, 6, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        frames = decode_latents(vae, z, TINY)
        raw = vae.decode(denormalize_latents(z, TINY)).sample.double()  # [1, 3, T, H, W]
    # round(255 · clamp(x/2 + 0.5, 0, 1)), computed here in float64 from the decoder output.
    expected = ((raw / 2 + 0.5).clamp(0, 1) * 255).round().permute(0, 2, 3, 4, 1)
    assert frames.dtype == torch.uint8 and frames.shape == (1, 5, 32, 48, 3)
    assert (frames.double() - expected).abs().max() <= 1  # fp32 vs fp64 at a .5 boundary
    assert (frames.double() == expected).double().mean() > 0.999
