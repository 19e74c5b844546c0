"""Audio tower: 1-D embedding, 1-D RoPE, layout, batching, keys."""

from __future__ import annotations

import torch

from mova_model.audio_dit import AudioDiT
from mova_model.config import get_preset
from mova_model.rope import audio_rope_table
from tests.mova_model.tiny_models import randomize_, tiny_inputs


def tiny_audio() -> AudioDiT:
    model = AudioDiT(get_preset("tiny").audio_dit)
    randomize_(model, seed=21)
    return model.eval()


@torch.no_grad()
def test_embedding_is_per_frame_linear() -> None:
    model = tiny_audio()
    x = torch.randn(1, 128, 9)
    tokens, grid = model.embed_inputs(x)
    assert grid == (9,) and tokens.shape == (1, 9, 48)
    w = model.patch_embedding.weight[:, :, 0]
    torch.testing.assert_close(tokens[0, 4], w @ x[0, :, 4] + model.patch_embedding.bias)


def test_rope_is_one_dimensional_and_cached() -> None:
    model = tiny_audio()
    table = model.rope.table((9,), torch.device("cpu"))
    assert table is model.rope.table((9,), torch.device("cpu"))
    torch.testing.assert_close(table, audio_rope_table(9, 24, torch.device("cpu")))


@torch.no_grad()
def test_forward_shape_and_batch() -> None:
    model = tiny_audio()
    inputs = tiny_inputs(batch=2, seed=22, audio_len=11)
    out = model(inputs["audio_input"], inputs["context"], inputs["t_audio"])
    assert out.shape == (2, 128, 11) and out.dtype == torch.float32
    one = model(inputs["audio_input"][1:], inputs["context"][1:], inputs["t_audio"][1:])
    torch.testing.assert_close(out[1:], one, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_timestep_matters() -> None:
    model = tiny_audio()
    inputs = tiny_inputs(seed=23)
    a = model(inputs["audio_input"], inputs["context"], torch.tensor([900.0]))
    b = model(inputs["audio_input"], inputs["context"], torch.tensor([100.0]))
    assert not torch.allclose(a, b)


def test_keys() -> None:
    state = tiny_audio().state_dict()
    assert len(state) == 2 * 27 + 15
    assert tuple(state["patch_embedding.weight"].shape) == (48, 128, 1)
    assert tuple(state["head.head.weight"].shape) == (128, 48)
