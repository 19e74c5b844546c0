"""Time one joint forward and one guided sampling step of a preset with random weights.

Prints one JSON line: sizes, analytic FLOPs (mova_model.flops), median wall times, achieved
FLOP/s, peak memory and the machine. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.mid_configs import (  # noqa: E402
    SIGMA,
    SIGMA_NEXT,
    TEXT_ROWS,
    mid_config,
    mid_joint_config,
    token_counts,
)
from mova_model.audio_dit import AudioDiT  # noqa: E402
from mova_model.bridge import DualTowerBridge  # noqa: E402
from mova_model.config import (  # noqa: E402
    PRESETS,
    AudioDiTConfig,
    MovaConfig,
    VideoDiTConfig,
)
from mova_model.flops import guided_step_flops, joint_forward_flops  # noqa: E402
from mova_model.joint import joint_forward  # noqa: E402
from mova_model.layers import Linear, blas_linear, count_parameters  # noqa: E402
from mova_model.padded_text import kept_rows  # noqa: E402
from mova_model.video_dit import VideoDiT  # noqa: E402

RELEASE_PRESETS = ("mova-360p", "mova-720p")
MASK_CHANNELS = 4  # TI2VA mask channels between z_t and the first-frame latent (spec §3.1)
CFG_SCALE = 5.0


def bench_presets() -> dict[str, MovaConfig]:
    """The library presets plus the bench-only `mid` and `mid-joint` (issue 15)."""
    return {**PRESETS, "mid": mid_config(), "mid-joint": mid_joint_config()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="tiny", choices=sorted(bench_presets()))
    parser.add_argument("--height", type=int, help="pixels (default: the preset's)")
    parser.add_argument("--width", type=int, help="pixels (default: the preset's)")
    parser.add_argument("--frames", type=int, help="pixel frames, 1 mod 4 (default: preset's)")
    parser.add_argument("--fps", type=float, help="video fps (default: the preset's)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--allow-large", action="store_true", help="allow a release preset on the CPU"
    )
    parser.add_argument(
        "--cpu-linear", default="onednn", choices=("onednn", "blas"),
        help="kernel of the linear layers in float32 on the CPU: oneDNN (the model's default) "
        "or F.linear's BLAS sgemm, to compare the two",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error(f"--repeats={args.repeats} must be >= 1 and --warmup={args.warmup} >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.device == "cpu" and args.preset in RELEASE_PRESETS and not args.allow_large:
        billions = parameter_count(bench_presets()[args.preset]) / 1e9
        parser.error(
            f"--preset {args.preset} has {billions:.1f}B parameters and needs a large GPU; "
            "refusing to run it on the CPU (pass --allow-large to force it, or use --preset "
            "tiny / mid)"
        )
    return args


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Create parameters directly in dtype (no fp32 copy of a large model)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def parameter_count(cfg: MovaConfig) -> int:
    """Parameters of both towers and the bridge, counted on the meta device."""
    with torch.device("meta"):
        modules = (VideoDiT(cfg.video_dit), AudioDiT(cfg.audio_dit), DualTowerBridge(cfg.bridge))
    return sum(count_parameters(m) for m in modules)


def check_cuda_memory(params: int, dtype: torch.dtype, device: torch.device) -> None:
    """Refuse to build a model whose weights alone do not fit in the free GPU memory."""
    need = params * torch.empty((), dtype=dtype).element_size()
    free, _ = torch.cuda.mem_get_info(device)
    if need > 0.9 * free:
        raise SystemExit(
            f"model weights need {need / 2**30:.1f} GiB in {dtype}; the GPU has "
            f"{free / 2**30:.1f} GiB free (plus activations); use a larger GPU or a smaller preset"
        )


def build_models(
    cfg: MovaConfig, dtype: torch.dtype, device: torch.device, seed: int
) -> tuple[VideoDiT, AudioDiT, DualTowerBridge]:
    """Seeded random towers and bridge, created on the device in dtype, in eval mode."""
    torch.manual_seed(seed)
    with torch.device(device), default_dtype(dtype):
        video = VideoDiT(cfg.video_dit).eval()
        audio = AudioDiT(cfg.audio_dit).eval()
        bridge = DualTowerBridge(cfg.bridge).eval()
    return video, audio, bridge


def make_inputs(
    cfg: MovaConfig,
    latent: tuple[int, int, int],
    audio_tokens: int,
    device: torch.device,
    seed: int,
) -> dict[str, Tensor]:
    """fp32 latents, conditioning channels and (cond, negative) text contexts for one clip."""
    gen = torch.Generator().manual_seed(seed)
    z = cfg.video_vae.z_dim
    f, h, w = latent
    text_len, text_dim = cfg.text_encoder.text_len, cfg.video_dit.text_dim
    context = torch.randn(2, text_len, text_dim, generator=gen)  # (2, L_t, text_dim)
    context[:, TEXT_ROWS:] = 0.0  # padding rows, as the encoder output is masked to zero
    tensors = {
        "z_video": torch.randn(1, z, f, h, w, generator=gen),  # (1, 16, F, H, W)
        "video_cond": torch.randn(1, MASK_CHANNELS + z, f, h, w, generator=gen),  # mask + Y
        "z_audio": torch.randn(1, cfg.audio_dit.in_dim, audio_tokens, generator=gen),
        "context": context,
    }
    return {k: v.to(device) for k, v in tensors.items()}


def timed(fn: Callable[[], Any], warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Wall seconds of each repeat after warm-up, synchronising the GPU around each call."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def linear_kernel(name: str) -> AbstractContextManager[None]:
    """The CPU float32 linear kernel: "onednn" (the model's default) or "blas" (F.linear)."""
    return blas_linear() if name == "blas" else nullcontext()


def gemm_flops_per_s(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device,
                     repeats: int) -> float:
    """The device's matmul rate at one (m x k) @ (k x n) shape in dtype: the ceiling a forward
    made mostly of such products can approach (its FLOP/s over this is how close it gets)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(device, dtype)
    # the product as the model's linear layers compute it (oneDNN on the CPU unless --cpu-linear
    # blas): the ceiling of the kernel the forward actually runs
    layer = Linear(k, n, bias=False).to(device, dtype)
    with torch.inference_mode():
        seconds = statistics.median(timed(lambda: layer(a), 2, max(repeats, 5), device))
    return 2 * m * k * n / seconds


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU model, cores, torch version and GPU name."""
    cpu_model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": cpu_model,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "python": platform.python_version(),
    }


