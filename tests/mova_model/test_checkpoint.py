"""Strict checkpoint I/O: exact round trips, readable failures, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

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


INDEX = f"{WEIGHTS}.index.json"


def _edit_index(folder: Path, edit: str) -> Path:
    """A sharded folder whose index is broken in one way; returns the index path."""
    _saved_video_dit(folder, max_shard_bytes=100_000)
    path = folder / INDEX
    index = json.loads(path.read_text())
    weight_map = index["weight_map"]
    shards = sorted(set(weight_map.values()))
    key = sorted(weight_map)[0]
    if edit == "traversal":
        outside = folder.parent / "outside.safetensors"
        save_file(load_file(str(folder / weight_map[key])), str(outside))
        weight_map[key] = "../outside.safetensors"
    elif edit == "list":
        index["weight_map"] = list(weight_map.items())
    elif edit == "non_string":
        weight_map[key] = 5
    elif edit == "wrong_shard":
        weight_map[key] = next(s for s in shards if s != weight_map[key])
    elif edit == "ghost_key":
        weight_map["ghost.weight"] = shards[0]
    path.write_text(json.dumps(index))
    return path


@pytest.mark.parametrize(("edit", "message"), [
    ("traversal", "maps to '../outside.safetensors', which is not a file name inside the "
                  "component folder"),
    ("list", "not a safetensors index (weight_map must be an object"),
    ("non_string", "maps to 5, which is not a file name"),
    ("wrong_shard", "is listed in diffusion_pytorch_model-0000"),
    ("ghost_key", "tensor 'ghost.weight' is listed in diffusion_pytorch_model-00001-of-"),
])
def test_a_shard_index_is_checked_against_the_folder_and_the_shards(
        tmp_path: Path, edit: str, message: str) -> None:
    index = _edit_index(tmp_path / "video_dit", edit)
    with pytest.raises(CheckpointError) as info:
        load_component(index.parent, VideoDiTConfig, VideoDiT)
    assert str(info.value).startswith(f"{index}: ") and message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("dtype", "name"), [(torch.int8, "I8"), (torch.int64, "I64"),
                                             (torch.bool, "BOOL")])
def test_a_non_float_tensor_is_refused_naming_file_key_and_dtype(
        tmp_path: Path, dtype: torch.dtype, name: str) -> None:
    _saved_video_dit(tmp_path)
    tensors = load_file(str(tmp_path / WEIGHTS))
    tensors["head.head.bias"] = tensors["head.head.bias"].to(dtype)
    save_file(tensors, str(tmp_path / WEIGHTS))
    with pytest.raises(CheckpointError) as info:
        load_component(tmp_path, VideoDiTConfig, VideoDiT)
    assert str(info.value) == (f"{tmp_path / WEIGHTS}: tensor 'head.head.bias' has dtype {name}, "
                               "expected a floating-point type (F16, BF16, F32, F64)")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_are_still_cast_at_load(tmp_path: Path, dtype: torch.dtype) -> None:
    original = _saved_video_dit(tmp_path)
    tensors = {k: v.to(dtype) for k, v in load_file(str(tmp_path / WEIGHTS)).items()}
    save_file(tensors, str(tmp_path / WEIGHTS))
    loaded, _ = load_component(tmp_path, VideoDiTConfig, VideoDiT, dtype=torch.float32)
    expected = original.state_dict()["head.head.weight"].to(dtype).float()
    assert torch.equal(loaded.state_dict()["head.head.weight"], expected)


def test_weights_pickled_as_diffusers_writes_without_safetensors_load(tmp_path: Path) -> None:
    """save_pretrained(safe_serialization=False) writes diffusion_pytorch_model.bin, which the
    original loads; so does this loader (tensors only: weights_only)."""
    original = _saved_video_dit(tmp_path)
    (tmp_path / WEIGHTS).unlink()
    torch.save(original.state_dict(), tmp_path / "diffusion_pytorch_model.bin")
    loaded, _ = load_component(tmp_path, VideoDiTConfig, VideoDiT, dtype=torch.bfloat16)
    for key, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.to(torch.bfloat16)), key
    assert fingerprint(tmp_path)  # fingerprinted as the file it is


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_pickled_weight_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            zip_format: bool) -> None:
    """A pre-zip .bin (torch before 1.6) cannot be memory-mapped: each read is the whole file,
    so the key listing's read is the one the load uses."""
    original = _saved_video_dit(tmp_path)
    (tmp_path / WEIGHTS).unlink()
    torch.save(original.state_dict(), tmp_path / "diffusion_pytorch_model.bin",
               _use_new_zipfile_serialization=zip_format)
    reads: list[object] = []
    real_load = torch.load

    def counted_load(*args: Any, **kwargs: Any) -> Any:
        reads.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counted_load)
    loaded, _ = load_component(tmp_path, VideoDiTConfig, VideoDiT)
    for key, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # the pre-zip file: one try with mmap (refused before reading), one real read
    assert len(reads) == (1 if zip_format else 2), reads


class _NotATensor:
    pass


@pytest.mark.parametrize(("content", "needle"), [
    (b"not a pickle at all", "cannot read the weights"),
    ("object", "cannot read the weights"),  # code in the pickle: weights_only refuses it
    ([1, 2], "not a state dict"),
])
def test_a_pickled_weight_file_that_is_not_plain_tensors_is_refused(
        tmp_path: Path, content: object, needle: str) -> None:
    _saved_video_dit(tmp_path)
    (tmp_path / WEIGHTS).unlink()
    path = tmp_path / "diffusion_pytorch_model.bin"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save({"x": _NotATensor()} if content == "object" else content, path)
    with pytest.raises(CheckpointError) as info:
        load_component(tmp_path, VideoDiTConfig, VideoDiT)
    assert str(info.value).startswith(f"{path}: {needle}")
