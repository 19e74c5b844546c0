"""Strict checkpoint I/O: exact round trips, readable failures, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mova_model.bridge import DualTowerBridge
from mova_model.checkpoint import (
    fingerprint,
    list_checkpoint_keys,
    load_component,
    save_component,
)
from mova_model.config import BridgeConfig, VideoDiTConfig, get_preset
from mova_model.errors import CheckpointError
from mova_model.video_dit import VideoDiT
from tests.mova_model.tiny_models import randomize_, tiny_inputs

TINY = get_preset("tiny")
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _saved_video_dit(folder: Path, **kwargs: object) -> VideoDiT:
    model = VideoDiT(TINY.video_dit)
    randomize_(model, seed=0)
    save_component(model, TINY.video_dit, folder, **kwargs)  # type: ignore[arg-type]
    return model.eval()


def _forward(model: VideoDiT) -> torch.Tensor:
    inputs = tiny_inputs()
    with torch.inference_mode():
        return model(inputs["video_input"], inputs["context"], inputs["t_video"])


@pytest.mark.parametrize("shard_bytes", [None, 100_000])
def test_save_then_load_is_an_exact_round_trip(tmp_path: Path, shard_bytes: int | None) -> None:
    original = _saved_video_dit(tmp_path, max_shard_bytes=shard_bytes)
    if shard_bytes:
        index = json.loads((tmp_path / f"{WEIGHTS}.index.json").read_text())
        assert len(set(index["weight_map"].values())) > 1
        assert not (tmp_path / WEIGHTS).exists()
    loaded, config = load_component(tmp_path, VideoDiTConfig, VideoDiT)
    assert config == TINY.video_dit
    for key, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(_forward(loaded), _forward(original))


def test_dtype_is_chosen_at_load(tmp_path: Path) -> None:
    _saved_video_dit(tmp_path)
    loaded, _ = load_component(tmp_path, VideoDiTConfig, VideoDiT, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in loaded.parameters())


def _break(folder: Path, edit: str) -> None:
    path = folder / WEIGHTS
    tensors = load_file(str(path))
    if edit == "missing":
        del tensors["blocks.1.cross_attn.k.weight"]
    elif edit == "unexpected":
        tensors["blocks.9.ghost.weight"] = torch.zeros(2)
    elif edit == "shape":
        tensors["head.head.weight"] = torch.zeros(3, 3)
    save_file(tensors, str(path))


@pytest.mark.parametrize(("edit", "needle"), [
    ("missing", "missing key(s): blocks.1.cross_attn.k.weight"),
    ("unexpected", "unexpected key(s) in diffusion_pytorch_model.safetensors: blocks.9.ghost"),
    ("shape", "'head.head.weight' has shape [3, 3], the model expects [64, 96]"),
])
def test_a_broken_folder_names_the_file_and_key(tmp_path: Path, edit: str, needle: str) -> None:
    _saved_video_dit(tmp_path)
    _break(tmp_path, edit)
    with pytest.raises(CheckpointError) as info:
        load_component(tmp_path, VideoDiTConfig, VideoDiT)
    assert needle in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_a_truncated_weight_file_is_reported_not_crashed_on(tmp_path: Path) -> None:
    _saved_video_dit(tmp_path)
    path = tmp_path / WEIGHTS
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS}: truncated or corrupt"):
        load_component(tmp_path, VideoDiTConfig, VideoDiT)


def test_missing_shard_and_missing_config_are_named(tmp_path: Path) -> None:
    _saved_video_dit(tmp_path, max_shard_bytes=100_000)
    shard = sorted(tmp_path.glob("diffusion_pytorch_model-*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"shard.*{shard.name}"):
        load_component(tmp_path, VideoDiTConfig, VideoDiT)
    (tmp_path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: missing"):
        load_component(tmp_path, VideoDiTConfig, VideoDiT)


def test_headers_list_keys_without_loading(tmp_path: Path) -> None:
    _saved_video_dit(tmp_path)
    keys = list_checkpoint_keys(tmp_path)
    assert keys["patch_embedding.weight"][0] == (96, 36, 1, 2, 2)
    assert len(keys) == len(VideoDiT(TINY.video_dit).state_dict())


def test_fingerprint_is_stable_and_follows_the_weights(tmp_path: Path) -> None:
    _saved_video_dit(tmp_path)
    first = fingerprint(tmp_path)
    assert fingerprint(tmp_path) == first
    tensors = load_file(str(tmp_path / WEIGHTS))
    tensors["head.head.bias"] = tensors["head.head.bias"] + 1
    save_file(tensors, str(tmp_path / WEIGHTS))
    assert fingerprint(tmp_path) != first


PEAK_SCRIPT = textwrap.dedent("""
    import resource, sys, torch
    from pathlib import Path
    from mova_model.bridge import DualTowerBridge
    from mova_model.checkpoint import load_component
    from mova_model.config import BridgeConfig
    folder = Path(sys.argv[1])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    module, _ = load_component(folder, BridgeConfig, DualTowerBridge)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    size = sum(p.numel() * p.element_size() for p in module.parameters())
    print(size, after - before)
""")


def test_peak_memory_while_loading_stays_near_the_component_size(tmp_path: Path) -> None:
    # A bridge of ~200 MB (fp32): wide enough to dwarf interpreter noise, quick to write.
    config = BridgeConfig(visual_layers=6, audio_layers=6, visual_hidden_dim=1024,
                          interaction_strategy="full",
                          audio_hidden_dim=512, head_dim=128)
    module = DualTowerBridge(config)
    save_component(module, config, tmp_path)
    del module
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(tmp_path)], check=True,
                            capture_output=True, text=True, cwd=Path(__file__).parents[2])
    size, growth = map(int, result.stdout.split())
    assert size > 100e6
    # 1.2x the component plus 40 MB for torch's own first-use allocations.
    assert growth < 1.2 * size + 40e6, f"peak grew {growth / 1e6:.0f} MB for {size / 1e6:.0f} MB"
