"""SHA-256 of bytes and files, streamed (files may be gigabytes)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 2**20  # copy buffer for storage streams that hash while they copy


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
