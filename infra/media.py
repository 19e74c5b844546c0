"""ffmpeg and PyAV adapter: run a built command, probe a file. No command building here."""

from __future__ import annotations

import logging
import os
import subprocess
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


def run_ffmpeg(args: list[str], *, stdin: bytes | None = None, timeout_s: float = 600,
               env: dict[str, str] | None = None) -> str:
    """Run ffmpeg with `args` (without the binary); returns stderr (where ffmpeg reports).
    `env` adds variables (e.g. FONTCONFIG_FILE for libass) to the inherited environment."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin" if stdin is None else "-y", *args]
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout_s,
                                check=False, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as err:
        raise MediaError(f"ffmpeg timed out after {timeout_s:.0f} s") from err
    stderr = result.stderr.decode(errors="replace")
    if result.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-6:])
        raise MediaError(f"ffmpeg exited {result.returncode}:\n{tail}")
    log.debug("ffmpeg.ok args=%s", " ".join(args[:6]))
    return stderr


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


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream as float32 (channels, samples) and its sample rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        chunks = [f.to_ndarray() for f in container.decode(audio=0)]
    data = np.concatenate(chunks, axis=1).astype(np.float32)
    return data, rate
