"""Under CI=true a test whose real backend is missing fails instead of skipping, so CI cannot
go green without PostgreSQL, the moto S3 server or Chromium; on a developer's machine it skips.
Each backend is pointed at something that is not there (a closed loopback port, a missing file)
and one real test of each is run in a child pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
NEEDS_BACKEND = {
    "postgres": "tests/infra/test_db.py::test_concurrent_claims_on_postgres_never_overlap",
    "moto": "tests/infra/test_storage.py::test_presigned_url_downloads_the_object",
    "chromium": "tests/app/test_review_page_browser.py"
                "::test_submit_watch_play_approve_in_the_browser",
}


def _outcomes(tmp_path: Path, ci: str | None) -> dict[str, str]:
    """Run the three tests with every backend missing; return each one's outcome."""
    closed = free_port()  # released at once: nothing listens there
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update({"MOVA_TEST_POSTGRES_URL": f"postgresql+psycopg://postgres@127.0.0.1:{closed}/x",
                "MOVA_TEST_S3_ENDPOINT": f"http://127.0.0.1:{closed}",
                "MOVA_TEST_CHROMIUM": str(tmp_path / "no-chromium")})
    if ci is not None:
        env["CI"] = ci
    report = tmp_path / f"report-{ci}.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={report}", *NEEDS_BACKEND.values()],
                   cwd=ROOT, env=env, capture_output=True, timeout=300)
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        kinds = {child.tag for child in case} & {"failure", "error", "skipped"}
        outcome = kinds.pop() if kinds else "passed"
        backend = next(b for b, test in NEEDS_BACKEND.items() if test.endswith(case.get("name",
                                                                                       "?")))
        outcomes[backend] = outcome
    return outcomes


@pytest.mark.parametrize(("ci", "expected"), [("true", {"error", "failure"}), (None, {"skipped"})])
def test_missing_backends_fail_under_ci_and_skip_elsewhere(tmp_path: Path, ci: str | None,
                                                           expected: set[str]) -> None:
    outcomes = _outcomes(tmp_path, ci)
    assert set(outcomes) == set(NEEDS_BACKEND), outcomes
    # a fixture that fails is reported as an error, an assertion in the test as a failure
    assert all(outcome in expected for outcome in outcomes.values()), outcomes
