"""Checkpoint folders in the official layout: config.json + safetensors (single or sharded), or
a single torch-pickled `diffusion_pytorch_model.bin` as diffusers' save_pretrained writes with
safe_serialization=False (read with weights_only: tensors only, no code).

Loading is strict (every key present once, no extra key, exact shapes) and streams tensors one
at a time from memory-mapped files into a module built on the meta device, so peak memory stays
close to the component's own size. Errors name the folder, file and key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from mova_model.config import (
    INERT_DIT_FLAGS,
    PRESETS,
    AudioDiTConfig,
    AudioVAEConfig,
    BridgeConfig,
    ComponentConfig,
    VideoDiTConfig,
    VideoVAEConfig,
)
from mova_model.errors import CheckpointError

C = TypeVar("C", bound=ComponentConfig)

WEIGHTS_NAME = "diffusion_pytorch_model"
CONFIG_NAME = "config.json"
MODEL_INDEX = "model_index.json"
SCHEDULER_CONFIG = "scheduler_config.json"

# Subfolder -> (library, class) written to model_index.json, as diffusers' save_pretrained
# records the original's classes: the module that defines each custom class (the `mova` package
# exports none of them, so ["mova", "WanModel"] would not load in the original). The loader
# here maps by subfolder name and ignores these strings (spec §2.1).
COMPONENT_CLASSES: dict[str, tuple[str, str]] = {
    "video_dit": ("mova.diffusion.models.wan_video_dit", "WanModel"),
    "video_dit_2": ("mova.diffusion.models.wan_video_dit", "WanModel"),
    "audio_dit": ("mova.diffusion.models.wan_audio_dit", "WanAudioModel"),
    "dual_tower_bridge": ("mova.diffusion.models.interactionv2", "DualTowerConditionalBridge"),
    "audio_vae": ("mova.diffusion.models.dac_vae", "DAC"),
    "video_vae": ("diffusers", "AutoencoderKLWan"),
    "text_encoder": ("transformers", "UMT5EncoderModel"),
    "tokenizer": ("transformers", "T5TokenizerFast"),
    "scheduler": ("mova.diffusion.schedulers.flow_match_pair", "FlowMatchPairScheduler"),
}
_SHOWN = 10  # keys listed in an error message before "... and N more"

KeyInfo = tuple[tuple[int, ...], str, Path]  # shape, dtype name, file
# safetensors dtype names of floating-point tensors (cast to the pipeline dtype at load).
# Anything else (I8, I64, BOOL, ...) cannot be a weight of these models: torch refuses it
# with a multi-line error and transformers casts it silently (int8 weights became zeros).
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def _listing(keys: list[str]) -> str:
    head = ", ".join(keys[:_SHOWN])
    return head + (f", ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


# ---- config -------------------------------------------------------------------------------


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object (config.json, model_index.json, shard indexes)."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") \
            from err
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: invalid JSON ({err})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_config(folder: Path, config_cls: type[C], filename: str = CONFIG_NAME) -> C:
    """Parse `folder/config.json` into a typed config."""
    path = Path(folder) / filename
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (expected the component's {filename})")
    data = read_json_object(path)
    try:
        return config_cls.from_config_dict(data)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err


def write_config(folder: Path, config: ComponentConfig, filename: str = CONFIG_NAME) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / filename).write_text(json.dumps(config.to_config_dict(), indent=2) + "\n")


# ---- reading headers ----------------------------------------------------------------------


def _read_weight_map(index: Path) -> dict[str, str]:
    """key -> shard file name from a sharded index, each name a plain file of the folder: an
    index naming "../x.safetensors" must not load weights from outside the checkpoint."""
    weight_map = read_json_object(index).get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index}: not a safetensors index (weight_map must be an object "
                              f"of tensor name -> shard file, found {type(weight_map).__name__})")
    for key, name in weight_map.items():
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name \
                or "\\" in name:
            raise CheckpointError(f"{index}: tensor {key!r} maps to {name!r}, which is not a "
                                  "file name inside the component folder")
    return weight_map


def _weight_index(folder: Path, weights_name: str) -> tuple[list[Path], dict[str, str] | None]:
    """The weight files, and the sharded index's key -> file name map (None: a single file)."""
    single = folder / f"{weights_name}.safetensors"
    index = folder / f"{weights_name}.safetensors.index.json"
    if index.is_file():
        weight_map = _read_weight_map(index)
        files = sorted({folder / name for name in weight_map.values()})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{index}: names shard(s) that do not exist: "
                                  f"{_listing(missing)}")
        return files, weight_map
    if single.is_file():
        return [single], None
    pickled = folder / f"{weights_name}.bin"
    if pickled.is_file():  # what the original's from_pretrained falls back to, as diffusers
        return [pickled], None
    raise CheckpointError(f"{folder}: no weights ({single.name}, {index.name} or "
                          f"{pickled.name} expected)")


