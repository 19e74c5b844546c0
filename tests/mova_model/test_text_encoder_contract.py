"""Text encoder contract beyond the happy path: every config field reaches UMT5, prompts are
encoded independently of how much padding follows, truncation keeps text_len rows, and each
loading failure names its folder and cause."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from mova_model.config import get_preset
from mova_model.errors import CheckpointError
from mova_model.text_encoder import TextEncoder, build_text_encoder, clean_prompt, umt5_config
from tests.mova_model.test_text_encoder import TINY, folders  # noqa: F401 - the fixture

PROMPT = "A runner in orange shoes jogs along a quiet river at sunrise"


def test_every_config_field_reaches_umt5() -> None:
    config = TINY.replace(vocab_size=4100, d_model=40, d_kv=12, d_ff=72, num_layers=3,
                          num_heads=5, relative_attention_num_buckets=24,
                          relative_attention_max_distance=96, feed_forward_proj="gated-gelu")
    umt5 = umt5_config(config)
    assert (umt5.vocab_size, umt5.d_model, umt5.d_kv, umt5.d_ff, umt5.num_layers,
            umt5.num_heads) == (4100, 40, 12, 72, 3, 5)
    assert umt5.relative_attention_num_buckets == 24
    assert umt5.relative_attention_max_distance == 96
    assert umt5.feed_forward_proj == "gated-gelu" and umt5.dense_act_fn == "gelu_new"
    assert umt5.dropout_rate == 0.0 and umt5.use_cache is False
    assert umt5.is_encoder_decoder is False
    model = build_text_encoder(config)
    assert not model.training
    assert model.encoder.block[0].layer[0].SelfAttention.relative_attention_num_buckets == 24
    assert len(model.encoder.block) == 3


def test_cleaning_strips_html_entities_twice_and_trims() -> None:
    assert clean_prompt("&lt;b&gt;bold&lt;/b&gt;") == "<b>bold</b>"
    assert clean_prompt("&amp;lt;x&amp;gt;") == "<x>"
    assert clean_prompt("\u00a0 caf\u00e9 \u2003") == "café"


def test_encoding_does_not_depend_on_the_padding(folders: tuple[Path, Path]) -> None:  # noqa: F811
    encoder = TextEncoder.from_folders(*folders)
    n = encoder.token_count(PROMPT)
    short, long = encoder.encode([PROMPT], text_len=n + 3), encoder.encode([PROMPT], 128)
    assert short.shape == (1, n + 3, 32) and long.shape == (1, 128, 32)
    torch.testing.assert_close(short[0, :n], long[0, :n], rtol=1e-5, atol=1e-6)
    # a cleaned-up variant of the same prompt encodes identically
    messy = encoder.encode(["  " + PROMPT.replace(" ", "   ") + "\n"], text_len=n + 3)
    torch.testing.assert_close(messy, short, rtol=0, atol=0)


def test_long_prompts_are_truncated_to_text_len(folders: tuple[Path, Path]) -> None:  # noqa: F811
    encoder = TextEncoder.from_folders(*folders)
    assert encoder.token_count(PROMPT) > 8
    out = encoder.encode([PROMPT], text_len=8)
    assert out.shape == (1, 8, 32) and torch.all(out[0].abs().sum(-1) > 0)
    assert encoder.token_count(PROMPT) == encoder.token_count("  " + PROMPT + "  ")
    ids = encoder.tokenizer(PROMPT).input_ids
    assert encoder.token_count(PROMPT) == len(ids) and ids[-1] == 1  # EOS counted


def test_missing_folders_are_named(folders: tuple[Path, Path], tmp_path: Path) -> None:  # noqa: F811
    model_dir, tokenizer_dir = folders
    with pytest.raises(CheckpointError) as info:
        TextEncoder.from_folders(tmp_path / "nope", tokenizer_dir)
    assert str(info.value) == f"{tmp_path / 'nope'}: missing component folder"
    with pytest.raises(CheckpointError) as info:
        TextEncoder.from_folders(model_dir, tmp_path / "gone")
    assert str(info.value) == f"{tmp_path / 'gone'}: missing component folder"


def test_an_unreadable_model_folder_is_a_checkpoint_error(folders: tuple[Path, Path],  # noqa: F811
                                                         tmp_path: Path) -> None:
    empty = tmp_path / "text_encoder"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"text_encoder: cannot load the text encoder"):
        TextEncoder.from_folders(empty, folders[1])


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(folders: tuple[Path, Path],  # noqa: F811
                                                          tmp_path: Path) -> None:
    small = tmp_path / "small"
    ids = len(AutoTokenizer.from_pretrained(str(folders[1])))
    torch.manual_seed(0)
    build_text_encoder(TINY.replace(vocab_size=ids - 1)).save_pretrained(str(small))
    with pytest.raises(CheckpointError) as info:
        TextEncoder.from_folders(small, folders[1])
    assert f"tokenizer has {ids} ids but the encoder's vocab_size is {ids - 1}" in \
        str(info.value)
    build_text_encoder(TINY.replace(vocab_size=ids)).save_pretrained(str(small))
    assert TextEncoder.from_folders(small, folders[1]).model.config.vocab_size == ids
    assert str(info.value).startswith(str(folders[1]))


def test_the_release_text_length_is_512() -> None:
    assert get_preset("tiny").text_encoder.text_len == 512


def test_the_feed_forward_kind_reaches_umt5() -> None:
    assert umt5_config(TINY.replace(feed_forward_proj="relu")).feed_forward_proj == "relu"


def test_weights_load_in_the_asked_dtype(folders: tuple[Path, Path]) -> None:  # noqa: F811
    encoder = TextEncoder.from_folders(*folders, dtype=torch.bfloat16)
    assert {p.dtype for p in encoder.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in TextEncoder.from_folders(*folders).model.parameters()} == \
        {torch.float32}


def test_every_kind_of_weight_mismatch_is_listed(folders: tuple[Path, Path],  # noqa: F811
                                                 tmp_path: Path) -> None:
    broken = tmp_path / "text_encoder"
    broken.mkdir()
    (broken / "config.json").write_bytes((folders[0] / "config.json").read_bytes())
    tensors = load_file(str(folders[0] / "model.safetensors"))
    del tensors["encoder.block.1.layer.1.DenseReluDense.wo.weight"]
    del tensors["encoder.block.1.layer.1.DenseReluDense.wi_0.weight"]
    tensors["encoder.block.9.extra.weight"] = torch.zeros(2)
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as info:
        TextEncoder.from_folders(broken, folders[1])
    assert str(info.value) == (
        f"{broken}: text encoder weights do not match (missing keys: "
        "encoder.block.1.layer.1.DenseReluDense.wi_0.weight, "
        "encoder.block.1.layer.1.DenseReluDense.wo.weight; unexpected keys: "
        "encoder.block.9.extra.weight)")


def test_a_weight_of_the_wrong_shape_is_a_checkpoint_error(folders: tuple[Path, Path],  # noqa: F811
                                                           tmp_path: Path) -> None:
    broken = tmp_path / "text_encoder"
    broken.mkdir()
    (broken / "config.json").write_bytes((folders[0] / "config.json").read_bytes())
    tensors = load_file(str(folders[0] / "model.safetensors"))
    tensors["encoder.block.1.layer.1.DenseReluDense.wo.weight"] = torch.zeros(3, 3)
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as info:
        TextEncoder.from_folders(broken, folders[1])
    assert str(info.value) == (
        f"{broken / 'model.safetensors'}: tensor 'encoder.block.1.layer.1.DenseReluDense.wo."
        "weight' has shape [3, 3], but config.json (vocab_size=4000, d_model=32, d_kv=16, "
        "d_ff=64, num_heads=2) makes it [32, 64]")


def test_at_most_ten_keys_are_listed_per_kind(folders: tuple[Path, Path],  # noqa: F811
                                              tmp_path: Path) -> None:
    broken = tmp_path / "text_encoder"
    broken.mkdir()
    (broken / "config.json").write_bytes((folders[0] / "config.json").read_bytes())
    tensors = load_file(str(folders[0] / "model.safetensors"))
    dropped = sorted(k for k in tensors if k.startswith("encoder.block."))[:12]
    for key in dropped:
        del tensors[key]
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as info:
        TextEncoder.from_folders(broken, folders[1])
    listed = str(info.value).split("(missing keys: ", 1)[1].rstrip(")").split(", ")
    assert listed == dropped[:10]


def _edited_copy(model_dir: Path, tmp_path: Path, **changes: object) -> Path:
    import json
    import shutil

    copy = tmp_path / "text_encoder"
    shutil.copytree(model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config.update(changes)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize(("changes", "message"), [
    # transformers loaded these as UMT5 with a warning
    ({"model_type": "t5"}, "config.json: model_type='t5'; MOVA's text encoder is UMT5"),
    # a KeyError from inside transformers' first layer
    ({"dense_act_fn": "nope"}, "config.json: dense_act_fn='nope' is no activation"),
    # transformers' answer was "For details look at the above report!"
    ({"vocab_size": 10}, "model.safetensors: tensor 'shared.weight' has shape [4000, 32], but "
                         "config.json (vocab_size=10, d_model=32, d_kv=16, d_ff=64, "
                         "num_heads=2) makes it [10, 32]"),
    ({"d_ff": 48}, "has shape [64, 32], but config.json"),
])
def test_a_config_that_does_not_fit_umt5_or_its_weights_is_named(
        folders: tuple[Path, Path], tmp_path: Path,  # noqa: F811
        changes: dict[str, object], message: str) -> None:
    edited = _edited_copy(folders[0], tmp_path, **changes)
    with pytest.raises(CheckpointError) as info:
        TextEncoder.from_folders(edited, folders[1])
    assert message in str(info.value) and str(info.value).startswith(str(edited))


def test_a_broken_tokenizer_is_named_as_the_tokenizer(folders: tuple[Path, Path],  # noqa: F811
                                                     tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "tokenizer"
    shutil.copytree(folders[1], broken)
    for path in broken.iterdir():
        path.write_text("garbage")
    with pytest.raises(CheckpointError) as info:
        TextEncoder.from_folders(folders[0], broken)
    assert str(info.value).startswith(f"{broken}: cannot load the tokenizer (")
