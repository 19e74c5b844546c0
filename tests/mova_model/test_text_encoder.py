"""Offline tokenizer and UMT5 text encoding: cleaning, padding rows zeroed, strict loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from mova_model.config import TextEncoderConfig, get_preset
from mova_model.errors import CheckpointError
from mova_model.text_encoder import (
    FAST_ATTENTION,
    REFERENCE_ATTENTION,
    PromptTokens,
    TextEncoder,
    _eager_attention_fp32_softmax,
    build_text_encoder,
    clean_prompt,
)
from mova_model.tokenizer_build import build_tokenizer

TINY = get_preset("tiny").text_encoder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("text")
    build_tokenizer(root / "tokenizer", vocab_size=TINY.vocab_size)
    torch.manual_seed(0)
    build_text_encoder(TINY).save_pretrained(str(root / "text_encoder"))
    return root / "text_encoder", root / "tokenizer"


@pytest.mark.parametrize("text", ["Fresh coffee every morning.", "每天早上都有新鲜的咖啡",
                                  "قهوة طازجة كل صباح", "Économisez 20 % aujourd'hui"])
def test_tokenizer_covers_latin_cjk_and_arabic(folders: tuple[Path, Path], text: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(folders[1]))
    ids = tokenizer(text).input_ids
    assert ids[-1] == tokenizer.eos_token_id == 1 and tokenizer.pad_token_id == 0
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_tokenizer_build_is_deterministic(tmp_path: Path) -> None:
    build_tokenizer(tmp_path / "a", vocab_size=4000)
    build_tokenizer(tmp_path / "b", vocab_size=4000)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize(("raw", "clean"), [
    ("  two   spaces\tand\nlines ", "two spaces and lines"),
    ("Fish &amp;amp; chips", "Fish & chips"),
    ("cafÃ© latte", "café latte"),
])
def test_prompt_cleaning(raw: str, clean: str) -> None:
    assert clean_prompt(raw) == clean


def test_rows_past_the_tokens_are_exactly_zero(folders: tuple[Path, Path]) -> None:
    encoder = TextEncoder.from_folders(*folders)
    prompts = ["Fresh coffee", "A longer prompt about a quiet beach at sunset"]
    out = encoder.encode(prompts)  # the release's text length by default
    assert out.shape == (2, 512, 32)
    for row, prompt in zip(out, prompts, strict=True):
        n = encoder.token_count(prompt)
        assert torch.all(row[n:] == 0) and torch.all(row[:n].abs().sum(-1) > 0)
    one_by_one = torch.cat([encoder.encode([p], text_len=512) for p in prompts])
    assert torch.allclose(out, one_by_one, atol=1e-6)
    empty = encoder.encode([""], text_len=512)
    assert encoder.token_count("") == 1 and torch.all(empty[0, 1:] == 0)


def test_a_prompt_past_512_tokens_says_it_was_cut_and_encodes_as_before(
        folders: tuple[Path, Path]) -> None:
    encoder = TextEncoder.from_folders(*folders)
    long_prompt = " ".join(["morning"] * 599)  # one token a word, and the EOS: 600 tokens
    hidden, (tokens,) = encoder.encode_counted([long_prompt])
    assert tokens == PromptTokens(count=600, kept=512)
    assert tokens.truncated and tokens.dropped == 88
    _, (short,) = encoder.encode_counted(["Fresh coffee every morning"])
    n = encoder.token_count("Fresh coffee every morning")
    assert short == PromptTokens(count=n, kept=n) and not short.truncated and short.dropped == 0
    # exactly 512 tokens is not a cut
    _, (full,) = encoder.encode_counted([" ".join(["morning"] * 511)])
    assert full == PromptTokens(count=512, kept=512) and not full.truncated

    # The numbers are the release's: the first 511 tokens and the EOS, encoded unmasked.
    ids = encoder.tokenizer(long_prompt).input_ids
    kept = torch.tensor([ids[:511] + [encoder.tokenizer.eos_token_id]])
    with torch.inference_mode():
        expected = encoder.model(input_ids=kept,
                                 attention_mask=torch.ones_like(kept)).last_hidden_state
    assert torch.equal(hidden, expected)
    assert torch.equal(encoder.encode([long_prompt]), hidden)


def test_a_missing_weight_is_named(folders: tuple[Path, Path], tmp_path: Path) -> None:
    broken = tmp_path / "text_encoder"
    broken.mkdir()
    (broken / "config.json").write_bytes((folders[0] / "config.json").read_bytes())
    tensors = load_file(str(folders[0] / "model.safetensors"))
    del tensors["encoder.block.1.layer.1.DenseReluDense.wo.weight"]
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    needle = r"missing keys: .*block\.1\.layer\.1\.DenseReluDense\.wo"
    with pytest.raises(CheckpointError, match=needle):
        TextEncoder.from_folders(broken, folders[1])


def test_release_config_parameter_count() -> None:
    with torch.device("meta"):
        model = build_text_encoder(TextEncoderConfig())
    assert sum(p.numel() for p in model.parameters()) == 5_680_910_336


def test_the_reference_kernel_is_loaded_and_computes_attention_right(
        folders: tuple[Path, Path]) -> None:
    encoder = TextEncoder.from_folders(*folders)
    assert encoder.model.config._attn_implementation == REFERENCE_ATTENTION
    prompts = ["Fresh coffee every morning.", "A longer prompt about a sunny morning run."]
    reference = encoder.encode(prompts, 32)
    fast = encoder.encode(prompts, 32, attention=FAST_ATTENTION)
    # fp32: the kernel is the same attention as SDPA (relative bias, padding mask, no scale),
    # only the softmax precision differs, which is invisible in fp32.
    assert torch.allclose(reference, fast, atol=1e-5)
    assert encoder.model.config._attn_implementation == FAST_ATTENTION


def test_reference_kernel_takes_the_softmax_in_fp32_in_bf16(
        folders: tuple[Path, Path]) -> None:
    encoder = TextEncoder.from_folders(*folders, dtype=torch.bfloat16)
    prompts = ["Fresh coffee every morning, with a smile and a song."]
    exact = TextEncoder.from_folders(*folders, dtype=torch.float64).encode(prompts, 32)
    reference = encoder.encode(prompts, 32).double()
    fast = encoder.encode(prompts, 32, attention=FAST_ATTENTION).double()
    # Both are bf16 runs of the same model, a few bf16 ulps from the fp64 result; they differ
    # from each other (the softmax precision), which is why the release mode pins the kernel.
    assert not torch.equal(reference, fast)
    # asked for again after the fast kernel ran, the release's kernel is back
    assert torch.equal(encoder.encode(prompts, 32).double(), reference)
    scale = exact.abs().max()
    assert (reference - exact).abs().max() < 0.05 * scale


def _attention_reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         scale: float, bias: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(s·q·kᵀ + bias + mask)·v in float64, (B, L, n, d)."""
    q, k, v = (t.double() for t in (query, key, value))
    scores = scale * q @ k.transpose(2, 3) + bias.double() + mask.double()
    return (torch.softmax(scores, dim=-1) @ v).transpose(1, 2)


