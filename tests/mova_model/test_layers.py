"""Leaf layers: timestep sinusoid, modulation, RMSNorm, attention, linears, parameter count."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from mova_model.layers import (
    Attention,
    Linear,
    RMSNorm,
    blas_linear,
    count_parameters,
    linear_fp32,
    modulate,
    sinusoidal_embedding,
)


def test_sinusoid_cosine_half_first_float64() -> None:
    t = torch.tensor([995.947, 0.0, 105.035])
    e = sinusoidal_embedding(t, 256)
    assert e.shape == (3, 256) and e.dtype == torch.float32
    for k in (0, 1, 64, 127):
        angle = t[0].item() * 10000.0 ** (-k / 128)  # the float32 timestep, widened
        assert e[0, k].item() == torch.tensor(math.cos(angle), dtype=torch.float32).item()
        assert e[0, 128 + k].item() == torch.tensor(math.sin(angle), dtype=torch.float32).item()
    assert torch.equal(e[1, :128], torch.ones(128)) and torch.equal(e[1, 128:], torch.zeros(128))


def test_modulate() -> None:
    x, shift, scale = torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([3.0])
    assert modulate(x, shift, scale).item() == 2.0 * 4.0 + 0.5


def test_rms_norm_fp32_and_dtype() -> None:
    torch.manual_seed(0)
    norm = RMSNorm(8, 1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, 8))
    x = torch.randn(2, 3, 8)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected, rtol=1e-6, atol=1e-6)
    norm_bf16 = norm.to(torch.bfloat16)
    out = norm_bf16(x.bfloat16())
    assert out.dtype == torch.bfloat16
    # fp32 statistics, one rounding at the end
    ref = torch.nn.functional.rms_norm(
        x.bfloat16().float(), (8,), norm_bf16.weight.float(), 1e-6
    ).bfloat16()
    assert torch.equal(out, ref)


def test_attention_full_width_qk_norm_and_heads() -> None:
    torch.manual_seed(0)
    attn = Attention(dim=8, kv_dim=6, num_heads=2, eps=1e-6)
    x, y = torch.randn(1, 4, 8), torch.randn(1, 5, 6)
    out = attn(x, y)
    # manual: RMSNorm over the full width 8, then split into 2 heads of 4
    q = attn.norm_q(attn.q(x)).reshape(1, 4, 2, 4)
    k = attn.norm_k(attn.k(y)).reshape(1, 5, 2, 4)
    v = attn.v(y).reshape(1, 5, 2, 4)
    w = torch.softmax(torch.einsum("bind,bjnd->bnij", q, k) / 2.0, dim=-1)
    expected = attn.o(torch.einsum("bnij,bjnd->bind", w, v).reshape(1, 4, 8))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    # a rotary hook is applied to q and k per head (B, L, n, d)
    seen: list[tuple[int, ...]] = []

    def spy(u: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(u.shape))
        return u

    attn(x, y, spy, spy)
    assert seen == [(1, 4, 2, 4), (1, 5, 2, 4)]


def test_linear_fp32_with_bf16_weights() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(4, 3).to(torch.bfloat16)
    x = torch.randn(2, 4)
    out = linear_fp32(layer, x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x @ layer.weight.float().T + layer.bias.float())


def test_count_parameters() -> None:
    assert count_parameters(nn.Linear(4, 3)) == 15
    with torch.device("meta"):
        assert count_parameters(nn.Linear(1000, 1000)) == 1_001_000


class _OpNames(TorchDispatchMode):
    """The aten/mkldnn operators a block of code dispatches."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def _linear_pair() -> tuple[Linear, nn.Linear]:
    torch.manual_seed(0)
    fast = Linear(256, 512)
    plain = nn.Linear(256, 512)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch without oneDNN")
def test_linear_inference_on_cpu_runs_on_onednn_with_the_same_numbers() -> None:
    fast, plain = _linear_pair()
    x = torch.randn(2, 257, 256)[:, ::2]  # a strided input, as a sliced activation is
    with torch.inference_mode(), _OpNames() as ops:
        out = fast(x)
    assert "mkldnn._linear_pointwise" in ops.names
    with torch.inference_mode():
        torch.testing.assert_close(out, plain(x), rtol=1e-5, atol=1e-5)
        with blas_linear(), _OpNames() as ops:
            torch.testing.assert_close(fast(x), plain(x), rtol=0, atol=0)
        assert "mkldnn._linear_pointwise" not in ops.names
        assert fast(x).shape == (2, 129, 512)
        assert fast(torch.randn(0, 256)).shape == (0, 512)
        with _OpNames() as ops:  # a small product stays on sgemm, which is faster there
            torch.testing.assert_close(fast(x[:, :8]), plain(x[:, :8]), rtol=0, atol=0)
        assert "mkldnn._linear_pointwise" not in ops.names
    assert Linear.onednn_on_cpu  # blas_linear restored it


def test_linear_training_keeps_autograd_exact() -> None:
    """The oneDNN op has no backward: a pass recording gradients must not take it (the demo
    model trains through these layers)."""
    fast, plain = _linear_pair()
    x = torch.randn(300, 256, requires_grad=True)
    x_plain = x.detach().clone().requires_grad_(True)
    (fast(x) ** 2).sum().backward()
    (plain(x_plain) ** 2).sum().backward()
    assert x.grad is not None and fast.weight.grad is not None and fast.bias is not None
    assert torch.equal(x.grad, x_plain.grad)
    assert torch.equal(fast.weight.grad, plain.weight.grad)
    assert fast.bias.grad is not None and plain.bias.grad is not None
    assert torch.equal(fast.bias.grad, plain.bias.grad)
    # a frozen layer still passes gradients to its input
    fast.requires_grad_(False)
    x.grad = None
    fast(x).sum().backward()
    assert x.grad is not None and torch.count_nonzero(x.grad) > 0


def test_linear_under_cpu_autocast_computes_as_nn_linear() -> None:
    """Autocast picks F.linear's dtype (bf16 here): the oneDNN path must not bypass it."""
    fast, plain = _linear_pair()
    x = torch.randn(300, 256)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, expected = fast(x), plain(x)
    assert out.dtype == expected.dtype == torch.bfloat16
    assert torch.equal(out, expected)
