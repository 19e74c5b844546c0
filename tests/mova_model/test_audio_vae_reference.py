"""DAC audio VAE: parity with an independent float64 implementation of spec §6.2.

The reference below is NumPy on the raw state dict (official key names): convolutions and
transposed convolutions are written from their definitions, weight norm, Snake and the stage
layout from the spec's text. Every Snake α and weight-norm g is randomised so each term of
each formula moves the output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mova_model.audio_vae import AudioVAE
from mova_model.config import get_preset
from tests.mova_model.tiny_models import rel_err

TINY = get_preset("tiny").audio_vae
RESIDUAL_DILATIONS = (1, 3, 9)

Array = np.ndarray
State = dict[str, Array]


# ---- reference, from spec §6.2 --------------------------------------------------------------


def kernel(sd: State, name: str) -> Array:
    """W = g · V / ‖V‖ (norm over every dim but 0), or the plain weight."""
    if f"{name}.weight_v" not in sd:
        return sd[f"{name}.weight"]
    v = sd[f"{name}.weight_v"]
    norm = np.sqrt((v**2).reshape(v.shape[0], -1).sum(axis=1)).reshape(-1, 1, 1)
    return sd[f"{name}.weight_g"] * v / norm


def conv(sd: State, name: str, x: Array, *, stride: int = 1, padding: int = 0,
         dilation: int = 1) -> Array:
    """y[o, t] = b[o] + Σ_{i,k} W[o, i, k] · x_padded[i, t·stride + k·dilation]; x (C, N)."""
    w, b = kernel(sd, name), sd[f"{name}.bias"]
    taps = w.shape[2]
    xp = np.pad(x, ((0, 0), (padding, padding)))
    n_out = (xp.shape[1] - dilation * (taps - 1) - 1) // stride + 1
    y = np.tile(b[:, None], (1, n_out))
    for k in range(taps):
        start = k * dilation
        window = xp[:, start:start + stride * (n_out - 1) + 1:stride]  # (C_in, n_out)
        y += w[:, :, k] @ window
    return y


def conv_transpose(sd: State, name: str, x: Array, *, stride: int, padding: int,
                   output_padding: int) -> Array:
    """Each input sample i scatters W[c, o, :] onto full[i·stride : i·stride + K]; the result
    is full[padding : padding + (N-1)·stride - 2·padding + K + output_padding] plus bias."""
    w, b = kernel(sd, name), sd[f"{name}.bias"]  # w (C_in, C_out, K)
    c_out, taps = w.shape[1], w.shape[2]
    n = x.shape[1]
    n_out = (n - 1) * stride - 2 * padding + taps + output_padding
    full = np.zeros((c_out, (n - 1) * stride + taps + output_padding))
    for i in range(n):
        full[:, i * stride:i * stride + taps] += np.einsum("c,cok->ok", x[:, i], w)
    return full[:, padding:padding + n_out] + b[:, None]


def snake(sd: State, name: str, x: Array) -> Array:
    """x + sin²(α x) / (α + 1e-9), α per channel."""
    alpha = sd[f"{name}.alpha"].reshape(-1, 1)
    return x + np.sin(alpha * x) ** 2 / (alpha + 1e-9)


def residual_unit(sd: State, name: str, x: Array, dilation: int) -> Array:
    """out = x + C₁(Snake(C₇,d(Snake(x))))."""
    y = snake(sd, f"{name}.block.0", x)
    y = conv(sd, f"{name}.block.1", y, padding=3 * dilation, dilation=dilation)
    y = snake(sd, f"{name}.block.2", y)
    y = conv(sd, f"{name}.block.3", y)
    assert y.shape == x.shape  # no centre crop at these settings (spec)
    return x + y


def reference_decode(sd: State, latent: Array) -> Array:
    """post_quant_conv → conv k7 → stages (Snake, transposed conv, 3 residual units) → Snake →
    conv k7 → tanh; latent (128, L) -> (1, 960·L)."""
    x = conv(sd, "post_quant_conv", latent)
    x = conv(sd, "decoder.model.0", x, padding=3)
    for stage, s in enumerate(TINY.decoder_rates, start=1):
        name = f"decoder.model.{stage}.block"
        x = snake(sd, f"{name}.0", x)
        x = conv_transpose(sd, f"{name}.1", x, stride=s, padding=math.ceil(s / 2),
                           output_padding=s % 2)
        for j, d in enumerate(RESIDUAL_DILATIONS, start=2):
            x = residual_unit(sd, f"{name}.{j}", x, d)
    last = len(TINY.decoder_rates) + 1
    x = snake(sd, f"decoder.model.{last}", x)
    return np.tanh(conv(sd, f"decoder.model.{last + 1}", x, padding=3))


def reference_encode(sd: State, audio: Array) -> Array:
    """Right-pad to a multiple of the hop → conv k7 → stages (3 residual units, Snake, strided
    conv k=2s, padding ⌈s/2⌉) → Snake → conv k3 → quant_conv; the mean is channels 0-127."""
    hop = math.prod(TINY.encoder_rates)
    x = np.pad(audio, ((0, 0), (0, -audio.shape[1] % hop)))
    x = conv(sd, "encoder.block.0", x, padding=3)
    for stage, s in enumerate(TINY.encoder_rates, start=1):
        name = f"encoder.block.{stage}.block"
        for j, d in enumerate(RESIDUAL_DILATIONS):
            x = residual_unit(sd, f"{name}.{j}", x, d)
        x = snake(sd, f"{name}.3", x)
        x = conv(sd, f"{name}.4", x, stride=s, padding=math.ceil(s / 2))
    last = len(TINY.encoder_rates) + 1
    x = snake(sd, f"encoder.block.{last}", x)
    x = conv(sd, f"encoder.block.{last + 1}", x, padding=1)
    moments = conv(sd, "quant_conv", x)
    return moments[:TINY.latent_dim]


# ---- the model under test -------------------------------------------------------------------


# Function scope on purpose: built inside each test, the model's constructors count as run by
# every test that uses it (mutation testing maps code to the tests that run it).
@pytest.fixture
def model() -> AudioVAE:
    """The tiny DAC with every parameter random: Snake α in [0.3, 3], g away from ‖V‖."""
    torch.manual_seed(0)
    vae = AudioVAE(TINY).eval()
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("alpha"):
                p.copy_(0.3 + 2.7 * torch.rand(p.shape, generator=gen))
            elif name.endswith("weight_g"):
                p.mul_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return vae


def _state(vae: AudioVAE) -> State:
    return {k: v.detach().double().numpy() for k, v in vae.state_dict().items()}


@torch.no_grad()
def test_decoder_matches_the_float64_reference(model: AudioVAE) -> None:
    latent = torch.randn(1, TINY.latent_dim, 3, generator=torch.Generator().manual_seed(5))
    found = model.decode(latent)
    expected = torch.from_numpy(reference_decode(_state(model), latent[0].double().numpy()))
    assert found.shape == (1, 1, 3 * 960) and expected.shape == (1, 3 * 960)
    # tanh must not be saturated, or the comparison would see nothing of the layers below
    assert 0.05 < float(expected.abs().mean()) < 0.9
    assert rel_err(found[0], expected) <= 1e-5


@torch.no_grad()
def test_encoder_matches_the_float64_reference(model: AudioVAE) -> None:
    t = torch.arange(2000, dtype=torch.float64) / 48_000
    audio = (0.3 * torch.sin(2 * math.pi * 440 * t) * torch.sin(2 * math.pi * 3 * t))[None, None]
    found = model.encode(audio.float())
    expected = torch.from_numpy(reference_encode(_state(model), audio[0].numpy()))
    assert found.shape == (1, TINY.latent_dim, 3) and expected.shape == (TINY.latent_dim, 3)
    assert rel_err(found[0], expected) <= 1e-5


@torch.no_grad()
def test_a_bfloat16_vae_takes_float32_and_returns_float32(model: AudioVAE) -> None:
    """The pipeline may hold the VAE in bf16: inputs are cast to its dtype, results come back
    as float32, close to the float32 model's."""
    latent = torch.randn(1, TINY.latent_dim, 2, generator=torch.Generator().manual_seed(8))
    audio = 0.2 * torch.randn(1, 1, 1500, generator=torch.Generator().manual_seed(9))
    expected_wave, expected_latent = model.decode(latent), model.encode(audio)
    half = AudioVAE(TINY).eval()
    half.load_state_dict(model.state_dict())
    half.to(torch.bfloat16)
    wave, found_latent = half.decode(latent), half.encode(audio)
    assert wave.dtype == found_latent.dtype == torch.float32
    assert rel_err(wave, expected_wave) < 0.1 and rel_err(found_latent, expected_latent) < 0.1
    assert found_latent.shape == (1, TINY.latent_dim, 2)  # 1500 samples pad to 2 hops
