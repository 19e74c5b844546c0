"""Time one context-parallel joint step (spec §13.4) over N ranks: tokens, bytes, compute vs comm.

Spawns N ranks (gloo on the CPU, NCCL with --device cuda, one GPU per rank) that build the same
seeded towers and bridge and run `--steps` joint forwards with ContextParallel(profile=True).
Prints one JSON line: the sizes, then per rank its video/audio tokens (padding included), bytes
it sent to the other ranks per step, collectives per step, and the median step time split into
communication (time inside collectives, which includes waiting for the slowest rank) and the
rest (compute). With --baseline the same step on one process without context parallel is timed
too. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.mid_configs import TEXT_ROWS, mid_config  # noqa: E402
from mova_model import lengths  # noqa: E402
from mova_model.audio_dit import AudioDiT  # noqa: E402
from mova_model.bridge import DualTowerBridge  # noqa: E402
from mova_model.config import MovaConfig, get_preset  # noqa: E402
from mova_model.context_parallel import ContextParallel, init_context_parallel  # noqa: E402
from mova_model.joint import joint_forward  # noqa: E402
from mova_model.video_dit import VideoDiT  # noqa: E402

TEXT_LEN = 512


def config_for(preset: str) -> MovaConfig:
    return mid_config() if preset == "mid" else get_preset(preset)


def build(config: MovaConfig, device: torch.device, dtype: torch.dtype, seed: int
          ) -> tuple[VideoDiT, AudioDiT, DualTowerBridge]:
    torch.manual_seed(seed)  # every rank builds identical weights
    models = VideoDiT(config.video_dit), AudioDiT(config.audio_dit), DualTowerBridge(config.bridge)
    return tuple(m.to(device, dtype).eval() for m in models)  # type: ignore[return-value]


def inputs(args: argparse.Namespace, config: MovaConfig, device: torch.device
           ) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(args.seed)
    _, f_lat, h, w = lengths.video_latent_shape(args.height, args.width, args.frames)
    l_a = lengths.audio_latent_frames(args.frames, args.fps)
    context = torch.zeros(1, TEXT_LEN, config.video_dit.text_dim)
    context[:, :TEXT_ROWS] = torch.randn(1, TEXT_ROWS, config.video_dit.text_dim, generator=gen)
    return {
        "video_input": torch.randn(1, 36, f_lat, h, w, generator=gen).to(device),
        "audio_input": torch.randn(1, 128, l_a, generator=gen).to(device),
        "context": context.to(device),
        "t_video": torch.tensor([900.0], device=device),
        "t_audio": torch.tensor([900.0], device=device),
        "video_fps": args.fps,
    }


def timed_steps(args: argparse.Namespace, models: tuple[Any, ...], batch: dict[str, Any],
                cp: ContextParallel | None, device: torch.device) -> list[float]:
    times = []
    for i in range(args.warmup + args.steps):
        if cp is not None and i == args.warmup:
            cp.stats.bytes_sent, cp.stats.collectives, cp.stats.comm_s = 0, 0, 0.0
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode():
            joint_forward(*models, **batch, context_parallel=cp)  # type: ignore[misc]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return times


def run_rank(rank: int, args: argparse.Namespace, rendezvous: str, out_dir: str) -> None:
    """One rank: join the group, time the steps, write its numbers as JSON."""
    device = torch.device(f"cuda:{rank}" if args.device == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(args.threads)
    init_context_parallel(rank, args.ranks, f"file://{rendezvous}", device, timeout_s=600)
    try:
        config = config_for(args.preset)
        models = build(config, device, getattr(torch, args.dtype), args.seed)
        batch = inputs(args, config, device)
        cp = ContextParallel(expected_size=args.ranks, profile=True)
        times = timed_steps(args, models, batch, cp, device)
        l_v = batch["video_input"][0, 0].numel() // 4  # 1x2x2 patches
        l_a = batch["audio_input"].shape[2]
        step_s = statistics.median(times)
        comm_s = cp.stats.comm_s / args.steps
        result = {
            "rank": rank,
            "video_tokens": math.ceil(l_v / args.ranks),
            "audio_tokens": math.ceil(l_a / args.ranks),
            "bytes_sent_per_step": cp.stats.bytes_sent // args.steps,
            "collectives_per_step": cp.stats.collectives // args.steps,
            "step_s": step_s,
            "comm_s": comm_s,
            "compute_s": step_s - comm_s,
        }
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "mid"])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=112)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per CPU rank")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", action="store_true", help="also time 1 rank without CP")
    args = parser.parse_args(argv)
    lengths.validate_video_size(args.height, args.width, args.frames)
    if args.ranks < 1 or args.steps < 1:
        parser.error("--ranks and --steps must be at least 1")
    if args.device == "cuda" and torch.cuda.device_count() < args.ranks:
        parser.error(f"--ranks {args.ranks} needs as many GPUs; found {torch.cuda.device_count()}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(  # type: ignore[attr-defined, no-untyped-call]
            run_rank, args=(args, str(Path(tmp) / "rendezvous"), tmp), nprocs=args.ranks,
            join=True, start_method="spawn")
        ranks = [json.loads((Path(tmp) / f"rank{r}.json").read_text())
                 for r in range(args.ranks)]
    result: dict[str, Any] = {
        "preset": args.preset, "ranks": args.ranks, "device": args.device, "dtype": args.dtype,
        "height": args.height, "width": args.width, "frames": args.frames, "steps": args.steps,
        "backend": "nccl" if args.device == "cuda" else "gloo",
        "per_rank": ranks,
        "step_s": max(r["step_s"] for r in ranks),
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "threads_per_rank": args.threads, "torch": torch.__version__},
    }
    if args.baseline:
        device = torch.device("cuda" if args.device == "cuda" else "cpu")
        torch.set_num_threads(args.threads)
        config = config_for(args.preset)
        models = build(config, device, getattr(torch, args.dtype), args.seed)
        result["single_rank_step_s"] = statistics.median(
            timed_steps(args, models, inputs(args, config, device), None, device))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, write one JSON line to stdout."""
    sys.stdout.write(json.dumps(run(parse_args(argv))) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
