"""ffmpeg and PyAV adapter: run a built command, probe a file. No command building here."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np

from schemas.errors import PipelineError

log = logging.getLogger(__name__)


class MediaError(PipelineError):
    """ffmpeg failed, or a file is not the media it should be."""


def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped in the imageio-ffmpeg wheel (no system install needed)."""
    return str(imageio_ffmpeg.get_ffmpeg_exe())


_niceness = 0  # of the ffmpeg processes this process starts (set_ffmpeg_niceness)


def set_ffmpeg_niceness(niceness: int) -> None:
    """Start later ffmpeg runs of this process at this niceness (0-19; POSIX `nice`): work
    that yields its core to a render, which others wait for."""
    if not 0 <= niceness <= 19:
        raise ValueError(f"niceness {niceness} is not in 0..19")
    global _niceness
    _niceness = niceness


def run_ffmpeg(args: list[str], *, stdin: bytes | None = None, timeout_s: float = 600,
               env: dict[str, str] | None = None) -> str:
    """Run ffmpeg with `args` (without the binary); returns stderr (where ffmpeg reports).
    `env` adds variables (e.g. FONTCONFIG_FILE for libass) to the inherited environment."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin" if stdin is None else "-y", *args]
    if _niceness and (nice := shutil.which("nice")):
        command = [nice, "-n", str(_niceness), *command]
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout_s,
                                check=False, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as err:
        raise MediaError(f"ffmpeg timed out after {timeout_s:.0f} s") from err
    stderr = result.stderr.decode(errors="replace")
    if result.returncode != 0:
        raise MediaError(ffmpeg_failure(result.returncode, stderr))
    log.debug("ffmpeg.ok args=%s", " ".join(args[:6]))
    return stderr


# ffmpeg exits with its error code, -errno, as a byte: 228 is ENOSPC. These name their cause.
_NAMED_EXITS = {256 - code: code for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS,
                                              errno.EACCES, errno.EIO, errno.ENOMEM)}


def ffmpeg_failure(returncode: int, stderr: str) -> str:
    """Why ffmpeg failed, in a few lines: its exit (with the system's words for a full or
    read-only disk), the lines it marked as errors, then its last lines. An encoder's closing
    statistics fill the tail, so a bare tail hid "No space left on device"."""
    lines = stderr.strip().splitlines()
    tail = lines[-6:]
    marked = [line for line in lines[:-6] if "error" in line.lower()][:4]
    cause = f" ({os.strerror(_NAMED_EXITS[returncode])})" if returncode in _NAMED_EXITS else ""
    return "\n".join([f"ffmpeg exited {returncode}{cause}:", *marked, *tail])


@dataclass(frozen=True)
class StreamInfo:
    codec: str
    language: str | None
    profile: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    pix_fmt: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    frames: int | None = None


@dataclass(frozen=True)
class MediaProbe:
    duration_s: float
    video: StreamInfo | None
    audio: StreamInfo | None
    subtitles: list[StreamInfo] = field(default_factory=list)
    faststart: bool = False


def _top_level_atoms(path: Path) -> list[str]:
    """MP4 box types at the top level, in file order (moov before mdat = faststart)."""
    atoms = []
    with path.open("rb") as handle:
        while header := handle.read(8):
            if len(header) < 8:
                break
            size, kind = int.from_bytes(header[:4], "big"), header[4:].decode("latin-1")
            if size == 1:
                size = int.from_bytes(handle.read(8), "big")
                handle.seek(size - 16, 1)
            elif size == 0:
                atoms.append(kind)
                break
            else:
                handle.seek(size - 8, 1)
            atoms.append(kind)
    return atoms


def probe(path: Path) -> MediaProbe:
    """Streams, codecs and sizes of a media file, read with PyAV."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise MediaError(f"{path}: not a readable media file ({err})") from err
    with container:
        video = audio = None
        subtitles = []
        for stream in container.streams:
            language = stream.metadata.get("language")
            context = stream.codec_context
            if stream.type == "video" and video is None:
                rate = stream.average_rate or Fraction(0)
                video = StreamInfo(codec=context.name, language=language,
                                   profile=context.profile, width=context.width,
                                   height=context.height, fps=float(rate),
                                   pix_fmt=context.pix_fmt, frames=stream.frames or None)
            elif stream.type == "audio" and audio is None:
                audio = StreamInfo(codec=context.name, language=language,
                                   profile=context.profile, sample_rate=context.sample_rate,
                                   channels=context.channels)
            elif stream.type == "subtitle":
                subtitles.append(StreamInfo(codec=context.name, language=language))
        duration = float(container.duration or 0) / av.time_base
    atoms = _top_level_atoms(path) if path.suffix.lower() in (".mp4", ".mov", ".m4a") else []
    faststart = "moov" in atoms and "mdat" in atoms and atoms.index("moov") < atoms.index("mdat")
    return MediaProbe(duration_s=duration, video=video, audio=audio, subtitles=subtitles,
                      faststart=faststart)


