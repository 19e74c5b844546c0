"""Video tower: token order, unpatchify layout, head modulation, batching, dtypes, keys."""

from __future__ import annotations

import torch

from mova_model.config import get_preset
from mova_model.video_dit import VideoDiT
from tests.mova_model.tiny_models import randomize_, rel_err, tiny_inputs


def tiny_video() -> VideoDiT:
    model = VideoDiT(get_preset("tiny").video_dit)
    randomize_(model, seed=11)
    return model.eval()


@torch.no_grad()
def test_token_order_is_frame_row_column() -> None:
    model = tiny_video()
    x = torch.zeros(1, 36, 3, 4, 6)
    x[0, 5, 2, 3, 4] = 1.0  # frame 2, latent pixel (3, 4) -> patch row 1, column 2
    tokens, grid = model.embed_inputs(x)
    assert grid == (3, 2, 3) and tokens.shape == (1, 18, 96)
    changed = (tokens - model.patch_embedding.bias).abs().sum(-1).nonzero()[:, 1].tolist()
    assert changed == [(2 * 2 + 1) * 3 + 2]


def test_unpatchify_layout() -> None:
    model = tiny_video()
    f, h, w = 2, 3, 4
    out = torch.zeros(1, f * h * w, 64)
    token = (1 * h + 2) * w + 3  # f=1, y=2, x=3
    ph, pw, c = 1, 0, 5
    out[0, token, (ph * 2 + pw) * 16 + c] = 7.0  # channel index (pt, ph, pw, c), c fastest
    vel = model.unpatchify(out, (f, h, w))
    assert vel.shape == (1, 16, 2, 6, 8)
    assert vel[0, c, 1, 2 * 2 + ph, 2 * 3 + pw].item() == 7.0
    assert vel.count_nonzero().item() == 1


@torch.no_grad()
def test_head_uses_raw_time_embedding() -> None:
    model = tiny_video()
    x = torch.randn(2, 5, 96)
    t_emb = torch.randn(2, 96)
    shift = model.head.modulation[0, 0] + t_emb[:, None]
    scale = model.head.modulation[0, 1] + t_emb[:, None]
    normed = torch.nn.functional.layer_norm(x, (96,), eps=1e-6)
    expected = model.head.head(normed * (1 + scale) + shift)
    torch.testing.assert_close(model.head(x, t_emb), expected)


@torch.no_grad()
def test_time_modulation_shapes_and_rows() -> None:
    model = tiny_video()
    t_emb, t_mod = model.time_modulation(torch.tensor([995.947, 10.5]))
    assert t_emb.shape == (2, 96) and t_mod.shape == (2, 6, 96)
    flat = model.time_projection(t_emb)  # SiLU then linear
    torch.testing.assert_close(t_mod[:, 3], flat[:, 3 * 96 : 4 * 96])


@torch.no_grad()
def test_batch_of_two_equals_single_runs() -> None:
    model = tiny_video()
    inputs = tiny_inputs(batch=2, seed=12)
    out = model(inputs["video_input"], inputs["context"], inputs["t_video"])
    assert out.shape == (2, 16, 3, 4, 6) and out.dtype == torch.float32
    for i in range(2):
        one = model(inputs["video_input"][i : i + 1], inputs["context"][i : i + 1],
                    inputs["t_video"][i : i + 1])  # fmt: skip
        torch.testing.assert_close(out[i : i + 1], one, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_zero_text_rows_are_attended() -> None:
    model = tiny_video()
    inputs = tiny_inputs(seed=13, text_len=8, text_rows=5)
    out8 = model(inputs["video_input"], inputs["context"], inputs["t_video"])
    out5 = model(inputs["video_input"], inputs["context"][:, :5], inputs["t_video"])
    assert rel_err(out5, out8) > 1e-4  # dropping the zero rows changes the result


@torch.no_grad()
def test_bf16_weights_compute_in_bf16() -> None:
    model = tiny_video().to(torch.bfloat16)
    inputs = tiny_inputs(seed=14)
    out = model(inputs["video_input"], inputs["context"], inputs["t_video"])
    ref = tiny_video()(inputs["video_input"], inputs["context"], inputs["t_video"])
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert rel_err(out, ref) < 0.1
    _, t_mod = model.time_modulation(inputs["t_video"])
    assert t_mod.dtype == torch.bfloat16


def test_no_buffers_and_blocks_module_list() -> None:
    model = tiny_video()
    assert isinstance(model.blocks, torch.nn.ModuleList) and len(model.blocks) == 3
    assert list(model.buffers()) == []
    assert "blocks.0.norm3.weight" in model.state_dict()
    assert not any("norm1" in k or "norm2" in k for k in model.state_dict())
