"""DAC audio VAE: official keys and counts, lengths, both weight forms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mova_model.audio_vae import AudioVAE, Conv1d, ConvTranspose1d, Snake1d
from mova_model.checkpoint import load_component, save_component
from mova_model.config import RELEASE_AUDIO_VAE, AudioVAEConfig, get_preset

TINY = get_preset("tiny").audio_vae


def test_release_config_has_the_official_keys_and_parameter_count() -> None:
    with torch.device("meta"):
        model = AudioVAE(RELEASE_AUDIO_VAE)
    state = model.state_dict()
    assert len(state) == 298
    assert sum(t.numel() for t in state.values()) == 371_589_058
    shapes = {
        "encoder.block.0.weight_v": (128, 1, 7),
        "encoder.block.0.weight_g": (128, 1, 1),
        "encoder.block.1.block.0.block.0.alpha": (1, 128, 1),
        "encoder.block.1.block.0.block.1.weight_v": (128, 128, 7),
        "encoder.block.1.block.0.block.3.weight_v": (128, 128, 1),
        "encoder.block.1.block.3.alpha": (1, 128, 1),
        "encoder.block.1.block.4.weight_v": (256, 128, 4),
        "encoder.block.5.block.4.weight_v": (4096, 2048, 16),
        "encoder.block.6.alpha": (1, 4096, 1),
        "encoder.block.7.weight_v": (128, 4096, 3),
        "quant_conv.weight": (256, 128, 1),
        "post_quant_conv.weight": (128, 128, 1),
        "decoder.model.0.weight_v": (2048, 128, 7),
        "decoder.model.1.block.0.alpha": (1, 2048, 1),
        "decoder.model.1.block.1.weight_v": (2048, 1024, 16),
        "decoder.model.1.block.1.weight_g": (2048, 1, 1),
        "decoder.model.1.block.1.bias": (1024,),
        "decoder.model.5.block.4.block.1.weight_v": (64, 64, 7),
        "decoder.model.6.alpha": (1, 64, 1),
        "decoder.model.7.weight_v": (1, 64, 7),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("quantizer") for k in state)


def test_encode_decode_lengths_follow_the_hop() -> None:
    torch.manual_seed(0)
    model = AudioVAE(TINY).eval()
    audio = 0.1 * torch.randn(1, 1, 50_000)
    with torch.inference_mode():
        latent = model.encode(audio)
        waveform = model.decode(latent)
    assert latent.shape == (1, 128, 53)  # ceil(50000 / 960)
    assert waveform.shape == (1, 1, 53 * 960) and waveform.dtype == torch.float32
    assert waveform.abs().max() <= 1.0


def test_plain_weights_equal_weight_norm_weights(tmp_path: Path) -> None:
    torch.manual_seed(1)
    normed = AudioVAE(TINY).eval()
    with torch.no_grad():  # make g differ from ||v|| so the normalisation matters
        for name, p in normed.named_parameters():
            if name.endswith("weight_g"):
                p.mul_(1.5)
    plain = AudioVAE(TINY.replace(use_weight_norm=False)).eval()
    # the flag reaches every convolution: none is weight-normed in the plain form, all but the
    # two 1x1 latent convs are in the official one
    assert not [n for n in plain.state_dict() if n.endswith(("weight_g", "weight_v"))]
    assert [n for n in normed.state_dict() if n.endswith(".weight")] == [
        "quant_conv.weight", "post_quant_conv.weight"]
    plain_state = {}
    for name in plain.state_dict():
        if name.endswith(".weight") and name.replace(".weight", ".weight_v") in normed.state_dict():
            module = normed.get_submodule(name.rsplit(".", 1)[0])
            plain_state[name] = module.kernel().detach()
        else:
            plain_state[name] = normed.state_dict()[name]
    plain.load_state_dict(plain_state)
    latent = torch.randn(1, 128, 6)
    with torch.inference_mode():
        assert torch.allclose(normed.decode(latent), plain.decode(latent), atol=1e-5)
    # both forms round-trip through the official folder layout
    save_component(plain, plain.config, tmp_path / "plain")
    loaded, config = load_component(tmp_path / "plain", AudioVAEConfig, AudioVAE)
    assert config.use_weight_norm is False
    with torch.inference_mode():
        assert torch.equal(loaded.decode(latent), plain.decode(latent))


@pytest.mark.parametrize("length", [960, 961, 48_000])
def test_encoding_pads_to_whole_latent_frames(length: int) -> None:
    torch.manual_seed(2)
    model = AudioVAE(TINY).eval()
    with torch.inference_mode():
        latent = model.encode(torch.zeros(1, 1, length))
    assert latent.shape[-1] == -(-length // 960)


def test_fresh_convolutions_are_weight_normed_and_drawn_like_pytorchs() -> None:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for kernels and biases, as torch's Conv1d draws them
    (kaiming uniform with a = sqrt(5)); weight norm unless asked otherwise."""
    torch.manual_seed(0)
    for conv, fan_in in ((Conv1d(16, 32, 7), 16 * 7),
                         (ConvTranspose1d(32, 16, 4, stride=2, padding=1, output_padding=0),
                          16 * 4)):
        bound = 1 / fan_in ** 0.5
        assert {n for n, _ in conv.named_parameters()} == {"weight_g", "weight_v", "bias"}
        for values in (conv.weight_v, conv.bias):
            assert float(values.abs().max()) <= bound
            assert float(values.min()) < -bound / 2 and float(values.max()) > bound / 2
    assert {n for n, _ in Conv1d(2, 3, 5, weight_norm=False).named_parameters()} == {
        "weight", "bias"}


