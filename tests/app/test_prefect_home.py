"""A new Prefect home starts from the empty database made at install: copied in, never over an
existing one, not at all when the runs go to a Prefect server; the server takes the copy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.prefect_home import build_empty_database

ROOT = Path(__file__).resolve().parents[2]
SEED = ("import sys; from pathlib import Path; from app.prefect_home import seed_home; "
        "print(seed_home(Path(sys.argv[1])))")
FLOW = ("from prefect import flow\n"
        "@flow\ndef hello() -> int:\n    return 42\n"
        "print(hello())\n")


def _python(code: str, home: Path, *args: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=240,
                          env={**clean, "PREFECT_HOME": str(home),
                               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_empty_database(tmp_path_factory.mktemp("share") / "prefect-empty.db")


@pytest.mark.slow
def test_a_new_home_gets_a_copy_that_the_ephemeral_server_runs_flows_on(
        tmp_path: Path, empty: Path) -> None:
    home = tmp_path / "home"
    assert _python(SEED, home, str(empty)) == str(home / "prefect.db")
    assert (home / "prefect.db").read_bytes() == empty.read_bytes()
    assert _python(FLOW, home) == "42"  # the server took the copied database
    # a home with a database keeps it (its flow runs are not wiped by a fresh copy)
    used = (home / "prefect.db").stat().st_mtime_ns
    assert _python(SEED, home, str(empty)) == "None"
    assert (home / "prefect.db").stat().st_mtime_ns == used


def test_nothing_is_copied_for_a_prefect_server_or_without_an_empty_database(
        tmp_path: Path, empty: Path) -> None:
    server = _python(SEED, tmp_path / "a", str(empty), PREFECT_API_URL="http://127.0.0.1:1/api")
    missing = _python(SEED, tmp_path / "b", str(tmp_path / "not-made.db"))
    postgres = _python(SEED, tmp_path / "c", str(empty),
                       PREFECT_SERVER_DATABASE_CONNECTION_URL="postgresql+asyncpg://x@h/db")
    assert (server, missing, postgres) == ("None", "None", "None")
    assert not any((tmp_path / name / "prefect.db").exists() for name in "abc")
