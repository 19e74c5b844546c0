"""`mova-ads status` as an operator reads it: why a deliverable failed and why a brief was
refused, in full, on a wide terminal and wrapped on an 80-column one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra import repository as repo
from infra.db import make_engine, session_scope, upgrade_to_head
from infra.statuses import BriefStatus
from tests.app.conftest import ROOT

# Over 300 characters, and the end is what a team needs to read. (The brackets are not markup.)
DELIVERABLE_ERROR = ("spot failed QC after 3 attempts [/renders/ab/ab12.npz]: "
                     + "scene hero measured -8.4 LUFS, 6.2 LU louder than the -14 LUFS target "
                     "of the platform; " * 3
                     + "lower the music bed of scene hero (ZEBRA-QUARTZ-LAST-WORDS)")
PROBLEM = ("scenes.0.lora", "no LoRA named 'autumn-look' is registered for team emea; "
           "register it with `mova-ads lora add` or remove it from the brief "
           "(MAGENTA-PROBLEM-END)")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with a failed brief (one failed deliverable) and an invalid brief."""
    data_dir = tmp_path_factory.mktemp("status")
    engine = make_engine(f"sqlite:///{data_dir / 'mova_ads.db'}")
    upgrade_to_head(engine)
    with session_scope(engine) as session:
        failed = repo.add_brief(session, campaign_slug="spring", brand="Aurora", raw="{}",
                                sha256="a" * 64)
        for status in (BriefStatus.CLAIMED, BriefStatus.PLANNED, BriefStatus.PRODUCING):
            repo.set_brief_status(session, failed.id, status)
        row = repo.ensure_deliverable(session, failed, name="hero/en-US/16:9", scene_id="hero",
                                      locale="en-US", aspect="16:9", render_key="")
        repo.fail_deliverable(row, DELIVERABLE_ERROR)
        repo.close_brief(session, failed.id)
        invalid = repo.add_brief(session, campaign_slug="spring", brand="Aurora", raw="{}",
                                 sha256="b" * 64)
        repo.set_brief_status(session, invalid.id, BriefStatus.CLAIMED)
        repo.mark_brief_invalid(session, invalid, [PROBLEM])
    engine.dispose()
    return data_dir


def _status(data_dir: Path, columns: int) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MOVA_"))}
    env.update(MOVA_DATA_DIR=str(data_dir), DATABASE_URL=f"sqlite:///{data_dir / 'mova_ads.db'}",
               PYTHONPATH=str(ROOT), COLUMNS=str(columns))
    done = subprocess.run([sys.executable, "-m", "app.cli", "status"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _squeezed(text: str) -> str:
    return "".join(text.split())


def test_status_shows_a_failed_deliverables_whole_error(data_dir: Path) -> None:
    assert len(DELIVERABLE_ERROR) > 300
    out = _status(data_dir, columns=400)
    assert DELIVERABLE_ERROR in out
    assert "failed" in out and "hero/en-US/16:9" in out


def test_status_shows_why_a_brief_is_invalid(data_dir: Path) -> None:
    out = _status(data_dir, columns=400)
    assert f"{PROBLEM[0]}: {PROBLEM[1]}" in out
    assert "invalid" in out


def test_on_an_80_column_terminal_the_reasons_are_wrapped_not_cut(data_dir: Path) -> None:
    out = _status(data_dir, columns=80)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert _squeezed(DELIVERABLE_ERROR) in _squeezed(out)
    assert _squeezed(f"{PROBLEM[0]}: {PROBLEM[1]}") in _squeezed(out)


def test_a_database_that_cannot_be_reached_is_one_paragraph_not_a_traceback(
        tmp_path: Path) -> None:
    """An operator with the server down (or a wrong role) got 350 lines of SQLAlchemy's
    traceback: now the driver's words and the URL tried, without its password."""
    from tests.servers import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MOVA_"))}
    for url, cause in ((f"postgresql+psycopg://ops:hunter2@127.0.0.1:{free_port()}/ads",
                        "Connection refused"),
                       ("postgresql+psycopg://no_such_role@127.0.0.1:5432/test",
                        'role "no_such_role" does not exist')):
        env.update(MOVA_DATA_DIR=str(tmp_path), DATABASE_URL=url, PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, "-m", "app.cli", "status"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith("error: the database cannot be used: ")
        assert cause in done.stderr and "Traceback" not in done.stderr
        assert "hunter2" not in done.stderr and len(done.stderr.splitlines()) <= 4
        assert url.replace(":hunter2", ":***") in done.stderr


def test_status_tells_two_teams_campaigns_of_one_slug_apart(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'mova_ads.db'}")
    upgrade_to_head(engine)
    with session_scope(engine) as session:
        for n, team in enumerate(("emea", "apac")):
            repo.add_brief(session, campaign_slug="spring", brand="Aurora", raw="{}",
                           sha256=str(n) * 64, team=team)
        repo.add_brief(session, campaign_slug="spring", brand="Aurora", raw="{}",
                       sha256="9" * 64)
    engine.dispose()
    out = _status(tmp_path, columns=200)
    assert "emea/spring" in out and "apac/spring" in out
    assert any(" spring " in line for line in out.splitlines())  # the default team's: the slug