def _weight_files(folder: Path, weights_name: str) -> list[Path]:
    return _weight_index(folder, weights_name)[0]


# safetensors' dtype names, for tensors read from a pickled .bin
_DTYPE_NAMES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32",
                torch.float64: "F64", torch.int8: "I8", torch.int16: "I16", torch.int32: "I32",
                torch.int64: "I64", torch.uint8: "U8", torch.bool: "BOOL"}


def _read_pickled(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a torch-pickled state dict, memory-mapped where the format allows;
    weights_only refuses anything but tensors and plain containers (no code runs)."""
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            data = torch.load(path, map_location="cpu", weights_only=True)  # legacy format
    except Exception as err:  # noqa: BLE001 - pickle, zip and weights_only errors alike
        raise CheckpointError(f"{path}: cannot read the weights ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from err
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
        raise CheckpointError(f"{path}: not a state dict (expected tensor name -> tensor)")
    return data


def _read_header(path: Path, pickled: dict[Path, dict[str, torch.Tensor]] | None = None
                 ) -> dict[str, tuple[tuple[int, ...], str]]:
    """key -> (shape, dtype name) from a safetensors header; safetensors itself checks that the
    header is well formed and that the data section covers every tensor.

    A pickled .bin has no header: it is read whole, and kept in `pickled` when given, so that
    a load reads it once (a pre-zip .bin cannot be memory-mapped)."""
    if path.suffix == ".bin":
        tensors = _read_pickled(path)
        if pickled is not None:
            pickled[path] = tensors
        return {key: (tuple(t.shape), _DTYPE_NAMES.get(t.dtype, str(t.dtype)))
                for key, t in tensors.items()}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = {}
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a Mapping
                tensor_slice = handle.get_slice(key)
                header[key] = (tuple(tensor_slice.get_shape()), tensor_slice.get_dtype())
            return header
    except SafetensorError as err:
        if "not fully covered" in str(err) or "too small" in str(err) \
                or "header length" in str(err):
            raise CheckpointError(f"{path}: truncated or corrupt safetensors file "
                                  f"({path.stat().st_size} bytes): {err}") from err
        raise CheckpointError(f"{path}: corrupt safetensors header ({err})") from err


def list_checkpoint_keys(folder: Path, weights_name: str = WEIGHTS_NAME, *,
                         pickled: dict[Path, dict[str, torch.Tensor]] | None = None
                         ) -> dict[str, KeyInfo]:
    """Every stored tensor (shape, dtype, file), read from the headers only (a pickled .bin's
    tensors are kept in `pickled` when given); a sharded index must name, for each key it
    lists, the shard that holds it."""
    files, weight_map = _weight_index(Path(folder), weights_name)
    keys: dict[str, KeyInfo] = {}
    for path in files:
        for key, (shape, dtype) in _read_header(path, pickled).items():
            if key in keys:
                raise CheckpointError(f"{path}: key {key!r} is also stored in {keys[key][2]}")
            keys[key] = (shape, dtype, path)
    for key, name in (weight_map or {}).items():
        if key not in keys:
            raise CheckpointError(f"{Path(folder) / weights_name}.safetensors.index.json: "
                                  f"tensor {key!r} is listed in {name} but stored in no shard")
        if keys[key][2].name != name:
            raise CheckpointError(f"{Path(folder) / weights_name}.safetensors.index.json: "
                                  f"tensor {key!r} is listed in {name} but stored in "
                                  f"{keys[key][2].name}")
    return keys


def check_floating(keys: dict[str, KeyInfo]) -> None:
    """Refuse a tensor that is not floating point (one line: file, key, dtype)."""
    for key, (_, dtype, path) in keys.items():
        if dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{path}: tensor {key!r} has dtype {dtype}, expected a "
                                  f"floating-point type ({', '.join(FLOAT_DTYPES)})")


# ---- loading ------------------------------------------------------------------------------


def _expected_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers, as in module.state_dict(), without materialising."""
    return dict(module.state_dict(keep_vars=True))


def load_weights(module: nn.Module, folder: Path, *, dtype: torch.dtype | None = None,
                 device: str | torch.device = "cpu", weights_name: str = WEIGHTS_NAME) -> None:
    """Fill `module` (typically on the meta device) from `folder`, strictly."""
    folder = Path(folder)
    pickled_files: dict[Path, dict[str, torch.Tensor]] = {}
    stored = list_checkpoint_keys(folder, weights_name, pickled=pickled_files)
    expected = _expected_tensors(module)
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_listing(missing)}")
        if unexpected:
            files = sorted({stored[k][2].name for k in unexpected})
            parts.append(f"{len(unexpected)} unexpected key(s) in {', '.join(files)}: "
                         f"{_listing(unexpected)}")
        raise CheckpointError(f"{folder}: checkpoint does not match {type(module).__name__}: "
                              + "; ".join(parts))
    for key, (shape, _, path) in stored.items():
        if tuple(expected[key].shape) != shape:
            raise CheckpointError(f"{path}: tensor {key!r} has shape {list(shape)}, the model "
                                  f"expects {list(expected[key].shape)}")
    check_floating(stored)
    by_file: dict[Path, list[str]] = {}
    for key, (_, _, path) in stored.items():
        by_file.setdefault(path, []).append(key)
    state: dict[str, torch.Tensor] = {}
    for path, keys in by_file.items():
        if path.suffix == ".bin":
            pickled = pickled_files.pop(path)  # read once, by the key listing above
            for key in keys:
                target_dtype = dtype if dtype is not None and pickled[key].is_floating_point() \
                    else pickled[key].dtype
                state[key] = pickled.pop(key).to(device=device, dtype=target_dtype)
            del pickled
            continue
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                for key in keys:
                    tensor = handle.get_tensor(key)
                    target_dtype = dtype if dtype is not None and tensor.is_floating_point() \
                        else tensor.dtype
                    # One tensor at a time: convert and move, so the read copy is dropped at
                    # once and the peak stays near the component's own size.
                    state[key] = tensor.to(device=device, dtype=target_dtype)
                    del tensor
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: cannot read tensor data ({err})") from err
    # assign=True adopts the loaded tensors as the parameters (no copy into meta storage);
    # strict is a second guard after the named checks above.
    module.load_state_dict(state, strict=True, assign=True)
    del state
    module.requires_grad_(False)
    left_on_meta = [name for name, t in module.state_dict(keep_vars=True).items()
                    if t.device.type == "meta"]
    left_on_meta += [name for name, b in module.named_buffers() if b.device.type == "meta"]
    if left_on_meta:
        raise CheckpointError(f"{folder}: tensors left unloaded: {_listing(sorted(left_on_meta))}")


