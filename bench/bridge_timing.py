"""Does a checkpoint's bridge look at the right time? (issue 17: lip sync)

    .venv/bin/python bench/bridge_timing.py --checkpoint assets/demo-model [--scenes 24]

For each speaking scene of bench/content.py's fixed set, it makes the voice-over soundtrack for
the true picture (each seed, the demo profile) and records every bridge attention on the way:

- `aligned_mass`: per direction (video -> audio, audio -> video) and interaction layer, the mean
  share of a query's attention that lands on the key tokens of its own time (an audio token and
  the latent frame whose bridge position is nearest to it); about `uniform_mass` (1 / F_lat)
  when the bridge ignores time, up to 1 when it only reads its own instant;
- `rolled_sync`: the voice-over lip-sync rate again with the picture rolled by 10 frames, next to
  `sync` on the true picture: a model that places the voice by the mouth scores alike on both;
- `timing_gain`: the training loss tells more finely. On `--clips` clips of the world (drawn
  from EVAL_SEED, encoded by the checkpoint's codecs), the audio flow-matching loss of voice-over
  samples (clean video, audio at a training noise level, the low-noise expert) with the true
  video latents and with latent frames 1.. rolled by 3 (12 frames; frame 0, the first-frame
  condition, kept), the same noise for both: (rolled - true) / true. Zero when the audio tower
  does not use the picture's timing.
- `picture_sync` / `picture_sync_no_bridge`: the other direction (audio -> video). Each speaking
  scene is generated jointly (text only, each seed) with its true voice given: at every step the
  audio the model sees is the true voice's DAC latent noised to that step's audio level
  (replacement sampling; in distribution, since training noises both towers at one level), so
  only the picture is made, and it is scored against the true voice. With the bridge's
  strength 0 in every pass, the picture cannot hear the voice: what it scores then is chance.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from transformers import AutoTokenizer

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.content import (  # noqa: E402
    DEMO,
    EVAL_SEED,
    evaluation_scenes,
    generate,
    in_sync_within_a_frame,
    refuse_no_checkpoint,
)
from demo_world import analysers  # noqa: E402
from demo_world.world import FPS, NUM_FRAMES, render  # noqa: E402
from mova_model.attention import AttentionKernel  # noqa: E402
from mova_model.audio_vae import AudioVAE  # noqa: E402
from mova_model.bridge import Conditioner, DualTowerBridge  # noqa: E402
from mova_model.layers import AttentionCore, Rotary, attention_core  # noqa: E402
from mova_model.pipeline import MovaPipeline, _ExpertDenoiser  # noqa: E402
from mova_model.rope import VAE_TEMPORAL_STRIDE, aligned_video_positions  # noqa: E402
from mova_model.schedule import FlowMatchPairScheduler  # noqa: E402
from training.dit import diffusion_loss, encode_world, loss_batches  # noqa: E402
from training.run import load_codecs, load_trained_diffusion  # noqa: E402

ROLL_FRAMES = 10
NUM_LATENT_FRAMES = (NUM_FRAMES - 1) // VAE_TEMPORAL_STRIDE + 1
LATENT_ROLL = 3  # latent frames (12 picture frames)
LOSS_BATCH = 8
LOSS_DRAWS = 2  # noise draws per clip
LOW_NOISE_EXPERT = 1  # voice-over runs on `video_dit_2` (t_video = 0 < boundary)


class AlignedMass:
    """Records, per (direction, layer), the attention share on time-aligned keys."""

    def __init__(self, bridge: DualTowerBridge) -> None:
        config = bridge.config
        # each latent frame's bridge position in audio steps, exactly as the model places it
        self.frame_positions = aligned_video_positions(
            NUM_LATENT_FRAMES, config.audio_fps, FPS, config.apply_first_frame_bias_in_rope,
            torch.device("cpu"))
        self.shares: dict[str, list[float]] = defaultdict(list)
        # Route each bridge attention through a core that also measures it (the Attention
        # class's own seam: context parallel swaps `core` the same way).
        for layer in bridge.layers:
            for direction, conditioners in (("video_to_audio", bridge.video_to_audio_conditioners),
                                            ("audio_to_video", bridge.audio_to_video_conditioners)):
                conditioner = conditioners[str(layer)]
                assert isinstance(conditioner, Conditioner)
                conditioner.inner.core = self._core(f"{direction}.{layer}",
                                                    audio_queries=direction == "video_to_audio")

    def _core(self, key: str, audio_queries: bool) -> AttentionCore:
        def core(q: Tensor, k: Tensor, v: Tensor, q_rope: Rotary | None,
                 k_rope: Rotary | None, kernel: AttentionKernel) -> Tensor:
            q_at, k_at = (q_rope(q) if q_rope else q), (k_rope(k) if k_rope else k)
            weights = torch.einsum("bqnd,bknd->bnqk", q_at.float(), k_at.float()) \
                .div(math.sqrt(q.shape[-1])).softmax(-1)  # (B, n, L_q, L_k)
            aligned = self._aligned(audio_len=q.shape[1] if audio_queries else k.shape[1],
                                    video_len=k.shape[1] if audio_queries else q.shape[1])
            if not audio_queries:
                aligned = aligned.T
            self.shares[key].append(float((weights * aligned).sum(-1).mean()))
            return attention_core(q, k, v, q_rope, k_rope, kernel)
        return core

    def _aligned(self, audio_len: int, video_len: int) -> Tensor:
        """(L_a, L_v) bool: the video tokens of each audio token's nearest latent frame (video
        tokens are frame-major, every frame the same size)."""
        audio_pos = torch.arange(audio_len, dtype=torch.float32)
        nearest = (audio_pos[:, None] - self.frame_positions[None, :]).abs().argmin(-1)
        video_frame = torch.arange(video_len) // (video_len // NUM_LATENT_FRAMES)
        return nearest[:, None] == video_frame[None, :]


def timing_gain(checkpoint: Path, num_clips: int) -> dict[str, float]:
    """Voice-over audio loss on true and on time-rolled video latents (see the module doc)."""
    vae, video_config, dac = load_codecs(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint / "tokenizer"),
                                              local_files_only=True)
    data = encode_world(vae, video_config, dac, tokenizer, num_clips, EVAL_SEED)
    later = data.video[:, :, 1:]
    rolled = dataclasses.replace(data, video=torch.cat(
        [data.video[:, :, :1], later.roll(LATENT_ROLL, dims=2)], dim=2))
    models, config = load_trained_diffusion(checkpoint)
    scheduler = FlowMatchPairScheduler(config.scheduler)
    losses = {"true": 0.0, "rolled": 0.0}
    batches = loss_batches(num_clips, LOSS_BATCH, LOSS_DRAWS)
    with torch.no_grad():
        for index, rows in enumerate(batches):
            for key, latents in (("true", data), ("rolled", rolled)):
                noise = torch.Generator().manual_seed(index)  # the same draws for both
                _, audio_loss = diffusion_loss(models, latents, scheduler, config.boundary_ratio,
                                               rows, LOW_NOISE_EXPERT, noise,
                                               voice_over_fraction=1.0)
                losses[key] += audio_loss.item() / len(batches)
    return {"audio_loss_true": round(losses["true"], 4),
            "audio_loss_rolled": round(losses["rolled"], 4),
            "timing_gain": round((losses["rolled"] - losses["true"]) / losses["true"], 4)}


@contextmanager
def voice_given(pipe: MovaPipeline, voice_latent: Tensor, seed: int, bridge_factor: float
                ) -> Iterator[None]:
    """Within the block, every joint forward of `pipe` sees `voice_latent` (1, C, L_a) noised to
    the forward's audio level instead of the audio being sampled (a fresh draw per step, seeded
    by `seed` and the step), and the bridge at `bridge_factor` times its strength. Patches the
    pipeline's denoiser for this measurement only; restored on leaving."""
    original = _ExpertDenoiser.__call__
    scheduler = pipe.scheduler

    def call(self: _ExpertDenoiser, expert: int, video_input: Tensor, audio_input: Tensor,
             context: Tensor, t_video: Tensor, t_audio: Tensor, video_fps: float,
             bridge_scale: float | Tensor) -> tuple[Tensor, Tensor]:
        sigma = scheduler.sigma_for(t_audio[0])
        noise = torch.randn(voice_latent.shape, generator=torch.Generator().manual_seed(
            seed * 10_000 + int(t_audio[0])))
        noised = ((1 - sigma) * voice_latent + sigma * noise).to(audio_input)
        return original(self, expert, video_input, noised.expand_as(audio_input), context,
                        t_video, t_audio, video_fps, bridge_scale * bridge_factor)

    _ExpertDenoiser.__call__ = call  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        _ExpertDenoiser.__call__ = original  # type: ignore[method-assign]


