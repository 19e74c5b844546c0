"""Time the mid-config joint forward of this checkout against an older commit's, interleaved.

    .venv/bin/python bench/forward_vs_commit.py --commit 92fb6ee [--pairs 12] [--preset mid-joint]

Issue 15 asks for the forward "20 % faster than today": `today` is a commit, and a shared or
throttled host drifts by more than that between two runs minutes apart. So both versions run at
once, each in its own process (its own checkout's `mova_model`, from a `git worktree` of the
commit), with the same seeded weights and inputs, and take turns: one forward of one, one of
the other, the order alternating per pair. Drift then hits both alike; the per-pair ratio
(this checkout / the commit) is the figure.

Prints each side's forward times and the median, least and greatest pairwise ratio, then removes
the worktree. Config: `bench/mid_configs.py` (the commit's own config classes build it), float32,
`--threads` torch threads (default 2), batch 1 as `model_step.py`'s forward.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def worker(checkout: Path, preset: str, threads: int) -> None:
    """Build the preset with `checkout`'s mova_model, then time one forward per line on stdin."""
    sys.path.insert(0, str(checkout))
    import torch

    from mova_model.audio_dit import AudioDiT
    from mova_model.bridge import DualTowerBridge
    from mova_model.joint import joint_forward
    from mova_model.video_dit import VideoDiT

    module_file = str(sys.modules["mova_model"].__file__)
    if not module_file.startswith(str(checkout)):
        raise SystemExit(f"imported {module_file}, not the checkout {checkout}")
    spec = importlib.util.spec_from_file_location("mid_configs", REPO / "bench/mid_configs.py")
    assert spec is not None and spec.loader is not None
    configs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(configs)
    cfg = {"mid": configs.mid_config, "mid-joint": configs.mid_joint_config}[preset]()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    video = VideoDiT(cfg.video_dit).eval()
    audio = AudioDiT(cfg.audio_dit).eval()
    bridge = DualTowerBridge(cfg.bridge).eval()
    gen = torch.Generator().manual_seed(0)
    latent, _, audio_tokens = configs.token_counts(cfg, cfg.height, cfg.width, cfg.num_frames,
                                                   cfg.video_fps)
    context = torch.randn(1, cfg.text_encoder.text_len, cfg.video_dit.text_dim, generator=gen)
    context[:, configs.TEXT_ROWS:] = 0.0  # padding rows, as the encoder output is masked to zero
    video_in = torch.randn(1, cfg.video_dit.in_dim, *latent, generator=gen)  # z_t, mask, Y
    audio_in = torch.randn(1, cfg.audio_dit.in_dim, audio_tokens, generator=gen)
    t = torch.full((1,), 1000.0 * configs.SIGMA)

    def forward() -> None:
        joint_forward(video, audio, bridge, video_in, audio_in, context, t, t, cfg.video_fps)

    with torch.inference_mode():
        forward()  # warm-up
        say("ready")
        for _ in sys.stdin:
            start = time.perf_counter()
            forward()
            say(f"{time.perf_counter() - start:.4f}")


def interleave(checkouts: dict[str, Path], preset: str, threads: int,
               pairs: int) -> dict[str, list[float]]:
    """One worker per checkout; `pairs` rounds of one forward each, the order alternating."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, __file__, "--worker", str(path), "--preset", preset,
             "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for name, path in checkouts.items()
    }
    try:
        for name, proc in procs.items():
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit(f"the worker timing {name} failed to start (its error is above)")
        times: dict[str, list[float]] = {name: [] for name in procs}
        names = list(procs)
        for index in range(pairs):
            for name in names if index % 2 == 0 else names[::-1]:
                proc = procs[name]
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
                times[name].append(float(proc.stdout.readline()))
            sys.stderr.write(f"pair {index + 1}/{pairs}: " + "  ".join(
                f"{name} {times[name][-1]:.3f} s" for name in names) + "\n")
        return times
    finally:
        for proc in procs.values():
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commit", default="92fb6ee", help="the older commit (default: the one "
                        "issue 15 was filed on)")
    parser.add_argument("--preset", default="mid-joint", choices=("mid", "mid-joint"))
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.preset, args.threads)
        return 0
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    with tempfile.TemporaryDirectory(prefix="forward-vs-") as tmp:
        old = Path(tmp) / "old"
        made = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old),
                               args.commit], capture_output=True, text=True)
        if made.returncode != 0:
            parser.error(f"--commit {args.commit}: {made.stderr.strip()}")
        try:
            names = {args.commit: old, "this checkout": REPO}
            times = interleave(names, args.preset, args.threads, args.pairs)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)],
                           check=False)
    before, after = times[args.commit], times["this checkout"]
    ratios = [new / previous for previous, new in zip(before, after, strict=True)]
    for name, values in times.items():
        say(f"{name}: median {statistics.median(values):.3f} s, least {min(values):.3f} s "
            f"({', '.join(f'{v:.2f}' for v in values)})")
    ratio = statistics.median(ratios)
    say(f"this checkout / {args.commit}, per pair: median {ratio:.3f} "
        f"(least {min(ratios):.3f}, greatest {max(ratios):.3f}), so {1 / ratio:.2f}x as fast")
    return 0


if __name__ == "__main__":
    sys.exit(main())
