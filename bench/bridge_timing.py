"""Does a checkpoint's bridge look at the right time? (issue 17: lip sync)

    .venv/bin/python bench/bridge_timing.py --checkpoint assets/demo-model [--scenes 24]

For each speaking scene of bench/content.py's fixed set, it makes the voice-over soundtrack for
the true picture (each seed, the demo profile) and records every bridge attention on the way:

- `aligned_mass`: per direction (video -> audio, audio -> video) and interaction layer, the mean
  share of a query's attention that lands on the key tokens of its own time (an audio token and
  the latent frame whose bridge position is nearest to it); about `uniform_mass` (1 / F_lat)
  when the bridge ignores time, up to 1 when it only reads its own instant;
- `rolled_sync`: the voice-over lip-sync rate again with the picture rolled by 10 frames, next to
  `sync` on the true picture: a model that places the voice by the mouth scores alike on both.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.content import (  # noqa: E402
    DEMO,
    evaluation_scenes,
    generate,
    in_sync_within_a_frame,
)
from demo_world import analysers  # noqa: E402
from demo_world.world import FPS, NUM_FRAMES, render  # noqa: E402
from mova_model.attention import AttentionKernel  # noqa: E402
from mova_model.bridge import Conditioner, DualTowerBridge  # noqa: E402
from mova_model.layers import AttentionCore, Rotary, attention_core  # noqa: E402
from mova_model.pipeline import MovaPipeline  # noqa: E402
from mova_model.rope import VAE_TEMPORAL_STRIDE, aligned_video_positions  # noqa: E402

ROLL_FRAMES = 10
NUM_LATENT_FRAMES = (NUM_FRAMES - 1) // VAE_TEMPORAL_STRIDE + 1


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


def run(checkpoint: Path, num_scenes: int, seeds: list[int]) -> dict[str, Any]:
    started = time.monotonic()
    pipe = MovaPipeline.from_pretrained(checkpoint)
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
        "uniform_mass": round(1 / NUM_LATENT_FRAMES, 3),
        "aligned_mass": {key: round(sum(v) / len(v), 3) for key, v in sorted(mass.shares.items())},
        **{key: round(sum(v) / len(v), 3) for key, v in in_sync.items()},
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--scenes", type=int, default=24,
                        help="scenes of the fixed set (half of them speak)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)
    if args.scenes < 1 or not args.seeds:
        parser.error("--scenes must be positive and --seeds non-empty")
    sys.stdout.write(json.dumps(run(args.checkpoint, args.scenes, args.seeds)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
