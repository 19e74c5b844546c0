"""Ray's processes below a process that started it are ended at its exit, orphans included;
nothing else it runs is touched."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest

from infra import ray_processes
from infra.ray_processes import RAY_PACKAGE, end_ray_descendants, is_ray_process

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")


@pytest.mark.parametrize(("command_line", "ray_s"), [
    ("ray::DashboardAgent", True),
    ("ray::_ModelActor.render", True),
    (f"{RAY_PACKAGE}core/src/ray/raylet/raylet --node_ip_address=127.0.0.1", True),
    (f"/usr/bin/python3 -u {RAY_PACKAGE}dashboard/agent.py --node-id=ab", True),
    # Ray's container images run as the user "ray": its home is no sign of a Ray process
    ("/home/ray/anaconda3/bin/python -m uvicorn --app-dir /home/ray/x prefect.server", False),
    ("ffmpeg -i /data/ray/clip.mp4", False),
])
def test_a_ray_process_is_told_by_its_package_or_its_title(command_line: str,
                                                           ray_s: bool) -> None:
    assert is_ray_process(command_line) is ray_s


def _orphans(shell: str) -> list[int]:
    """Start `shell`'s background jobs and let their parent exit: orphans, re-parented to the
    nearest subreaper. Their pids, as the shell printed them."""
    out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    return [int(pid) for pid in out.split()]


def _running(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_orphaned_ray_processes_are_ended_even_when_they_ignore_sigterm() -> None:
    """As Ray's agents were, when the raylet that launched them was stopped while they
    started: they ignored the interrupt and outlived the command by about a minute."""
    assert ray_processes._become_subreaper()
    agent, stubborn, other = _orphans(
        "(exec -a ray::FakeAgent sleep 60) >/dev/null 2>&1 & echo $!; "
        "(trap '' TERM; exec -a ray::StubbornAgent sleep 60) >/dev/null 2>&1 & echo $!; "
        "(exec -a not-ray-at-all sleep 60) >/dev/null 2>&1 & echo $!")
    try:
        started = time.monotonic()
        ended = end_ray_descendants(grace_s=0.5)
        assert time.monotonic() - started < 3
        assert {agent, stubborn} <= set(ended) and other not in ended
        assert not _running(agent) and not _running(stubborn)  # SIGKILL after the grace
        assert _running(other), "a process that is not Ray's was ended"
    finally:
        for pid in (agent, stubborn, other):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_nothing_to_end_returns_at_once() -> None:
    started = time.monotonic()
    assert end_ray_descendants(grace_s=5) == []
    assert time.monotonic() - started < 1
