"""Leaf layers of the towers and the bridge: timestep sinusoid, modulation, attention, FFN."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mova_model.attention import AttentionKernel, sdpa_kernel
from mova_model.padded_text import PaddedText

# A rotary embedding bound to its position table: acts on q or k laid out as (B, L, n, d).
Rotary = Callable[[Tensor], Tensor]
# RoPE + kernel on (B, L, n, d) q, k, v -> (B, L_q, n, d). Context parallel swaps it for one that
# exchanges tokens between ranks around the same steps (mova_model/context_parallel.py).
AttentionCore = Callable[
    [Tensor, Tensor, Tensor, Rotary | None, Rotary | None, AttentionKernel], Tensor
]


def count_parameters(module: nn.Module) -> int:
    """Total number of parameter elements (works on meta-device modules)."""
    return sum(p.numel() for p in module.parameters())


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """(B,) timesteps -> (B, dim) float32 sinusoid, cosine half first, computed in float64."""
    half = dim // 2
    omega = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = torch.outer(t.to(torch.float64).reshape(-1), omega)  # (B, half)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).to(torch.float32)


def at_least_float32(t: Tensor) -> Tensor:
    """t in float32 when it is in a narrower float dtype (bf16, fp16); float32/64 as they are."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """AdaLN modulation u * (1 + scale) + shift of a DiT block, rounded once to the operands' dtype.

    The release wraps the blocks' `modulate` in torch.compile (spec §13.2), whose kernels load
    bf16 operands into float32 and round only the result; eager bf16 would round after each of
    the three operations (1 ulp apart in about a third of the elements). In float32 this is the
    plain expression. The output head is not compiled in the release: it keeps eager rounding.
    """
    dtype = torch.promote_types(torch.promote_types(x.dtype, shift.dtype), scale.dtype)
    wide = at_least_float32(x) * (1 + at_least_float32(scale)) + at_least_float32(shift)
    return wide.to(dtype)


def linear_fp32(layer: nn.Linear, x: Tensor) -> Tensor:
    """The linear layer evaluated in float32 whatever the weight dtype (fp32 autocast)."""
    bias = None if layer.bias is None else layer.bias.float()
    return F.linear(x.float(), layer.weight.float(), bias)


def _needs_autograd(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class Linear(nn.Linear):
    """nn.Linear (the same parameters and checkpoint keys) whose float32 inference on the CPU
    runs on oneDNN's matrix product instead of the BLAS sgemm behind F.linear.

    Why: on the CPU the forward's time is mostly its linear layers, and MKL's sgemm is slow on
    AMD processors: oneDNN (`mkldnn::_linear_pointwise`, the kernel torch's own compiler uses for
    a frozen linear) took 15-35 % less time at the mid config's shapes on a 2-core AMD EPYC
    (bench/README.md). The results differ from sgemm's by rounding only (a different summation
    order, ~5e-6 at unit scale). The op has no backward, so a pass that records gradients (the
    demo model's training), a block torch.compile traces (inductor picks its own kernels), CPU
    autocast, every other device or dtype, and products too small to gain keep F.linear.
    """

    onednn_on_cpu: bool = torch.backends.mkldnn.is_available()  # class-wide: see `blas_linear`
    # oneDNN costs ~14 us more per call: below ~2^24 multiply-adds (the tiny preset's layers)
    # sgemm is as fast or faster, measured on the same AMD EPYC
    onednn_min_macs: int = 1 << 24

    def forward(self, x: Tensor) -> Tensor:
        if (self.onednn_on_cpu and x.device.type == "cpu" and not torch.compiler.is_compiling()
                and x.numel() * self.out_features >= self.onednn_min_macs
                and not torch.is_autocast_enabled("cpu")  # autocast decides F.linear's dtype
                and x.dtype == self.weight.dtype == torch.float32
                and self.weight.device.type == "cpu"
                and not _needs_autograd(x, self.weight, self.bias)):
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


@contextmanager
def blas_linear() -> Iterator[None]:
    """Every `Linear` on F.linear inside the block: for torch's FLOP counter, which sees aten
    products only, and to time the two kernels against each other (bench/model_step.py)."""
    before = Linear.onednn_on_cpu
    Linear.onednn_on_cpu = False
    try:
        yield
    finally:
        Linear.onednn_on_cpu = before


def attention_core(q: Tensor, k: Tensor, v: Tensor, q_rope: Rotary | None,
                   k_rope: Rotary | None, kernel: AttentionKernel) -> Tensor:
    """Rotary embedding on q and k (when given), then softmax(q k^T / sqrt(d)) v, no mask."""
    if q_rope is not None:
        q = q_rope(q)
    if k_rope is not None:
        k = k_rope(k)
    return kernel(q, k, v)


def set_attention_kernel(root: nn.Module, kernel: AttentionKernel) -> int:
    """Route every Attention under root through kernel; the number of layers changed."""
    layers = [m for m in root.modules() if isinstance(m, Attention)]
    for layer in layers:
        layer.kernel = kernel
    return len(layers)


class RMSNorm(nn.Module):
    """RMSNorm with a learned gain; statistics and gain in float32, result in the input dtype."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # fp32 math as torch's rms_norm does for low-precision inputs, cast back afterwards
        out = F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps)
        return out.to(x.dtype)


class Attention(nn.Module):
    """Multi-head attention from x (width dim) to y (width kv_dim), q/k RMSNorm over the full width.

    Used for tower self-attention (y = x), text cross-attention (y = text) and the bridge.
    """

    def __init__(self, dim: int, kv_dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = Linear(dim, dim)
        self.k = Linear(kv_dim, dim)
        self.v = Linear(kv_dim, dim)
        self.o = Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)
        # Plain attributes (not state): the pipeline sets the kernel of its attention backend,
        # context parallel swaps the core for the duration of a joint step.
        self.kernel: AttentionKernel = sdpa_kernel
        self.core: AttentionCore = attention_core

    def forward(
        self, x: Tensor, y: Tensor | PaddedText, q_rope: Rotary | None = None,
        k_rope: Rotary | None = None,
    ) -> Tensor:
        # x: (B, L_q, dim)  y: (B, L_k, kv_dim), or the text context with its padding folded
        b, n = x.shape[0], self.num_heads
        keys_from = y.rows if isinstance(y, PaddedText) else y
        # 1. projections and full-width RMSNorm, split into heads: (B, L, n, d)
        q = self.norm_q(self.q(x)).unflatten(-1, (n, -1))
        k = self.norm_k(self.k(keys_from)).unflatten(-1, (n, -1))
        v = self.v(keys_from).unflatten(-1, (n, -1))
        # 2-3. rotary position embedding per head (absent for text cross-attention), then
        #      softmax(q k^T / sqrt(d)) v with no mask through the selected kernel (over every
        #      text row, each padding copy included)
        if isinstance(y, PaddedText):
            out = y.attend(q, k, v, self.kernel)
        else:
            out = self.core(q, k, v, q_rope, k_rope, self.kernel)  # (B, L_q, n, d)
        # 4. concatenate heads and project: (B, L_q, dim)
        return self.o(out.reshape(b, x.shape[1], -1))


def gelu_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear -> GELU(tanh) -> Linear; the indices 0 and 2 match the checkpoint keys."""
    return nn.Sequential(
        Linear(in_dim, hidden_dim), nn.GELU(approximate="tanh"), Linear(hidden_dim, out_dim)
    )
