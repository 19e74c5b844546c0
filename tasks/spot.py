"""Assemble a finished spot from its scene clips: cuts or crossfades, the end card, one loudness
over the whole spot, captions and on-screen text on the spot's timeline inside the safe zone.

Three ffmpeg runs, each built purely: (1) the soundtrack of the spot (scene audio joined, the end
card silent) to WAV; (2) loudness normalisation of that WAV as finishing does it
(`tasks.finishing.normalize_loudness`, measured over the whole spot, not per scene); (3) one
picture encode of the joined scenes, the end card and the burned-in text, muxed with the WAV.
The picture is encoded once from the scene clips, so a finished scene MP4 is re-encoded exactly
one more time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from infra.fonts import fontconfig_file
from infra.hashing import sha256_file
from infra.media import (
    MediaAnalysis,
    MediaError,
    decode_audio,
    decode_video_frames,
    probe,
    run_ffmpeg,
)
from schemas.brief import OnScreenText
from schemas.finishing import DELIVERY_X264_PRESET, CaptionCue, X264Preset
from schemas.spot import SpotSpec
from schemas.spot_timing import SPOT_FPS, SpotTiming, spot_timing
from schemas.spot_timing import scene_starts as scene_starts  # re-exported: tests import it here
from tasks.finishing import (
    AUDIO_RATE,
    GOP_SECONDS,
    crop_box,
    iso639_2,
    master_and_burned_args,
    normalize_loudness,
    to_srt,
    to_vtt,
)
from tasks.overlay import TimedText, build_timed_ass
from tasks.qc import file_analysis, integrated_lufs

# At a cut, 5 ms fades each side: splicing two non-zero samples is an audible click, and 5 ms is
# too short to hear as a dip (well under one 20 ms speech frame).
EDGE_FADE_S = 0.005
MIN_CUE_S = 0.2  # a cue clipped shorter than this by the scene's end is dropped, not flashed


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SceneClip(Frozen):
    """One rendered (or finished, text-free) scene clip and the text it carries, on its own
    timeline: cues start at the clip's first frame."""

    scene_id: str
    path: str
    captions: list[CaptionCue] = Field(default_factory=list)
    on_screen_text: OnScreenText | None = None
    focus: tuple[float, float] | None = None
    render_id: str | None = None  # lineage: which render (and seed) this clip came from
    seed: int | None = None


class ManifestScene(Frozen):
    scene_id: str
    start_s: float  # on the spot timeline
    frames: int  # of the clip used (after trimming to the brief's duration)
    clip_sha256: str
    render_id: str | None
    seed: int | None


class SpotManifest(Frozen):
    """What went into a spot: the record a reviewer or an auditor reads next to the file."""

    spot_id: str
    campaign: str
    locale: str
    aspect: str
    platforms: list[str]
    file_names: dict[str, str]
    scenes: list[ManifestScene]
    end_card_s: float
    duration_s: float
    loudness_target_lufs: float
    loudness_out_lufs: float | None
    true_peak_out_dbtp: float | None
    video_sha256: str


class SpotResult(Frozen):
    spot_id: str
    video_path: str  # on-screen text burned in, captions as a soft track
    burned_path: str | None  # the same with captions burned in
    srt_path: str | None
    vtt_path: str | None
    ass_path: str  # the burned variant's text layer, for QC
    width: int
    height: int
    frames: int
    duration_s: float
    scene_starts_s: list[float]  # where each scene starts on the spot timeline
    end_card_start_s: float | None
    loudness_in_lufs: float | None
    loudness_out_lufs: float | None
    true_peak_out_dbtp: float | None
    scene_frames: list[int]  # frames used from each clip