def decode_video_frames(path: Path) -> np.ndarray:
    """Every video frame as uint8 RGB (T, H, W, 3)."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack(frames)


def decode_video_frames_at(path: Path, indexes: list[int]) -> dict[int, np.ndarray]:
    """The frames at these decode-order indexes as uint8 RGB (H, W, 3), by index; decoding stops
    after the last one asked for, and only those are converted (a check that needs a few frames
    of a spot does not pay for all of them)."""
    wanted = set(indexes)
    found: dict[int, np.ndarray] = {}
    if not wanted:
        return found
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                found[index] = frame.to_ndarray(format="rgb24")
                if len(found) == len(wanted):
                    break
    missing = sorted(wanted - set(found))
    if missing:
        raise MediaError(f"{path}: has no frame {missing[0]} (frames asked: {sorted(wanted)})")
    return found


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream as float32 (channels, samples) and its sample rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        chunks = [f.to_ndarray() for f in container.decode(audio=0)]
    data = np.concatenate(chunks, axis=1).astype(np.float32)
    return data, rate


# ---- one-pass analysis -------------------------------------------------------------------------


Span = tuple[float, float]  # (start, end) in seconds


def seconds_before(spans: tuple[Span, ...], end_s: float) -> float:
    """Total seconds of `spans` that lie before `end_s`."""
    return sum(max(min(end, end_s) - start, 0.0) for start, end in spans)


LUMA_GRID = (16, 9)  # cells across and down of MediaAnalysis.luma_cells and .rgb_cells
FILL_GRID = (160, 90)  # cells across and down (8 px at 720p) behind MediaAnalysis.fill_rows
NEAR_BLACK_VIDEO = 24  # 8-bit video-range luma (black is 16) at or under which a pixel is dark


@dataclass(frozen=True)
class MediaAnalysis:
    """What one ffmpeg decode of a file's first video and audio streams measured."""

    frames: int  # video frames decoded (0 without a video stream)
    video_s: float  # frames / stream frame rate: the span the picture findings refer to
    black_spans: tuple[Span, ...]  # where blackdetect found the picture black
    frozen_spans: tuple[Span, ...]  # where freezedetect found it still
    true_peak_dbtp: float | None  # ebur128's oversampled true peak; None for silence/no audio
    picture_size: tuple[int, int] | None = None  # (width, height) of the video stream
    # (frames, FILL_GRID down) and (frames, FILL_GRID across): the share of pixels that are not
    # near-black along each row and each column of a grid of cells
    fill_rows: np.ndarray = field(default_factory=lambda: np.zeros((0, FILL_GRID[1])))
    fill_columns: np.ndarray = field(default_factory=lambda: np.zeros((0, FILL_GRID[0])))
    # (frames, LUMA_GRID cells) mean luma of each cell of a coarse grid, 0..1 (full range)
    luma_cells: np.ndarray = field(
        default_factory=lambda: np.zeros((0, LUMA_GRID[0] * LUMA_GRID[1])))
    # (frames, LUMA_GRID cells, 3) mean R'G'B' of the same cells, 0..1 (for red flashes)
    rgb_cells: np.ndarray = field(
        default_factory=lambda: np.zeros((0, LUMA_GRID[0] * LUMA_GRID[1], 3)))

    @property
    def black_s(self) -> float:
        return seconds_before(self.black_spans, self.video_s)

    @property
    def frozen_s(self) -> float:
        return seconds_before(self.frozen_spans, self.video_s)


