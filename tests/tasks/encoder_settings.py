"""What x264 says it did: the options it writes into every stream it encodes (an SEI message
at the start), read back from the file, so a test sees the preset that reached the encoder."""

from __future__ import annotations

from pathlib import Path

# The options each preset sets that tell them apart (x264's preset table).
PRESET_MARKS = {"ultrafast": ("subme=0", "me=dia"), "superfast": ("subme=1", "me=dia"),
                "veryfast": ("subme=2", "me=hex")}


def x264_options(path: Path) -> set[str]:
    """The `name=value` options x264 recorded in the file's stream."""
    data = path.read_bytes()
    start = data.index(b"x264 - core")
    end = data.index(b"\x00", start)
    return set(data[start:end].decode(errors="replace").split(" - ")[-1].split())


def encoded_with(path: Path, preset: str) -> bool:
    return set(PRESET_MARKS[preset]) <= x264_options(path)
