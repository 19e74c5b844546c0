"""One clip from the command line, written as an mp4 with video and audio.

    python -m mova_model.generate --checkpoint DIR --prompt "..." --out clip.mp4

Without size flags the render takes the defaults of the checkpoint's preset, detected from its
configs (tiny: 64x112, 25 frames, 8 steps). This command-line entry is the one place in
mova_model that writes media (through PyAV) and draws on a terminal (a rich progress bar); the
production pipeline finishes clips with its own ffmpeg stage instead.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from mova_model.clip import Clip
from mova_model.config import PRESETS, MovaConfig
from mova_model.errors import InvalidRequest, MovaError
from mova_model.request import (
    RELEASE_NEGATIVE_PROMPT,
    Compat,
    GenerationRequest,
    GuidanceMode,
    NoiseDevice,
)

MEDIA_SUFFIX = ".mp4"  # the container write_mp4 writes (H.264 + AAC)


def check_out_path(path: Path) -> None:
    """Refuse an --out the render could not be written to, before hours of rendering: an
    .mp4 file name in a folder where a file can be created (tried, not guessed from the
    permission bits, which root ignores)."""
    if path.suffix.lower() != MEDIA_SUFFIX:
        raise InvalidRequest(f"--out {path}: must end in {MEDIA_SUFFIX} (H.264 + AAC)")
    if path.is_dir():
        raise InvalidRequest(f"--out {path}: is a folder; give a file name ending in "
                             f"{MEDIA_SUFFIX}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # write_mp4 would create it anyway
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise InvalidRequest(f"--out {path}: cannot write in {path.parent} "
                             f"({err.strerror or err})") from None


def write_mp4(clip: Clip, path: Path) -> Path:
    """Encode the clip as H.264 + AAC (stereo duplicated from mono) into `path`, through a
    temporary file beside it: `path` appears only complete, and a failure leaves nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        _encode_mp4(clip, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _encode_mp4(clip: Clip, path: Path) -> None:
    frames, height, width = clip.video.shape[0], clip.video.shape[1], clip.video.shape[2]
    with av.open(str(path), mode="w", format="mp4") as container:
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


class _StepsPerSecond(ProgressColumn):
    """Denoising speed; rich's own speed column shows bytes."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        label = f"{speed:.2f} steps/s" if speed else "-.-- steps/s"
        return Text(label, style="progress.data.speed")


def _progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("denoising"), BarColumn(), MofNCompleteColumn(), _StepsPerSecond(),
                    TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=console)


def _preset_table() -> str:
    lines = ["presets (defaults when --height/--width/--frames/--steps are not given):"]
    for name, preset in PRESETS.items():
        lines.append(f"  {name:<10} {preset.height}x{preset.width}, {preset.num_frames} frames at "
                     f"{preset.video_fps:g} fps, {preset.num_inference_steps} steps")
    lines.append("The preset is detected from the checkpoint's configs (the two release presets "
                 "share them: a folder name with '720' means mova-720p); --preset overrides.")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mova_model.generate", description="Render one MOVA clip to an mp4.",
        epilog=_preset_table(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="MOVA checkpoint folder")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative-prompt", default=RELEASE_NEGATIVE_PROMPT,
                        help="default: the release script's negative prompt")
    parser.add_argument("--image", type=Path, help="first frame (TI2VA); omit for text only")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="take the defaults of this preset instead of the detected one")
    parser.add_argument("--height", type=int, help="default: the preset's")
    parser.add_argument("--width", type=int, help="default: the preset's")
    parser.add_argument("--frames", type=int, help="4k+1; default: the preset's")
    parser.add_argument("--fps", type=float, help="default: the preset's (24)")
    parser.add_argument("--steps", type=int, help="default: the preset's")
    parser.add_argument("--cfg-scale", type=float, default=5.0)
    parser.add_argument("--audio-cfg-scale", type=float, default=None,
                        help="the audio tower's own guidance scale (default: --cfg-scale, as "
                             "the release)")
    parser.add_argument("--bridge-scale", type=float, default=1.0)
    parser.add_argument("--guidance", choices=[m.value for m in GuidanceMode],
                        default=GuidanceMode.REFERENCE.value)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--compat", choices=[m.value for m in Compat],
                        default=Compat.REFERENCE.value,
                        help="reference: the release's numbers; fast: batched guidance, SDPA")
    parser.add_argument("--noise-device", choices=[m.value for m in NoiseDevice],
                        default=NoiseDevice.RENDER.value,
                        help="render: as the release (CUDA noise differs from CPU noise); "
                             "cpu: the same clip on any machine")
    parser.add_argument("--vae-tiling", action="store_true",
                        help="decode in spatial tiles (less memory, slightly different pixels)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--offload", choices=("none", "component", "block"), default="none")
    return parser


def _request(args: argparse.Namespace, preset: MovaConfig) -> GenerationRequest:
    def pick(value: object, default: object) -> object:
        return default if value is None else value

    return GenerationRequest(
        args.prompt, negative_prompt=args.negative_prompt,
        height=pick(args.height, preset.height),  # type: ignore[arg-type]
        width=pick(args.width, preset.width),  # type: ignore[arg-type]
        num_frames=pick(args.frames, preset.num_frames),  # type: ignore[arg-type]
        video_fps=pick(args.fps, preset.video_fps),  # type: ignore[arg-type]
        num_inference_steps=pick(args.steps, preset.num_inference_steps),  # type: ignore[arg-type]
        cfg_scale=args.cfg_scale, bridge_scale=args.bridge_scale, guidance_mode=args.guidance,
        seed=args.seed, compat=args.compat, noise_device=args.noise_device,
        vae_tiling=args.vae_tiling, audio_cfg_scale=args.audio_cfg_scale,
    )


def _open_image(path: Path | None) -> Image.Image | None:
    """The --image as RGB; an unreadable or oversized (decompression bomb) file in one line."""
    if path is None:
        return None
    try:
        return Image.open(path).convert("RGB")
    except Image.DecompressionBombError as err:
        raise InvalidRequest(f"--image {path}: {err}") from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=True)

    from mova_model.checkpoint import detect_preset
    from mova_model.pipeline import MovaPipeline

    try:
        check_out_path(args.out)
        name = args.preset or detect_preset(args.checkpoint)
        # Unknown sizes: the release defaults (those of GenerationRequest, as mova-360p).
        preset = PRESETS[name or "mova-360p"]
        request = _request(args, preset)
        image = _open_image(args.image)
        console.print(f"preset {name or 'unknown (release defaults)'}: {request.height}x"
                      f"{request.width}, {request.num_frames} frames, "
                      f"{request.num_inference_steps} steps, compat={request.compat.value}")
        started = time.monotonic()
        pipe = MovaPipeline.from_pretrained(args.checkpoint, dtype=args.dtype,
                                            device=args.device, offload=args.offload)
        console.print(f"loaded in {time.monotonic() - started:.1f} s")
        with _progress_bar(console) as progress:
            task = progress.add_task("denoising", total=request.num_inference_steps)
            clip = pipe.generate(request, image=image,
                                 on_step=lambda step, total: progress.update(task, completed=step))
        write_mp4(clip, args.out)
    except (MovaError, OSError, av.FFmpegError) as err:
        # soft_wrap: one error, one line, even in a log (rich wraps at 80 columns otherwise)
        console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        return 2
    tiled = " (decoded in tiles: the whole decode did not fit)" \
        if clip.params.vae_tiled and not request.vae_tiling else ""
    console.print(f"wrote {args.out} ({clip.video.shape[0]} frames, {clip.duration_s:.2f} s) in "
                  f"{time.monotonic() - started:.1f} s{tiled}", markup=False, highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