def clip_frames(path: Path) -> tuple[int, int, int]:
    """(frames at SPOT_FPS, width, height) of a clip's video stream; frames are counted when the
    header has none, and converted when the clip runs at another rate (the fps filter then
    drops or repeats frames to keep its duration)."""
    media = probe(path)
    video = media.video
    if video is None or video.width is None or video.height is None:
        raise MediaError(f"{path}: no video stream to assemble")
    if media.audio is None:
        raise MediaError(f"{path}: no audio stream; a spot needs every scene's sound")
    frames = video.frames or len(decode_video_frames(path))
    if video.fps and abs(video.fps - SPOT_FPS) > 1e-3:
        frames = round(frames * SPOT_FPS / video.fps)
    return frames, video.width, video.height


def spec_timing(spec: SpotSpec, rendered_frames: list[int] | None = None) -> SpotTiming:
    """The spot's timeline (`schemas.spot_timing`, the arithmetic the brief was checked with):
    from the rendered clips' frame counts, or predicted from the plan without them."""
    return spot_timing(spec.scene_durations_s, transition=spec.transition,
                       crossfade_s=spec.crossfade_s, end_card_s=spec.end_card_s,
                       rendered_frames=rendered_frames)


def spot_text(clips: list[SceneClip], starts_s: list[float],
              content_end_s: float) -> tuple[list[CaptionCue], list[TimedText]]:
    """Captions and on-screen text moved onto the spot timeline. A scene's text lasts until the
    next scene starts (the middle of nothing: a crossfade's start), the last scene's until the
    end card; cues running past that are cut there."""
    ends = [*starts_s[1:], content_end_s]
    cues, texts = [], []
    for clip, start, end in zip(clips, starts_s, ends, strict=True):
        for cue in clip.captions:
            cue_start, cue_end = start + cue.start_s, min(start + cue.end_s, end)
            if cue_end - cue_start >= MIN_CUE_S:
                cues.append(CaptionCue(start_s=round(cue_start, 3), end_s=round(cue_end, 3),
                                       lines=cue.lines))
        if clip.on_screen_text is not None:
            texts.append(TimedText(start_s=start, end_s=end, text=clip.on_screen_text))
    return cues, texts


def build_spot_audio_args(paths: list[Path], frames: list[int], *, overlap_frames: int,
                          end_card_frames: int, out: Path) -> list[str]:
    """ffmpeg arguments: each scene's sound trimmed or padded to its picture, joined by
    crossfades (equal power) or faded cuts, then silence under the end card -> float WAV."""
    sounds = []
    for path, count in zip(paths, frames, strict=True):
        seconds = count / SPOT_FPS
        sound = (ffmpeg.input(str(path)).audio
                 .filter("aresample", AUDIO_RATE)
                 .filter("aformat", sample_fmts="fltp", channel_layouts="stereo")
                 # Sound exactly as long as the picture: offsets below are computed from frames.
                 .filter("apad", whole_dur=f"{seconds:.6f}")
                 .filter("atrim", end=f"{seconds:.6f}")
                 .filter("asetpts", "PTS-STARTPTS"))
        if not overlap_frames:
            sound = (sound.filter("afade", t="in", d=EDGE_FADE_S)
                     .filter("afade", t="out", st=f"{seconds - EDGE_FADE_S:.6f}", d=EDGE_FADE_S))
        sounds.append(sound)
    if overlap_frames:
        joined = sounds[0]
        for sound in sounds[1:]:
            # Scenes are separate renders (uncorrelated sound): equal-power curves keep the
            # level through the overlap, where equal-gain ones dip by 3 dB.
            joined = ffmpeg.filter([joined, sound], "acrossfade", d=overlap_frames / SPOT_FPS,
                                   c1="qsin", c2="qsin")
        content_s = (sum(frames) - overlap_frames * (len(frames) - 1)) / SPOT_FPS
        # The end card follows on a cut: fade the last scene's tail like any cut.
        joined = joined.filter("afade", t="out", st=f"{content_s - EDGE_FADE_S:.6f}",
                               d=EDGE_FADE_S)
    else:
        joined = ffmpeg.concat(*sounds, v=0, a=1) if len(sounds) > 1 else sounds[0]
        content_s = sum(frames) / SPOT_FPS
    total_s = content_s + end_card_frames / SPOT_FPS
    joined = joined.filter("apad", whole_dur=f"{total_s:.6f}").filter("atrim",
                                                                      end=f"{total_s:.6f}")
    args: list[str] = (ffmpeg.output(joined, str(out), acodec="pcm_f32le", ar=AUDIO_RATE, ac=2)
                       .overwrite_output().compile())
    return args[1:]


