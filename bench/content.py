"""Content metrics of a MOVA checkpoint on the demo world's fixed evaluation set (issue 17).

    .venv/bin/python bench/content.py --checkpoint assets/demo-model [--scenes 24 --steps 20]

For each scene of the fixed set (drawn from the world with EVAL_SEED, disjoint from the training
seeds) and each generation seed, it renders through MovaPipeline and measures with
demo_world.analysers:

- prompt adherence (T2VA, text only): colour, object and background read from the frames;
- lip sync (speaking scenes, joint generation): |lag| <= 1 frame between mouth and voice;
- syllable count heard vs asked (speaking scenes);
- bounce-click alignment (ball scenes): every bounce clicks, every click is at a bounce;
- TI2VA first-frame fidelity: PSNR of generated frame 0 against the given image;
- voice-over (audio-only mode on the ground-truth picture of speaking scenes): lip sync rate,
  compared with joint generation.

Prints one JSON line with the rates, the targets and whether each is met.

With `--codecs` it measures the ceiling the checkpoint's codecs set instead: the same analysers
on each scene's ground truth passed through the video VAE and the DAC (encode, decode), no
diffusion. A generated clip is decoded by the same codecs, so it can only score what they keep.

With `--lip-diagnosis` it measures how joint lip sync fails, on the speaking scenes' joint
generations and their ground truth alike: how much the mouth's opening varies (its standard
deviation on `analysers.mouth_opening`'s scale), how often the voice is loudest in the clip's
last third, how often mouth and voice correlate at MIN_SYNC_CORRELATION or more at their best
lag, and how often that best lag is within a frame whatever the correlation; the same for the
ground truth, and for the ground truth through the codecs (what a generation can reach).
`profiles` gives, per frame, the mean over those clips of the voice's envelope (each clip's over
its own loudest frame) and of the mouth's opening: where in the clip each tends to fall.

`--guidance dual --bridge-scale S` samples with the paper's dual guidance instead of the
release's (the demo profile's) CFG.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo_world import analysers  # noqa: E402
from demo_world.world import (  # noqa: E402
    BACKGROUNDS,
    COLOURS,
    FPS,
    HEIGHT,
    MOTIONS,
    NUM_FRAMES,
    SYLLABLES,
    WIDTH,
    RenderedClip,
    Scene,
    render,
)
from mova_model.audio_vae import AudioVAE  # noqa: E402
from mova_model.checkpoint import MODEL_INDEX, load_component  # noqa: E402
from mova_model.config import AudioVAEConfig, VideoVAEConfig  # noqa: E402
from mova_model.pipeline import MovaPipeline  # noqa: E402
from mova_model.request import GenerationRequest, GuidanceMode, RenderMode  # noqa: E402
from mova_model.video_vae import build_video_vae, decode_latents, encode_video  # noqa: E402
from schemas.plan import RENDER_PROFILES  # noqa: E402

DEMO = RENDER_PROFILES["demo"]  # the settings the demo model is rendered with

EVAL_SEED = 7  # the training set draws scenes from seeds >= 1000 (training.run)
TARGETS = {"colour": 0.9, "object": 0.9, "background": 0.9, "lip_sync": 0.9, "syllables": 0.8,
           "first_frame_psnr_db": 25.0}
VOICE_OVER_MARGIN = 0.10  # voice-over lip sync may trail joint generation by 10 points


def evaluation_scenes(count: int) -> list[Scene]:
    """A fixed list: half speaking faces, a quarter balls, a quarter boxes (interleaved).

    Within each kind, the j-th scene has colour j mod 3 and background (j + j div 3) mod 3, so
    every 9 consecutive scenes of a kind hold each (colour, background) pair once; a face's
    syllable count (1 + j div 3 mod 3) and motion form Latin squares over the same cells, and
    each run of three faces says the three vowels in a seeded order."""
    rng = np.random.default_rng(EVAL_SEED)
    kinds = ("face", "ball", "face", "box")
    colours, backgrounds, syllables = list(COLOURS), list(BACKGROUNDS), list(SYLLABLES)
    seen: dict[str, int] = {}
    vowels: list[int] = []
    scenes = []
    for i in range(count):
        obj = kinds[i % len(kinds)]
        j = seen[obj] = seen.get(obj, -1) + 1
        row, col = j % 3, j // 3
        motions = MOTIONS[obj]
        if obj == "face" and row == 0:
            vowels = [int(v) for v in rng.permutation(3)]
        scenes.append(Scene(
            obj=obj, colour=colours[row], background=backgrounds[(row + col) % 3],
            motion=motions[(row + 2 * col) % len(motions)],
            syllable=syllables[vowels[row]] if obj == "face" else "ba",
            num_syllables=1 + col % 3 if obj == "face" else 0,
            seed=int(rng.integers(2**31)),
        ))
    return scenes


def generate(pipe: MovaPipeline, prompt: str, *, seed: int, steps: int, cfg_scale: float,
             image: np.ndarray | None = None, video: np.ndarray | None = None,
             guidance: GuidanceMode = GuidanceMode.REFERENCE, bridge_scale: float = 1.0,
             audio_cfg_scale: float | None = DEMO.audio_cfg_scale
             ) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 (T, H, W, 3), mono audio (N,)) of one generation at the world's size.

    The one place this script calls the pipeline, so a change of its signature is a one-line
    change here."""
    # The demo model learnt the empty prompt as its unconditional branch: the demo profile's.
    request = GenerationRequest(prompt=prompt, negative_prompt=DEMO.negative_prompt,
                                height=HEIGHT, width=WIDTH, num_frames=NUM_FRAMES,
                                video_fps=FPS, num_inference_steps=steps,
                                cfg_scale=cfg_scale, audio_cfg_scale=audio_cfg_scale,
                                seed=seed, guidance_mode=guidance, bridge_scale=bridge_scale,
                                mode=RenderMode.AUDIO_ONLY if video is not None
                                else RenderMode.JOINT)
    clip = pipe.generate(request, image=image, video=video)
    return clip.video, clip.audio[0]