_BLACK = re.compile(r"black_start:\s*([\d.]+)\s+black_end:\s*([\d.]+)")
_FREEZE = re.compile(r"freezedetect\.freeze_(start|end):\s*([\d.]+)")
_TRUE_PEAK = re.compile(r"True peak:\s*\n\s*Peak:\s*(-?inf|-?[\d.]+)\s*dBFS")
_PROGRESS_FRAME = re.compile(r"^frame=(\d+)$", re.MULTILINE)


def analysis_args(path: Path, *, has_video: bool, has_audio: bool, black_luma: float,
                  black_share: float, freeze_noise: float, frame_s: float,
                  grids_to: Path | None = None) -> list[str]:
    """ffmpeg arguments for `analyze_media`: every filter reads the same decode. black_luma is
    the pixel threshold as a share of the luma range, black_share the share of such pixels that
    makes a frame black, freeze_noise the mean absolute frame difference (share of full scale)
    under which the picture counts as still, frame_s one frame's duration. The findings go to
    the log (null muxer); with `grids_to` (a folder), each frame's LUMA_GRID cell means go to
    its file `luma` (16-bit grey) and `rgb` (16-bit RGB), and its FILL_GRID fill shares to
    `fill` (16-bit grey): area downscales, so no frame reaches Python whole."""
    graphs, maps = [], []
    if has_video:
        # Report short stretches too; the caller judges their total. blackdetect takes d=0;
        # freezedetect with d under one frame reports every moving frame as a one-frame
        # freeze, so its minimum is just over one frame (a repeat of at least two frames).
        detect = (f"blackdetect=d=0:pix_th={black_luma:.6f}:pic_th={black_share},"
                  f"freezedetect=n={freeze_noise:.6f}:d={1.001 * frame_s:.6f}[v]")
        if grids_to is None:
            graphs.append(f"[0:v:0]{detect}")
        else:
            # the fill grid: pixels thresholded to video black or white, then area-averaged
            # (both ends of video range, so the full-range grey out is the share itself)
            graphs.append(
                f"[0:v:0]split=4[d][g][c][f];[d]{detect};"
                f"[g]scale={LUMA_GRID[0]}:{LUMA_GRID[1]}:flags=area,format=gray16le[luma];"
                f"[c]scale={LUMA_GRID[0]}:{LUMA_GRID[1]}:flags=area,format=rgb48le[rgb];"
                f"[f]lutyuv=y='if(gt(val,{NEAR_BLACK_VIDEO}),235,16)',"
                f"scale={FILL_GRID[0]}:{FILL_GRID[1]}:flags=area,format=gray16le[fill]")
        maps += ["-map", "[v]"]
    if has_audio:
        # framelog=verbose keeps the 10 Hz meter lines out of the log; the summary stays
        graphs.append("[0:a:0]ebur128=peak=true:framelog=verbose[a]")
        maps += ["-map", "[a]"]
    if not graphs:
        raise MediaError(f"{path}: no video or audio stream to analyse")
    grid_outputs = [] if grids_to is None or not has_video else [
        arg for name in ("luma", "rgb", "fill")
        for arg in ("-map", f"[{name}]", "-f", "rawvideo", "-y", str(grids_to / name))]
    return ["-i", str(path), "-filter_complex", ";".join(graphs), *maps,
            "-progress", "pipe:2", "-nostats", "-f", "null", "-", *grid_outputs]


