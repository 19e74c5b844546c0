"""What a process started and would leave running is ended as it exits, orphans included:
Ray's processes alone where only they are asked for."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.leftover_processes import RAY_PACKAGE, end_descendants, is_ray_process

ROOT = Path(__file__).resolve().parents[2]
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


# Run in a child of its own: ending descendants in the test process would end those of the
# other tests beside it (a local Ray, servers).
_SCRIPT = """
import json, subprocess, sys, time
from infra.leftover_processes import adopt_orphans, end_descendants, is_ray_process
assert adopt_orphans()
out = subprocess.run(["bash", "-c", sys.argv[1]], capture_output=True, text=True, timeout=10,
                     check=True).stdout
pids = [int(pid) for pid in out.split()]
started = time.monotonic()
ray_only = end_descendants(grace_s=0.5, only=is_ray_process)
after_ray = time.monotonic() - started
rest = end_descendants(grace_s=0.5)
print(json.dumps({"pids": pids, "ray_only": ray_only, "after_ray_s": after_ray,
                  "rest": rest, "none_left": end_descendants(grace_s=0.5) == []}))
"""


def test_orphans_are_ended_even_when_they_ignore_sigterm_ray_s_alone_when_asked() -> None:
    """As Ray's agents were when the raylet that launched them was stopped while they started:
    orphans that ignored the interrupt and outlived the command by about a minute."""
    shell = ("(exec -a ray::FakeAgent sleep 60) >/dev/null 2>&1 & echo $!; "
             "(trap '' TERM; exec -a ray::StubbornAgent sleep 60) >/dev/null 2>&1 & echo $!; "
             "(trap '' TERM; exec -a not-ray-at-all sleep 60) >/dev/null 2>&1 & echo $!")
    result = subprocess.run([sys.executable, "-c", _SCRIPT, shell], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout)
    agent, stubborn, other = found["pids"]
    try:
        assert sorted(found["ray_only"]) == sorted([agent, stubborn])  # the other one untouched
        assert found["after_ray_s"] < 3  # SIGKILL after the grace
        assert found["rest"] == [other] and found["none_left"]
    finally:
        for pid in found["pids"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_nothing_to_end_returns_at_once() -> None:
    started = time.monotonic()
    assert end_descendants(grace_s=5, only=lambda line: "no such process" in line) == []
    assert time.monotonic() - started < 1
