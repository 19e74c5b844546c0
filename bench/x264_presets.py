"""What FINISH_X264_PRESET trades: one spot encoded at each x264 preset, its encoding time and
its picture against the lossless picture of the same spot.

    .venv/bin/python bench/x264_presets.py [--presets superfast veryfast ...] [--repeats 3]
                                           [--model tiny|demo] [--aspect 16:9|9:16|1:1]

Two 1 s scenes are rendered by the model (`tiny`: random weights, whose pictures are coloured
noise, the hardest case for an encoder; `demo`: assets/demo-model, flat cartoons), finished as
the pipeline's lossless intermediates, then assembled into one 720p spot as the pipeline does
(both caption variants, the delivery bitrate and level). The reference is the same ffmpeg run
with the picture encoded losslessly. One JSON line per preset: the wall and CPU seconds of the
spot's ffmpeg run (best of --repeats), and PSNR / SSIM of the master against the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import get_args

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.media import run_ffmpeg  # noqa: E402
from schemas.brief import Aspect, load_brief  # noqa: E402
from schemas.finishing import (  # noqa: E402
    LOUDNESS_TARGETS,
    TARGET_SIZES,
    CaptionCue,
    FinishSpec,
    LoudnessTarget,
    X264Preset,
)
from schemas.spot import plan_spots  # noqa: E402
from tasks import spot as spot_module  # noqa: E402
from tasks.finishing import finish_clip  # noqa: E402
from tasks.spot import SceneClip, assemble_spot  # noqa: E402

BRIEF = """
campaign: preset-bench
brand: Bench
product: Bench shoe
locales: [en-US]
aspects: ["{aspect}"]
platforms: [youtube]
scenes:
  - scene_id: one
    visual: A red face on a blue background says "ba ba ba".
    duration_s: 1.0
    dialogue: {{en-US: [{{speaker: A, text: Hello there.}}]}}
  - scene_id: two
    visual: A green ball bounces on a yellow background.
    duration_s: 1.0
"""
PROMPTS = ['A red face on a blue background says "ba ba ba".',
           "A green ball bounces on a yellow background."]
# What turns a delivery encode into a lossless one (the reference): no rate control, qp 0, a
# profile that allows it.
LOSSLESS = {"-b:v": None, "-maxrate": None, "-bufsize": None, "-preset": "ultrafast",
            "-profile:v": "high444"}


def render_scenes(model: str, loudness: LoudnessTarget, folder: Path) -> list[Path]:
    """Each prompt rendered and finished as a lossless intermediate."""
    from mova_model.make_checkpoint import make_checkpoint
    from mova_model.pipeline import MovaPipeline
    from mova_model.request import GenerationRequest

    checkpoint = ROOT / "assets" / "demo-model"
    if model == "tiny":
        checkpoint = make_checkpoint(folder / "tiny", preset="tiny", seed=0)
    pipe = MovaPipeline.from_pretrained(checkpoint)
    spec = FinishSpec(aspect=Aspect.LANDSCAPE, locale="und", loudness=loudness,
                      burned_variant=False, intermediate=True)
    scenes = []
    for index, prompt in enumerate(PROMPTS):
        clip = pipe.generate(GenerationRequest(prompt=prompt, height=64, width=112,
                                               num_frames=25, video_fps=24.0, seed=index))
        done = finish_clip(clip.video, clip.audio, clip.fps, clip.sample_rate, spec,
                           folder / f"scene{index}", name=f"scene{index}")
        scenes.append(Path(done.video_path))
    return scenes


class Recorder:
    """Stands in for run_ffmpeg inside tasks.spot to keep the spot encode's arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, str] | None]] = []

    def __call__(self, args: list[str], **kwargs: object) -> str:
        env = kwargs.get("env")
        self.calls.append((list(args), env if isinstance(env, dict) else None))
        return run_ffmpeg(args, **kwargs)  # type: ignore[arg-type]


def lossless(args: list[str], outputs: dict[str, str]) -> list[str]:
    """The spot run's arguments with every picture encoded losslessly, each output file
    renamed by `outputs`."""
    result: list[str] = []
    skip = False
    for index, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg in LOSSLESS:
            skip = True
            if LOSSLESS[arg] is not None:
                result += [arg, str(LOSSLESS[arg])]
            continue
        if arg == "-vcodec":
            result += [arg, args[index + 1], "-qp", "0"]
            skip = True
            continue
        result.append(outputs.get(arg, arg))
    return result


def timed(args: list[str], env: dict[str, str] | None, repeats: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the best of `repeats` runs of ffmpeg with `args`."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        run_ffmpeg(args, env=env)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best = min(best, (wall, cpu))
    return best


def compare(encoded: Path, reference: Path) -> dict[str, float]:
    """PSNR (dB, all planes) and SSIM (all planes) of `encoded` against `reference`."""
    report = run_ffmpeg(["-i", str(encoded), "-i", str(reference), "-lavfi",
                         "[0:v][1:v]ssim;[0:v][1:v]psnr", "-f", "null", "-"])
    ssim = re.search(r"SSIM .*All:([0-9.]+)", report)
    psnr = re.search(r"PSNR .*average:([0-9.inf]+)", report)
    assert ssim and psnr, report[-500:]
    return {"psnr_db": round(float(psnr.group(1)), 2), "ssim": round(float(ssim.group(1)), 5)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["superfast", "veryfast"],
                        choices=get_args(X264Preset))
    parser.add_argument("--model", choices=("tiny", "demo"), default="tiny")
    parser.add_argument("--aspect", choices=[a.value for a in Aspect], default="16:9")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    brief = load_brief(BRIEF.format(aspect=args.aspect), fmt="yaml")
    spec = plan_spots(brief)[0]
    with tempfile.TemporaryDirectory(prefix="x264-presets-") as tmp:
        folder = Path(tmp)
        scenes = render_scenes(args.model, LOUDNESS_TARGETS[brief.loudness_profile], folder)
        clips = [SceneClip(scene_id=scene.scene_id, path=str(path),
                           captions=[CaptionCue(start_s=0.1, end_s=0.9, lines=["Hello there."])]
                           if scene.dialogue else [])
                 for scene, path in zip(brief.scenes, scenes, strict=True)]
        size = TARGET_SIZES[spec.aspect]
        recorder = Recorder()
        spot_module.run_ffmpeg = recorder  # type: ignore[assignment]
        reference = folder / "reference.mp4"
        for preset in args.presets:
            recorder.calls.clear()
            result = assemble_spot(spec, clips, folder / preset, size=size, end_card=None,
                                   x264_preset=preset)
            encode_args, env = next((a, e) for a, e in recorder.calls if "libx264" in a)
            out = Path(result.video_path)
            if not reference.exists():  # from the first preset's run
                renamed = {str(out): str(reference)}
                if result.burned_path:
                    renamed[result.burned_path] = str(folder / "reference.burned.mp4")
                run_ffmpeg(lossless(encode_args, renamed), env=env)
            wall, cpu = timed(encode_args, env, args.repeats)
            sys.stdout.write(json.dumps({
                "bench": "x264_presets", "preset": preset, "model": args.model,
                "aspect": args.aspect, "size": f"{size[0]}x{size[1]}", "frames": result.frames,
                "files": 2 if result.burned_path else 1,
                "bitrate_kbps": spec.video_bitrate_kbps, "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2), "bytes": out.stat().st_size,
                **compare(out, reference), "loadavg_1min": round(os.getloadavg()[0], 2),
                "machine": {"cores": os.cpu_count(), "processor": platform.processor()
                            or platform.machine()}}) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
