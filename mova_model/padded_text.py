"""The text context with its zero padding kept once, and how many rows it stands for.

Spec §3.6 (CrossAttn): every one of the 512 context rows is a key of the text cross-attention,
the zero-padded ones included, since after the text MLP a zero row is one constant non-zero vector
that the release attends to 512 - n times. Identical keys with identical values are, in softmax,
one key whose logit is raised by log m (exp(s + log m) = m exp(s)). So the padding goes through
the text MLP and the key and value projections once, and the attention sees the n prompt rows
and one padding row with a bias of log m: the release's result up to rounding, without the work
on hundreds of copies (a prompt fills a few dozen of the 512 rows).

The kept rows are rounded up to a multiple of 32 (the zero rows up to it stay keys of their own,
the last one carries the rest), so a compiled block sees a few shapes, not one per prompt length.

Only the SDPA kernel takes a bias; FlashAttention and SageAttention get the rows back in full.
So does half precision, where log m itself would round by up to 0.4 % (a 2 % error in the
padding's weight for m = 488): the bias is used in float32 and float64 only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mova_model.attention import AttentionKernel, sdpa_kernel

ROW_MULTIPLE = 32  # kept rows are a multiple of it (see above)


def kept_rows(used: int, length: int, multiple: int = ROW_MULTIPLE) -> int:
    """Rows kept of a `length`-row context whose rows from `used` on are zero: the used ones and
    at least one zero row, rounded up to `multiple`; at most `length` (then nothing is folded)."""
    return min(-(-(used + 1) // multiple) * multiple, length)


@dataclass(frozen=True)
class PaddedText:
    """Rows (B, kept, D): the context up to its last non-zero row (in any batch item), then zero
    rows up to `kept_rows`, the last of which stands for `copies` of them (after the text MLP,
    the MLP's rows). copies == 1: nothing was folded."""

    rows: Tensor
    copies: int = 1

    @classmethod
    def fold(cls, context: Tensor, multiple: int = ROW_MULTIPLE) -> PaddedText:
        """(B, L_t, text_dim) UMT5 states, zero rows at the end -> the folded context. Zero rows
        among the prompt rows stay where they are."""
        nonzero = context.detach().ne(0).any(dim=-1).any(dim=0).nonzero()  # (k, 1) row indices
        used = int(nonzero[-1]) + 1 if nonzero.numel() else 0
        length = context.shape[1]
        kept = kept_rows(used, length, multiple)
        return cls(context[:, :kept], length - kept + 1) if kept < length else cls(context)

    def map(self, layer: Callable[[Tensor], Tensor]) -> PaddedText:
        """A row-wise layer (the text MLP) applied to the kept rows."""
        return PaddedText(layer(self.rows), self.copies)

    def unfolded(self, u: Tensor) -> Tensor:
        """u (B, kept, ...) on the kept rows -> (B, L_t, ...), the last row repeated."""
        if self.copies == 1:
            return u
        padding = u[:, -1:].expand(-1, self.copies, *u.shape[2:])
        return torch.cat([u[:, :-1], padding], dim=1)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, kernel: AttentionKernel) -> Tensor:
        """softmax(q k^T / sqrt(d)) v over every context row, for k and v (B, kept, heads, d)
        projected from the kept rows; q (B, L_q, heads, d) -> (B, L_q, heads, d)."""
        if self.copies == 1 or kernel is not sdpa_kernel or q.dtype not in (torch.float32,
                                                                            torch.float64):
            return kernel(q, self.unfolded(k), self.unfolded(v))
        bias = torch.zeros(1, k.shape[1], dtype=q.dtype, device=q.device)  # (L_q, L_k) broadcast
        bias[0, -1] = math.log(self.copies)
        q, k, v = (u.transpose(1, 2) for u in (q, k, v))  # SDPA's (B, heads, L, d)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2)
