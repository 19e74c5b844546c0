"""QC on an assembled spot: what the scene-level gate checks (`tasks.qc.run_qc`), plus the
platform's duration limits, true peak over the whole spot, text inside the safe zone measured on
rendered frames, and sound that runs on across every join (no click, no hole).
"""

from __future__ import annotations

import re
from pathlib import Path

import ffmpeg
import numpy as np

from infra.fonts import fontconfig_file
from infra.media import decode_audio, decode_video_frames_at, probe, run_ffmpeg
from schemas.finishing import QCCheck, QCReport
from schemas.platforms import SafeZone, duration_problem
from schemas.spot import SpotSpec
from tasks.qc import file_analysis, run_qc
from tasks.spot import SPOT_FPS, SpotMeasurement, SpotResult

# A join clicks when the largest sample-to-sample step near it is this many times the largest
# step of the sound around it (a splice of two unrelated waveforms is a step of up to twice the
# amplitude, tens of times a voice's or a tone's own steps).
CLICK_RATIO = 4.0
CLICK_WINDOW_S = 0.02  # searched either side of the join (AAC smears a step over ~1024 samples)
CONTEXT_S = (0.04, 0.3)  # the reference sound: from 40 ms to 300 ms away from the join
# A hole: a 10 ms block near the join that is silent (under HOLE_DBFS) while the sound around it
# is at least GAP_DROP_DB louder. A 5 ms fade each side of a cut costs ~5 dB in the block that
# holds it; sound missing from a scene (padded with zeros) costs everything. A quiet but
# non-silent tail of a render is the render's, not a hole.
HOLE_DBFS = -60.0
GAP_DROP_DB = 20.0
GAP_BLOCK_S = 0.01
STEP_FLOOR = 1e-4  # steps below this (-80 dBFS) are silence, never a click reference
TEXT_DIFF = 40  # a pixel differing by this much (0-255) from the canvas is drawn text
TEXT_CANVAS = 128  # mid grey: both the white fill and the black outline of the text stand out
OUTSIDE_TOLERANCE = 0.001  # share of the frame outside the zone that encoding noise may change
_ASS_EVENT = re.compile(r"^Dialogue: \d+,(\d+):(\d{2}):(\d{2})\.(\d{2}),"
                        r"(\d+):(\d{2}):(\d{2})\.(\d{2})")


def _check(name: str, passed: bool, measured: object, expected: object) -> QCCheck:
    return QCCheck(name=name, passed=bool(passed), measured=str(measured),
                   expected=str(expected))


# ---- sound across joins -----------------------------------------------------------------------


def join_problems(audio: np.ndarray, sample_rate: int, joins_s: list[float], *,
                  check_gap: bool = True) -> list[str]:
    """Clicks (a step out of proportion with the sound around) and holes (a 10 ms block far
    quieter than the sound around) at each join time of `audio` (channels, samples)."""
    mono = audio.mean(axis=0) if audio.ndim == 2 else audio
    steps = np.abs(np.diff(mono))
    problems = []
    for join in joins_s:
        at = round(join * sample_rate)
        near = slice(max(0, at - round(CLICK_WINDOW_S * sample_rate)),
                     min(len(steps), at + round(CLICK_WINDOW_S * sample_rate)))
        lo, hi = (round(s * sample_rate) for s in CONTEXT_S)
        context = np.concatenate([steps[max(0, at - hi):max(0, at - lo)], steps[at + lo:at + hi]])
        if context.size == 0 or steps[near].size == 0:
            problems.append(f"join at {join:.3f} s: no sound around it to compare")
            continue
        reference = max(float(np.percentile(context, 99.9)), STEP_FLOOR)
        worst = float(steps[near].max())
        if worst > CLICK_RATIO * reference:
            problems.append(f"click at {join:.3f} s: a step of {worst:.3f} against "
                            f"{reference:.4f} around it")
        if not check_gap:
            continue
        block = round(GAP_BLOCK_S * sample_rate)
        around = np.concatenate([_block_levels_db(mono, at - hi, at - lo, block),
                                 _block_levels_db(mono, at + lo, at + hi, block)])
        inside = _block_levels_db(mono, at - 2 * block, at + 2 * block, block)
        if around.size and inside.size and float(inside.min()) < HOLE_DBFS \
                and float(np.median(around)) > HOLE_DBFS + GAP_DROP_DB:
            problems.append(f"hole at {join:.3f} s: {inside.min():.0f} dBFS against "
                            f"{np.median(around):.0f} dBFS around it")
    return problems


