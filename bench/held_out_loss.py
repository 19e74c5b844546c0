"""Does a checkpoint's diffusion fit its training clips better than clips it never saw? (issue 17)

    .venv/bin/python bench/held_out_loss.py --checkpoint assets/demo-model [--clips 96]

Draws `--clips` clips the way its training run did (the world's seed 1000 + `--training-seed`:
the first clips of its training set) and as many it never saw (bench/content.py's EVAL_SEED),
encodes both with the checkpoint's codecs, and prints for each expert the diffusion stage's
video and audio losses on both sets (training.dit.diffusion_loss: joint samples at the expert's
noise levels, no voice-over ones; the same noise draws for both sets), and `gap`, the unseen
loss over the training one, minus one. A gap near zero: the model does not memorise its
clips, so more clips of the same world would not help it; more capacity or steps might.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.content import EVAL_SEED, refuse_no_checkpoint  # noqa: E402
from mova_model.schedule import FlowMatchPairScheduler  # noqa: E402
from training.dit import LatentSet, diffusion_loss, encode_world, loss_batches  # noqa: E402
from training.run import WORLD_SEED_OFFSET, load_codecs, load_trained_diffusion  # noqa: E402

LOSS_BATCH = 16
LOSS_DRAWS = 3  # noise draws per clip
EXPERTS = {"high_noise": 0, "low_noise": 1}


def held_out_loss(checkpoint: Path, num_clips: int, training_seed: int = 0) -> dict[str, Any]:
    """Each expert's losses on training and on unseen clips (see the module doc)."""
    started = time.monotonic()
    vae, video_config, dac = load_codecs(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint / "tokenizer"),
                                              local_files_only=True)
    models, config = load_trained_diffusion(checkpoint)
    scheduler = FlowMatchPairScheduler(config.scheduler)
    batches = loss_batches(num_clips, LOSS_BATCH, LOSS_DRAWS)

    def losses(data: LatentSet, expert: int) -> dict[str, float]:
        video = audio = 0.0
        for index, rows in enumerate(batches):
            noise = torch.Generator().manual_seed(index)  # the same draws for both sets
            v, a = diffusion_loss(models, data, scheduler, config.boundary_ratio, rows, expert,
                                  noise, voice_over_fraction=0.0)
            video, audio = video + v.item() / len(batches), audio + a.item() / len(batches)
        return {"video": round(video, 4), "audio": round(audio, 4)}

    result: dict[str, Any] = {"checkpoint": str(checkpoint), "clips": num_clips,
                              "training_seed": training_seed}
    with torch.no_grad():
        sets = {name: encode_world(vae, video_config, dac, tokenizer, num_clips, seed)
                for name, seed in (("training", WORLD_SEED_OFFSET + training_seed),
                                   ("unseen", EVAL_SEED))}
        for expert_name, expert in EXPERTS.items():
            seen, unseen = losses(sets["training"], expert), losses(sets["unseen"], expert)
            result[expert_name] = {
                "training": seen, "unseen": unseen,
                "gap": {k: round(unseen[k] / seen[k] - 1, 4) for k in seen}}
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=96, help="clips of each set")
    parser.add_argument("--training-seed", type=int, default=0,
                        help="the seed its training run was given (training.run --seed)")
    args = parser.parse_args(argv)
    refuse_no_checkpoint(parser, args.checkpoint)
    if args.clips < 1:
        parser.error(f"--clips {args.clips}: must be at least 1")
    if args.training_seed < 0:
        parser.error(f"--training-seed {args.training_seed}: must not be negative")
    sys.stdout.write(json.dumps(held_out_loss(args.checkpoint, args.clips,
                                              args.training_seed)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