@dataclass
class Tally:
    hits: dict[str, list[bool]] = field(default_factory=dict)
    psnr_db: list[float] = field(default_factory=list)

    def add(self, name: str, ok: bool) -> None:
        self.hits.setdefault(name, []).append(bool(ok))

    def rate(self, name: str) -> float | None:
        values = self.hits.get(name, [])
        return sum(values) / len(values) if values else None

    def rates(self) -> dict[str, float | None]:
        return {name: self.rate(name) for name in sorted(self.hits)}

    def add_first_frame(self, generated: np.ndarray, given: np.ndarray) -> None:
        """PSNR of a first frame against the given one (99 dB for an identical frame)."""
        self.psnr_db.append(min(analysers.psnr(generated, given), 99.0))

    def mean_psnr_db(self) -> float:
        return statistics.mean(self.psnr_db) if self.psnr_db else math.nan


def in_sync_within_a_frame(lag: int | None) -> bool:
    """Within one frame; no lag (no mouth, no voice, or a mouth that follows the voice at no
    lag: analysers.lip_sync_lag) is a failure."""
    return lag is not None and abs(lag) <= 1


def score_joint(tally: Tally, truth: RenderedClip, frames: np.ndarray, audio: np.ndarray) -> None:
    """Adherence, lip sync, syllables and bounce clicks of one text-only generation."""
    scene = truth.scene
    tally.add("colour", analysers.read_colour(frames) == scene.colour)
    tally.add("object", analysers.read_object(frames) == scene.obj)
    tally.add("background", analysers.read_background(frames) == scene.background)
    if scene.obj == "face":
        lag = analysers.lip_sync_lag(frames, audio)
        tally.add("lip_sync", in_sync_within_a_frame(lag))
        tally.add("syllables", analysers.count_syllables(audio) == scene.num_syllables)
    if scene.obj == "ball":
        tally.add("bounce_click", analysers.bounce_click_sync(frames, audio).aligned)


