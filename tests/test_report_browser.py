"""The HTML report in a real browser: Debian's headless Chromium driven by Playwright.

The page is opened from file:// (as an editor opens it) with every request outside that one
file recorded: there must be none, no console error, no horizontal scrolling on a 375 px
phone, and the three charts drawn. Screenshots go to test-artifacts/report/ (git-ignored).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from report_history import make_year

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "report"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip
pytestmark = pytest.mark.real_clock  # Chromium does not run under libfaketime

if not CHROMIUM.exists() and os.environ.get("CI") == "true":
    raise RuntimeError("CI=true but /usr/bin/chromium is missing: `.ci/run` must install it")
if not CHROMIUM.exists():
    pytest.skip(
        "Debian chromium is not installed at /usr/bin/chromium (`.ci/run` installs it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")


@pytest.fixture
def report_page(publication: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    with monkeypatch.context() as patch:
        make_year(publication, patch)
    out = tmp_path / "report"
    code, _, err = run_cli(publication, "report", "--html", str(out), now="2031-12-20T12:00")
    assert code == 0, err
    return out / "index.html"


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def watch(page: Any, own: str) -> tuple[list[str], list[str]]:
    """(console and page errors, every request for anything but the page itself)."""
    errors: list[str] = []
    elsewhere: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: None if r.url == own else elsewhere.append(r.url))
    return errors, elsewhere


def test_report_page_offline_on_a_phone_and_a_desktop(report_page: Path, browser: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    own = report_page.as_uri()
    for width in (375, 1280):
        page = browser.new_page(viewport={"width": width, "height": 800})
        errors, elsewhere = watch(page, own)
        page.goto(own)
        page.wait_for_load_state("load")
        assert page.locator("h1").inner_text() == "Leader Notes: how the issues did"
        assert page.locator("figure svg").count() == 3
        for index in range(3):  # each chart is drawn at a readable size
            box = page.locator("figure svg").nth(index).bounding_box()
            assert box is not None and box["width"] >= 300 and box["height"] >= 150
        rows = page.locator("table").first.locator("tbody tr")
        assert rows.count() == 12
        assert page.evaluate("document.scripts.length") == 0
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(ARTIFACTS / f"report-{width}.png"), full_page=True)
        assert errors == [] and elsewhere == []
        page.close()
    for width in (375, 1280):
        assert (ARTIFACTS / f"report-{width}.png").stat().st_size > 5000
