"""Write a complete MOVA checkpoint folder in the official layout, with random weights.

    python -m mova_model.make_checkpoint --preset tiny --seed 0 OUT

Tests and the demo use it: the loader cannot tell the result from a real release except by size.
The release presets are accepted too but need the memory of the full model (~130 GB in fp32).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.utils import logging as transformers_logging

from mova_model.audio_dit import AudioDiT
from mova_model.audio_vae import AudioVAE
from mova_model.bridge import DualTowerBridge
from mova_model.checkpoint import (
    COMPONENT_CLASSES,
    MODEL_INDEX,
    SCHEDULER_CONFIG,
    save_component,
    write_config,
)
from mova_model.config import MovaConfig, get_preset
from mova_model.text_encoder import build_text_encoder
from mova_model.tokenizer_build import build_tokenizer
from mova_model.video_dit import VideoDiT
from mova_model.video_vae import build_video_vae


def _seeded(seed: int, build: Callable[[Any], nn.Module], config: Any) -> nn.Module:
    """Build a module under its own seed so each component's weights are reproducible."""
    torch.manual_seed(seed)
    return build(config).eval()


def make_checkpoint(out: Path, *, preset: str = "tiny", seed: int = 0,
                    max_shard_bytes: int | None = None, overwrite: bool = False) -> Path:
    """Write every component of `preset` with random weights into `out`; returns `out`.

    The folder is built in a temporary sibling and swapped in only when complete: a crash or
    an error leaves the previous `out` (with overwrite) untouched, and never half a checkpoint."""
    config: MovaConfig = get_preset(preset)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file, not a checkpoint folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(out, "partial")
    staging.mkdir()
    try:
        _write_components(staging, config, seed=seed, max_shard_bytes=max_shard_bytes)
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _sibling(out: Path, kind: str) -> Path:
    """A fresh hidden name beside `out` (same file system, so renames are atomic); unique, so
    a leftover from a killed run never blocks the next one."""
    return out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.{kind}")


def _publish(staging: Path, out: Path) -> None:
    """Move the complete `staging` folder to `out`, replacing what `out` held only then."""
    if not out.exists():
        staging.rename(out)
        return
    old = _sibling(out, "old")
    out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        old.rename(out)  # put the previous checkpoint back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _write_components(staging: Path, config: MovaConfig, *, seed: int,
                      max_shard_bytes: int | None) -> None:
    towers = {
        "video_dit": (VideoDiT, config.video_dit),
        "video_dit_2": (VideoDiT, config.video_dit),
        "audio_dit": (AudioDiT, config.audio_dit),
        "dual_tower_bridge": (DualTowerBridge, config.bridge),
        "audio_vae": (AudioVAE, config.audio_vae),
        "video_vae": (build_video_vae, config.video_vae),
    }
    for offset, (name, (build, component_config)) in enumerate(towers.items()):
        module = _seeded(seed * 1000 + offset, build, component_config)
        save_component(module, component_config, staging / name, max_shard_bytes=max_shard_bytes)
        del module

    transformers_logging.disable_progress_bar()
    encoder = _seeded(seed * 1000 + 100, build_text_encoder, config.text_encoder)
    encoder.save_pretrained(staging / "text_encoder")
    build_tokenizer(staging / "tokenizer", vocab_size=config.text_encoder.vocab_size, seed=seed)

    write_config(staging / "scheduler", config.scheduler, SCHEDULER_CONFIG)
    index = {"_class_name": "MOVA", **config.model_index_fields()}
    index.update({name: list(lib_cls) for name, lib_cls in COMPONENT_CLASSES.items()})
    (staging / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to create")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-shard-mb", type=int, default=None,
                        help="shard weight files above this size (official sharded layout)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    shard = args.max_shard_mb * 2**20 if args.max_shard_mb else None
    try:
        make_checkpoint(args.out, preset=args.preset, seed=args.seed, max_shard_bytes=shard,
                        overwrite=args.overwrite)
    except (OSError, ValueError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    sys.stderr.write(f"wrote {args.preset} checkpoint to {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