def picture_sync(pipe: MovaPipeline, num_scenes: int, seeds: list[int]) -> dict[str, float]:
    """Lip-sync rates of pictures made for the true voice, with the bridge and without it."""
    dac = pipe.component("audio_vae")
    assert isinstance(dac, AudioVAE)
    in_sync: dict[str, list[bool]] = {"picture_sync": [], "picture_sync_no_bridge": []}
    for scene in evaluation_scenes(num_scenes):
        if scene.obj != "face":
            continue
        truth = render(scene)
        with torch.no_grad():
            voice_latent = dac.encode(torch.from_numpy(truth.audio).float()[None, None])
        for seed in seeds:
            for key, scale in (("picture_sync", 1.0), ("picture_sync_no_bridge", 0.0)):
                with voice_given(pipe, voice_latent, seed, scale):
                    frames, _ = generate(pipe, truth.prompt, seed=seed, steps=DEMO.steps,
                                         cfg_scale=DEMO.cfg_scale)
                lag = analysers.lip_sync_lag(frames, truth.audio)
                in_sync[key].append(in_sync_within_a_frame(lag))
    return {key: round(sum(v) / len(v), 3) for key, v in in_sync.items()}


def run(checkpoint: Path, num_scenes: int, seeds: list[int], num_clips: int) -> dict[str, Any]:
    started = time.monotonic()
    pipe = MovaPipeline.from_pretrained(checkpoint)
    # before the recorder is attached: its attention shares are of the voice-over passes only
    given_voice = picture_sync(pipe, num_scenes, seeds)
    bridge = pipe.component("dual_tower_bridge")
    assert isinstance(bridge, DualTowerBridge)
    mass = AlignedMass(bridge)
    in_sync: dict[str, list[bool]] = {"sync": [], "rolled_sync": []}
    for scene in evaluation_scenes(num_scenes):
        if scene.obj != "face":
            continue
        truth = render(scene)
        for seed in seeds:
            for key, frames in (("sync", truth.frames),
                                ("rolled_sync", np.roll(truth.frames, ROLL_FRAMES, axis=0))):
                _, voice = generate(pipe, truth.prompt, seed=seed, steps=DEMO.steps,
                                    cfg_scale=DEMO.cfg_scale, video=frames)
                lag = analysers.lip_sync_lag(frames, voice)
                in_sync[key].append(in_sync_within_a_frame(lag))
    return {
        "checkpoint": str(checkpoint), "seeds": seeds, "samples": len(in_sync["sync"]),
        "clips": num_clips, **timing_gain(checkpoint, num_clips),
        "uniform_mass": round(1 / NUM_LATENT_FRAMES, 3),
        "aligned_mass": {key: round(sum(v) / len(v), 3) for key, v in sorted(mass.shares.items())},
        **{key: round(sum(v) / len(v), 3) for key, v in in_sync.items()},
        **given_voice,
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--scenes", type=int, default=24,
                        help="scenes of the fixed set (half of them speak)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--clips", type=int, default=96, help="world clips for timing_gain")
    args = parser.parse_args(argv)
    refuse_no_checkpoint(parser, args.checkpoint)
    if args.scenes < 1 or args.clips < 1 or not args.seeds:
        parser.error("--scenes and --clips must be positive and --seeds non-empty")
    result = run(args.checkpoint, args.scenes, args.seeds, args.clips)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
