"""The text context's padding folded into one key that stands for all its copies."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from mova_model.attention import sdpa_kernel
from mova_model.layers import Attention
from mova_model.padded_text import PaddedText, kept_rows


def _context(rows: list[int], length: int = 12, dim: int = 8) -> Tensor:
    """(B, length, dim) random states, item b zero from row rows[b] on."""
    gen = torch.Generator().manual_seed(0)
    context = torch.randn(len(rows), length, dim, generator=gen)
    for item, used in enumerate(rows):
        context[item, used:] = 0.0
    return context


def test_fold_keeps_the_rows_any_item_uses_and_one_padding_row() -> None:
    context = _context([3, 5])
    text = PaddedText.fold(context, multiple=1)
    assert text.copies == 12 - 5
    assert torch.equal(text.rows, context[:, :6])
    assert torch.equal(text.rows[:, -1], torch.zeros(2, 8))
    assert torch.equal(text.unfolded(text.rows), context)


@pytest.mark.parametrize(("rows", "kept", "copies"), [
    ([12], 12, 1),  # no padding
    ([11], 12, 1),  # one padding row: nothing to fold
    ([0], 1, 12),  # an all-zero context is one key standing for all
])
def test_fold_edges(rows: list[int], kept: int, copies: int) -> None:
    text = PaddedText.fold(_context(rows), multiple=1)
    assert (text.rows.shape[1], text.copies) == (kept, copies)


def test_the_kept_rows_are_a_multiple_of_32_so_a_compiled_block_sees_few_shapes() -> None:
    context = _context([24, 3], length=512)
    text = PaddedText.fold(context)
    assert text.rows.shape[1] == 32 and text.copies == 512 - 31
    assert torch.equal(text.unfolded(text.rows), context)
    assert PaddedText.fold(_context([481], length=512)).copies == 1  # 512 rows: nothing folded
    assert kept_rows(479, 512) == 480 and kept_rows(480, 512) == 512


def test_a_zero_row_inside_the_prompt_stays_a_key_of_its_own() -> None:
    context = _context([6])
    context[0, 2] = 0.0
    text = PaddedText.fold(context, multiple=1)
    assert text.rows.shape[1] == 7 and text.copies == 6
    assert torch.equal(text.unfolded(text.rows), context)


def _attention_pair(dtype: torch.dtype) -> tuple[Attention, Tensor, Tensor]:
    torch.manual_seed(1)
    attention = Attention(32, 32, 4, 1e-6).to(dtype).eval()
    x = torch.randn(2, 9, 32, dtype=dtype)
    states = torch.randn(2, 40, 32, dtype=dtype)
    states[0, 7:] = 0.0
    states[1, 4:] = 0.0
    # the text MLP makes a zero row one constant vector: model that with a shared bias row
    states = states + torch.randn(32, dtype=dtype)
    states[0, 7:] = states[0, 39]
    states[1, 4:] = states[1, 39]
    return attention, x, states


def test_cross_attention_over_the_folded_rows_equals_every_row() -> None:
    attention, x, states = _attention_pair(torch.float32)
    text = PaddedText(states[:, :8], copies=40 - 7)
    with torch.no_grad():
        folded = attention(x, text)
        every_row = attention(x, states)
        # dropping the copies instead of weighting them changes the result: the fold matters
        unweighted = attention(x, states[:, :8])
    torch.testing.assert_close(folded, every_row, rtol=1e-5, atol=1e-6)
    assert (unweighted - every_row).abs().max() > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_kernel_without_a_bias_gets_every_row(dtype: torch.dtype) -> None:
    """FlashAttention / SageAttention take no bias: they see the rows unfolded, as the release
    computes them (and bf16 takes that path with SDPA too)."""
    attention, x, states = _attention_pair(dtype)
    seen: list[int] = []

    def kernel(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        seen.append(k.shape[1])
        return sdpa_kernel(q, k, v)

    text = PaddedText(states[:, :8], copies=40 - 7)
    # bf16 products of 8 rows and of 40 may round a row differently: close, not always equal
    with torch.no_grad():
        expected = attention(x, states)
        attention.kernel = kernel
        tolerance = {"atol": 1e-2, "rtol": 2e-2} if dtype == torch.bfloat16 else {}
        torch.testing.assert_close(attention(x, text), expected, **tolerance)
    assert seen == [40]


@pytest.mark.parametrize(("dtype", "keys_seen"), [(torch.float32, []), (torch.bfloat16, [40])])
def test_sdpa_takes_the_bias_in_float32_only(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                             keys_seen: list[int]) -> None:
    """In bf16, log(copies) would round by up to 0.4 %: SDPA gets every row there instead."""
    attention, x, states = _attention_pair(dtype)
    seen: list[int] = []

    def recording_sdpa(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        seen.append(k.shape[1])
        return sdpa_kernel(q, k, v)

    monkeypatch.setattr("mova_model.padded_text.sdpa_kernel", recording_sdpa)
    attention.kernel = recording_sdpa
    with torch.no_grad():
        attention(x, PaddedText(states[:, :8], copies=40 - 7))
    assert seen == keys_seen
