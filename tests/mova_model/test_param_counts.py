"""Release configs built on the meta device: exact key sets, shapes and parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mova_model.audio_dit import AudioDiT
from mova_model.bridge import DualTowerBridge
from mova_model.config import get_preset
from mova_model.layers import count_parameters
from mova_model.video_dit import VideoDiT


@pytest.fixture(scope="module")
def release() -> dict[str, nn.Module]:
    cfg = get_preset("mova-720p")
    with torch.device("meta"):
        return {
            "video": VideoDiT(cfg.video_dit),
            "audio": AudioDiT(cfg.audio_dit),
            "bridge": DualTowerBridge(cfg.bridge),
        }


@pytest.mark.parametrize(
    ("name", "tensors", "params"),
    [
        ("video", 1095, 14_288_901_184),
        ("audio", 825, 1_419_193_472),
        ("bridge", 720, 2_659_737_600),
    ],
)
def test_counts(release: dict[str, nn.Module], name: str, tensors: int, params: int) -> None:
    module = release[name]
    state = module.state_dict()
    assert len(state) == tensors
    assert count_parameters(module) == params
    assert sum(t.numel() for t in state.values()) == params
    assert list(module.buffers()) == []  # RoPE tables are never buffers


VIDEO_SHAPES = {
    "patch_embedding.weight": (5120, 36, 1, 2, 2),
    "patch_embedding.bias": (5120,),
    "text_embedding.0.weight": (5120, 4096),
    "text_embedding.2.weight": (5120, 5120),
    "time_embedding.0.weight": (5120, 256),
    "time_embedding.2.bias": (5120,),
    "time_projection.1.weight": (30720, 5120),
    "time_projection.1.bias": (30720,),
    "blocks.0.modulation": (1, 6, 5120),
    "blocks.39.self_attn.q.weight": (5120, 5120),
    "blocks.39.self_attn.norm_k.weight": (5120,),
    "blocks.7.cross_attn.o.bias": (5120,),
    "blocks.7.cross_attn.norm_q.weight": (5120,),
    "blocks.12.norm3.weight": (5120,),
    "blocks.12.norm3.bias": (5120,),
    "blocks.3.ffn.0.weight": (13824, 5120),
    "blocks.3.ffn.2.weight": (5120, 13824),
    "head.modulation": (1, 2, 5120),
    "head.head.weight": (64, 5120),
    "head.head.bias": (64,),
}
AUDIO_SHAPES = {
    "patch_embedding.weight": (1536, 128, 1),
    "time_projection.1.weight": (9216, 1536),
    "blocks.29.ffn.0.weight": (8960, 1536),
    "blocks.29.self_attn.norm_q.weight": (1536,),
    "head.modulation": (1, 2, 1536),
    "head.head.weight": (128, 1536),
    "head.head.bias": (128,),
}
BRIDGE_SHAPES = {
    "audio_to_video_conditioners.0.y_norm.weight": (1536,),
    "audio_to_video_conditioners.0.y_norm.bias": (1536,),
    "audio_to_video_conditioners.29.inner.q.weight": (5120, 5120),
    "audio_to_video_conditioners.29.inner.k.weight": (5120, 1536),
    "audio_to_video_conditioners.29.inner.v.weight": (5120, 1536),
    "audio_to_video_conditioners.29.inner.o.bias": (5120,),
    "audio_to_video_conditioners.29.inner.norm_k.weight": (5120,),
    "video_to_audio_conditioners.5.y_norm.weight": (5120,),
    "video_to_audio_conditioners.5.inner.q.weight": (1536, 1536),
    "video_to_audio_conditioners.5.inner.k.weight": (1536, 5120),
    "video_to_audio_conditioners.5.inner.v.bias": (1536,),
    "video_to_audio_conditioners.5.inner.norm_q.weight": (1536,),
}


@pytest.mark.parametrize(
    ("name", "shapes"),
    [("video", VIDEO_SHAPES), ("audio", AUDIO_SHAPES), ("bridge", BRIDGE_SHAPES)],
)
def test_sample_shapes(
    release: dict[str, nn.Module], name: str, shapes: dict[str, tuple[int, ...]]
) -> None:
    state = release[name].state_dict()
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key


def test_tower_key_set(release: dict[str, nn.Module]) -> None:
    keys = set(release["video"].state_dict())
    per_block = {
        "modulation", "norm3.weight", "norm3.bias",
        "ffn.0.weight", "ffn.0.bias", "ffn.2.weight", "ffn.2.bias",
    } | {
        f"{attn}.{part}"
        for attn in ("self_attn", "cross_attn")
        for part in [f"{p}.{s}" for p in "qkvo" for s in ("weight", "bias")]
        + ["norm_q.weight", "norm_k.weight"]
    }  # fmt: skip
    top = {
        f"{m}.{s}"
        for m in ("patch_embedding", "text_embedding.0", "text_embedding.2", "time_embedding.0",
                  "time_embedding.2", "time_projection.1", "head.head")
        for s in ("weight", "bias")
    } | {"head.modulation"}  # fmt: skip
    expected = top | {f"blocks.{i}.{k}" for i in range(40) for k in per_block}
    assert keys == expected
    # the non-affine norms have no keys
    assert not any(".norm1." in k or ".norm2." in k or k.startswith("head.norm") for k in keys)
    assert set(release["audio"].state_dict()) == {
        k for k in expected if not k.startswith("blocks.") or int(k.split(".")[1]) < 30
    }


def test_bridge_key_set(release: dict[str, nn.Module]) -> None:
    keys = set(release["bridge"].state_dict())
    parts = {"y_norm.weight", "y_norm.bias", "inner.norm_q.weight", "inner.norm_k.weight"} | {
        f"inner.{p}.{s}" for p in "qkvo" for s in ("weight", "bias")
    }
    expected = {
        f"{d}_conditioners.{i}.{p}"
        for d in ("audio_to_video", "video_to_audio")
        for i in range(30)
        for p in parts
    }
    assert keys == expected
