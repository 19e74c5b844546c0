"""Train a trained folder's video VAE decoder further, the encoder frozen, and write a copy.

    python -m training.refine_decoder --from assets/demo-model --out DIR --work WORKDIR
        --steps 1000 [--seed 105] [--threads 2]
        [--first-frame-weight 3] [--feature-weight 1] [--mouth-weight 1] [--object-weight 1]

The diffusion stage learns the video VAE encoder's latents; the decoder only draws them. So the
decoder can be trained on (the recipe's last video VAE phase, `VideoVAEPhase.DECODER`: whole
frames of whole clips of the world) without training the diffusion again: every weight of the
folder but the decoder's is kept bit for bit, the latent statistics with them, and the model
draws the same latents sharper. Resumable (rerun with the same request); the work folder
records the request and refuses another one.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
from pathlib import Path

import torch

from mova_model.checkpoint import MODEL_INDEX, save_component
from training.codecs import (
    RECIPE_WEIGHTS,
    PixelWeights,
    VideoVAEPhase,
    encoder_parameters,
    train_video_vae,
)
from training.common import (
    BUDGETS,
    LOSS_WEIGHT_RULE,
    TrainingDiverged,
    is_loss_weight,
    out_folder_problem,
)
from training.run import configure_logging, load_codecs, staged_checkpoint
from training.work_record import WorkFolderMismatch, claim_work_folder, source_of

log = logging.getLogger("training")

STATE_FILE = "video_vae_decoder.pt"


# Each weight's option, as the command spells it; the work folder records it by its dest name
# (`feature_weight`, ...), and the command reads it back from `args` by the same name.
WEIGHT_OPTIONS = {"first_frame": "--first-frame-weight", "features": "--feature-weight",
                  "mouth": "--mouth-weight", "objects": "--object-weight"}


def _dest(option: str) -> str:
    """argparse's attribute name for `option`: `--mouth-weight` -> `mouth_weight`."""
    return option.removeprefix("--").replace("-", "_")


def request_problem(source: Path, out: Path, steps: int,
                    weights: PixelWeights = RECIPE_WEIGHTS) -> str | None:
    """What makes a request impossible, in the command's words (None: nothing does)."""
    if not (source / MODEL_INDEX).is_file():
        return f"--from {source}: not a checkpoint folder (no {MODEL_INDEX})"
    if not (source / "video_vae").is_dir():
        return f"--from {source}: has no video_vae folder"
    if steps < 1:
        return f"--steps {steps}: must be at least 1"
    for field, option in WEIGHT_OPTIONS.items():
        if not is_loss_weight(weight := getattr(weights, field)):
            return f"{option} {weight}: must be {LOSS_WEIGHT_RULE}"
    if out.resolve() == source.resolve():
        return f"--out {out} is the --from folder: write a new folder"
    if source.resolve() in out.resolve().parents:
        return f"--out {out} lies inside the --from folder: write it elsewhere"
    if (problem := out_folder_problem(out)) is not None:
        return f"--out {problem}"
    return None


def refine_decoder(source: Path, out: Path, work: Path, steps: int, seed: int,
                   weights: PixelWeights = RECIPE_WEIGHTS) -> Path:
    """`steps` more decoder steps on `source`'s video VAE (the recipe's decoder phase rate and
    batch, a fresh warm-up and decay; pixels weighted by `weights` in the loss); writes `out`,
    a copy of `source` with that decoder."""
    if (problem := request_problem(source, out, steps, weights)) is not None:
        raise ValueError(problem)
    claim_work_folder(work, {"decoder_from": source_of(source, ("video_vae",)),
                             "steps": steps, "seed": seed, "threads": torch.get_num_threads(),
                             **{_dest(option): getattr(weights, field)
                                for field, option in WEIGHT_OPTIONS.items()}})
    vae, video_config, _ = load_codecs(source)
    vae.requires_grad_(True)  # loaded folders come frozen
    encoder_before = [p.detach().clone() for p in encoder_parameters(vae)]
    budget = dataclasses.replace(BUDGETS["full"], video_vae_decoder_steps=steps)
    train_video_vae(vae, budget, work / "state" / STATE_FILE, seed, VideoVAEPhase.DECODER,
                    weights=weights)
    if not all(torch.equal(before, after)
               for before, after in zip(encoder_before, encoder_parameters(vae), strict=True)):
        raise RuntimeError("the video VAE's encoder changed: the diffusion's latents would no "
                           "longer be the ones it learnt")

    with staged_checkpoint(out) as staging:
        shutil.copytree(source, staging)
        shutil.rmtree(staging / "video_vae")
        # the config as loaded: the latent statistics depend on the encoder alone
        save_component(vae, video_config, staging / "video_vae")
    log.info("stage=done out=%s decoder_steps=%d", out, steps)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, required=True,
                        help="trained checkpoint folder whose decoder to train further")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--work", type=Path, required=True,
                        help="folder for resumable state (rerun to resume)")
    parser.add_argument("--steps", type=int, required=True, help="decoder steps")
    parser.add_argument("--seed", type=int, default=0,
                        help="the clips' and the posterior samples' seed")
    parser.add_argument("--first-frame-weight", type=float, default=RECIPE_WEIGHTS.first_frame,
                        metavar="WEIGHT",
                        help="count each clip's first frame (the one TI2VA keeps) this many "
                             "times in the loss (default: the recipe's %(default)s)")
    parser.add_argument("--feature-weight", type=float, default=RECIPE_WEIGHTS.features,
                        metavar="WEIGHT",
                        help="count the pixels of the world's dark features (eyes, mouth, box "
                             "outline) this many times in the loss (1: as any pixel, the "
                             "recipe's decoder phase)")
    parser.add_argument("--mouth-weight", type=float, default=RECIPE_WEIGHTS.mouth,
                        metavar="WEIGHT",
                        help="count the box a face's mouth fills at its widest this many times "
                             "in the loss (1: as any pixel, the recipe's decoder phase)")
    parser.add_argument("--object-weight", type=float, default=RECIPE_WEIGHTS.objects,
                        metavar="WEIGHT",
                        help="count the object (as the content analysers see it) and a one-pixel "
                             "ring around it this many times in the loss (1: as any pixel, the "
                             "recipe's decoder phase)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    weights = PixelWeights(**{field: getattr(args, _dest(option))
                              for field, option in WEIGHT_OPTIONS.items()})
    problem = request_problem(args.source, args.out, args.steps, weights)
    if problem is not None:
        parser.error(problem)
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: must be at least 1")
    if args.work.exists() and not args.work.is_dir():
        parser.error(f"--work {args.work}: not a folder")
    configure_logging()
    torch.set_num_threads(args.threads)
    try:
        refine_decoder(args.source, args.out, args.work, args.steps, args.seed, weights)
    except WorkFolderMismatch as mismatch:
        parser.error(str(mismatch))
    except TrainingDiverged as diverged:
        parser.exit(1, f"{parser.prog}: {diverged}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