def _guidance_fields(guidance: GuidanceMode, bridge_scale: float,
                     audio_cfg_scale: float | None) -> dict[str, Any]:
    """The guidance of a result line; the bridge scale only where it acts (dual)."""
    fields: dict[str, Any] = {"guidance": guidance.value, "audio_cfg_scale": audio_cfg_scale}
    if guidance == GuidanceMode.DUAL:
        fields["bridge_scale"] = bridge_scale
    return fields


def run(checkpoint: Path, num_scenes: int, seeds: list[int], steps: int, cfg_scale: float,
        guidance: GuidanceMode = GuidanceMode.REFERENCE, bridge_scale: float = 1.0,
        audio_cfg_scale: float | None = DEMO.audio_cfg_scale) -> dict[str, Any]:
    """Every metric over scenes x seeds; the JSON-ready result."""
    started = time.monotonic()
    pipe = MovaPipeline.from_pretrained(checkpoint)
    make = partial(generate, pipe, steps=steps, cfg_scale=cfg_scale, guidance=guidance,
                   bridge_scale=bridge_scale, audio_cfg_scale=audio_cfg_scale)
    tally = Tally()
    for scene in evaluation_scenes(num_scenes):
        truth = render(scene)
        for seed in seeds:
            frames, audio = make(truth.prompt, seed=seed)
            score_joint(tally, truth, frames, audio)
            first, _ = make(truth.prompt, seed=seed, image=truth.frames[0])
            tally.add_first_frame(first[0], truth.frames[0])
            if scene.obj == "face":
                _, dubbed = make(truth.prompt, seed=seed, video=truth.frames)
                lag = analysers.lip_sync_lag(truth.frames, dubbed)
                tally.add("voice_over_lip_sync", in_sync_within_a_frame(lag))
                tally.add("voice_over_syllables",
                          analysers.count_syllables(dubbed) == scene.num_syllables)
    rates = tally.rates()
    psnr = tally.mean_psnr_db()
    met = {name: (rates.get(name) or 0.0) >= target for name, target in TARGETS.items()
           if name != "first_frame_psnr_db"}
    met["first_frame_psnr_db"] = psnr >= TARGETS["first_frame_psnr_db"]
    joint_sync, dub_sync = rates.get("lip_sync"), rates.get("voice_over_lip_sync")
    met["voice_over"] = joint_sync is not None and dub_sync is not None \
        and dub_sync >= joint_sync - VOICE_OVER_MARGIN
    return {
        "checkpoint": str(checkpoint), "scenes": num_scenes, "seeds": seeds, "steps": steps,
        "cfg_scale": cfg_scale,
        **_guidance_fields(guidance, bridge_scale, audio_cfg_scale),
        "rates": rates, "counts": {k: len(v) for k, v in tally.hits.items()},
        "first_frame_psnr_db": round(psnr, 2), "targets": TARGETS, "met": met,
        "elapsed_s": round(time.monotonic() - started, 1),
    }


LATE_FRAME = math.ceil(2 * NUM_FRAMES / 3)  # a voice loudest from here on is in the last third


