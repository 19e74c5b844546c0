"""The processes a local Ray start launches, ended when the process that started it exits.

`ray.shutdown` stops the GCS server and the raylet, but not the agents the raylet launched
(dashboard, runtime env): stopped while Ray was still starting (a Ctrl-C a second after the
raylet came up), the agents outlived the command by about a minute, until they noticed their
raylet was gone. Once orphaned they are no longer this process's descendants, so this process
first becomes their subreaper (Linux): orphans of its descendants are re-parented to it
instead of to init, and at exit the Ray processes among its descendants are ended.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from pathlib import Path

import ray

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
GRACE_S = 1.0  # after SIGTERM, before SIGKILL

_registered = False


def end_local_ray_at_exit() -> None:
    """Call before `ray.init` starts a local instance: registered first, the handler runs after
    Ray's own shutdown (atexit runs its handlers last in, first out)."""
    global _registered
    if _registered:
        return
    _registered = True
    _become_subreaper()
    atexit.register(end_ray_descendants)


def _become_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False  # elsewhere an orphaned agent is left to notice its raylet is gone
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


# Ray's daemons (GCS server, raylet) and its agents' scripts run from its package folder
RAY_PACKAGE = str(Path(ray.__file__).parent) + os.sep


def is_ray_process(command_line: str) -> bool:
    """A process of Ray's: run from its package, or named `ray::...` (a worker, or an agent
    once it has set its title)."""
    return command_line.startswith("ray::") or RAY_PACKAGE in command_line


def _running_processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process that has not exited."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the command name in parentheses may hold spaces: the fields follow the last ")"
            state, parent = (entry / "stat").read_text().rpartition(")")[2].split()[:2]
            if state in ("Z", "X"):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
        except (OSError, ValueError):  # gone meanwhile
            continue
        found[int(entry.name)] = (int(parent), command)
    return found


def ray_descendants(root: int | None = None) -> list[int]:
    """The running Ray processes below `root` (this process)."""
    processes = _running_processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    below, stack = [], list(children.get(os.getpid() if root is None else root, []))
    while stack:
        pid = stack.pop()
        below.append(pid)
        stack.extend(children.get(pid, []))
    return [pid for pid in below if is_ray_process(processes[pid][1])]


def end_ray_descendants(grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM the Ray processes still running below this one, SIGKILL those still there after
    `grace_s`, until a look finds none (an agent the raylet forked as it was being ended is
    found by the next look); the pids it signalled."""
    signalled: set[int] = set()
    started = time.monotonic()
    while left := set(ray_descendants()):
        waited = time.monotonic() - started
        if waited > 2 * grace_s:  # unkillable (stuck in the kernel): leave it
            log.warning("ray.leftovers_remain pids=%s", sorted(left))
            break
        for pid in left if waited > grace_s else left - signalled:
            _signal(pid, signal.SIGKILL if waited > grace_s else signal.SIGTERM)
        signalled |= left
        time.sleep(0.05)
    if signalled:
        log.info("ray.leftovers_ended pids=%s", sorted(signalled))
    return sorted(signalled)


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # ended meanwhile
        os.kill(pid, signum)