def _block_levels_db(mono: np.ndarray, start: int, stop: int, block: int) -> np.ndarray:
    """RMS level (dBFS) of each whole `block`-sample block of mono[start:stop]."""
    start, stop = max(0, start), min(len(mono), stop)
    usable = max(0, stop - start) // block * block
    blocks = mono[start:start + usable].reshape(-1, block)
    return np.asarray(20 * np.log10(np.sqrt(np.mean(np.square(blocks), axis=1)) + 1e-9))


# ---- text inside the safe zone ----------------------------------------------------------------


def ass_event_times(ass_text: str) -> list[tuple[float, float]]:
    """(start_s, end_s) of every event of an ASS script."""
    times = []
    for line in ass_text.splitlines():
        match = _ASS_EVENT.match(line)
        if match:
            h1, m1, s1, c1, h2, m2, s2, c2 = (int(g) for g in match.groups())
            times.append((h1 * 3600 + m1 * 60 + s1 + c1 / 100, h2 * 3600 + m2 * 60 + s2 + c2 / 100))
    return times


def draw_text_layer(ass: Path, size: tuple[int, int], fps: float, frames: list[int],
                    workdir: Path) -> np.ndarray:
    """The text layer of the ASS script at the given frame numbers (at `fps`), drawn by libass
    on a flat TEXT_CANVAS grey canvas in one ffmpeg run: (len(frames), H, W) grey levels, in
    the order of `frames` (ascending, distinct). Mapped from the file, not read: a brief at its
    caps draws a few hundred frames per layout."""
    if not frames or frames != sorted(set(frames)) or frames[0] < 0:
        raise ValueError(f"frames must be ascending, distinct and not negative: {frames[:8]}")
    width, height = size
    grey = f"{TEXT_CANVAS:02x}" * 3
    span = frames[-1] + 1
    canvas = ffmpeg.input(f"color=c=0x{grey}:s={width}x{height}:r={fps}:d={span / fps:.6f}",
                          f="lavfi")
    if frames != list(range(span)):  # libass draws each frame at its own timestamp
        canvas = canvas.filter("select", "+".join(f"eq(n,{n})" for n in frames))
    raw = workdir / "text-layer.gray"
    args = (ffmpeg.output(canvas.filter("ass", str(ass)), str(raw), f="rawvideo",
                          pix_fmt="gray", fps_mode="passthrough", frames=len(frames))
            .overwrite_output().compile())[1:]
    run_ffmpeg(args, env={"FONTCONFIG_FILE": str(fontconfig_file(workdir / ".fonts"))})
    drawn = np.memmap(raw, dtype=np.uint8, mode="r").reshape(-1, height, width, 1)
    if len(drawn) != len(frames):
        raise RuntimeError(f"libass drew {len(drawn)} frames for {len(frames)}")
    return drawn


def text_mask(frame: np.ndarray, reference: np.ndarray | int) -> np.ndarray:
    """Pixels (H, W) where `frame` differs from `reference` (a frame or a flat level) by more
    than TEXT_DIFF in any channel."""
    diff = np.abs(frame.astype(np.int16) - np.asarray(reference, dtype=np.int16))
    return np.asarray(diff.max(axis=-1) > TEXT_DIFF)


def outside_zone(mask: np.ndarray, zone: SafeZone) -> int:
    """Number of set pixels of `mask` outside the zone's box."""
    height, width = mask.shape
    x0, y0, x1, y1 = zone.box(width, height)
    inside = mask[y0:y1, x0:x1].sum()
    return int(mask.sum() - inside)


def rendered_text_checks(ass: Path, size: tuple[int, int], zone: SafeZone,
                         workdir: Path) -> list[QCCheck]:
    """Every event of the text layer rendered by libass, at the frame in the middle of its
    time: drawn, and drawn inside the safe zone."""
    workdir.mkdir(parents=True, exist_ok=True)
    frames = sorted({round((start + end) / 2 * SPOT_FPS) for start, end in
                     ass_event_times(ass.read_text(encoding="utf-8"))})
    if not frames:
        return [_check("text_drawn", True, "no text", "every text event visible"),
                _check("text_safe_zone", True, "all inside", f"inside {zone.box(*size)}")]
    outside, empty = [], []
    for frame, drawn in zip(frames, draw_text_layer(ass, size, SPOT_FPS, frames, workdir),
                            strict=True):
        mask = text_mask(drawn, TEXT_CANVAS)
        if not mask.any():
            empty.append(f"{frame / SPOT_FPS:.2f} s")
        elif count := outside_zone(mask, zone):
            outside.append(f"{frame / SPOT_FPS:.2f} s: {count} px")
    return [
        _check("text_drawn", not empty, f"nothing drawn at {', '.join(empty)}" if empty
               else f"{len(frames)} text moments drawn", "every text event visible"),
        _check("text_safe_zone", not outside, "; ".join(outside) or "all inside",
               f"inside {zone.box(*size)}"),
    ]