def _spans(events: list[tuple[str, float]], end_s: float) -> tuple[Span, ...]:
    """Start/end pairs; a start left open runs to end_s (the filter reports no end for a
    stretch that lasts to the end of the file)."""
    spans: list[Span] = []
    start = None
    for kind, at in events:
        if kind == "start":
            start = at
        elif start is not None:
            spans.append((start, at))
            start = None
    if start is not None and end_s > start:
        spans.append((start, end_s))
    return tuple(spans)


def analyze_media(path: Path, *, black_luma: float, black_share: float,
                  freeze_noise: float) -> MediaAnalysis:
    """Black and still picture (blackdetect, freezedetect), the true peak (ebur128) and the
    decoded frame count, from one ffmpeg pass over the file: no frame is decoded in Python."""
    try:
        with av.open(str(path)) as container:
            video = container.streams.video[0] if container.streams.video else None
            has_audio = bool(container.streams.audio)
            fps = float(video.average_rate or 0) if video is not None else 0.0
            size = (video.width, video.height) if video is not None else None
    except (av.FFmpegError, OSError) as err:
        raise MediaError(f"{path}: not a readable media file ({err})") from err
    frame_s = 1 / fps if fps > 0 else 0.0
    with tempfile.TemporaryDirectory(prefix="analysis-") as scratch:
        stderr = run_ffmpeg(analysis_args(path, has_video=video is not None,
                                          has_audio=has_audio, black_luma=black_luma,
                                          black_share=black_share, freeze_noise=freeze_noise,
                                          frame_s=frame_s, grids_to=Path(scratch)))
        luma = _grid(Path(scratch) / "luma", *LUMA_GRID[::-1])
        luma_cells = luma.reshape(len(luma), LUMA_GRID[0] * LUMA_GRID[1]) / 65535.0
        rgb = _grid(Path(scratch) / "rgb", *LUMA_GRID[::-1], channels=3)
        rgb_cells = rgb.reshape(len(rgb), LUMA_GRID[0] * LUMA_GRID[1], 3) / 65535.0
        fill = _grid(Path(scratch) / "fill", *FILL_GRID[::-1])
        fill_rows, fill_columns = (fill.mean(axis=axis, dtype=np.float64) / 65535.0
                                   for axis in (2, 1))
        del luma, rgb, fill  # (the files' mappings, before their folder goes)
    counts = _PROGRESS_FRAME.findall(stderr)
    frames = int(counts[-1]) if counts and video is not None else 0
    video_s = frames * frame_s
    # blackdetect closes a stretch that lasts to the end at the last frame's timestamp, one
    # frame short of the picture's span: count that last frame too
    black = tuple((float(start), min(float(end) + frame_s, video_s)
                   if abs(float(end) + frame_s - video_s) < frame_s / 2 else float(end))
                  for start, end in _BLACK.findall(stderr))
    frozen = _spans([(kind, float(at)) for kind, at in _FREEZE.findall(stderr)], video_s)
    peaks = _TRUE_PEAK.findall(stderr)
    peak = float(peaks[-1]) if peaks and has_audio else None
    return MediaAnalysis(frames=frames, video_s=video_s, black_spans=black, frozen_spans=frozen,
                         true_peak_dbtp=peak if peak is not None and np.isfinite(peak) else None,
                         picture_size=size, luma_cells=luma_cells, rgb_cells=rgb_cells,
                         fill_rows=fill_rows, fill_columns=fill_columns)


def _grid(path: Path, down: int, across: int, channels: int = 1) -> np.ndarray:
    """(frames, down, across[, channels]) 16-bit levels of a raw file, mapped rather than read
    (a long spot's fill grid is tens of MB); no frames when it is absent or empty."""
    shape = (down, across) if channels == 1 else (down, across, channels)
    frames = path.stat().st_size // (2 * down * across * channels) if path.exists() else 0
    if frames == 0:
        return np.zeros((0, *shape), np.uint16)
    return np.memmap(path, dtype="<u2", mode="r", shape=(frames, *shape))
