"""The embedded production worker of `mova-ads serve`.

Production runs the scheduled `ingest-briefs` deployment on a Prefect worker. The embedded
default (Prefect's ephemeral server) has no scheduler, so `serve` does the same job itself:
whenever a brief waits, it runs `mova-ads run` in a child process (a crash there never takes
the service down), with its output appended to `<data dir>/worker.log`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading

from infra import repository as repo
from infra.db import session_scope
from infra.settings import Settings
from tasks.services import Services

log = logging.getLogger(__name__)

BACKOFF_S = 30.0  # after a failed run, so a broken setup does not spin
CHILD_STOP_S = 20.0  # a run stops its Ray and Prefect server in a few seconds after Ctrl-C


class EmbeddedWorker:
    def __init__(self, settings: Settings, poll_s: float = 2.0) -> None:
        self.services = Services(settings)
        self.poll_s = poll_s
        self.log_path = settings.mova_data_dir / "worker.log"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mova-worker", daemon=True)
        self._child: subprocess.Popen[bytes] | None = None

    def work_waiting(self) -> bool:
        with session_scope(self.services.engine) as session:
            return repo.any_brief_waiting(session)

    def start(self) -> None:
        self._thread.start()
        log.info("worker.started log=%s", self.log_path)

    def stop(self) -> None:
        self._stop.set()
        try:
            if self._child is not None and self._child.poll() is None:
                self._stop_child(self._child)  # it resumes, without duplicates, next start
            self._thread.join(timeout=30)
        finally:
            self.services.close()

    @staticmethod
    def _stop_child(child: subprocess.Popen[bytes]) -> None:
        """One Ctrl-C to the run (its own session, so the terminal's Ctrl-C reaches the service
        only): it stops its Ray and Prefect server itself. SIGTERM'd mid-cleanup, or given a
        second Ctrl-C, it left its Prefect server running, an orphan. Killed with its whole
        process group if it has not stopped in time."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGINT)
        try:
            child.wait(timeout=CHILD_STOP_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                if self.work_waiting() and self._run_once() != 0:
                    self._stop.wait(BACKOFF_S)
            except Exception:  # noqa: BLE001 - keep serving; the next poll tries again
                log.exception("worker.poll_failed")
                self._stop.wait(BACKOFF_S)

    def _run_once(self) -> int:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self._child = subprocess.Popen([sys.executable, "-m", "app.cli", "run"],
                                           stdout=out, stderr=subprocess.STDOUT,
                                           env=os.environ.copy(), start_new_session=True)
            code = self._child.wait()
        log.log(logging.INFO if code == 0 else logging.WARNING, "worker.run_done exit=%d", code)
        return code