def burned_caption_check(plain: Path, burned: Path, cue_times: list[tuple[float, float]],
                         zone: SafeZone, frames: int) -> QCCheck:
    """Captions on the spot itself: the burned and the soft-caption files differ only by the
    captions, so at each cue's middle frame the difference must lie inside the safe zone.
    `frames`: the files' decoded frame count (the analysis pass's); only the cue frames are
    decoded to pictures."""
    indexes = [min(round((start + end) / 2 * SPOT_FPS), frames - 1) for start, end in cue_times]
    plain_frames = decode_video_frames_at(plain, indexes)
    burned_frames = decode_video_frames_at(burned, indexes)
    problems = []
    for (start, end), index in zip(cue_times, indexes, strict=True):
        mask = text_mask(burned_frames[index], plain_frames[index])
        height, width = mask.shape
        x0, y0, x1, y1 = zone.box(width, height)
        outside_share = outside_zone(mask, zone) / (mask.size - (x1 - x0) * (y1 - y0))
        if not mask[y0:y1, x0:x1].any():
            problems.append(f"no caption drawn at {start:.2f}-{end:.2f} s")
        elif outside_share > OUTSIDE_TOLERANCE:
            problems.append(f"{outside_share:.2%} of the frame outside the zone changed at "
                            f"{start:.2f}-{end:.2f} s")
    return _check("captions_safe_zone", not problems, "; ".join(problems) or
                  f"{len(cue_times)} cues inside", f"inside {zone.box(width, height)}"
                  if cue_times else "no cues")


# ---- the whole gate ---------------------------------------------------------------------------


def run_spot_qc(spec: SpotSpec, result: SpotResult, workdir: Path,
                measured: SpotMeasurement | None = None) -> QCReport:
    """Every check on one assembled spot; `measured` is what assembly measured of the same
    file (`assemble_measured_spot`), else it is measured here."""
    path = Path(result.video_path)
    vtt = Path(result.vtt_path) if result.vtt_path else None
    # one probe, one ffmpeg analysis pass (picture, frame count, true peak) and one audio
    # decode serve every check below
    if measured is None:
        measured = SpotMeasurement(analysis=file_analysis(path), audio=decode_audio(path))
    media, analysis, decoded = probe(path), measured.analysis, measured.audio
    # 1. the deliverable checks every scene clip passes: duration, size, codecs, frame count,
    #    black and still picture, sound (silence, clipping, loudness, stereo), true peak, A/V
    #    offset, captions
    held_s = result.duration_s - result.end_card_start_s \
        if result.end_card_start_s is not None else 0.0  # the end card is a still picture
    report = run_qc(media, path, expected_frames=result.frames, fps=SPOT_FPS,
                    width=result.width, height=result.height, target=spec.loudness,
                    captions=vtt, analysis=analysis, decoded=decoded, held_s=held_s)
    checks = list(report.checks)
    # 2. the platforms' duration limits, on the encoded file
    reasons = [r for p in spec.platforms if (r := duration_problem(p, media.duration_s))]
    checks.append(_check("platform_duration", not reasons, "; ".join(reasons) or
                         f"{media.duration_s:.2f} s", ", ".join(p.value for p in spec.platforms)))
    # 3. sound across the joins: no click, no hole between scenes; no click into the end card
    samples, rate = decoded
    problems = join_problems(samples, rate, result.scene_starts_s[1:])
    if result.end_card_start_s is not None:
        problems += join_problems(samples, rate, [result.end_card_start_s], check_gap=False)
    checks.append(_check("joins", not problems, "; ".join(problems) or
                         f"{len(result.scene_starts_s) - 1} scene joins clean",
                         "no click or hole at any join"))
    # 4. text inside the safe zone, on rendered frames
    checks += rendered_text_checks(Path(result.ass_path), (result.width, result.height),
                                   spec.safe_zone, workdir)
    if result.burned_path is not None and vtt is not None:
        cue_times = _vtt_times(vtt.read_text(encoding="utf-8"))
        checks.append(burned_caption_check(path, Path(result.burned_path), cue_times,
                                           spec.safe_zone, analysis.frames))
    return QCReport(checks=checks)


def _vtt_times(vtt_text: str) -> list[tuple[float, float]]:
    times = []
    for match in re.finditer(r"(\d{2}):(\d{2}):(\d{2})\.(\d{3}) --> "
                             r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})", vtt_text):
        g = [int(x) for x in match.groups()]
        times.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000,
                      g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000))
    return times
