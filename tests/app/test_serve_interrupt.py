"""Stopping `mova-ads serve` while its embedded worker produces a brief: the service and the
worker's run stop, and nothing they started is left running (the run was SIGTERM'd, which
ended it before it could stop its Prefect server and Ray)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy import text as sql_text
from sqlalchemy.exc import OperationalError

from app.auth import create_team
from infra.db import make_engine, session_scope, upgrade_to_head
from tests.app.conftest import ROOT, SERVE
from tests.example_brief import example_text
from tests.servers import free_port, wait_until_up

pytestmark = pytest.mark.slow


def _pids_of(data_dir: Path) -> list[int]:
    """The processes whose environment names this test's data folder."""
    marker = f"MOVA_DATA_DIR={data_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _processes_of(data_dir: Path) -> list[str]:
    """Their command lines."""
    lines = []
    for pid in _pids_of(data_dir):
        with contextlib.suppress(OSError):
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return lines


def _rendering(database: str) -> bool:
    """The worker's run is producing: a render has started (its Prefect server and Ray up)."""
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            return bool(connection.execute(sql_text(
                "select count(*) from render_job where status != 'pending'")).scalar())
    except OperationalError:  # no table yet, or the run holds the write lock
        return False
    finally:
        engine.dispose()


@pytest.mark.parametrize("stop", ["ctrl-c twice", "sigterm", "sigterm twice"])
def test_stopping_serve_while_its_worker_produces_leaves_no_process(
        tmp_path: Path, stop: str) -> None:
    """Ctrl-C twice reaches the terminal's whole process group; SIGTERM (a service manager,
    `docker stop`) the service alone, which gives its run (in a session of its own) a Ctrl-C:
    killed outright, the run left its Prefect server and Ray processes running. A second
    SIGTERM ends the service at once, as a second Ctrl-C does; its run still stops alone."""
    data = tmp_path / "data"
    data.mkdir()
    database = f"sqlite:///{data / 'mova_ads.db'}"
    engine = make_engine(database)
    upgrade_to_head(engine)
    with session_scope(engine) as session:
        token = create_team(session, "emea")
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MOVA_"))}
    env.update({"MOVA_DATA_DIR": str(data), "DATABASE_URL": database, "PYTHONPATH": str(ROOT),
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"})
    port = free_port()
    with (data / "serve.log").open("wb") as log:
        # its own session stands for the terminal: a Ctrl-C goes to the whole group
        serve = subprocess.Popen([*SERVE, "--port", str(port), "--worker"], env=env, cwd=ROOT,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/api/health", serve, timeout=60,
                      log=lambda: (data / "serve.log").read_text()[-3000:])
        submitted = httpx.post(f"{url}/api/briefs", content=example_text(),
                               headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": "application/yaml"}, timeout=60)
        assert submitted.status_code == 201, submitted.text
        worker_log = data / "worker.log"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _rendering(database):
            time.sleep(0.5)  # the run has its Prefect server and Ray up: mid-production
        assert _rendering(database), (
            worker_log.read_text()[-3000:] if worker_log.exists() else "no worker log")
        if stop.startswith("sigterm"):
            serve.terminate()
            if stop == "sigterm twice":
                time.sleep(1)  # the service is waiting for its run to stop
                serve.terminate()
        else:
            os.killpg(serve.pid, signal.SIGINT)
            time.sleep(0.5)
            os.killpg(serve.pid, signal.SIGINT)  # impatient: a second Ctrl-C
        serve.wait(timeout=60)
        # On SIGTERM the service waits for its run, which ends what it started as it exits
        # (the service used to die at once, and its run went on alone to the end of its
        # brief). A second Ctrl-C skips that wait: the run, given its Ctrl-C, stops alone.
        deadline = time.monotonic() + (0 if stop == "sigterm" else 30)
        while time.monotonic() < deadline and _processes_of(data):
            time.sleep(0.5)
        assert _processes_of(data) == []
        assert "interrupted: stopping" in worker_log.read_text()
        # twice: killed by the second SIGTERM, or done with its wait before it came
        expected = {"sigterm": {143}, "ctrl-c twice": {130},
                    "sigterm twice": {-signal.SIGTERM, 143}}[stop]
        assert serve.returncode in expected
        said = (data / "serve.log").read_text()
        assert "Traceback" not in said, said[-3000:]
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
        for pid in _pids_of(data):  # never leave them to the next test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