def build_spot_video_args(clips: list[tuple[Path, int, int, int]], *, spec: SpotSpec,
                          size: tuple[int, int], overlap_frames: int,
                          end_card: tuple[Path, int] | None, wav: Path, srt: Path | None,
                          overlay: Path, out: Path,
                          focus: list[tuple[float, float] | None],
                          burned: tuple[Path, Path] | None = None,
                          x264_preset: X264Preset = DELIVERY_X264_PRESET) -> list[str]:
    """ffmpeg arguments: each clip (path, frames, width, height) cropped to the spot's aspect
    and scaled, joined by cuts or crossfades, the end card (PNG, frames) after a cut, text
    burned in from `overlay`, muxed with the spot WAV (+ SRT) -> H.264 High at the spot's
    bitrate and level / AAC-LC MP4, BT.709, 2 s GOP, faststart.

    burned=(overlay, path) adds a second output from the same run, as a scene finish does: the
    joined picture is split and drawn with that overlay (captions burned in), without the soft
    subtitle track. The scenes are decoded, scaled and joined once for both files."""
    width, height = size
    pictures = []
    for (path, count, src_w, src_h), point in zip(clips, focus, strict=True):
        crop_w, crop_h, x, y = crop_box(src_w, src_h, spec.aspect, point)
        pictures.append(ffmpeg.input(str(path)).video
                        .filter("crop", crop_w, crop_h, x, y)
                        .filter("scale", width, height, flags="lanczos")
                        .filter("setsar", 1)
                        .filter("fps", SPOT_FPS)
                        .filter("trim", end_frame=count)
                        .filter("setpts", "PTS-STARTPTS")
                        .filter("format", "yuv420p"))
    if overlap_frames:
        joined, cursor = pictures[0], clips[0][1]
        for picture, (_, count, _, _) in zip(pictures[1:], clips[1:], strict=True):
            cursor -= overlap_frames
            joined = ffmpeg.filter([joined, picture], "xfade", transition="fade",
                                   duration=overlap_frames / SPOT_FPS, offset=cursor / SPOT_FPS)
            cursor += count
    else:
        joined = ffmpeg.concat(*pictures, v=1, a=0) if len(pictures) > 1 else pictures[0]
    total = sum(c[1] for c in clips) - overlap_frames * (len(clips) - 1)
    if end_card is not None:
        card_path, card_frames = end_card
        card = (ffmpeg.input(str(card_path), loop=1, framerate=SPOT_FPS).video
                .filter("scale", width, height).filter("setsar", 1)
                .filter("trim", end_frame=card_frames).filter("setpts", "PTS-STARTPTS")
                .filter("format", "yuv420p"))
        joined = ffmpeg.concat(joined, card, v=1, a=0)
        total += card_frames
    branches = joined.split() if burned is not None else None
    sound = ffmpeg.input(str(wav)).audio
    language = iso639_2(spec.locale)
    options: dict[str, object] = {
        "vcodec": "libx264", "profile:v": "high", "level:v": spec.h264_level,
        "preset": x264_preset, "b:v": f"{spec.video_bitrate_kbps}k",
        # A VBV cap at the target rate: the platforms quote maxima, not averages.
        "maxrate": f"{spec.video_bitrate_kbps}k", "bufsize": f"{2 * spec.video_bitrate_kbps}k",
        # One x264 thread: with VBV, x264's frame threads predict the buffer from frames still
        # in flight, so a loaded machine gave a different last GOP run to run (3 versions of
        # one demo spot in 3 runs). The master and the burned variant still encode side by
        # side; 8 s of 720p, both files: 5.0 s on frame threads, 5.5-6.2 s on one each.
        "threads": 1,
        "g": GOP_SECONDS * SPOT_FPS, "keyint_min": GOP_SECONDS * SPOT_FPS,
        "colorspace": "bt709", "color_primaries": "bt709", "color_trc": "bt709",
        "color_range": "tv", "acodec": "aac", "profile:a": "aac_low", "b:a": "192k",
        "ar": AUDIO_RATE, "ac": 2, "metadata:s:a:0": f"language={language}",
        "movflags": "+faststart", "t": f"{total / SPOT_FPS:.6f}",
    }
    return master_and_burned_args(joined, branches, sound, options, language=language,
                                  srt=srt, overlay=overlay, out=out, burned=burned)


