"""One clip from the command line, written as an mp4 with video and audio.

    python -m mova_model.generate --checkpoint DIR --prompt "..." --out clip.mp4

This command-line entry is the one place in mova_model that writes media (through PyAV); the
production pipeline finishes clips with its own ffmpeg stage instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from mova_model.clip import Clip
from mova_model.errors import MovaError
from mova_model.request import GenerationRequest


def write_mp4(clip: Clip, path: Path) -> Path:
    """Encode the clip as H.264 + AAC (stereo duplicated from mono) into `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames, height, width = clip.video.shape[0], clip.video.shape[1], clip.video.shape[2]
    with av.open(str(path), mode="w") as container:
        fps = Fraction(clip.fps).limit_denominator(1001)
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=clip.sample_rate, layout="stereo")
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(clip.video[index], format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        stereo = np.repeat(clip.audio[:1], 2, axis=0) if clip.audio.shape[0] == 1 else clip.audio
        samples = np.ascontiguousarray(np.clip(stereo, -1.0, 1.0).astype(np.float32))
        chunk = 1024 * 16
        for start in range(0, samples.shape[1], chunk):
            block = samples[:, start:start + chunk]
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate = clip.sample_rate
            frame.pts = start
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, step: int, total: int) -> None:
        width = 30
        done = int(width * step / total)
        elapsed = time.monotonic() - self.started
        sys.stderr.write(f"\rdenoising [{'#' * done}{'.' * (width - done)}] {step}/{total} "
                         f"{elapsed:5.1f}s")
        if step == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render one MOVA clip to an mp4.")
    parser.add_argument("--checkpoint", type=Path, required=True, help="MOVA checkpoint folder")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--image", type=Path, help="first frame (TI2VA); omit for text only")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--height", type=int, default=352)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--frames", type=int, default=193)
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--cfg-scale", type=float, default=5.0)
    parser.add_argument("--bridge-scale", type=float, default=1.0)
    parser.add_argument("--guidance", choices=("reference", "dual"), default="reference")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--offload", choices=("none", "component", "block"), default="none")
    args = parser.parse_args(argv)

    from PIL import Image

    from mova_model.pipeline import MovaPipeline

    try:
        image = Image.open(args.image).convert("RGB") if args.image else None
        pipe = MovaPipeline.from_pretrained(args.checkpoint, dtype=args.dtype,
                                            device=args.device, offload=args.offload)
        request = GenerationRequest(
            args.prompt, negative_prompt=args.negative_prompt, height=args.height,
            width=args.width, num_frames=args.frames, video_fps=args.fps,
            num_inference_steps=args.steps, cfg_scale=args.cfg_scale,
            bridge_scale=args.bridge_scale, guidance_mode=args.guidance, seed=args.seed,
        )
        clip = pipe.generate(request, image=image, on_step=_Progress())
    except (MovaError, OSError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    write_mp4(clip, args.out)
    sys.stderr.write(f"wrote {args.out} ({clip.video.shape[0]} frames, {clip.duration_s:.2f} s)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
