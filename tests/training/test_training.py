"""A few-steps training run: the losses go down and the folder loads strictly in MovaPipeline."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

import training.codecs
import training.dit
from demo_world.analysers import DARK_MAX_CHANNEL, object_mask
from demo_world.world import RenderedClip, Scene, render, render_many
from mova_model.attention import sdpa_kernel
from mova_model.config import get_preset
from mova_model.pipeline import MovaPipeline
from mova_model.request import GenerationRequest
from mova_model.schedule import FlowMatchPairScheduler
from mova_model.text_encoder import TextEncoder, build_text_encoder
from mova_model.tokenizer_build import build_tokenizer
from training.codecs import (
    PixelWeights,
    VideoVAEPhase,
    audio_vae_loss,
    build_codecs,
    calibrate_dac_gain,
    feature_pixels,
    mouth_pixels,
    normalise_dac_latents,
    object_pixels,
    pixels,
    train_audio_vae,
    train_video_vae,
    video_vae_loss,
    world_clips,
)
from training.common import BUDGETS, Budget, TrainingDiverged, optimiser_step, save_state
from training.dit import (
    DiffusionModels,
    LatentSet,
    diffusion_loss,
    encode_text,
    encode_text_folded,
    encode_world,
    mouth_cells,
    train_diffusion,
)
from training.run import (
    DIT_COMPONENTS,
    WORLD_SEED_OFFSET,
    TowerSizes,
    _codec_stage,
    _latent_stage,
    demo_config,
    main,
    sizes_of,
    tower_sizes,
    train_demo_model,
)
from training.work_record import ADDED_LATER, WorkFolderMismatch

TINY = get_preset("tiny")


def test_encode_text_matches_the_pipeline_encoder(tmp_path: Path) -> None:
    """Training reads prompts exactly as generation will (same rows, zero padding to 512)."""
    build_tokenizer(tmp_path / "tok", vocab_size=TINY.text_encoder.vocab_size)
    torch.manual_seed(0)
    model = build_text_encoder(TINY.text_encoder)
    model.save_pretrained(tmp_path / "enc")
    encoder = TextEncoder.from_folders(tmp_path / "enc", tmp_path / "tok")
    prompts = ['A red face on a blue background says "ba ba", over a soft wind.', ""]
    ids = [encoder.tokenizer(p).input_ids for p in prompts]
    with torch.no_grad():
        ours = encode_text(encoder.model, ids)
    assert ours.shape == (2, 512, TINY.text_encoder.d_model)
    torch.testing.assert_close(ours, encoder.encode(prompts, 512), atol=1e-5, rtol=1e-5)


def test_dac_rescale_keeps_reconstruction_and_gives_unit_latents() -> None:
    _, dac = build_codecs(TINY.video_vae, TINY.audio_vae, seed=0)
    audio = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 1, 4800))
                             .astype(np.float32))
    # the clips the rescale measures on (the same seed and count)
    world = torch.from_numpy(np.stack([c.audio for c in world_clips(np.random.default_rng(1), 4)]))
    with torch.no_grad():
        before = dac.decode(dac.encode(audio))
        latents_before = dac.encode(world[:, None])
        measured = normalise_dac_latents(dac, seed=1, num_clips=4)
        after = dac.decode(dac.encode(audio))
        latents_after = dac.encode(world[:, None])
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(measured, latents_before.std(dim=(0, 2)))
    # every channel standardised on its own: zero mean, unit std
    torch.testing.assert_close(latents_after.mean(dim=(0, 2)), torch.zeros(measured.shape[0]),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(latents_after.std(dim=(0, 2)), torch.ones(measured.shape[0]),
                               atol=1e-3, rtol=0)


def test_dac_gain_calibration_brings_the_round_trip_towards_the_inputs_level() -> None:
    """The decoder's level is set on the world; its encoder (the diffusion model's input) is
    left as it was. (An untrained decoder saturates its tanh, so it only gets closer; the demo
    model's DAC reaches the level: tests/training/test_demo_model.py.)"""
    _, dac = build_codecs(TINY.video_vae, TINY.audio_vae, seed=0)
    world = torch.from_numpy(np.stack([c.audio for c in world_clips(np.random.default_rng(5), 6)]))
    with torch.no_grad():
        latents = dac.encode(world[:, None])
        before = dac.decode(latents)[..., : world.shape[-1]]
        gain = calibrate_dac_gain(dac, seed=5, num_clips=6)
        after = dac.decode(latents)[..., : world.shape[-1]]
        torch.testing.assert_close(dac.encode(world[:, None]), latents)
    ratio_before = (world.std(dim=-1) / before[:, 0].std(dim=-1)).median().item()
    ratio_after = (world.std(dim=-1) / after[:, 0].std(dim=-1)).median().item()
    assert abs(ratio_before - 1) > 0.2, ratio_before  # an untrained DAC is not at level
    assert abs(np.log(ratio_after)) < 0.7 * abs(np.log(ratio_before)), (ratio_before, gain,
                                                                          ratio_after)


def test_codec_losses_go_down(tmp_path: Path) -> None:
    torch.manual_seed(0)
    budget = dataclasses.replace(BUDGETS["smoke"], video_vae_steps=12, audio_vae_steps=12,
                                 video_vae_batch=1, audio_vae_batch=2, checkpoint_every=100,
                                 warmup_steps=2)
    vae, dac = build_codecs(TINY.video_vae, TINY.audio_vae, seed=0)
    clip = render(Scene("face", "red", "blue", "still", "ba", 2, seed=3))
    x = pixels(clip.frames[None, :5])
    wave = torch.from_numpy(clip.audio[:4800])[None, None]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        v0 = video_vae_loss(vae, x, g.manual_seed(0)).item()
        a0 = audio_vae_loss(dac, wave, g.manual_seed(0)).item()
    train_video_vae(vae, budget, tmp_path / "v.pt", seed=1)
    train_audio_vae(dac, budget, tmp_path / "a.pt", seed=1)
    with torch.no_grad():
        v1 = video_vae_loss(vae, x, g.manual_seed(0)).item()
        a1 = audio_vae_loss(dac, wave, g.manual_seed(0)).item()
    assert v1 < 0.9 * v0 and a1 < a0


@pytest.mark.slow
@pytest.mark.parametrize("phase", [VideoVAEPhase.CLIPS, VideoVAEPhase.DECODER])
def test_the_whole_clip_phases_lower_the_loss_of_whole_clips_and_resume(
        phase: VideoVAEPhase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The video VAE's phases after the windows (whole clips; then the decoder alone) train
    with their own steps and state, and a run resumed from a checkpoint ends where the
    uninterrupted one did. The decoder phase leaves every encoder weight bit for bit as it was
    (the latents the diffusion stage learnt stay valid); the whole-clip phase trains it."""
    budget = dataclasses.replace(BUDGETS["smoke"], video_vae_clip_steps=6, video_vae_clip_batch=1,
                                 video_vae_clip_lr=3e-3, video_vae_decoder_steps=6,
                                 video_vae_decoder_lr=3e-3, checkpoint_every=3, warmup_steps=2)
    clip = pixels(render(Scene("ball", "yellow", "green", "bounces", seed=4)).frames[None])
    g = torch.Generator()

    def whole_clip_loss(vae: Any) -> float:
        with torch.no_grad():
            return float(video_vae_loss(vae, clip, g.manual_seed(0)).item())

    def encoder_of(vae: Any) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in vae.state_dict().items()
                if k.startswith(("encoder.", "quant_conv."))}

    saved: dict[int, dict[str, Any]] = {}

    def save_and_keep(path: Path, state: dict[str, Any]) -> None:
        save_state(path, state)
        saved[state["step"]] = copy.deepcopy(state)

    monkeypatch.setattr(training.codecs, "save_state", save_and_keep)
    vae, _ = build_codecs(TINY.video_vae, TINY.audio_vae, seed=0)
    encoder, before = encoder_of(vae), whole_clip_loss(vae)
    train_video_vae(vae, budget, tmp_path / "whole.pt", seed=1, phase=phase)
    assert whole_clip_loss(vae) < 0.9 * before
    after = encoder_of(vae)
    assert after.keys() == encoder.keys() and len(after) > 10
    kept = [torch.equal(after[name], value) for name, value in encoder.items()]
    assert all(kept) if phase is VideoVAEPhase.DECODER else not any(kept)
    assert all(p.requires_grad for p in vae.parameters())  # handed back trainable
    assert sorted(saved) == [3, 6]
    save_state(tmp_path / "resumed.pt", saved[3])  # as a crash after step 3 would leave it
    resumed, _ = build_codecs(TINY.video_vae, TINY.audio_vae, seed=0)
    train_video_vae(resumed, budget, tmp_path / "resumed.pt", seed=1, phase=phase)
    for p, q in zip(vae.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.slow
def test_diffusion_loss_goes_down_and_resumes(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    budget = dataclasses.replace(BUDGETS["smoke"], dit_steps=30, num_clips=8,
                                 checkpoint_every=15, log_every=30)
    build_tokenizer(tmp_path / "tok", vocab_size=TINY.text_encoder.vocab_size)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "tok"), local_files_only=True)
    vae, dac = build_codecs(TINY.video_vae, TINY.audio_vae, seed=0)
    data = encode_world(vae.eval(), TINY.video_vae, dac.eval(), tokenizer, budget.num_clips, 5)
    assert data.video.shape == (8, 16, 7, 8, 14) and data.audio.shape == (8, 128, 53)
    scheduler = FlowMatchPairScheduler(TINY.scheduler)

    def fresh() -> DiffusionModels:
        torch.manual_seed(0)
        return DiffusionModels(TINY, build_text_encoder(TINY.text_encoder), seed=0)

    def eval_loss(models: DiffusionModels) -> float:
        g = torch.Generator().manual_seed(123)
        total = 0.0
        with torch.no_grad():
            for expert in (0, 1):
                for _ in range(3):
                    v, a = diffusion_loss(models, data, scheduler, TINY.boundary_ratio,
                                          torch.arange(8), expert, g)
                    total += v.item() + a.item()
        return total

    models = fresh()
    before = eval_loss(models)
    # keep a copy of the step-15 state, as a crash right after that checkpoint would leave it
    saved: dict[int, dict[str, Any]] = {}

    def save_and_keep(path: Path, state: dict[str, Any]) -> None:
        save_state(path, state)
        saved[state["step"]] = copy.deepcopy(state)

    monkeypatch.setattr(training.dit, "save_state", save_and_keep)
    train_diffusion(models, data, scheduler, TINY.boundary_ratio, budget,
                    tmp_path / "d.pt", seed=1)
    after = eval_loss(models)
    assert after < 0.8 * before
    assert sorted(saved) == [15, 30]
    # resuming from the step-15 state gives the same weights as the uninterrupted run
    save_state(tmp_path / "r.pt", saved[15])
    resumed = fresh()
    train_diffusion(resumed, data, scheduler, TINY.boundary_ratio, budget, tmp_path / "r.pt", 1)
    for p, q in zip(models.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    # a damaged state (a NaN weight of the high-noise expert) stops the run at that expert's
    # first step (it trains the even steps: the 17th), and no state is saved
    damaged = copy.deepcopy(saved[15])
    next(iter(damaged["model"].values())).fill_(float("nan"))
    save_state(tmp_path / "damaged.pt", damaged)
    saved.clear()
    with pytest.raises(TrainingDiverged, match="stage=diffusion step=17: the loss is nan"):
        train_diffusion(fresh(), data, scheduler, TINY.boundary_ratio, budget,
                        tmp_path / "damaged.pt", 1)
    assert not saved


@pytest.mark.slow
def test_codecs_trained_at_the_same_time_equal_codecs_trained_in_turn(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The two codecs train in two processes at once (make demo-model's codec stage takes the
    longer of the two, not the sum), on half the threads each until the video VAE takes them
    all at a set step; each has its own seeds and the same thread count at every step either
    way, so the result is the same."""
    budget = dataclasses.replace(BUDGETS["smoke"], video_vae_steps=3, audio_vae_steps=3,
                                 video_vae_steps_beside_dac=2)
    config = demo_config("tiny")
    torch.set_num_threads(2)  # the fixture puts back its one thread
    apart = _codec_stage(tmp_path / "apart", budget, config, seed=0, parallel=True)
    with caplog.at_level(logging.INFO, logger="training"):
        in_turn = _codec_stage(tmp_path / "in_turn", budget, config, seed=0, parallel=False)
    assert "stage=video_vae step=0 threads=1" in caplog.text
    assert "stage=video_vae step=2 threads=2" in caplog.text
    assert torch.get_num_threads() == 2  # the stage gives the caller its threads back
    for name in ("video_vae", "audio_vae"):
        ours, theirs = _tensors(tmp_path / "apart" / name), _tensors(tmp_path / "in_turn" / name)
        assert ours.keys() == theirs.keys()
        for key, value in ours.items():
            torch.testing.assert_close(value, theirs[key], rtol=0, atol=0, msg=key)
    assert apart[1] == in_turn[1]  # the measured latent statistics too


@pytest.mark.slow
def test_smoke_run_writes_a_folder_that_loads_strictly_and_generates(tmp_path: Path) -> None:
    out = train_demo_model(tmp_path / "model", tmp_path / "work", BUDGETS["smoke"], seed=0)
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "MOVA"
    pipe = MovaPipeline.from_pretrained(out)
    # the trained video VAE carries the latent statistics measured on the world
    assert pipe.video_vae_config.latents_std != TINY.video_vae.latents_std
    clip = pipe.generate(GenerationRequest(
        prompt="A red ball bounces on a grey background.", negative_prompt="", height=64,
        width=112, num_frames=25, video_fps=24.0, num_inference_steps=2, seed=0))
    assert clip.video.shape == (25, 64, 112, 3) and clip.audio.shape == (1, 50_000)
    # manifests name the model the clip came from
    assert index["_model_name"] == "demo model"
    assert clip.params.to_dict()["model"] == "demo model"
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size < 20 * 2**20


DEMO_MODEL = Path(__file__).resolve().parents[2] / "assets" / "demo-model"


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {f"{f.parent.name}/{k}": v for f in sorted(folder.glob("*.safetensors"))
            for k, v in load_file(f).items()}


def test_a_run_continued_from_a_trained_folder_keeps_its_codecs_and_starts_from_its_weights(
        tmp_path: Path) -> None:
    budget = dataclasses.replace(BUDGETS["smoke"], dit_steps=2, num_clips=4)
    out = train_demo_model(tmp_path / "model", tmp_path / "work", budget, seed=0,
                           init_from=DEMO_MODEL)
    for name in ("video_vae", "audio_vae"):  # taken as they are, not trained again
        assert (out / name / "diffusion_pytorch_model.safetensors").read_bytes() == \
            (DEMO_MODEL / name / "diffusion_pytorch_model.safetensors").read_bytes()
    assert (out / "tokenizer" / "tokenizer.json").read_text() == \
        (DEMO_MODEL / "tokenizer" / "tokenizer.json").read_text()
    # two small steps away from the trained weights (a random start is as far as they are big),
    # and every component trained: each one moved
    for name in DIT_COMPONENTS:
        trained, continued = _tensors(DEMO_MODEL / name), _tensors(out / name)
        assert trained.keys() == continued.keys()
        moved = sum(float((continued[k] - v).norm()) for k, v in trained.items())
        size = sum(float(v.norm()) for v in trained.values())
        assert 0 < moved < 0.1 * size, (name, moved / size)


def test_a_fresh_diffusion_on_a_trained_folders_codecs_starts_its_bridge_on_time(
        tmp_path: Path) -> None:
    budget = dataclasses.replace(BUDGETS["smoke"], dit_steps=2, num_clips=4)
    out = train_demo_model(tmp_path / "model", tmp_path / "work", budget, seed=0,
                           codecs_from=DEMO_MODEL, bridge_on_time=1.5)
    for name in ("video_vae", "audio_vae"):  # taken as they are, not trained again
        assert (out / name / "diffusion_pytorch_model.safetensors").read_bytes() == \
            (DEMO_MODEL / name / "diffusion_pytorch_model.safetensors").read_bytes()
    # diffusion from scratch: far from the trained weights (norm scales start at one in both)
    trained, fresh = _tensors(DEMO_MODEL / "video_dit"), _tensors(out / "video_dit")
    moved = sum(float((fresh[k] - v).norm()) for k, v in trained.items())
    assert moved > 0.3 * sum(float(v.norm()) for v in trained.values())  # measured 0.50
    # the bridge starts with the offset in rotary pair 2 of each head (two small steps later)
    bridge = _tensors(out / "dual_tower_bridge")
    head_dim = demo_config("tiny").bridge.head_dim
    bias = bridge["dual_tower_bridge/video_to_audio_conditioners.0.inner.k.bias"]
    torch.testing.assert_close(bias[[2, head_dim + 2]], torch.tensor([1.5, 1.5]), atol=0.02,
                               rtol=0)
    assert abs(float(bias[2 + head_dim // 2])) < 0.02


def test_the_towers_are_sized_as_asked_and_the_bridge_follows_both() -> None:
    recipe = demo_config("tiny")
    assert tower_sizes(recipe) == {"video_layers": 4, "audio_layers": 2, "audio_dim": 48}
    assert tower_sizes(recipe) == ADDED_LATER["sizes"]  # what folders before the option had
    config = demo_config("tiny", TowerSizes(video_layers=5, audio_layers=4, audio_dim=72))
    assert tower_sizes(config) == {"video_layers": 5, "audio_layers": 4, "audio_dim": 72}
    # the head size (rotary pairs) and the ffn ratio of the preset's audio tower are kept
    audio = config.audio_dit
    assert (audio.num_heads, audio.head_dim, audio.ffn_dim) == (3, 24, 144)
    bridge = config.bridge
    assert (bridge.visual_layers, bridge.audio_layers, bridge.audio_hidden_dim) == (5, 4, 72)
    with pytest.raises(ValueError, match="audio_layers=0 must be at least 1"):
        TowerSizes(audio_layers=0)
    # sizes are minimums: a preset larger than asked keeps its own
    release = demo_config("mova-360p", TowerSizes(video_layers=5, audio_layers=4, audio_dim=72))
    assert release.audio_dit == get_preset("mova-360p").audio_dit
    assert release.bridge == get_preset("mova-360p").bridge


def test_a_diffusion_at_other_sizes_is_written_and_recorded_at_them(tmp_path: Path) -> None:
    budget = dataclasses.replace(BUDGETS["smoke"], dit_steps=2, num_clips=4)
    sizes = TowerSizes(audio_layers=3, audio_dim=72)
    out = train_demo_model(tmp_path / "model", tmp_path / "work", budget, seed=0,
                           codecs_from=DEMO_MODEL, sizes=sizes)
    MovaPipeline.from_pretrained(out)  # strict: every tensor at the written sizes
    config = sizes_of(out, demo_config("tiny"))
    assert (config.audio_dit.num_layers, config.audio_dit.dim) == (3, 72)
    assert config.bridge.audio_layers == 3
    recorded = json.loads((tmp_path / "work" / "run.json").read_text())["sizes"]
    assert recorded == {"video_layers": 4, "audio_layers": 3, "audio_dim": 72}
    with pytest.raises(WorkFolderMismatch, match="sizes: .*then"):
        train_demo_model(tmp_path / "model", tmp_path / "work", budget, seed=0,
                         codecs_from=DEMO_MODEL)
    with pytest.raises(ValueError, match="sizes are for a fresh start"):
        train_demo_model(tmp_path / "x", tmp_path / "x-work", budget, init_from=out,
                         sizes=sizes)


def test_a_diffusion_trained_at_another_shift_is_sampled_and_continued_at_it(
        tmp_path: Path) -> None:
    budget = dataclasses.replace(BUDGETS["smoke"], dit_steps=2, num_clips=4)
    out = train_demo_model(tmp_path / "model", tmp_path / "work", budget, seed=0,
                           codecs_from=DEMO_MODEL, shift=1.5)
    assert MovaPipeline.from_pretrained(out).scheduler.config.shift == 1.5
    assert json.loads((tmp_path / "work" / "run.json").read_text())["shift"] == 1.5
    # a continuation trains and writes at its folder's shift, and cannot be given another
    more = train_demo_model(tmp_path / "more", tmp_path / "more-work", budget, seed=0,
                            init_from=out)
    assert MovaPipeline.from_pretrained(more).scheduler.config.shift == 1.5
    assert json.loads((tmp_path / "more-work" / "run.json").read_text())["shift"] == 1.5
    with pytest.raises(ValueError, match="noise schedule are taken"):
        train_demo_model(tmp_path / "x", tmp_path / "x-work", budget, init_from=out, shift=2.0)
    with pytest.raises(ValueError, match="shift=0.0: a positive number"):
        train_demo_model(tmp_path / "x", tmp_path / "x-work", budget, shift=0.0)
    assert not (tmp_path / "x-work").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--dit-steps", "0"], "--dit-steps 0: must be at least 1"),
    (["--init-from", "nowhere"], "--init-from nowhere: not a checkpoint folder"),
    (["--codecs-from", "nowhere"], "--codecs-from nowhere: not a checkpoint folder"),
    (["--init-from", str(DEMO_MODEL), "--codecs-from", str(DEMO_MODEL)],
     "give one of --init-from, --codecs-from"),
    (["--init-from", str(DEMO_MODEL), "--bridge-on-time", "2"],
     "--init-from continues a trained one"),
    (["--bridge-on-time", "0"], "--bridge-on-time 0.0: must be a positive number"),
    (["--bridge-on-time", "nan"], "--bridge-on-time nan: must be a positive number"),
    (["--dit-lr", "0"], "--dit-lr 0.0: must be a rate in (0, 1]"),
    (["--dit-lr", "-0.001"], "--dit-lr -0.001: must be a rate in (0, 1]"),
    (["--dit-lr", "nan"], "--dit-lr nan: must be a rate in (0, 1]"),
    (["--dit-lr", "2"], "--dit-lr 2.0: must be a rate in (0, 1]"),
    (["--threads", "0"], "--threads 0: must be at least 1"),
    (["--threads", "-3"], "--threads -3: must be at least 1"),
    (["--work", __file__], f"--work {__file__}: not a folder"),
    (["--audio-led", "1"], "--audio-led 1.0: must be a fraction in [0, 1)"),
    (["--audio-led", "-0.1"], "--audio-led -0.1: must be a fraction in [0, 1)"),
    (["--audio-led", "nan"], "--audio-led nan: must be a fraction in [0, 1)"),
    (["--mouth-weight", "0.5"], "--mouth-weight 0.5: must be a number from 1 to 10000"),
    (["--mouth-weight", "inf"], "--mouth-weight inf: must be a number from 1 to 10000"),
    (["--mouth-weight", "nan"], "--mouth-weight nan: must be a number from 1 to 10000"),
    (["--mouth-weight", "1e300"], "--mouth-weight 1e+300: must be a number from 1 to 10000"),
    (["--mouth-weight-in", "voice-led", "--mouth-weight", "8"],
     "--mouth-weight-in voice-led weights the mouth in the voice-led samples: it needs "
     "--audio-led above 0"),
    (["--mouth-weight-in", "voice-led", "--audio-led", "0.5"],
     "it needs --audio-led above 0 and --mouth-weight above 1"),
    (["--mouth-weight-in", "joint"], "argument --mouth-weight-in: invalid choice: 'joint'"),
    (["--shift", "0"], "--shift 0.0: must be a positive number"),
    (["--shift", "-1"], "--shift -1.0: must be a positive number"),
    (["--shift", "inf"], "--shift inf: must be a positive number"),
    (["--init-from", str(DEMO_MODEL), "--shift", "2"], "--init-from continues a trained folder"),
    (["--video-layers", "0"], "--video-layers 0: must be at least 1"),
    (["--audio-layers", "-2"], "--audio-layers -2: must be at least 1"),
    (["--audio-width", "50"], "audio width 50 must be a multiple of the audio head size 24"),
    (["--audio-width", "24"], "--audio-width 24: below the tiny preset's 48"),
    (["--video-layers", "2"], "--video-layers 2: below the tiny preset's 3"),
    (["--init-from", str(DEMO_MODEL), "--audio-layers", "4"],
     "--init-from continues a trained folder at its own sizes"),
])
def test_bad_training_arguments_are_refused_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
        message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize(("asked", "message"), [
    (dict(mouth_weight_where="voice-led", mouth_weight=8.0), "it needs audio_led_fraction > 0"),
    (dict(mouth_weight_where="voice-led", audio_led_fraction=0.5), "and mouth_weight > 1"),
    (dict(mouth_weight_where="mouth"), "mouth_weight_where='mouth': one of all, voice-led"),
])
def test_train_demo_model_refuses_a_mouth_weight_where_it_would_do_nothing(
        tmp_path: Path, asked: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        train_demo_model(tmp_path / "out", tmp_path / "work", BUDGETS["smoke"], **asked)
    assert not (tmp_path / "work").exists()


def test_an_out_path_that_is_no_checkpoint_folder_is_not_replaced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    a_file = tmp_path / "a_file"
    a_file.write_text("mine too")
    for out in (notes, a_file):
        with pytest.raises(SystemExit) as exit_info:
            main(["--out", str(out), "--work", str(tmp_path / "work"), "--budget", "smoke"])
        assert exit_info.value.code == 2
        assert "is no checkpoint folder (no model_index.json)" in capsys.readouterr().err
    assert (notes / "keep.txt").read_text() == "mine" and a_file.read_text() == "mine too"
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize(("loss_of", "what"), [
    (lambda w: w.sum() * float("inf"), "the loss is inf"),
    (lambda w: w.sum() * float("nan"), "the loss is nan"),
    # a finite loss whose gradient is infinite: sqrt at 0
    (lambda w: torch.sqrt(w - 1).sum(), "the gradient's norm is inf")])
def test_a_step_that_is_not_finite_is_refused_and_leaves_the_weights_and_optimiser_as_they_were(
        loss_of: Any, what: str) -> None:
    layer = torch.nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    optimiser = torch.optim.AdamW(layer.parameters(), lr=0.1)
    optimiser_step(layer.parameters(), optimiser, layer.weight.sum(), "probe", 0)  # a real step
    weights, moments = copy.deepcopy(layer.state_dict()), copy.deepcopy(optimiser.state_dict())
    with torch.no_grad():
        layer.weight.fill_(1.0)
        weights["weight"].fill_(1.0)
    with pytest.raises(TrainingDiverged, match=f"stage=probe step=8: {what}"):
        optimiser_step(layer.parameters(), optimiser, loss_of(layer.weight), "probe", 7)
    assert all(torch.equal(value, weights[key]) for key, value in layer.state_dict().items())
    assert optimiser.state_dict()["state"][0]["step"] == moments["state"][0]["step"] == 1
    assert torch.equal(optimiser.state_dict()["state"][0]["exp_avg"],
                       moments["state"][0]["exp_avg"])


def test_budget_validation() -> None:
    with pytest.raises(ValueError, match="4k\\+1"):
        dataclasses.replace(BUDGETS["smoke"], video_vae_frames=6)
    with pytest.raises(ValueError, match="hop"):
        Budget(video_vae_steps=1, video_vae_batch=1, video_vae_frames=5, audio_vae_steps=1,
               audio_vae_batch=1, audio_vae_samples=1000, num_clips=1, dit_steps=1,
               dit_batch=1)
    with pytest.raises(ValueError, match="video_vae_clip_steps=-1 must not be negative"):
        dataclasses.replace(BUDGETS["smoke"], video_vae_clip_steps=-1)
    with pytest.raises(ValueError, match="video_vae_decoder_steps=-2 must not be negative"):
        dataclasses.replace(BUDGETS["smoke"], video_vae_decoder_steps=-2)
    with pytest.raises(ValueError, match="video_vae_clip_batch=0 must be at least 1"):
        dataclasses.replace(BUDGETS["smoke"], video_vae_clip_batch=0)
    for field in ("dit_batch", "log_every", "checkpoint_every", "calibration_clips"):
        with pytest.raises(ValueError, match=f"{field}=0 must be at least 1"):
            dataclasses.replace(BUDGETS["smoke"], **{field: 0})
    with pytest.raises(ValueError, match="warmup_steps=-1 must not be negative"):
        dataclasses.replace(BUDGETS["smoke"], warmup_steps=-1)
    for rate in (0.0, -1e-3, float("nan"), float("inf"), 2.0):
        for field in ("dit_lr", "audio_vae_lr", "video_vae_decoder_lr"):
            with pytest.raises(ValueError, match=f"{field}={rate} must be a rate in"):
                dataclasses.replace(BUDGETS["smoke"], **{field: rate})
    for decay in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=f"ema_decay={decay} must be in"):
            dataclasses.replace(BUDGETS["smoke"], ema_decay=decay)
    for budget in BUDGETS.values():  # the presets themselves pass
        assert dataclasses.replace(budget) == budget


def _random_latents(n: int) -> LatentSet:
    g = torch.Generator().manual_seed(3)
    return LatentSet(video=torch.randn(n, 16, 7, 8, 14, generator=g),
                     first_frame=torch.randn(n, 16, 7, 8, 14, generator=g),
                     audio=torch.randn(n, 128, 53, generator=g), token_ids=[[7, 9, 1]] * n,
                     text_only=torch.randn(1, 16, 7, 8, 14, generator=g),
                     mouth=torch.zeros(n, 1, 7, 8, 14, dtype=torch.bool))


def test_voice_led_samples_give_the_audio_clean_and_count_only_the_picture(
        monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    models = DiffusionModels(TINY, build_text_encoder(TINY.text_encoder), seed=0)
    data, rows = _random_latents(4), torch.arange(4)
    scheduler = FlowMatchPairScheduler(TINY.scheduler)
    fed: dict[str, Tensor] = {}
    real_forward = training.dit.joint_forward

    def recording_forward(*args: Any) -> tuple[Tensor, Tensor]:
        fed.update(audio=args[4], t_video=args[6], t_audio=args[7])
        return real_forward(*args)

    monkeypatch.setattr(training.dit, "joint_forward", recording_forward)
    for expert in (0, 1):
        video_loss, audio_loss = diffusion_loss(
            models, data, scheduler, TINY.boundary_ratio, rows, expert,
            torch.Generator().manual_seed(expert), voice_over_fraction=0.0,
            audio_led_fraction=1.0)
        assert torch.equal(fed["audio"], data.audio) and bool((fed["t_audio"] == 0).all())
        assert bool((fed["t_video"] > 0).all())  # the picture at its expert's noise levels
        assert float(audio_loss) == 0 and float(video_loss) > 0
    # none asked: the recipe's random draws and losses, bit for bit
    g_recipe, g_none = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    with torch.no_grad():
        recipe = diffusion_loss(models, data, scheduler, TINY.boundary_ratio, rows, 1, g_recipe)
        none = diffusion_loss(models, data, scheduler, TINY.boundary_ratio, rows, 1, g_none,
                              audio_led_fraction=0.0)
    assert all(torch.equal(a, b) for a, b in zip(recipe, none, strict=True))
    assert torch.equal(g_recipe.get_state(), g_none.get_state())


def test_the_folded_text_padding_gives_the_padded_contexts_losses_and_gradients(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Training folds the 512-row context's padding into one row counted that many times
    (a PaddedText); the losses and every gradient must be those of the padded context."""
    data = dataclasses.replace(_random_latents(4), token_ids=[[7, 9, 1], [1], [5, 6, 7, 8, 9, 1],
                                                             [11, 1]])

    def losses_and_gradients() -> tuple[list[float], dict[str, Tensor]]:
        torch.manual_seed(0)
        models = DiffusionModels(TINY, build_text_encoder(TINY.text_encoder), seed=0)
        losses = []
        for expert in (0, 1):
            video, audio = diffusion_loss(models, data, FlowMatchPairScheduler(TINY.scheduler),
                                          TINY.boundary_ratio, torch.arange(4), expert,
                                          torch.Generator().manual_seed(expert))
            (video + audio).backward()
            losses += [video.item(), audio.item()]
        kernels = {block.cross_attn.kernel for tower in (models.video_dit, models.video_dit_2,
                                                          models.audio_dit)
                   for block in tower.blocks}
        assert kernels == {sdpa_kernel}  # the pipeline's kernel is the one trained through
        return losses, {name: p.grad for name, p in models.named_parameters()
                        if p.grad is not None}

    folded_losses, folded_grads = losses_and_gradients()
    context, pad_rows = encode_text_folded(build_text_encoder(TINY.text_encoder), data.token_ids)
    assert context.shape[1] == 7 and pad_rows == 506  # the longest prompt + the folded row
    # the padded context: all 512 rows, nothing folded
    monkeypatch.setattr(training.dit, "encode_text_folded",
                        lambda encoder, ids: (encode_text(encoder, ids), 0))
    padded_losses, padded_grads = losses_and_gradients()
    assert folded_losses == pytest.approx(padded_losses, rel=1e-5)
    assert folded_grads.keys() == padded_grads.keys()
    assert any("text_encoder" in name for name in folded_grads)
    for name, grad in folded_grads.items():
        torch.testing.assert_close(grad, padded_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_a_prompt_of_512_tokens_or_more_folds_no_padding_and_is_cut_as_encode_text_cuts_it(
        ) -> None:
    torch.manual_seed(0)
    encoder = build_text_encoder(TINY.text_encoder)
    for length in (512, 600):
        ids = [[5 + i % 7 for i in range(length - 1)] + [1], [7, 1]]
        with torch.no_grad():
            context, pad_rows = encode_text_folded(encoder, ids)
            assert pad_rows == 0 and context.shape[1] == 512
            torch.testing.assert_close(context, encode_text(encoder, ids))


def test_mouth_cells_hold_the_mouth_in_every_latent_frame_and_nothing_else() -> None:
    clips = [render(Scene("face", "red", "blue", "left", "ba", 3, seed=2)),
             render(Scene("face", "white", "grey", "still", "bo", 1, seed=5)),
             render(Scene("ball", "red", "grey", "bounces", seed=1)),
             render(Scene("box", "yellow", "green", "right", seed=3))]
    cells = mouth_cells(clips, (7, 8, 14))
    assert cells.shape == (4, 1, 7, 8, 14) and cells.dtype == torch.bool
    assert not cells[2:].any()  # no face, no mouth
    for row in (0, 1):
        for frame in range(25):
            k = (frame + 3) // 4  # the latent frame that stands for this pixel frame
            x, y = clips[row].mouth_centre[frame]
            for dx, dy in ((0, 0), (-5.5, 0), (5.5, 0), (0, -4), (0, 4)):  # centre and edges
                assert cells[row, 0, k, int((y + dy) // 8), int((x + dx) // 8)]
        # a mouth (12 x 9 px, sliding 1 px a frame) touches at most 3 x 3 of the 8 x 14 cells
        assert int(cells[row].sum(dim=(-2, -1)).max()) <= 9
    still = cells[1, 0]
    assert all(torch.equal(still[0], still[k]) for k in range(7))  # a still face: one place


def test_the_mouth_weight_counts_the_mouths_cells_that_many_times() -> None:
    torch.manual_seed(0)
    models = DiffusionModels(TINY, build_text_encoder(TINY.text_encoder), seed=0)
    data, rows = _random_latents(4), torch.arange(4)
    scheduler = FlowMatchPairScheduler(TINY.scheduler)

    def losses(mouth: Tensor, weight: float) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            return diffusion_loss(models, dataclasses.replace(data, mouth=mouth), scheduler,
                                  TINY.boundary_ratio, rows, 1, torch.Generator().manual_seed(4),
                                  mouth_weight=weight)

    none = torch.zeros_like(data.mouth)
    recipe = losses(none, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(recipe, losses(none, 8.0), strict=True))
    everywhere = losses(torch.ones_like(data.mouth), 8.0)
    torch.testing.assert_close(everywhere[0], 8 * recipe[0])
    assert torch.equal(everywhere[1], recipe[1])  # the audio loss has no mouth
    some = none.clone()
    some[:, :, :, 2:4, 5:7] = True
    between = losses(some, 8.0)[0]
    assert recipe[0] < between < everywhere[0]


def test_the_mouth_weight_in_voice_led_samples_only_leaves_the_other_samples_counted_once(
        ) -> None:
    torch.manual_seed(0)
    models = DiffusionModels(TINY, build_text_encoder(TINY.text_encoder), seed=0)
    data = dataclasses.replace(_random_latents(4), mouth=torch.ones_like(_random_latents(4).mouth))
    rows = torch.arange(4)
    scheduler = FlowMatchPairScheduler(TINY.scheduler)

    def video_loss(audio_led: float, weight: float, where: str) -> Tensor:
        with torch.no_grad():
            return diffusion_loss(models, data, scheduler, TINY.boundary_ratio, rows, 0,
                                  torch.Generator().manual_seed(4), voice_over_fraction=0.0,
                                  audio_led_fraction=audio_led, mouth_weight=weight,
                                  mouth_weight_where=where)[0]

    # every sample voice-led: the mouth (here every cell) counts 8 times, as with "all"
    torch.testing.assert_close(video_loss(0.999, 8.0, "voice-led"), video_loss(0.999, 8.0, "all"))
    torch.testing.assert_close(video_loss(0.999, 8.0, "voice-led"),
                               8 * video_loss(0.999, 1.0, "all"))
    # none voice-led (the same draws: a fraction above 0 still draws them): counted once
    assert torch.equal(video_loss(1e-9, 8.0, "voice-led"), video_loss(1e-9, 1.0, "all"))
    assert video_loss(1e-9, 8.0, "all") > video_loss(1e-9, 8.0, "voice-led")
    with pytest.raises(ValueError, match="mouth_weight_where='joint': one of all, voice-led"):
        video_loss(0.5, 8.0, "joint")


def test_feature_pixels_are_the_eyes_mouth_and_outline_and_nothing_else() -> None:
    face = render(Scene("face", "white", "grey", "still", "ba", 1, seed=5))
    ball = render(Scene("ball", "yellow", "blue", "bounces", seed=1))
    box = render(Scene("box", "red", "green", "still", seed=3))
    features = feature_pixels(pixels(np.stack([face.frames, ball.frames, box.frames])))
    assert features.shape == (3, 1, 25, 64, 112)
    assert not features[1].any()  # a ball has no features
    for row, clip in ((0, face), (2, box)):
        on = features[row, 0].numpy()
        inside = np.stack([object_mask(frame) for frame in clip.frames])
        assert on.any() and not (on & ~inside).any()  # all of them on the object, none beside
    x, y = face.mouth_centre[0]
    assert features[0, 0, 0, int(y) - 2:int(y) + 3, int(x) - 4:int(x) + 5].any()  # the mouth


def test_the_feature_weight_counts_only_the_features_pixels_more() -> None:
    vae, _ = build_codecs(TINY.video_vae, TINY.audio_vae, seed=0)
    clip = render(Scene("face", "red", "blue", "still", "ba", 2, seed=3))

    def loss(frames: np.ndarray, weight: float) -> float:
        with torch.no_grad():
            return float(video_vae_loss(vae, pixels(frames[None, :5]),
                                        torch.Generator().manual_seed(0),
                                        PixelWeights(features=weight)))

    assert loss(clip.frames, 8.0) > loss(clip.frames, 1.0)
    # a clip without a dark pixel: the weight changes nothing
    bright = np.maximum(clip.frames, 120).astype(np.uint8)
    assert loss(bright, 8.0) == loss(bright, 1.0)


def test_mouth_pixels_are_the_box_of_a_widest_mouth_in_every_frame_of_a_face() -> None:
    face = render(Scene("face", "white", "grey", "left", "ba", 3, seed=5))
    box = render(Scene("box", "red", "green", "still", seed=3))
    assert not mouth_pixels(box).any()  # no face, no mouth
    mouth = mouth_pixels(face)
    assert mouth.shape == face.frames.shape[:3]
    for frame, (x, y) in zip(mouth, face.mouth_centre, strict=True):
        ys, xs = np.nonzero(frame)
        # the same box wherever the face goes: 4.5 rows and 6 columns either side of the centre
        assert 9 <= np.ptp(ys) + 1 <= 10 and 12 <= np.ptp(xs) + 1 <= 13
        assert abs(ys.mean() - y) <= 0.5 and abs(xs.mean() - x) <= 0.5
    # every dark pixel of the lower face (the mouth, open or closed) lies inside the boxes
    dark = face.frames.max(axis=-1) <= DARK_MAX_CHANNEL
    lower = np.arange(64)[None, :, None] > face.mouth_centre[:, None, None, 1] - 5
    assert (dark & lower).any() and not (dark & lower & ~mouth).any()


def test_the_mouth_weight_counts_the_mouths_pixels_more_and_needs_them() -> None:
    vae, _ = build_codecs(TINY.video_vae, TINY.audio_vae, seed=0)
    face = render(Scene("face", "red", "blue", "still", "ba", 2, seed=3))
    ball = render(Scene("ball", "yellow", "blue", "bounces", seed=1))

    def loss(clip: RenderedClip, weight: float) -> float:
        mouth = torch.from_numpy(mouth_pixels(clip)[None, None, :5])
        with torch.no_grad():
            return float(video_vae_loss(vae, pixels(clip.frames[None, :5]),
                                        torch.Generator().manual_seed(0),
                                        PixelWeights(mouth=weight), {"mouth": mouth}))

    assert loss(face, 8.0) > loss(face, 1.0)
    assert loss(ball, 8.0) == loss(ball, 1.0)  # no mouth: the weight changes nothing
    with pytest.raises(ValueError, match="mouth pixels"):
        video_vae_loss(vae, pixels(face.frames[None, :5]), torch.Generator().manual_seed(0),
                       PixelWeights(mouth=8.0))


def test_object_pixels_are_the_analysers_object_and_a_ring_of_one_pixel() -> None:
    for scene in (Scene("box", "white", "grey", "left", seed=2),
                  Scene("ball", "yellow", "green", "bounces", seed=1),
                  Scene("face", "red", "blue", "right", "ba", 2, seed=4)):
        clip = render(scene)
        shape = object_pixels(clip)
        assert shape.shape == clip.frames.shape[:3]
        for frame, mask in zip(clip.frames, shape, strict=True):
            seen = object_mask(frame)
            ys, xs = np.nonzero(mask)
            seen_ys, seen_xs = np.nonzero(seen)
            assert seen.any() and not (seen & ~mask).any()  # all the object is weighted
            # and the box around it grows by one pixel each side, no more
            assert (ys.min(), ys.max()) == (max(seen_ys.min() - 1, 0), min(seen_ys.max() + 1, 63))
            assert (xs.min(), xs.max()) == (seen_xs.min() - 1, seen_xs.max() + 1)
            assert mask.sum() < 2 * seen.sum()


def test_the_object_weight_counts_the_objects_pixels_more_and_needs_them() -> None:
    vae, _ = build_codecs(TINY.video_vae, TINY.audio_vae, seed=0)
    box = render(Scene("box", "red", "green", "still", seed=3))

    def loss(frames: np.ndarray, shape: np.ndarray, weight: float) -> float:
        with torch.no_grad():
            return float(video_vae_loss(vae, pixels(frames[None, :5]),
                                        torch.Generator().manual_seed(0),
                                        PixelWeights(objects=weight),
                                        {"objects": torch.from_numpy(shape[None, None, :5])}))

    assert loss(box.frames, object_pixels(box), 8.0) > loss(box.frames, object_pixels(box), 1.0)
    nothing = np.zeros_like(object_pixels(box))  # no object on screen: nothing counts more
    assert loss(box.frames, nothing, 8.0) == loss(box.frames, nothing, 1.0)
    with pytest.raises(ValueError, match="object pixels"):
        video_vae_loss(vae, pixels(box.frames[None, :5]), torch.Generator().manual_seed(0),
                       PixelWeights(objects=8.0))


def test_a_world_encoded_before_the_mouth_was_recorded_gets_it_from_the_world(
        tmp_path: Path) -> None:
    older = dict(vars(_random_latents(6)))
    del older["mouth"]
    save_state(tmp_path / "state" / "latents.pt", older)
    data = _latent_stage(tmp_path, BUDGETS["smoke"], None, None, None, seed=2)  # type: ignore[arg-type]
    expected = mouth_cells(render_many(2 + WORLD_SEED_OFFSET, 6), (7, 8, 14))
    assert torch.equal(data.mouth, expected) and bool(expected.any())
    assert torch.equal(data.video, older["video"])
    # and it is kept: the next resume reads it back without rendering again
    assert torch.equal(_latent_stage(tmp_path, BUDGETS["smoke"], None, None, None,  # type: ignore[arg-type]
                                     seed=99).mouth, expected)
