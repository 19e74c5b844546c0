"""The review page in headless Chromium (Debian's package, driven by Playwright; no browser
download): sign in, submit the example brief through the form, watch it produce, play a
variant, approve it and see it published. A screenshot of the campaign page is saved under
test-artifacts/review/. Skipped where /usr/bin/chromium is not installed (`make test` installs
it when it can), and failed then under CI=true."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.app.conftest import ROOT, Service
from tests.servers import require_chromium

ARTIFACTS = ROOT / "test-artifacts" / "review"
EXAMPLE_LOGO = ROOT / "examples" / "logo.png"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Checked before the slower fixtures run, so a missing browser stops the test at once."""
    return require_chromium()


def _wait_until(page: Any, expression: str, timeout_s: float) -> None:
    """Poll `expression` from the test (CDP evaluation): Playwright's wait_for_function
    evaluates a string inside the page, which the page's CSP (no 'unsafe-eval') forbids."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if page.evaluate(expression):
                return
        except Exception:  # noqa: BLE001 - the page reloads itself while it redraws
            pass
        time.sleep(1.0)
    raise AssertionError(f"not true within {timeout_s:.0f} s: {expression}")


def test_submit_watch_play_approve_in_the_browser(
        chromium: Path, service_factory: Callable[..., Service], tiny_checkpoint: Path,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from playwright.sync_api import expect, sync_playwright

    data_dir = tmp_path_factory.mktemp("browser")
    service = service_factory(data_dir, f"sqlite:///{data_dir / 'mova_ads.db'}",
                              teams=("emea",), worker=True, checkpoint=tiny_checkpoint)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{service.url}/briefs")
            page.fill("input[name=token]", "not-a-token")
            page.click("button[type=submit]")
            expect(page.locator(".error")).to_contain_text("unknown token")
            page.fill("input[name=token]", service.tokens["emea"])
            page.click("button[type=submit]")

            # the form starts with the example brief; review before publishing is ticked
            example = page.input_value("textarea[name=brief]")
            assert "aurora-spring-launch" in example
            # one format of the two (two spots, one per language): the page is what is tested
            page.fill("textarea[name=brief]",
                      example.replace('aspects: ["16:9", "9:16"]', 'aspects: ["16:9"]'))
            expect(page.locator("input[name=requires_approval]")).to_be_checked()
            # its brand kit names logo.png: the team attaches it, as a first-frame image would be
            page.set_input_files("input[name=first_frames]", str(EXAMPLE_LOGO))
            page.click("#submit-form button[type=submit]")
            page.wait_for_url("**/briefs/*")
            expect(page.locator("#brief-progress")).to_be_attached()

            # live progress: the page redraws itself until both variants wait for review
            # (and once more when the brief closes; after that it stops polling)
            _wait_until(page, "document.getElementById('brief').dataset.status === 'done' && "
                        "document.querySelectorAll('.variant[data-status=in_review] video')"
                        ".length === 2", timeout_s=420)
            page.wait_for_load_state("networkidle")
            first = page.locator(".variant").first
            expect(first.locator(".status")).to_have_text("in_review")
            expect(first.locator("details summary")).to_contain_text("QC passed")
            expect(first).to_contain_text("LUFS")
            tracks = first.locator("video").evaluate(
                "v => [...v.textTracks].map(t => t.language)")
            assert sorted(tracks) == ["de-DE", "en-US"]

            played = first.locator("video").evaluate(
                """async v => { v.muted = true; await v.play();
                   await new Promise(r => setTimeout(r, 600)); v.pause();
                   return v.currentTime; }""")
            assert played > 0, "the video did not play"
            page.screenshot(path=str(ARTIFACTS / "campaign.png"), full_page=True)

            variant_id = first.get_attribute("data-variant")
            page.fill(f"[data-variant='{variant_id}'] input.comment", "looks great")
            page.click(f"[data-variant='{variant_id}'] button.approve")
            approved = page.locator(f"[data-variant='{variant_id}']")
            expect(approved.locator(".status")).to_have_text("published", timeout=60_000)
            expect(approved).to_contain_text("looks great")
            page.screenshot(path=str(ARTIFACTS / "campaign-approved.png"), full_page=True)
        finally:
            browser.close()
    published = list((data_dir / "storage" / "campaigns").rglob("aurora-spring-launch_*.mp4"))
    published = [p for p in published if not p.name.endswith(".burned.mp4")]
    assert len(published) == 1, "exactly the approved spot is published"
