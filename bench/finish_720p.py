"""Time finishing one 8 s 720p deliverable: loudness (measure, apply, verify), soft captions and
the H.264/AAC encode, from synthetic frames and audio. Prints one JSON line.

    .venv/bin/python bench/finish_720p.py [--repeats 3] [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import get_args

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.fonts import fontconfig_file  # noqa: E402
from infra.media import probe, run_ffmpeg  # noqa: E402
from schemas.brief import Aspect, LoudnessProfile  # noqa: E402
from schemas.finishing import (  # noqa: E402
    DELIVERY_X264_PRESET,
    LOUDNESS_TARGETS,
    CaptionCue,
    FinishSpec,
    X264Preset,
)
from tasks.finishing import (  # noqa: E402
    build_encode_args,
    finish_clip,
    normalize_loudness,
    to_srt,
    write_wav,
)

FPS, RATE, FRAMES = 24.0, 48_000, 193


def synthetic(height: int = 720, width: int = 1280) -> tuple[np.ndarray, np.ndarray]:
    """Moving gradients with noise (incompressible enough to be a fair encode) and a tone."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    frames = np.empty((FRAMES, height, width, 3), np.uint8)
    for t in range(FRAMES):
        base = (x + y + 4 * t) % 256
        frames[t] = np.stack([base, (base * 0.5 + t) % 256, 255 - base], axis=-1)
        frames[t] ^= rng.integers(0, 8, size=(height, width, 3), dtype=np.uint8)
    samples = int(RATE * FRAMES / FPS)
    tone = np.sin(2 * np.pi * 220 * np.arange(samples) / RATE) * 0.2
    return frames, (tone * (0.5 + 0.5 * np.sin(np.arange(samples) / RATE * 6)))[None].astype(
        np.float32)


def finish_once(frames: np.ndarray, audio: np.ndarray, spec: FinishSpec, workdir: Path,
                preset: X264Preset) -> dict:
    """The deliverable itself: loudness, soft captions, encode (no burned variant, no QC)."""
    started = time.perf_counter()
    wav = write_wav(audio, RATE, workdir / "in.wav")
    normalized = workdir / "norm.wav"
    normalize_loudness(wav, spec.loudness, normalized)
    loud = time.perf_counter()
    srt = workdir / "c.srt"
    srt.write_text(to_srt(spec.captions))
    out = workdir / "out.mp4"
    args = build_encode_args(src_size=(frames.shape[2], frames.shape[1]), frames=FRAMES,
                             fps=FPS, wav=normalized, srt=srt, overlay=None, out=out, spec=spec,
                             x264_preset=preset)
    run_ffmpeg(args, stdin=np.ascontiguousarray(frames).tobytes(),
               env={"FONTCONFIG_FILE": str(fontconfig_file(workdir / ".fonts"))})
    done = time.perf_counter()
    media = probe(out)
    assert media.video is not None and media.video.width == 1280
    return {"total_s": done - started, "loudness_s": loud - started, "encode_s": done - loud}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true",
                        help="also time finish_clip (both caption variants, loudness, QC) and "
                             "print its split by stage")
    parser.add_argument("--preset", default=DELIVERY_X264_PRESET, choices=get_args(X264Preset),
                        help="x264 preset (default: the delivery default, FINISH_X264_PRESET's)")
    args = parser.parse_args(argv)
    frames, audio = synthetic()
    spec = FinishSpec(aspect=Aspect.LANDSCAPE, locale="en-US",
                      loudness=LOUDNESS_TARGETS[LoudnessProfile.WEB],
                      captions=[CaptionCue(start_s=0.5, end_s=4.0, lines=["Every morning"]),
                                CaptionCue(start_s=4.0, end_s=7.5, lines=["starts here."])])
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            runs.append(finish_once(frames, audio, spec, Path(tmp), args.preset))
        full = None
        split: dict[str, float] = {}
        if args.full:
            started = time.perf_counter()
            finish_clip(frames, audio, FPS, RATE, spec, Path(tmp) / "full", timings=split,
                        x264_preset=args.preset)
            full = time.perf_counter() - started
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    result = {
        "bench": "finish_720p", "frames": FRAMES, "fps": FPS, "size": "1280x720",
        "encoder": f"libx264 preset {args.preset} crf 20, AAC 192k", "repeats": args.repeats,
        "median_total_s": statistics.median(r["total_s"] for r in runs),
        "median_loudness_s": statistics.median(r["loudness_s"] for r in runs),
        "median_encode_s": statistics.median(r["encode_s"] for r in runs),
        "finish_clip_with_burned_variant_and_qc_s": full,
        # the full path by stage: loudness (measure, apply, verify), encode (both caption
        # variants), qc (ffmpeg analysis pass, audio decode and meter, probe)
        "finish_clip_split_s": split or None,
        "loadavg_1min": os.getloadavg()[0],
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()},
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
