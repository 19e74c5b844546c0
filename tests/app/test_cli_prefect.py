"""The command line sets Prefect's settings before Prefect is first imported: Prefect reads
them once, at import, and `mova-ads demo` imports it while submitting, before it produces (a
`make demo` on a busy machine then gave the ephemeral server Prefect's own 20 s, not 180 s,
and its state went to ~/.prefect). `submit` itself imports none of the orchestration (Prefect,
Ray, torch): it is a database insert, and those imports took 2.5 of its 3.7 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.example_brief import EXAMPLE_PATH

# In a fresh interpreter: one command through the console entry point, what it imported, then
# what Prefect holds when the process imports it afterwards (as `demo` and `run` do).
SCRIPT = """
import json, sys
from app.cli import run_command
sys.argv = ["mova-ads", "submit", sys.argv[1]]
code = run_command()  # what the entry point runs before it ends the process
assert not code, code
heavy = sorted(m for m in ("prefect", "ray", "torch") if m in sys.modules)
from prefect.settings import PREFECT_HOME, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
print(json.dumps({"imported": heavy, "home": str(PREFECT_HOME.value()),
                  "timeout": PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()}))
"""


def test_prefect_in_a_command_process_sees_the_projects_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["MOVA_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(EXAMPLE_PATH)], env=env,
                          capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"imported": [], "home": str((tmp_path / "data" / "prefect").resolve()),
                    "timeout": 180}
