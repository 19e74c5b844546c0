"""Starting real servers for tests: a free loopback port, and waiting until one answers."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes], *, timeout: float,
                  log: Callable[[], str] = lambda: "") -> None:
    """Poll `url` until it answers 200; fail the test (with `log()`) if `process` exits or
    `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the server for {url} did not start:\n{log()}")
        time.sleep(0.3)


def in_ci() -> bool:
    """True under CI (`CI=true`, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def backend_missing(what: str, why: str) -> NoReturn:
    """Stop a test whose real backend (PostgreSQL, the moto server, Chromium) is missing: a
    skip on a developer's machine, a failure under CI, where a skipped adapter test would let
    a broken adapter go green."""
    if in_ci():
        pytest.fail(f"{what} is required under CI=true but is missing: {why}", pytrace=False)
    pytest.skip(f"{what} is missing: {why}")


def require_chromium() -> Path:
    """Debian's Chromium (MOVA_TEST_CHROMIUM overrides /usr/bin/chromium), or stop the test."""
    path = Path(os.environ.get("MOVA_TEST_CHROMIUM", "/usr/bin/chromium"))
    if not (path.is_file() and os.access(path, os.X_OK)):
        backend_missing("Chromium", f"{path} is not an executable (apt install chromium)")
    return path
