"""The continuous DAC-style audio autoencoder: 48 kHz mono <-> 128-d latents at 50 Hz (§6.2).

Tensor names follow the official `audio_vae/` folder, including the weight-norm pair
`weight_g` / `weight_v` (W = g · V / ‖V‖, norm over every dim but 0). With
`use_weight_norm=false` the convolutions carry a plain `weight` instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mova_model.config import AudioVAEConfig


def _norm_except_dim0(v: Tensor) -> Tensor:
    return v.norm(dim=tuple(range(1, v.ndim)), keepdim=True)


class _WeightNormed(nn.Module):
    """Holds either (weight_g, weight_v) or weight, and produces the effective kernel."""

    def _init_weight(self, shape: tuple[int, ...], weight_norm: bool, fan_in: int) -> None:
        bound = 1 / math.sqrt(fan_in)
        kernel = torch.empty(shape).uniform_(-bound, bound)
        if weight_norm:
            self.weight_g = nn.Parameter(_norm_except_dim0(kernel))
            self.weight_v = nn.Parameter(kernel)
        else:
            self.weight = nn.Parameter(kernel)
        self.bias = nn.Parameter(torch.empty(shape[1] if self._transposed else shape[0])
                                 .uniform_(-bound, bound))
        self.weight_norm = weight_norm

    _transposed = False
    # The dtype g·V/‖V‖ is formed in; None: the parameters' own. A bf16 DAC upcast for the CPU
    # (AudioVAE.upcast_for_cpu) keeps forming it in bf16, as the release's hook does on CUDA.
    kernel_dtype: torch.dtype | None = None

    def kernel(self) -> Tensor:
        if self.weight_norm:
            # torch._weight_norm is what the release's weight-norm hook calls: one rounding in
            # the checkpoint dtype (bf16), whatever autocast does to the convolution after it
            dtype = self.kernel_dtype or self.weight_v.dtype
            formed = torch._weight_norm(self.weight_v.to(dtype), self.weight_g.to(dtype), 0)
            return formed.to(self.weight_v.dtype)
        return self.weight


class Conv1d(_WeightNormed):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, padding: int = 0, dilation: int = 1,
                 weight_norm: bool = True) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self._init_weight((out_channels, in_channels, kernel_size), weight_norm,
                          in_channels * kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(x, self.kernel(), self.bias, self.stride, self.padding, self.dilation)


class ConvTranspose1d(_WeightNormed):
    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int,
                 padding: int, output_padding: int, weight_norm: bool = True) -> None:
        super().__init__()
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self._init_weight((in_channels, out_channels, kernel_size), weight_norm,
                          out_channels * kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose1d(x, self.kernel(), self.bias, self.stride, self.padding,
                                  self.output_padding)


class Snake1d(nn.Module):
    """snake(x) = x + sin²(αx) / (α + 1e-9), α per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


class ResidualUnit(nn.Module):
    """y = C₁(Snake(C₇,d(Snake(x)))); out = x + y (x centre-cropped if lengths differ)."""

    def __init__(self, channels: int, dilation: int, weight_norm: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(channels),
            Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation,
                   weight_norm=weight_norm),
            Snake1d(channels),
            Conv1d(channels, channels, 1, weight_norm=weight_norm),
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        crop = (x.shape[-1] - y.shape[-1]) // 2
        if crop > 0:
            x = x[..., crop:-crop]
        return x + y


class EncoderBlock(nn.Module):
    """Three residual units on C channels, Snake, strided conv C -> 2C."""

    def __init__(self, out_channels: int, stride: int, weight_norm: bool) -> None:
        super().__init__()
        c = out_channels // 2
        self.block = nn.Sequential(
            ResidualUnit(c, 1, weight_norm), ResidualUnit(c, 3, weight_norm),
            ResidualUnit(c, 9, weight_norm), Snake1d(c),
            Conv1d(c, out_channels, 2 * stride, stride=stride, padding=math.ceil(stride / 2),
                   weight_norm=weight_norm),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class DecoderBlock(nn.Module):
    """Snake, transposed conv (length × stride), three residual units."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 weight_norm: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(in_channels),
            ConvTranspose1d(in_channels, out_channels, 2 * stride, stride=stride,
                            padding=math.ceil(stride / 2), output_padding=stride % 2,
                            weight_norm=weight_norm),
            ResidualUnit(out_channels, 1, weight_norm), ResidualUnit(out_channels, 3, weight_norm),
            ResidualUnit(out_channels, 9, weight_norm),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class Encoder(nn.Module):
    def __init__(self, config: AudioVAEConfig) -> None:
        super().__init__()
        wn, width = config.use_weight_norm, config.encoder_dim
        layers: list[nn.Module] = [Conv1d(1, width, 7, padding=3, weight_norm=wn)]
        for stride in config.encoder_rates:
            width *= 2
            layers.append(EncoderBlock(width, stride, wn))
        layers += [Snake1d(width), Conv1d(width, config.latent_dim, 3, padding=1, weight_norm=wn)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class Decoder(nn.Module):
    def __init__(self, config: AudioVAEConfig) -> None:
        super().__init__()
        wn, width = config.use_weight_norm, config.decoder_dim
        layers: list[nn.Module] = [Conv1d(config.latent_dim, width, 7, padding=3,
                                          weight_norm=wn)]
        for stride in config.decoder_rates:
            layers.append(DecoderBlock(width, width // 2, stride, wn))
            width //= 2
        layers += [Snake1d(width), Conv1d(width, 1, 7, padding=3, weight_norm=wn), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class AudioVAE(nn.Module):
    """`audio_vae`: encode [B,1,N] -> [B,latent,L_a] (posterior mode); decode -> [B,1,hop·L_a]."""

    def __init__(self, config: AudioVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        # 1x1 convs without weight norm: latent -> (mean, log-variance) and back.
        self.quant_conv = nn.Conv1d(config.latent_dim, 2 * config.latent_dim, 1)
        self.post_quant_conv = nn.Conv1d(config.latent_dim, config.latent_dim, 1)
        self.decoder = Decoder(config)

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def encode(self, audio: Tensor) -> Tensor:
        """Posterior mean of `audio` [B,1,N] (right-padded with zeros to a multiple of hop)."""
        pad = -audio.shape[-1] % self.hop_length
        x = F.pad(audio, (0, pad)).to(self.quant_conv.weight.dtype)
        moments = self.quant_conv(self.encoder(x))
        mean, _log_variance = moments.chunk(2, dim=1)
        return mean.float()

    def upcast_for_cpu(self) -> AudioVAE:
        """Float32 weights for a device without float32 autocast (the CPU), the weight-norm
        kernels still formed in the dtype loaded: the release decodes a bf16 DAC under CUDA
        float32 autocast, where each kernel is formed from bf16 g and V (rounded once to bf16)
        and the convolutions then run in float32 (spec §13.2)."""
        for module in self.modules():
            if isinstance(module, _WeightNormed) and module.weight_norm:
                module.kernel_dtype = module.weight_v.dtype
        return self.float()

    def decode(self, latent: Tensor) -> Tensor:
        """Waveform in [-1, 1], float32, exactly hop · L_a samples."""
        # Under autocast the convolutions take the latent as it is (the release keeps it in
        # float32 under CUDA float32 autocast); without, it must match the weights.
        autocast = torch.is_autocast_enabled(latent.device.type)
        x = latent if autocast else latent.to(self.post_quant_conv.weight.dtype)
        return self.decoder(self.post_quant_conv(x)).float()
