"""Time the DAC audio VAE: encode and decode of a clip with seeded random weights.

Prints one JSON line: preset, clip length, median wall times of encode and decode, and the
machine. These timings used to be asserts in the test suite (under a second for the tiny
decoder); on a shared machine they are a benchmark, not a pass/fail test. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mova_model.audio_vae import AudioVAE  # noqa: E402
from mova_model.config import get_preset  # noqa: E402


def median_s(run: Callable[[], object], repeats: int, warmup: int) -> tuple[float, list[float]]:
    """Median wall time of `run` over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seconds", type=float, default=50_000 / 48_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--allow-large", action="store_true",
                        help="allow the 372M-parameter release VAE on the CPU")
    args = parser.parse_args(argv)
    config = get_preset(args.preset).audio_vae
    if config.decoder_dim > 256 and not args.allow_large:
        parser.error(f"preset {args.preset} builds the release-size VAE: pass --allow-large")
    torch.manual_seed(0)
    model = AudioVAE(config).eval()
    audio = 0.1 * torch.randn(1, 1, int(args.seconds * config.sample_rate))
    with torch.inference_mode():
        latent = model.encode(audio)
        encode_s, encode_all = median_s(lambda: model.encode(audio), args.repeats, args.warmup)
        decode_s, decode_all = median_s(lambda: model.decode(latent), args.repeats, args.warmup)
    print(json.dumps({  # noqa: T201 - the benchmark's output
        "preset": args.preset, "samples": audio.shape[-1], "latent_frames": latent.shape[-1],
        "encode_s": {"median": encode_s, "all": encode_all},
        "decode_s": {"median": decode_s, "all": decode_all},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
    }))


if __name__ == "__main__":
    main()