@pytest.mark.parametrize("scaling", [None, 1.0, 0.5, 2.0])
def test_the_attention_scales_biases_masks_and_never_drops_out_in_eval(
        scaling: float | None) -> None:
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(2, 3, 5, 4, generator=generator) for _ in range(3))
    bias = torch.randn(1, 3, 5, 5, generator=generator)
    mask = torch.zeros(2, 1, 1, 5)
    mask[1, ..., 3:] = torch.finfo(torch.float32).min  # the second prompt is 3 tokens long
    expected = _attention_reference(query, key, value, 1.0 if scaling is None else scaling,
                                    bias, mask)
    module = torch.nn.Module().eval()
    out, weights = _eager_attention_fp32_softmax(module, query, key, value, mask,
                                                 scaling=scaling, dropout=0.3,
                                                 position_bias=bias)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)
    assert torch.all(weights[1, ..., 3:] == 0)
    # training without a dropout rate drops nothing either (the default rate is 0)
    trained, _ = _eager_attention_fp32_softmax(module.train(), query, key, value, mask,
                                               scaling=scaling, position_bias=bias)
    torch.testing.assert_close(trained, out)
    trained, _ = _eager_attention_fp32_softmax(module, query, key, value, mask, scaling=scaling,
                                               dropout=0.0, position_bias=bias)
    torch.testing.assert_close(trained, out)


