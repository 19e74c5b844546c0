"""Render actors of a local Ray run at their driver's niceness: Ray's default (15) starved a
CPU render beside ffmpeg finishing (a 1.6 s render took up to 16 s)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter: the suite's own local Ray (tests/infra/conftest.py) is started by the
# tests, not by ensure_ray, and Ray is started once per process.
SCRIPT = textwrap.dedent("""
    import os
    from infra.gpu_pool import GpuPool, PoolConfig

    def load():
        return None

    def niceness(model, payload):
        return os.getpriority(os.PRIO_PROCESS, 0)

    pool = GpuPool(load, PoolConfig(num_workers=1, num_cpus_per_worker=0.5,
                                    include_dashboard=False))
    pool.wait_ready()
    outcomes = list(pool.map_unordered(niceness, [1], key=str))
    pool.shutdown()
    print("NICENESS", outcomes[0].value, os.getpriority(os.PRIO_PROCESS, 0))
""")


def test_a_local_pool_renders_at_the_drivers_priority() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("NICENESS")]
    assert len(lines) == 1, done.stdout[-2000:]
    actor, driver = (int(word) for word in lines[0].split()[1:])
    assert actor == driver, f"the render actor runs at niceness {actor}, its driver at {driver}"