def _lip_traces(frames: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the mouth's opening and the voice's envelope."""
    return (analysers.mouth_opening(frames),
            analysers.voice_envelope_per_frame(audio, frames.shape[0]))


def _signals_of(mouth: np.ndarray, voice: np.ndarray) -> dict[str, float]:
    score, lag = analysers.best_cross_correlation(mouth, voice)
    return {"mouth_opening_std": float(mouth.std()),
            "voice_peak_late": float(int(np.argmax(voice)) >= LATE_FRAME),
            "correlated": float(score >= analysers.MIN_SYNC_CORRELATION),
            # the raw best lag, however weak its correlation (lip_sync_lag would drop it)
            "best_lag_within_a_frame": float(in_sync_within_a_frame(lag))}


def _lip_signals(frames: np.ndarray, audio: np.ndarray) -> dict[str, float]:
    return _signals_of(*_lip_traces(frames, audio))


def _profile_of(mouth: np.ndarray, voice: np.ndarray) -> dict[str, np.ndarray]:
    """The voice's envelope over its loudest frame (0 for silence), the mouth's opening."""
    loudest = float(voice.max())
    return {"voice": voice / loudest if loudest > 0 else np.zeros_like(voice), "mouth": mouth}


def lip_sync_diagnosis(checkpoint: Path, num_scenes: int, seeds: list[int], steps: int,
                       cfg_scale: float, guidance: GuidanceMode = GuidanceMode.REFERENCE,
                       bridge_scale: float = 1.0,
                       audio_cfg_scale: float | None = DEMO.audio_cfg_scale) -> dict[str, Any]:
    """Means of `_lip_signals` over the speaking scenes' joint generations (x seeds), over
    their ground truth, and over the ground truth through the checkpoint's codecs (what a
    generation can at best reach: the video VAE draws the mouth's opening smaller); the
    JSON-ready result."""
    started = time.monotonic()
    pipe = MovaPipeline.from_pretrained(checkpoint)
    codecs = Codecs.load(checkpoint)
    # each clip's mouth and voice traces, read once for both the signals and the profiles
    traces: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
        "generated": [], "ground_truth": [], "through_codecs": []}
    for scene in evaluation_scenes(num_scenes):
        if scene.obj != "face":
            continue
        truth = render(scene)
        traces["ground_truth"].append(_lip_traces(truth.frames, truth.audio))
        traces["through_codecs"].append(_lip_traces(*codecs.round_trip(truth)))
        for seed in seeds:
            traces["generated"].append(_lip_traces(*generate(
                pipe, truth.prompt, seed=seed, steps=steps, cfg_scale=cfg_scale,
                guidance=guidance, bridge_scale=bridge_scale, audio_cfg_scale=audio_cfg_scale)))
    generated = traces["generated"]

    def means(rows: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
        signals = [_signals_of(*row) for row in rows]
        return {key: round(statistics.mean(s[key] for s in signals), 3) for key in signals[0]}

    def profiles(rows: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, list[float]]:
        each = [_profile_of(*row) for row in rows]
        return {key: [round(float(x), 2) for x in np.mean([p[key] for p in each], axis=0)]
                for key in each[0]}

    if not generated:
        raise ValueError(f"no speaking scene among the first {num_scenes}")
    return {"checkpoint": str(checkpoint), "scenes": num_scenes, "seeds": seeds,
            "steps": steps, "cfg_scale": cfg_scale,
            **_guidance_fields(guidance, bridge_scale, audio_cfg_scale),
            "speaking_clips": len(generated),
            **{name: means(rows) for name, rows in traces.items()},
            "profiles": {name: profiles(rows) for name, rows in traces.items()},
            "elapsed_s": round(time.monotonic() - started, 1)}


@dataclass
class Codecs:
    """A checkpoint's video VAE and DAC: the ground truth as a generation at best could be."""
    vae: Any
    video_config: VideoVAEConfig
    dac: AudioVAE

    @classmethod
    def load(cls, checkpoint: Path) -> Codecs:
        vae, video_config = load_component(checkpoint / "video_vae", VideoVAEConfig,
                                           build_video_vae)
        dac, _ = load_component(checkpoint / "audio_vae", AudioVAEConfig, AudioVAE)
        assert isinstance(dac, AudioVAE)
        return cls(vae, video_config, dac)

    def round_trip(self, truth: RenderedClip) -> tuple[np.ndarray, np.ndarray]:
        """(frames, mono audio) of `truth` encoded and decoded, as long as the truth."""
        with torch.no_grad():
            frames = decode_latents(self.vae, encode_video(self.vae, truth.frames,
                                                           self.video_config),
                                    self.video_config)[0].numpy()
            wave = torch.from_numpy(truth.audio)[None, None].float()
            audio = self.dac.decode(self.dac.encode(wave))[0, 0].numpy()[: truth.audio.shape[0]]
        return frames, audio


def codec_ceiling(checkpoint: Path, num_scenes: int) -> dict[str, Any]:
    """The text-only metrics and the first frame's PSNR of the ground truth through the
    checkpoint's codecs; the JSON-ready result."""
    started = time.monotonic()
    codecs = Codecs.load(checkpoint)
    tally = Tally()
    for scene in evaluation_scenes(num_scenes):
        truth = render(scene)
        frames, audio = codecs.round_trip(truth)
        score_joint(tally, truth, frames, audio)
        tally.add_first_frame(frames[0], truth.frames[0])
    return {"checkpoint": str(checkpoint), "scenes": num_scenes, "codecs_only": True,
            "rates": tally.rates(), "first_frame_psnr_db": round(tally.mean_psnr_db(), 2),
            "elapsed_s": round(time.monotonic() - started, 1)}


def refuse_no_checkpoint(parser: argparse.ArgumentParser, folder: Path) -> None:
    """A --checkpoint that is no checkpoint folder ends the bench by name, before any work."""
    if not (folder / MODEL_INDEX).is_file():
        parser.error(f"--checkpoint {folder}: not a MOVA checkpoint folder (no {MODEL_INDEX})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=DEMO.steps)
    parser.add_argument("--cfg-scale", type=float, default=DEMO.cfg_scale)
    parser.add_argument("--audio-cfg-scale", type=float, default=DEMO.audio_cfg_scale,
                        help="the audio tower's guidance scale (default: the demo profile's "
                             "%(default)s; give --cfg-scale's value for one scale, as the "
                             "release)")
    parser.add_argument("--guidance", choices=[m.value for m in GuidanceMode],
                        default=GuidanceMode.REFERENCE.value,
                        help="reference: the release's CFG (the demo profile); dual: the "
                             "paper's text and bridge guidance")
    parser.add_argument("--bridge-scale", type=float, default=None,
                        help="dual guidance's bridge scale (default 1)")
    parser.add_argument("--codecs", action="store_true",
                        help="the ceiling the codecs set: ground truth through them, no diffusion")
    parser.add_argument("--lip-diagnosis", action="store_true",
                        help="how joint lip sync fails: mouth movement, voice placement, "
                             "correlation and lag, generated and ground truth")
    args = parser.parse_args(argv)
    refuse_no_checkpoint(parser, args.checkpoint)
    if args.scenes < 1 or args.steps < 1 or not args.seeds:
        parser.error("--scenes and --steps must be positive and --seeds non-empty")
    if args.codecs and args.lip_diagnosis:
        parser.error("give one of --codecs, --lip-diagnosis")
    for option, scale in (("--cfg-scale", args.cfg_scale),
                          ("--audio-cfg-scale", args.audio_cfg_scale)):
        if not (math.isfinite(scale) and scale > 0):
            parser.error(f"{option} {scale}: must be a number above 0")
    guidance = GuidanceMode(args.guidance)
    if args.codecs and guidance != GuidanceMode.REFERENCE:
        parser.error("--codecs runs no diffusion: --guidance does not apply")
    if args.bridge_scale is not None and guidance != GuidanceMode.DUAL:
        parser.error("--bridge-scale acts in --guidance dual only")
    bridge_scale = 1.0 if args.bridge_scale is None else args.bridge_scale
    if not (math.isfinite(bridge_scale) and bridge_scale >= 0):
        parser.error(f"--bridge-scale {bridge_scale}: must be a number of at least 0")
    if args.codecs:
        result = codec_ceiling(args.checkpoint, args.scenes)
    elif args.lip_diagnosis:
        result = lip_sync_diagnosis(args.checkpoint, args.scenes, args.seeds, args.steps,
                                    args.cfg_scale, guidance, bridge_scale,
                                    args.audio_cfg_scale)
    else:
        result = run(args.checkpoint, args.scenes, args.seeds, args.steps, args.cfg_scale,
                     guidance, bridge_scale, args.audio_cfg_scale)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
