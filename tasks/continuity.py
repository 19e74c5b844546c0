"""Continuity across scenes: a scene with `continue_from` starts from the last frame of the
scene it continues, given to the model as its first frame (image conditioning)."""

from __future__ import annotations

from pathlib import Path

import av
from PIL import Image

from infra.media import MediaError


def last_frame(clip: Path) -> Image.Image:
    """The last decoded video frame of `clip`, RGB."""
    frame = None
    try:
        with av.open(str(clip)) as container:
            for frame in container.decode(video=0):  # noqa: B007 - the loop keeps the last one
                pass
    except (av.FFmpegError, OSError) as err:
        raise MediaError(f"{clip}: not a readable video ({err})") from err
    if frame is None:
        raise MediaError(f"{clip}: no video frame to continue from")
    return frame.to_image().convert("RGB")


def write_last_frame(clip: Path, out: Path) -> Path:
    """The last frame of `clip` as a PNG at `out` (lossless: the next scene starts from exactly
    the pixels this one ended on, up to the clip's own encoding)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    last_frame(clip).save(out, format="PNG")
    return out