def config_summary(cfg: MovaConfig, bridge: DualTowerBridge, params: int) -> dict[str, Any]:
    """Widths, depths and heads of the model that was timed."""

    def tower(c: VideoDiTConfig | AudioDiTConfig) -> dict[str, int]:
        return {
            "dim": c.dim,
            "ffn_dim": c.ffn_dim,
            "num_heads": c.num_heads,
            "head_dim": c.head_dim,
            "num_layers": c.num_layers,
        }

    return {
        "video_dit": tower(cfg.video_dit),
        "audio_dit": tower(cfg.audio_dit),
        "bridge": {
            "strategy": cfg.bridge.interaction_strategy,
            "pairs": len(bridge.layers),
            "head_dim": cfg.bridge.head_dim,
        },
        "text_dim": cfg.video_dit.text_dim,
        "parameters": params,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, time and measure; the result dictionary printed as JSON."""
    cfg = bench_presets()[args.preset]
    height = args.height or cfg.height
    width = args.width or cfg.width
    frames = args.frames or cfg.num_frames
    fps = args.fps or cfg.video_fps
    try:
        latent, video_tokens, audio_tokens = token_counts(cfg, height, width, frames, fps)
    except ValueError as err:
        raise SystemExit(f"--preset {args.preset}: {err}") from err
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    params = parameter_count(cfg)
    if device.type == "cuda":
        check_cuda_memory(params, dtype, device)
        torch.cuda.reset_peak_memory_stats(device)

    video, audio, bridge = build_models(cfg, dtype, device, args.seed)
    x = make_inputs(cfg, latent, audio_tokens, device, args.seed)
    t = torch.full((2,), 1000.0 * SIGMA, device=device)

    def forward(batch: int) -> tuple[Tensor, Tensor]:
        video_in = torch.cat([x["z_video"], x["video_cond"]], dim=1)  # (1, 36, F, H, W)
        return joint_forward(
            video, audio, bridge,
            video_in.expand(batch, -1, -1, -1, -1),
            x["z_audio"].expand(batch, -1, -1),
            x["context"][:batch], t[:batch], t[:batch], fps,
        )  # fmt: skip

    def guided_step() -> tuple[Tensor, Tensor]:
        # batched CFG: row 0 conditional, row 1 negative prompt, both with the bridge
        vel_v, vel_a = forward(2)
        guided_v = vel_v[1:] + CFG_SCALE * (vel_v[:1] - vel_v[1:])
        guided_a = vel_a[1:] + CFG_SCALE * (vel_a[:1] - vel_a[1:])
        dt = SIGMA_NEXT - SIGMA  # Euler step of the flow ODE in sigma
        return x["z_video"] + dt * guided_v, x["z_audio"] + dt * guided_a

    with torch.inference_mode(), linear_kernel(args.cpu_linear):
        forward_times = timed(lambda: forward(1), args.warmup, args.repeats, device)
        step_times = timed(guided_step, args.warmup, args.repeats, device)
        # the video tower's feed-forward product, the largest GEMM of the forward
        gemm = gemm_flops_per_s(video_tokens, cfg.video_dit.dim, cfg.video_dit.ffn_dim, dtype,
                                device, args.repeats)

    if device.type == "cuda":
        peak_bytes = torch.cuda.max_memory_allocated(device)
        peak_source = "torch.cuda.max_memory_allocated"
    else:
        peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        peak_source = "ru_maxrss (peak RSS of the whole process)"

    # the work the forward does: the text keys left after folding the padding (spec §10's count
    # with all L_t rows would credit the fold as FLOP/s)
    text_keys = kept_rows(TEXT_ROWS, cfg.text_encoder.text_len)
    fwd = joint_forward_flops(cfg, video_tokens, audio_tokens, text_keys)
    step = guided_step_flops(cfg, video_tokens, audio_tokens, text_keys, branches=2)
    forward_s = statistics.median(forward_times)
    step_s = statistics.median(step_times)
    return {
        "preset": args.preset,
        "config": config_summary(cfg, bridge, params),
        "height": height,
        "width": width,
        "frames": frames,
        "fps": fps,
        "video_latent": list(latent),
        "L_v": video_tokens,
        "L_a": audio_tokens,
        "L_t": cfg.text_encoder.text_len,
        "text_keys": text_keys,
        "dtype": args.dtype,
        "device": args.device,
        "cpu_linear": args.cpu_linear,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "flops": {
            "forward": fwd.total,
            "guided_step": step.total,
            "forward_parts": fwd.as_dict(),
        },
        "time_s": {
            "forward": forward_s,
            "guided_step": step_s,
            "forward_all": forward_times,
            "guided_step_all": step_times,
        },
        "flops_per_s": {"forward": fwd.total / forward_s, "guided_step": step.total / step_s},
        "gemm_flops_per_s": gemm,
        "forward_fraction_of_gemm": fwd.total / forward_s / gemm,
        "peak_memory_bytes": peak_bytes,
        "peak_memory_source": peak_source,
        "machine": machine_info(device),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, write one JSON line to stdout."""
    result = run(parse_args(argv))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