def load_component(folder: Path, config_cls: type[C], build: Callable[[C], nn.Module], *,
                   dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
                   ) -> tuple[nn.Module, C]:
    """Read the config, build the module on the meta device, stream the weights in."""
    config = read_config(Path(folder), config_cls)
    with torch.device("meta"):
        module = build(config)
    load_weights(module, Path(folder), dtype=dtype, device=device)
    return module.eval(), config


# ---- saving -------------------------------------------------------------------------------


def save_component(module: nn.Module, config: ComponentConfig, folder: Path, *,
                   max_shard_bytes: int | None = None, dtype: torch.dtype | None = None,
                   weights_name: str = WEIGHTS_NAME) -> None:
    """Write config.json and the weights (one file, or shards + index), the official layout."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_config(folder, config)
    tensors: dict[str, torch.Tensor] = {}
    for key, tensor in module.state_dict().items():
        value = tensor.detach()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous().clone()  # clone: no shared storage between keys
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(tensors):
        nbytes = tensors[key].numel() * tensors[key].element_size()
        if max_shard_bytes is not None and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensors[key]
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(folder / f"{weights_name}.safetensors"))
        return
    weight_map = {}
    total = 0
    for i, shard in enumerate(shards, start=1):
        name = f"{weights_name}-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name))
        for key, value in shard.items():
            weight_map[key] = name
            total += value.numel() * value.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / f"{weights_name}.safetensors.index.json").write_text(json.dumps(index, indent=2))


_FULL_HASH_BYTES = 64 * 2**20
_SAMPLE_CHUNKS, _CHUNK_BYTES = 64, 2**20


def fingerprint(folder: Path, weights_name: str = WEIGHTS_NAME) -> str:
    """sha256 identifying a component: config.json, each weight file's header and size, and its
    data (in full up to 64 MiB; above that 64 evenly spaced 1 MiB chunks, so a 28 GB expert is
    fingerprinted in well under a second while any retrained or merged weights still change it)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    config = folder / CONFIG_NAME
    if config.is_file():
        digest.update(config.read_bytes())
    for path in _weight_files(folder, weights_name):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            if size <= _FULL_HASH_BYTES:
                digest.update(handle.read())
                continue
            step = (size - _CHUNK_BYTES) // (_SAMPLE_CHUNKS - 1)
            for i in range(_SAMPLE_CHUNKS):
                handle.seek(i * step)
                digest.update(handle.read(_CHUNK_BYTES))
    return digest.hexdigest()


