"""Processes this one started, directly or not, that would outlive it: ended as it exits.

- A local Ray: `ray.shutdown` stops the GCS server and the raylet, but not the agents the raylet
  launched (dashboard, runtime env). Stopped while Ray was still starting (a Ctrl-C a second
  after the raylet came up), the agents outlived the command by about a minute, until they
  noticed their raylet was gone.
- Prefect's temporary server: it is started on a thread the Ctrl-C does not stop. When its
  process came up after the exit handlers had run (2 of 10 tries, a Ctrl-C half a second
  after the raylet came up), Prefect's stop handler never ran and the server ran on for good.

Once orphaned, a process is no longer this one's descendant, so this process first becomes the
subreaper of its descendants (Linux): their orphans are re-parented to it instead of to init.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

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
    adopt_orphans()
    atexit.register(end_descendants, only=is_ray_process)


def adopt_orphans() -> bool:
    """Become the subreaper of this process's descendants (Linux; elsewhere an orphan is left
    to end by itself, as Ray's agents do a minute later): whether it is."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


# Ray's daemons (GCS server, raylet) and its agents' scripts run from its package folder
# (located, not imported: the command line's interrupt handling needs no Ray)
_RAY = importlib.util.find_spec("ray")  # a dependency: always there
RAY_PACKAGE = str(Path(_RAY.origin if _RAY and _RAY.origin else "ray/_").parent) + os.sep


def is_ray_process(command_line: str) -> bool:
    """A process of Ray's: run from its package, or named `ray::...` (a worker, or an agent
    once it has set its title)."""
    return command_line.startswith("ray::") or RAY_PACKAGE in command_line


class Process(NamedTuple):
    parent: int
    group: int
    command: str  # its command line, arguments joined by spaces


def running_processes() -> dict[int, Process]:
    """Every process that has not exited, by pid (none known without Linux's /proc)."""
    found: dict[int, Process] = {}
    if not Path("/proc/self").is_dir():
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the command name in parentheses may hold spaces: the fields follow the last ")"
            state, parent, group = (entry / "stat").read_text().rpartition(")")[2].split()[:3]
            if state in ("Z", "X"):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
        except (OSError, ValueError):  # gone meanwhile
            continue
        found[int(entry.name)] = Process(int(parent), int(group), command)
    return found


def descendants(only: Callable[[str], bool] | None = None) -> list[int]:
    """The running processes below this one (those whose command line `only` accepts)."""
    processes = running_processes()
    children: dict[int, list[int]] = {}
    for pid, process in processes.items():
        children.setdefault(process.parent, []).append(pid)
    below, stack = [], list(children.get(os.getpid(), []))
    while stack:
        pid = stack.pop()
        below.append(pid)
        stack.extend(children.get(pid, []))
    return [pid for pid in below if only is None or only(processes[pid].command)]


def end_descendants(grace_s: float = GRACE_S, *,
                    only: Callable[[str], bool] | None = None) -> list[int]:
    """SIGTERM the processes still running below this one (those `only` accepts), SIGKILL those
    still there after `grace_s`, until a look finds none (one forked or restarted meanwhile is
    found by the next look); the pids it signalled."""
    signalled: set[int] = set()
    started = time.monotonic()
    while left := set(descendants(only)):
        waited = time.monotonic() - started
        if waited > 2 * grace_s:  # unkillable (stuck in the kernel): leave it
            log.warning("process.leftovers_remain pids=%s", sorted(left))
            break
        for pid in left if waited > grace_s else left - signalled:
            _signal(pid, signal.SIGKILL if waited > grace_s else signal.SIGTERM)
        signalled |= left
        time.sleep(0.05)
    if signalled:
        log.info("process.leftovers_ended pids=%s", sorted(signalled))
    return sorted(signalled)


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # ended meanwhile
        os.kill(pid, signum)