def _copy_encoder(folders: tuple[Path, Path], broken: Path) -> Path:
    broken.mkdir()
    for name in ("config.json", "model.safetensors"):
        (broken / name).write_bytes((folders[0] / name).read_bytes())
    return broken / "model.safetensors"


def test_an_int8_weight_is_refused_not_loaded_as_zeros(folders: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    weights = _copy_encoder(folders, tmp_path / "text_encoder")
    tensors = load_file(str(weights))
    key = "encoder.block.0.layer.0.SelfAttention.k.weight"
    tensors[key] = tensors[key].to(torch.int8)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as info:
        TextEncoder.from_folders(weights.parent, folders[1])
    assert str(info.value) == (f"{weights}: tensor '{key}' has dtype I8, expected a "
                               "floating-point type (F16, BF16, F32, F64)")


def test_a_truncated_weight_file_is_a_checkpoint_error(folders: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    weights = _copy_encoder(folders, tmp_path / "text_encoder")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: truncated or corrupt"):
        TextEncoder.from_folders(weights.parent, folders[1])


def test_a_tokenizer_folder_with_tokenizer_json_alone_encodes_as_the_whole_folder(
        folders: tuple[Path, Path], tmp_path: Path) -> None:
    """The original loads the tokenizer as the T5TokenizerFast model_index.json names, which
    knows T5's pad and EOS tokens; a folder holding only tokenizer.json loads there. Read
    through AutoTokenizer it became a bare backend with no pad token: every prompt failed."""
    alone = tmp_path / "tokenizer"
    alone.mkdir()
    (alone / "tokenizer.json").write_bytes((folders[1] / "tokenizer.json").read_bytes())
    prompts = ["Fresh coffee every morning.", "每天早上都有新鲜的咖啡"]
    whole = TextEncoder.from_folders(folders[0], folders[1]).encode(prompts, text_len=16)
    assert torch.equal(TextEncoder.from_folders(folders[0], alone).encode(prompts, text_len=16),
                       whole)


def test_a_left_padding_tokenizer_keeps_the_first_n_rows_as_the_release_does(
        folders: tuple[Path, Path], tmp_path: Path) -> None:
    """Spec §5.4 keeps rows 0..n-1 by position (the release slices `u[:n]`): a tokenizer
    folder that pads on the left puts its padding there, and those rows are what is kept."""
    left = tmp_path / "tokenizer"
    left.mkdir()
    for path in folders[1].iterdir():
        (left / path.name).write_bytes(path.read_bytes())
    config_path = left / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "padding_side": "left"}))
    encoder = TextEncoder.from_folders(folders[0], left)
    prompt = "Fresh coffee every morning."
    n = encoder.token_count(prompt)
    ids = encoder.tokenizer([prompt], padding="max_length", max_length=16,
                            return_tensors="pt", return_attention_mask=True)
    assert ids.attention_mask[0, 0] == 0 and ids.attention_mask[0, -1] == 1  # padded left
    with torch.inference_mode():
        hidden = encoder.model(input_ids=ids.input_ids,
                               attention_mask=ids.attention_mask).last_hidden_state
    out = encoder.encode([prompt], text_len=16)
    assert torch.equal(out[0, :n], hidden[0, :n])
    assert torch.all(out[0, n:] == 0) and not torch.equal(out[0, :n], out[0, -n:])


def test_the_tokenizer_folder_is_readable_by_the_originals_transformers_4(
        folders: tuple[Path, Path]) -> None:
    """The original pins transformers<5, which reads `extra_special_tokens` as a mapping:
    the empty list transformers 5 writes made it fail ('list' object has no attribute 'keys',
    checked with 4.57). The folder still loads here with the same ids."""
    config = json.loads((folders[1] / "tokenizer_config.json").read_text())
    assert not isinstance(config.get("extra_special_tokens", {}), list)
    tokenizer = AutoTokenizer.from_pretrained(str(folders[1]))
    assert tokenizer("Fresh coffee").input_ids[-1] == tokenizer.eos_token_id == 1
    assert tokenizer.pad_token_id == 0