def test_snake_stays_finite_as_alpha_goes_to_zero() -> None:
    # x + sin²(αx)/(α + 1e-9) -> x + αx² as α -> 0: the 1e-9 keeps the division defined
    snake = Snake1d(3)
    x = torch.linspace(-2, 2, 30).reshape(1, 3, 10)
    with torch.no_grad():
        for alpha in (0.0, 1e-9, 1e-6):
            snake.alpha.fill_(alpha)
            out = snake(x)
            assert torch.isfinite(out).all(), alpha
            torch.testing.assert_close(out, x + alpha * x**2, rtol=0, atol=1e-5)


def test_a_bf16_dac_upcast_for_the_cpu_forms_its_kernels_as_the_releases_hook() -> None:
    """The release decodes its bf16 DAC under CUDA float32 autocast: torch's weight-norm hook
    forms each kernel from the bf16 g and V (rounded to bf16), then the convolution runs in
    float32. The CPU path upcasts the weights and must keep that rounding."""
    torch.manual_seed(5)
    dac = AudioVAE(TINY).eval()
    with torch.no_grad():
        for name, p in dac.named_parameters():
            if name.endswith("weight_g"):
                p.mul_(1.37)  # g no longer equals ||V||: the formed kernel has to round
    dac = dac.to(torch.bfloat16)
    conv = dac.decoder.model[0]
    out_channels, in_channels, width = conv.weight_v.shape
    release = torch.nn.utils.weight_norm(
        torch.nn.Conv1d(in_channels, out_channels, width, padding=3).to(torch.bfloat16))
    with torch.no_grad():
        release.weight_g.copy_(conv.weight_g)
        release.weight_v.copy_(conv.weight_v)
        release(torch.zeros(1, in_channels, 8, dtype=torch.bfloat16))  # the hook forms it
    formed_as_released = release.weight.float()
    unrounded = torch._weight_norm(conv.weight_v.float(), conv.weight_g.float(), 0)
    assert not torch.equal(unrounded, formed_as_released)  # the rounding is visible here
    dac.upcast_for_cpu()
    assert conv.weight_v.dtype == torch.float32
    assert torch.equal(conv.kernel().detach(), formed_as_released)
    with torch.inference_mode():
        assert dac.decode(torch.randn(1, 128, 4)).dtype == torch.float32