def fingerprint_folder(path: Path) -> str:
    """Checkpoint fingerprint for lineage: model_index + every component's fingerprint."""
    path = checkpoint_folder(path)
    if not (path / MODEL_INDEX).is_file():
        # one error naming the folder (the bare FileNotFoundError named only the file)
        raise CheckpointError(f"{path}: not a MOVA checkpoint folder (no {MODEL_INDEX})")
    digest = hashlib.sha256((path / MODEL_INDEX).read_bytes())
    for name in sorted(COMPONENT_CLASSES):
        folder = path / name
        if name in ("tokenizer", "scheduler", "text_encoder"):
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                digest.update(file.name.encode())
                digest.update(str(file.stat().st_size).encode())
        else:
            digest.update(fingerprint(folder).encode())
    return digest.hexdigest()


def checkpoint_folder(path: str | Path) -> Path:
    """`path` if it is a folder; else the one error that names it (not the first file that a
    missing folder lacks)."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: " + ("not a folder" if folder.exists()
                                               else "no such checkpoint folder"))
    return folder


def detect_preset(path: Path) -> str | None:
    """The preset whose architecture the folder's configs describe, or None for other sizes.

    The two release presets share every config field (they differ in default resolution), so
    between them the folder name decides: one naming "720" is mova-720p, else mova-360p."""
    path = checkpoint_folder(path)
    found = {
        "video_dit": read_config(path / "video_dit", VideoDiTConfig),
        "audio_dit": read_config(path / "audio_dit", AudioDiTConfig),
        "bridge": read_config(path / "dual_tower_bridge", BridgeConfig),
        "audio_vae": read_config(path / "audio_vae", AudioVAEConfig),
        "video_vae": read_config(path / "video_vae", VideoVAEConfig),
    }
    # Inert flags (require_clip_embedding, ...) do not change the architecture: compare without.
    def arch(config: ComponentConfig) -> ComponentConfig:
        if isinstance(config, VideoDiTConfig | AudioDiTConfig):
            return config.replace(in_dim_control_adapter=24,
                                  **{flag: False for flag in INERT_DIT_FLAGS})
        return config

    matches = [name for name, preset in PRESETS.items()
               if all(arch(getattr(preset, key)) == arch(value) for key, value in found.items())]
    if len(matches) > 1:
        return "mova-720p" if "720" in path.resolve().name else "mova-360p"
    return matches[0] if matches else None
