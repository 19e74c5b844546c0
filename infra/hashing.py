"""SHA-256 of bytes and files, streamed (files may be gigabytes)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 2**20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