@dataclass(frozen=True)
class SpotMeasurement:
    """What assembly measured of the encoded spot (one ffmpeg analysis pass, one audio decode),
    handed on so spot QC does not measure the same file again."""

    analysis: MediaAnalysis
    audio: tuple[np.ndarray, int]  # (samples (channels, n), rate)


def assemble_spot(spec: SpotSpec, clips: list[SceneClip], workdir: Path, *,
                  size: tuple[int, int], end_card: Path | None,
                  x264_preset: X264Preset = DELIVERY_X264_PRESET) -> SpotResult:
    """Encode one spot from its scene clips (in `spec.scene_ids` order) and the end card PNG
    (required when the spec has one); `size` is the delivery (width, height)."""
    return assemble_measured_spot(spec, clips, workdir, size=size, end_card=end_card,
                                  x264_preset=x264_preset)[0]


def assemble_measured_spot(spec: SpotSpec, clips: list[SceneClip], workdir: Path, *,
                           size: tuple[int, int], end_card: Path | None,
                           x264_preset: X264Preset = DELIVERY_X264_PRESET
                           ) -> tuple[SpotResult, SpotMeasurement]:
    """`assemble_spot`, and what it measured of the file (for `run_spot_qc`)."""
    if [c.scene_id for c in clips] != spec.scene_ids:
        raise MediaError(f"spot {spec.spot_id}: clips {[c.scene_id for c in clips]} do not match "
                         f"the planned scenes {spec.scene_ids}")
    if (end_card is None) != (spec.end_card_s == 0):
        raise MediaError(f"spot {spec.spot_id}: end card planned for {spec.end_card_s} s but "
                         f"{'none' if end_card is None else 'one'} was given")
    workdir.mkdir(parents=True, exist_ok=True)
    paths = [Path(c.path) for c in clips]
    probed = [clip_frames(p) for p in paths]
    # A render is the nearest 4k+1 frames, up to 2 frames off the brief's duration: trimmed to the
    # planned length, by the same arithmetic the brief's platform check used at submission.
    timing = spec_timing(spec, [info[0] for info in probed])
    frames = list(timing.scene_frames)
    probed = [(count, width, height) for count, (_, width, height) in
              zip(frames, probed, strict=True)]
    if problems := timing.crossfade_problems():
        raise MediaError(f"spot {spec.spot_id}: " + "; ".join(
            f"scene {spec.scene_ids[index]!r}: {why}" for index, why in problems))
    overlap, card_frames = timing.overlap_frames, timing.end_card_frames
    starts = timing.scene_starts
    content_frames, total_frames = timing.content_frames, timing.total_frames
    starts_s = [s / SPOT_FPS for s in starts]
    name = spec.spot_id.replace("/", "_")
    # 1. soundtrack, 2. one loudness over the whole spot
    raw = workdir / f"{name}.raw.wav"
    run_ffmpeg(build_spot_audio_args(paths, frames, overlap_frames=overlap,
                                     end_card_frames=card_frames, out=raw))
    wav = workdir / f"{name}.wav"
    loudness_in, _ = normalize_loudness(raw, spec.loudness, wav)
    # 3. text on the spot timeline: soft captions + burned on-screen text, then all burned
    cues, texts = spot_text(clips, starts_s, content_frames / SPOT_FPS)
    srt = vtt = None
    if cues:
        srt = workdir / f"{name}.srt"
        srt.write_text(to_srt(cues), encoding="utf-8")
        vtt = workdir / f"{name}.vtt"
        vtt.write_text(to_vtt(cues), encoding="utf-8")
    width, height = size
    env = {"FONTCONFIG_FILE": str(fontconfig_file(workdir / ".fonts"))}
    clip_specs = [(path, *info) for path, info in zip(paths, probed, strict=True)]
    card = (end_card, card_frames) if end_card is not None else None
    focus = [c.focus for c in clips]
    overlay = workdir / f"{name}.ass"
    overlay.write_text(build_timed_ass(width=width, height=height, locale=spec.locale,
                                       captions=[], on_screen=texts, safe_zone=spec.safe_zone),
                       encoding="utf-8")
    out = workdir / f"{name}.mp4"
    burned_overlay = workdir / f"{name}.burned.ass"
    burned_overlay.write_text(build_timed_ass(width=width, height=height, locale=spec.locale,
                                              captions=cues, on_screen=texts,
                                              safe_zone=spec.safe_zone), encoding="utf-8")
    burned = workdir / f"{name}.burned.mp4" if cues else None
    # both files from one run: the soft-caption master and, with captions, the burned variant
    run_ffmpeg(build_spot_video_args(clip_specs, spec=spec, size=size, overlap_frames=overlap,
                                     end_card=card, wav=wav, srt=srt, overlay=overlay, out=out,
                                     focus=focus,
                                     burned=(burned_overlay, burned) if burned else None,
                                     x264_preset=x264_preset),
               env=env)
    measured = SpotMeasurement(analysis=file_analysis(out), audio=decode_audio(out))
    decoded, decoded_rate = measured.audio
    result = SpotResult(
        spot_id=spec.spot_id, video_path=str(out), burned_path=str(burned) if burned else None,
        srt_path=str(srt) if srt else None, vtt_path=str(vtt) if vtt else None,
        ass_path=str(burned_overlay), width=width, height=height, frames=total_frames,
        duration_s=total_frames / SPOT_FPS, scene_starts_s=starts_s,
        end_card_start_s=content_frames / SPOT_FPS if card_frames else None,
        loudness_in_lufs=loudness_in, loudness_out_lufs=integrated_lufs(decoded, decoded_rate),
        # ebur128's true peak from the analysis pass, the meter spot QC checks (and the
        # scene finish records)
        true_peak_out_dbtp=measured.analysis.true_peak_dbtp, scene_frames=frames)
    return result, measured


def spot_manifest(spec: SpotSpec, clips: list[SceneClip], result: SpotResult) -> SpotManifest:
    """The spot's manifest: its scenes (clip hash, render, seed, place on the timeline), the
    platforms and file names it serves, and what finishing measured."""
    scenes = [ManifestScene(scene_id=clip.scene_id, start_s=start, frames=count,
                            clip_sha256=sha256_file(Path(clip.path)), render_id=clip.render_id,
                            seed=clip.seed)
              for clip, start, count in zip(clips, result.scene_starts_s, result.scene_frames,
                                            strict=True)]
    return SpotManifest(
        spot_id=spec.spot_id, campaign=spec.campaign, locale=spec.locale,
        aspect=spec.aspect.value, platforms=[p.value for p in spec.platforms],
        file_names={p.value: name for p, name in spec.file_names.items()}, scenes=scenes,
        end_card_s=spec.end_card_s, duration_s=result.duration_s,
        loudness_target_lufs=spec.loudness.integrated_lufs,
        loudness_out_lufs=result.loudness_out_lufs,
        true_peak_out_dbtp=result.true_peak_out_dbtp,
        video_sha256=sha256_file(Path(result.video_path)))
