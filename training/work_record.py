"""What a training work folder was started with, so that a rerun resumes only that run.

Every stage of training.run resumes what the work folder holds: taken or trained codecs, the
tokenizer, the encoded world, the diffusion state. A rerun that asked for something else (other
codecs, another seed, another budget) would silently keep them and write a model neither run
asked for. So the first run writes `run.json` into the folder, and a rerun whose request differs
is refused with the difference, before anything in the folder changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeGuard

from mova_model.config import RELEASE_SCHEDULER
from training.codecs import FIRST_FRAME_WEIGHT
from training.common import Budget

log = logging.getLogger("training")

RECORD_NAME = "run.json"
# A resumed run may follow a new diffusion length (`--dit-steps`): it keeps its step and the
# schedule stretches; every other budget field shapes what is already in the folder.
CHANGEABLE_ON_RESUME = frozenset({"dit_steps"})
# The components a source folder gives: `--codecs-from` takes the codecs and the tokenizer,
# `--init-from` those and the diffusion weights it starts from.
CODEC_COMPONENTS = ("tokenizer", "video_vae", "audio_vae")
INIT_COMPONENTS = CODEC_COMPONENTS + (
    "video_dit", "video_dit_2", "audio_dit", "dual_tower_bridge", "text_encoder")
# Requests added after records began, with the value every earlier run had: a folder recorded
# before them resumes when the rerun asks for that value (every preset trained at the release's
# shift, every run at the recipe's sizes).
ADDED_LATER: dict[str, Any] = {"mouth_weight": 1.0, "mouth_weight_where": "all",
                               "shift": RELEASE_SCHEDULER.shift,
                               "first_frame_weight": FIRST_FRAME_WEIGHT, "object_weight": 1.0,
                               "sizes": {"video_layers": 4, "audio_layers": 2, "audio_dim": 48}}

# Budget fields added after records began, with the value every earlier run had.
BUDGET_ADDED_LATER: dict[str, Any] = {"calibration_clips": 24}


class WorkFolderMismatch(ValueError):
    """A rerun asked a work folder for another run than the one it holds."""


def folder_digest(folder: Path, components: Iterable[str]) -> str:
    """sha256 over the names and bytes of every file of `components` in `folder`: the same
    weights give the same digest wherever the folder lies."""
    digest = hashlib.sha256()
    for component in components:
        for path in sorted(p for p in (folder / component).rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def source_of(folder: Path | None, components: tuple[str, ...]) -> dict[str, str] | None:
    """A source folder as a record holds it: its path, and its `components`' digest (None: no
    source)."""
    if folder is None:
        return None
    return {"folder": str(folder), "sha256": folder_digest(folder, components)}


def describe_run(*, seed: int, preset: str, budget: Budget, init_from: Path | None,
                 codecs_from: Path | None, bridge_on_time: float | None,
                 audio_led_fraction: float = 0.0, mouth_weight: float = 1.0,
                 mouth_weight_where: str = "all", shift: float = RELEASE_SCHEDULER.shift,
                 sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """What a run asks for, as its work folder records it (JSON-ready)."""
    return {
        "seed": seed, "preset": preset, "bridge_on_time": bridge_on_time,
        "audio_led_fraction": audio_led_fraction, "mouth_weight": mouth_weight,
        "mouth_weight_where": mouth_weight_where,
        "shift": shift, "sizes": sizes,
        "init_from": source_of(init_from, INIT_COMPONENTS),
        "codecs_from": source_of(codecs_from, CODEC_COMPONENTS),
        "budget": {k: v for k, v in dataclasses.asdict(budget).items()
                   if k not in CHANGEABLE_ON_RESUME},
    }


def _is_source(value: Any) -> TypeGuard[dict[str, str]]:
    """A source folder as source_of records it (its path and its weights' digest)."""
    return isinstance(value, dict) and "sha256" in value


def _shown(value: Any) -> str:
    if _is_source(value):
        return f"{value['folder']} (sha256 {value['sha256'][:12]})"
    if value is None:
        return "none"
    return json.dumps(value)


def _differences(recorded: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    differences = []
    for key in sorted(asked.keys() | recorded.keys()):
        then, now = recorded.get(key, ADDED_LATER.get(key)), asked.get(key)
        if key == "budget" and isinstance(then, dict) and isinstance(now, dict):
            then = {**BUDGET_ADDED_LATER, **then}
            differences += [f"budget.{field}: {_shown(then.get(field))} then, "
                            f"{_shown(now.get(field))} now"
                            for field in sorted(then.keys() | now.keys())
                            if then.get(field) != now.get(field)]
        elif _is_source(then) and _is_source(now):
            if then["sha256"] != now["sha256"]:  # the same weights, wherever they are now
                differences.append(f"{key}: {_shown(then)} then, {_shown(now)} now")
        elif then != now:
            differences.append(f"{key}: {_shown(then)} then, {_shown(now)} now")
    return differences


def _refusal(work: Path, why: str) -> WorkFolderMismatch:
    """The refusal of a work folder, with the one way on the user has."""
    return WorkFolderMismatch(f"work folder {work}{why}: give a new --work, or delete {work} to "
                              "start over")


def claim_work_folder(work: Path, asked: dict[str, Any]) -> None:
    """Record `asked` in a new work folder, or check a resumed one was started by the same
    request; raises WorkFolderMismatch (nothing in the folder touched) when it was not."""
    record = work / RECORD_NAME
    if record.is_file():
        try:
            recorded = json.loads(record.read_text())
        except (ValueError, UnicodeDecodeError) as unreadable:
            raise _refusal(work, f": its {RECORD_NAME} is not readable ({unreadable})"
                           ) from unreadable
        if not isinstance(recorded, dict):
            raise _refusal(work, f": its {RECORD_NAME} is not a run record")
        differences = _differences(recorded, asked)
        if differences:
            raise _refusal(work, " holds another run: " + "; ".join(differences)
                           + ". It resumes only the run it was started with")
        return
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        # started before runs were recorded: nothing to check it against
        log.warning("work folder %s has no %s (started before runs were recorded): resuming "
                    "it as this run", work, RECORD_NAME)
    record.write_text(json.dumps(asked, indent=2) + "\n")
