"""Train the tiny MOVA on the demo world and write it as a checkpoint folder (official layout).

    python -m training.run --out assets/demo-model --work .demo-model-run [--budget full]

Stages, each resumable (state files and finished components live under --work; the folder
records what its run asked for, and a rerun asking for something else is refused):
1. tokenizer (built offline, as for the random tiny checkpoint);
2. video VAE and DAC (two processes at once unless --codecs-in-turn): reconstruction training;
   latent statistics / scale set on the world;
3. the world encoded once into latents;
4. diffusion: both video experts, the audio tower, the bridge and the text encoder;
5. the folder: written with mova_model's own writers, then loaded back strictly.

`--init-from FOLDER` continues from a trained folder (e.g. the committed demo model): its codecs
and tokenizer are used as they are, and diffusion starts from its weights (`--budget continue`).
`--codecs-from FOLDER` takes its codecs and tokenizer only and trains diffusion from scratch
(a change to the diffusion recipe tried without the codec stages); `--bridge-on-time OFFSET`
starts that bridge local in time (training.dit.start_bridge_on_time).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import multiprocessing
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import torch
from transformers import UMT5EncoderModel
from transformers.utils import logging as transformers_logging

from demo_world.world import render_many
from mova_model.audio_vae import AudioVAE
from mova_model.checkpoint import (
    MODEL_INDEX,
    SCHEDULER_CONFIG,
    load_component,
    load_weights,
    read_config,
    save_component,
    write_config,
)
from mova_model.config import (
    AudioDiTConfig,
    AudioVAEConfig,
    BridgeConfig,
    MovaConfig,
    SchedulerConfig,
    VideoDiTConfig,
    VideoVAEConfig,
    get_preset,
)
from mova_model.errors import ConfigError
from mova_model.make_checkpoint import make_checkpoint
from mova_model.pipeline import MovaPipeline
from mova_model.schedule import FlowMatchPairScheduler
from mova_model.text_encoder import build_text_encoder
from mova_model.tokenizer_build import build_tokenizer
from mova_model.video_vae import build_video_vae
from training.codecs import (
    DEMO_DAC_DECODER_DIM,
    VideoVAEPhase,
    build_audio_codec,
    build_video_codec,
    calibrate_dac_gain,
    channels_last_convolutions,
    measure_latent_stats,
    normalise_dac_latents,
    train_audio_vae,
    train_video_vae,
)
from training.common import (
    BUDGETS,
    LOSS_WEIGHT_RULE,
    RATE_RULE,
    Budget,
    Progress,
    TrainingDiverged,
    VideoVAE,
    is_loss_weight,
    is_rate,
    load_state,
    out_folder_problem,
    save_state,
)
from training.dit import (
    MOUTH_WEIGHT_WHERE,
    DiffusionModels,
    LatentSet,
    check_mouth_weight_where,
    encode_world,
    mouth_cells,
    mouth_weight_is_idle,
    start_bridge_on_time,
    train_diffusion,
)
from training.work_record import WorkFolderMismatch, claim_work_folder, describe_run

log = logging.getLogger("training")
# The tiny preset's video VAE (base width 8) capped what any diffusion model could show: the
# analysers on its reconstructions of the evaluation set read colour right in 71 %, object in
# 75 %, lip sync in 67 %, first frame 20.9 dB (2026-12-04). Width 12 (+0.8 M parameters, 5.9 MB).
DEMO_VIDEO_VAE_BASE_DIM = 12
# A fourth block per video expert (+0.15 M parameters each): more diffusion at three blocks did
# not move any rate (8000 more steps, 2026-12-03), so the experts are short of capacity.
DEMO_VIDEO_LAYERS = 4
WORLD_SEED_OFFSET = 1_000  # training scenes come from seeds the evaluation set does not use
DEMO_MODEL_NAME = "demo model"


def _build_video_vae(config: VideoVAEConfig) -> torch.nn.Module:
    # an nn.Module at run time; diffusers' class is untyped for mypy
    return cast(torch.nn.Module, build_video_vae(config))


@dataclasses.dataclass(frozen=True)
class TowerSizes:
    """The diffusion towers' sizes a run asks for, each a minimum over the preset's (a larger
    preset keeps its own): the video experts' depth, the audio tower's depth and width. The
    recipe's audio tower is the tiny preset's (2 blocks of width 48); `--audio-layers 4
    --audio-width 72` trains one four times its size (bench/README.md, audio tower)."""

    video_layers: int = DEMO_VIDEO_LAYERS
    audio_layers: int = 2
    audio_dim: int = 48

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if value < 1:
                raise ValueError(f"{name}={value} must be at least 1")


def demo_config(preset: str, sizes: TowerSizes = TowerSizes()) -> MovaConfig:
    """The preset, with a DAC decoder at least DEMO_DAC_DECODER_DIM wide, a video VAE at least
    DEMO_VIDEO_VAE_BASE_DIM wide and the towers at least `sizes` (the recipe's: video experts
    DEMO_VIDEO_LAYERS deep, see there); the bridge follows both towers. A wider audio tower
    keeps the preset's head size (the rotary pairs) and ffn ratio; a width the heads or the
    bridge's heads do not divide raises ConfigError."""
    config = get_preset(preset)
    width = max(config.audio_vae.decoder_dim, DEMO_DAC_DECODER_DIM)
    base_dim = max(config.video_vae.base_dim, DEMO_VIDEO_VAE_BASE_DIM)
    layers = max(config.video_dit.num_layers, sizes.video_layers)
    audio = config.audio_dit
    audio_layers = max(audio.num_layers, sizes.audio_layers)
    audio_dim = max(audio.dim, sizes.audio_dim)
    if audio_dim % audio.head_dim:
        raise ConfigError(f"audio width {audio_dim} must be a multiple of the audio head size "
                          f"{audio.head_dim}")
    return dataclasses.replace(
        config, audio_vae=config.audio_vae.replace(decoder_dim=width),
        video_vae=config.video_vae.replace(base_dim=base_dim),
        video_dit=config.video_dit.replace(num_layers=layers),
        audio_dit=audio.replace(num_layers=audio_layers, dim=audio_dim,
                                num_heads=audio_dim // audio.head_dim,
                                ffn_dim=audio.ffn_dim * audio_dim // audio.dim),
        bridge=config.bridge.replace(visual_layers=layers, audio_layers=audio_layers,
                                     audio_hidden_dim=audio_dim))


def _video_codec(work: Path, budget: Budget, config: MovaConfig, seed: int,
                 threads: int) -> None:
    """Train the video VAE and write it (with its latent statistics) to work/video_vae: half
    the `threads` while the DAC trains beside it, then all of them."""
    vae = build_video_codec(config.video_vae, seed)

    def threads_at(step: int) -> int:
        return _codec_share(threads) if step < budget.video_vae_steps_beside_dac else threads

    train_video_vae(vae, budget, work / "state" / "video_vae.pt", seed, threads_at=threads_at)
    torch.set_num_threads(threads)  # whole clips and the statistics: the DAC is done by then
    if budget.video_vae_clip_steps:
        train_video_vae(vae, budget, work / "state" / "video_vae_clips.pt", seed + 4,
                        VideoVAEPhase.CLIPS)
    if budget.video_vae_decoder_steps:
        train_video_vae(vae, budget, work / "state" / "video_vae_decoder.pt", seed + 5,
                        VideoVAEPhase.DECODER)
    video_config = measure_latent_stats(vae, config.video_vae, seed + 1,
                                        budget.calibration_clips)
    save_component(vae, video_config, work / "video_vae")
    log.info("stage=video_vae done latents_std=%s", ",".join(
        f"{v:.3g}" for v in video_config.latents_std))


def _audio_codec(work: Path, budget: Budget, config: MovaConfig, seed: int,
                 threads: int) -> None:
    """Train the DAC, set its latent scale and level, and write it to work/audio_vae; on half
    the `threads` (the video VAE has the other half), trained beside it or not, so that its
    numbers are the same either way."""
    torch.set_num_threads(_codec_share(threads))
    dac = build_audio_codec(config.audio_vae, seed)
    train_audio_vae(dac, budget, work / "state" / "audio_vae.pt", seed + 2)
    content_std = normalise_dac_latents(dac, seed + 3, budget.calibration_clips)
    gain = calibrate_dac_gain(dac, seed + 3, budget.calibration_clips)
    save_component(dac, config.audio_vae, work / "audio_vae")
    torch.set_num_threads(threads)
    log.info("stage=audio_vae done latent_std_before min=%.3g median=%.3g max=%.3g "
             "decoder_gain=%.3g", content_std.min(), content_std.median(),
             content_std.max(), gain)


def _codec_share(threads: int) -> int:
    """Each codec's threads while both train: the threads are split, not doubled."""
    return max(1, threads // 2)


def configure_logging() -> None:
    """Progress lines on stdout, in this process and in each codec worker."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")


def _start_worker() -> None:
    """A codec worker process: the parent's logging (each stage sets its threads)."""
    configure_logging()


def _codec_stage(work: Path, budget: Budget, config: MovaConfig, seed: int,
                 parallel: bool = True) -> tuple[VideoVAE, VideoVAEConfig, AudioVAE]:
    """Train what is not yet written of both codecs, then load them; returns (video VAE, its
    config with stats, DAC). The two are independent, so with `parallel` they train at the same
    time in two processes (half the threads each, until the video VAE takes them all: the stage
    takes the longer of the two, not the sum). The thread count each step runs at is the same
    either way, so the weights are too."""
    threads = torch.get_num_threads()
    todo = [stage for stage, folder in ((_video_codec, "video_vae"), (_audio_codec, "audio_vae"))
            if not (work / folder / "config.json").is_file()]
    if parallel and len(todo) > 1:
        spawn = multiprocessing.get_context("spawn")  # no forked torch thread pools
        with ProcessPoolExecutor(len(todo), mp_context=spawn,
                                 initializer=_start_worker) as pool:
            jobs = [pool.submit(stage, work, budget, config, seed, threads) for stage in todo]
            for job in jobs:
                job.result()  # a failed stage raises here; the other's progress is kept
    else:
        for stage in todo:
            stage(work, budget, config, seed, threads)  # each gives the threads back
    return load_codecs(work)


def load_codecs(folder: Path) -> tuple[VideoVAE, VideoVAEConfig, AudioVAE]:
    """The video VAE (with its config) and the DAC of a folder, in eval mode."""
    vae, video_config = load_component(folder / "video_vae", VideoVAEConfig, _build_video_vae)
    dac, _ = load_component(folder / "audio_vae", AudioVAEConfig, AudioVAE)
    assert isinstance(dac, AudioVAE)
    return vae.eval(), video_config, dac.eval()


def _latent_stage(work: Path, budget: Budget, vae: VideoVAE, video_config: VideoVAEConfig,
                  dac: AudioVAE, seed: int) -> LatentSet:
    path = work / "state" / "latents.pt"
    state = load_state(path)
    if state is not None:
        if "mouth" not in state:  # encoded before the mouth was recorded: read it off the world
            clips = render_many(seed + WORLD_SEED_OFFSET, state["video"].shape[0])
            state["mouth"] = mouth_cells(clips, state["video"].shape[2:])
            save_state(path, state)
        return LatentSet(**state)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(work / "tokenizer"), local_files_only=True)
    progress = Progress("encode_world", budget.num_clips, max(1, budget.num_clips // 10))
    with channels_last_convolutions(vae):
        data = encode_world(vae, video_config, dac, tokenizer, budget.num_clips,
                            seed + WORLD_SEED_OFFSET, progress)
    save_state(path, dict(vars(data)))
    return data


@contextmanager
def staged_checkpoint(out: Path) -> Iterator[Path]:
    """An empty staging path beside `out` to write a checkpoint folder into; once written, it
    is loaded back strictly (every component, or it raises) and takes `out`'s place. A write or
    a load that fails leaves `out` as it was."""
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    yield staging
    MovaPipeline.from_pretrained(staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def name_model(folder: Path, name: str) -> None:
    """The name manifests give the model (model_index.json `_model_name`; the release's
    loader ignores keys that start with an underscore)."""
    index_file = folder / MODEL_INDEX
    index = json.loads(index_file.read_text())
    index["_model_name"] = name
    index_file.write_text(json.dumps(index, indent=2) + "\n")


DIT_COMPONENTS = ("video_dit", "video_dit_2", "audio_dit", "dual_tower_bridge")


def _take_codecs_from(init: Path, work: Path) -> None:
    """Seed the work folder with a trained folder's codecs and tokenizer (once)."""
    for name in ("tokenizer", "video_vae", "audio_vae"):
        if not (work / name).is_dir():
            shutil.copytree(init / name, work / name)


def sizes_of(folder: Path, config: MovaConfig) -> MovaConfig:
    """`config` with the diffusion components sized as a trained folder's, and its noise
    schedule (a folder trained at other sizes or another shift than today's demo config
    continues at its own)."""
    return dataclasses.replace(
        config, video_dit=read_config(folder / "video_dit", VideoDiTConfig),
        audio_dit=read_config(folder / "audio_dit", AudioDiTConfig),
        bridge=read_config(folder / "dual_tower_bridge", BridgeConfig),
        scheduler=read_config(folder / "scheduler", SchedulerConfig, filename=SCHEDULER_CONFIG))


def tower_sizes(config: MovaConfig) -> dict[str, int]:
    """The diffusion towers' sizes of `config`, as a work folder records them."""
    return {"video_layers": config.video_dit.num_layers,
            "audio_layers": config.audio_dit.num_layers, "audio_dim": config.audio_dit.dim}


def with_shift(config: MovaConfig, shift: float | None) -> MovaConfig:
    """`config` with its noise schedule's shift replaced (None: kept). The training grid and the
    written folder's sampler both follow the scheduler config, so a model trained at a shift is
    sampled at it."""
    return config if shift is None else dataclasses.replace(
        config, scheduler=config.scheduler.replace(shift=shift))


def load_diffusion_weights(models: DiffusionModels, init: Path) -> None:
    """Start diffusion from a trained folder's DiTs, bridge and text encoder."""
    for name in DIT_COMPONENTS:
        load_weights(getattr(models, name), init / name)  # frozen, as for inference
    trained = UMT5EncoderModel.from_pretrained(str(init / "text_encoder"), local_files_only=True)
    models.text_encoder.load_state_dict(trained.state_dict())
    log.info("stage=diffusion init_from=%s", init)


def load_trained_diffusion(folder: Path) -> tuple[DiffusionModels, MovaConfig]:
    """A trained folder's diffusion (both experts, the audio tower, the bridge, the text
    encoder) at the folder's own sizes, in eval mode, with its config."""
    config = sizes_of(folder, demo_config("tiny"))
    models = DiffusionModels(config, build_text_encoder(config.text_encoder), seed=0)
    load_diffusion_weights(models, folder)
    return models.eval(), config


def train_demo_model(out: Path, work: Path, budget: Budget, seed: int = 0,
                     preset: str = "tiny", init_from: Path | None = None,
                     parallel_codecs: bool = True, codecs_from: Path | None = None,
                     bridge_on_time: float | None = None, audio_led_fraction: float = 0.0,
                     mouth_weight: float = 1.0, shift: float | None = None,
                     sizes: TowerSizes | None = None, mouth_weight_where: str = "all") -> Path:
    """Run every stage (resuming what is done) and write the checkpoint folder `out`.

    `init_from`: codecs, tokenizer and diffusion weights from a trained folder (a
    continuation); `codecs_from`: its codecs and tokenizer only, diffusion from scratch (a
    diffusion recipe tried in ~35 minutes instead of the whole run's ~75); `bridge_on_time`:
    start the bridge local in time with this q/k offset (`start_bridge_on_time`);
    `audio_led_fraction`: voice-led diffusion samples, `mouth_weight`: the mouth's cells
    counted that many times in the video loss, in every sample or (`mouth_weight_where`
    "voice-led") in the voice-led ones only (training.dit.diffusion_loss); `shift`: the noise
    schedule's shift for training and for the written folder (None: the preset's, 5 as the
    release; a continuation keeps its folder's); `sizes`: the diffusion towers' (None: the
    recipe's; a continuation keeps its folder's)."""
    if init_from is not None and (codecs_from is not None or bridge_on_time is not None
                                  or shift is not None or sizes is not None):
        raise ValueError("init_from continues a trained folder: its codecs, its trained bridge, "
                         "its sizes and its noise schedule are taken; codecs_from / "
                         "bridge_on_time / shift / sizes are for a fresh start")
    if not (math.isfinite(audio_led_fraction) and 0 <= audio_led_fraction < 1):
        raise ValueError(f"audio_led_fraction={audio_led_fraction}: a fraction in [0, 1) (at 1 "
                         "the audio tower would learn nothing)")
    if not is_loss_weight(mouth_weight):
        raise ValueError(f"mouth_weight={mouth_weight}: {LOSS_WEIGHT_RULE} (1: the mouth counts "
                         "as any other cell)")
    check_mouth_weight_where(mouth_weight_where)
    if mouth_weight_is_idle(mouth_weight_where, audio_led_fraction, mouth_weight):
        raise ValueError("mouth_weight_where='voice-led' weights the mouth in voice-led samples: "
                         "it needs audio_led_fraction > 0 and mouth_weight > 1")
    if shift is not None and not (math.isfinite(shift) and shift > 0):
        raise ValueError(f"shift={shift}: a positive number")
    started = time.monotonic()
    config = (with_shift(demo_config(preset, sizes or TowerSizes()), shift) if init_from is None
              else sizes_of(init_from, demo_config(preset)))
    claim_work_folder(work, describe_run(seed=seed, preset=preset, budget=budget,
                                         init_from=init_from, codecs_from=codecs_from,
                                         bridge_on_time=bridge_on_time,
                                         audio_led_fraction=audio_led_fraction,
                                         mouth_weight=mouth_weight,
                                         mouth_weight_where=mouth_weight_where,
                                         shift=config.scheduler.shift,
                                         sizes=tower_sizes(config)))
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if (taken := init_from or codecs_from) is not None:
        _take_codecs_from(taken, work)
    if not (work / "tokenizer").is_dir():
        build_tokenizer(work / "tokenizer", vocab_size=config.text_encoder.vocab_size, seed=seed)
    vae, video_config, dac = _codec_stage(work, budget, config, seed, parallel_codecs)
    data = _latent_stage(work, budget, vae, video_config, dac, seed)
    log.info("stage=encode_world done clips=%d", data.video.shape[0])

    torch.manual_seed(seed * 1000 + 100)
    text_encoder = build_text_encoder(config.text_encoder)
    models = DiffusionModels(config, text_encoder, seed)
    if init_from is not None:
        load_diffusion_weights(models, init_from)
    elif bridge_on_time is not None:
        start_bridge_on_time(models.dual_tower_bridge, offset=bridge_on_time)
    scheduler = FlowMatchPairScheduler(config.scheduler)
    ema = train_diffusion(models, data, scheduler, config.boundary_ratio, budget,
                          work / "state" / "diffusion.pt", seed + 4,
                          audio_led_fraction=audio_led_fraction, mouth_weight=mouth_weight,
                          mouth_weight_where=mouth_weight_where)

    # The folder: mova_model's writer lays out every component (model_index, scheduler, ...);
    # the trained components then replace the random ones through the same save functions.
    with staged_checkpoint(out) as staging:
        make_checkpoint(staging, preset=preset, seed=seed)
        name_model(staging, DEMO_MODEL_NAME)
        for name in DIT_COMPONENTS:
            component = getattr(ema, name)
            save_component(component, component.config, staging / name)
        save_component(vae, video_config, staging / "video_vae")
        save_component(dac, dac.config, staging / "audio_vae")  # a taken DAC keeps its own
        # the schedule trained on (make_checkpoint wrote the preset's)
        write_config(staging / "scheduler", config.scheduler, SCHEDULER_CONFIG)
        shutil.rmtree(staging / "text_encoder")
        ema.text_encoder.save_pretrained(staging / "text_encoder")
        shutil.rmtree(staging / "tokenizer")
        shutil.copytree(work / "tokenizer", staging / "tokenizer")
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    log.info("stage=done out=%s size_mb=%.1f elapsed=%.0fs", out, size_mb,
             time.monotonic() - started)
    return out


def _sizes_asked(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TowerSizes | None:
    """The towers' sizes the options ask for (None: none asked, the recipe's), checked against
    the preset, or a usage error."""
    asked = {("video_layers", "--video-layers"): args.video_layers,
             ("audio_layers", "--audio-layers"): args.audio_layers,
             ("audio_dim", "--audio-width"): args.audio_width}
    given = {key: value for key, value in asked.items() if value is not None}
    if not given:
        return None
    if args.init_from is not None:
        parser.error("--video-layers / --audio-layers / --audio-width size a fresh model; "
                     "--init-from continues a trained folder at its own sizes")
    for (_, option), value in given.items():
        if value < 1:
            parser.error(f"{option} {value}: must be at least 1")
    sizes = TowerSizes(**{field: value for (field, _), value in given.items()})
    try:
        built = tower_sizes(demo_config("tiny", sizes))
    except ConfigError as error:
        parser.error(str(error))
    for (field, option), value in given.items():
        if built[field] != value:  # demo_config keeps the preset's where it is larger
            parser.error(f"{option} {value}: below the tiny preset's {built[field]}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--work", type=Path, required=True,
                        help="folder for resumable state (rerun to resume)")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-from", type=Path, default=None,
                        help="a trained folder to continue from (codecs kept, diffusion resumed "
                             "from its weights); use with --budget continue")
    parser.add_argument("--codecs-from", type=Path, default=None,
                        help="take a trained folder's codecs and tokenizer, train diffusion "
                             "from scratch on them (skips the codec stages)")
    parser.add_argument("--bridge-on-time", type=float, default=None, metavar="OFFSET",
                        help="start the bridge's attention local in time (q/k offset; 2.0 puts "
                             "about 0.9 of it on its own latent frame at the start); not with "
                             "--init-from")
    parser.add_argument("--audio-led", type=float, default=0.0, metavar="FRACTION",
                        help="diffusion samples with the audio clean and its loss not counted, "
                             "so the picture learns to follow a given voice (0: none, the "
                             "recipe)")
    parser.add_argument("--mouth-weight", type=float, default=1.0, metavar="WEIGHT",
                        help="count the latent cells that hold a speaking mouth this many times "
                             "in the video loss (1: as any other cell, the recipe)")
    parser.add_argument("--mouth-weight-in", choices=MOUTH_WEIGHT_WHERE, default="all",
                        dest="mouth_weight_where",
                        help="the samples --mouth-weight counts in: all (default), or the "
                             "voice-led ones only (needs --audio-led), where the picture has a "
                             "voice to follow")
    parser.add_argument("--shift", type=float, default=None,
                        help="the noise schedule's shift for training and sampling (default: "
                             "the release's 5; lower puts more of the training on low noise); "
                             "not with --init-from")
    parser.add_argument("--video-layers", type=int, default=None, metavar="N",
                        help=f"blocks per video expert (the recipe: {DEMO_VIDEO_LAYERS}); not "
                             "with --init-from")
    parser.add_argument("--audio-layers", type=int, default=None, metavar="N",
                        help=f"blocks of the audio tower (the recipe: {TowerSizes.audio_layers}); "
                             "not with --init-from")
    parser.add_argument("--audio-width", type=int, default=None, metavar="D",
                        help=f"the audio tower's width (the recipe: {TowerSizes.audio_dim}; a "
                             "multiple of 24, the head size); not with --init-from")
    parser.add_argument("--dit-steps", type=int, default=None,
                        help="diffusion steps instead of the budget's (a resumed run keeps its "
                             "step and follows the new schedule's length)")
    parser.add_argument("--dit-lr", type=float, default=None, metavar="RATE",
                        help="the diffusion's peak learning rate instead of the budget's ("
                             + ", ".join(f"{name}: {budget.dit_lr:g}"
                                         for name, budget in sorted(BUDGETS.items()))
                             + "); a lower one lets a continuation move its weights less")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in all (the two codec workers split them until "
                             "the video VAE takes them all at a set step): the number of "
                             "free cores")
    parser.add_argument("--codecs-in-turn", action="store_true",
                        help="train the two codecs one after the other in this process (by "
                             "default they train at the same time in two processes; the "
                             "weights are the same, only slower)")
    args = parser.parse_args(argv)
    if args.dit_steps is not None and args.dit_steps < 1:
        parser.error(f"--dit-steps {args.dit_steps}: must be at least 1")
    if args.dit_lr is not None and not is_rate(args.dit_lr):
        parser.error(f"--dit-lr {args.dit_lr}: must be {RATE_RULE}")
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: must be at least 1")
    for option, folder in (("--init-from", args.init_from), ("--codecs-from", args.codecs_from)):
        if folder is not None and not (folder / MODEL_INDEX).is_file():
            parser.error(f"{option} {folder}: not a checkpoint folder (no {MODEL_INDEX})")
    if args.work.exists() and not args.work.is_dir():
        parser.error(f"--work {args.work}: not a folder")
    if (problem := out_folder_problem(args.out)) is not None:
        parser.error(f"--out {problem}")
    if args.init_from is not None and args.codecs_from is not None:
        parser.error("--init-from already takes the folder's codecs; give one of --init-from, "
                     "--codecs-from")
    if args.init_from is not None and args.bridge_on_time is not None:
        parser.error("--bridge-on-time starts a fresh bridge; --init-from continues a trained "
                     "one")
    if args.bridge_on_time is not None and not (math.isfinite(args.bridge_on_time)
                                                 and args.bridge_on_time > 0):
        parser.error(f"--bridge-on-time {args.bridge_on_time}: must be a positive number")
    if not (math.isfinite(args.audio_led) and 0 <= args.audio_led < 1):
        parser.error(f"--audio-led {args.audio_led}: must be a fraction in [0, 1)")
    if not is_loss_weight(args.mouth_weight):
        parser.error(f"--mouth-weight {args.mouth_weight}: must be {LOSS_WEIGHT_RULE}")
    if mouth_weight_is_idle(args.mouth_weight_where, args.audio_led, args.mouth_weight):
        parser.error("--mouth-weight-in voice-led weights the mouth in the voice-led samples: "
                     "it needs --audio-led above 0 and --mouth-weight above 1")
    if args.shift is not None and args.init_from is not None:
        parser.error("--shift starts a fresh schedule; --init-from continues a trained folder at "
                     "its own")
    if args.shift is not None and not (math.isfinite(args.shift) and args.shift > 0):
        parser.error(f"--shift {args.shift}: must be a positive number")
    sizes = _sizes_asked(parser, args)
    configure_logging()
    torch.set_num_threads(args.threads)
    budget = BUDGETS[args.budget]
    if args.dit_steps is not None:
        budget = dataclasses.replace(budget, dit_steps=args.dit_steps)
    if args.dit_lr is not None:
        budget = dataclasses.replace(budget, dit_lr=args.dit_lr)
    try:
        train_demo_model(args.out, args.work, budget, seed=args.seed,
                         init_from=args.init_from, parallel_codecs=not args.codecs_in_turn,
                         codecs_from=args.codecs_from, bridge_on_time=args.bridge_on_time,
                         audio_led_fraction=args.audio_led, mouth_weight=args.mouth_weight,
                         shift=args.shift, sizes=sizes,
                         mouth_weight_where=args.mouth_weight_where)
    except WorkFolderMismatch as mismatch:
        parser.error(str(mismatch))
    except TrainingDiverged as diverged:
        parser.exit(1, f"{parser.prog}: {diverged}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
