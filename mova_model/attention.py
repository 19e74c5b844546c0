"""Attention kernels and the backend choice (spec §13.2, issue 11 §4).

A kernel computes softmax(q k^T / sqrt(d)) v without a mask on (B, L, n, d) tensors, the layout
FlashAttention and SageAttention take natively. The release picks a kernel silently by what is
installed, FlashAttention 3 > FlashAttention 2 > SageAttention > PyTorch SDPA (spec §11.5); here
`auto` does the same, `sdpa` / `flash` / `sage` ask for one, and the name of the kernel actually
used is returned so a render can record it. The setting is chosen once by the pipeline and passed
down to the layers; nothing in this package reads the environment below `from_pretrained`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mova_model.errors import ConfigError

# (q (B, L_q, n, d), k (B, L_k, n, d), v (B, L_k, n, d)) -> (B, L_q, n, d)
AttentionKernel = Callable[[Tensor, Tensor, Tensor], Tensor]

REQUESTS = ("auto", "sdpa", "flash", "sage")
SDPA, FLASH_ATTN_3, FLASH_ATTN_2, SAGE = "sdpa", "flash_attn_3", "flash_attn_2", "sage"
RELEASE_ORDER = (FLASH_ATTN_3, FLASH_ATTN_2, SAGE)  # what `auto` tries before SDPA
# The importable module that provides each optional kernel.
KERNEL_MODULES = {
    FLASH_ATTN_3: "flash_attn_interface",
    FLASH_ATTN_2: "flash_attn",
    SAGE: "sageattention",
}
_CANDIDATES = {
    "auto": RELEASE_ORDER,
    "flash": (FLASH_ATTN_3, FLASH_ATTN_2),
    "sage": (SAGE,),
    "sdpa": (),
}
_HALF = (torch.float16, torch.bfloat16)


def sdpa_kernel(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """PyTorch scaled_dot_product_attention; it wants (B, n, L, d), so transpose around it."""
    q, k, v = (u.transpose(1, 2) for u in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2)


def _flash_attn_3_kernel(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    func = importlib.import_module(KERNEL_MODULES[FLASH_ATTN_3]).flash_attn_func
    out = func(q, k, v)
    # FA3 releases differ: some return (out, softmax_lse), later ones only out.
    result: Tensor = out[0] if isinstance(out, tuple) else out
    return result


def _flash_attn_2_kernel(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    func = importlib.import_module(KERNEL_MODULES[FLASH_ATTN_2]).flash_attn_func
    out: Tensor = func(q, k, v)
    return out


def _sage_kernel(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    # SageAttention quantises q and k to 8 bits: results are close to, not equal to, SDPA's.
    func = importlib.import_module(KERNEL_MODULES[SAGE]).sageattn
    out: Tensor = func(q, k, v, tensor_layout="NHD", is_causal=False)
    return out


KERNELS: dict[str, AttentionKernel] = {
    SDPA: sdpa_kernel,
    FLASH_ATTN_3: _flash_attn_3_kernel,
    FLASH_ATTN_2: _flash_attn_2_kernel,
    SAGE: _sage_kernel,
}


@dataclass(frozen=True)
class AttentionBackend:
    """The kernel chosen for a pipeline and its name (recorded with every render)."""

    name: str
    kernel: AttentionKernel


def installed_kernels() -> frozenset[str]:
    """Names of the optional kernels whose module is importable here (found, not imported)."""
    return frozenset(
        name for name, module in KERNEL_MODULES.items() if importlib.util.find_spec(module)
    )


def select_attention_backend(
    requested: str,
    device: torch.device,
    dtype: torch.dtype,
    installed: frozenset[str] | None = None,
) -> AttentionBackend:
    """The kernel for `requested` on this device and weight dtype.

    auto: the release's order, SDPA where no faster kernel is usable. flash / sage: that kernel
    or a ConfigError saying what is missing (an explicit request is not silently downgraded).
    The optional kernels are CUDA-only and take fp16/bf16 only, so on the CPU or with fp32
    weights auto is SDPA.
    """
    if requested not in REQUESTS:
        raise ConfigError(f"attention={requested!r}; expected one of {', '.join(REQUESTS)}")
    found = installed_kernels() if installed is None else installed
    usable = device.type == "cuda" and dtype in _HALF
    for name in _CANDIDATES[requested]:
        if name in found and usable:
            return AttentionBackend(name, KERNELS[name])
    if requested in ("auto", "sdpa"):
        return AttentionBackend(SDPA, sdpa_kernel)
    wanted = " or ".join(KERNEL_MODULES[n] for n in _CANDIDATES[requested])
    raise ConfigError(
        f"attention={requested!r} needs {wanted} installed, a CUDA device and fp16/bf16 weights; "
        f"found installed={sorted(found) or 'none'}, device={device.type}, dtype={dtype}. "
        "Use attention='auto' to fall back to SDPA."
    )
