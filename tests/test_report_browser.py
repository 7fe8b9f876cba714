"""The HTML report in a real browser: Debian's headless Chromium driven by Playwright (browser.py).

The page is opened from file:// (as an editor opens it) with every request outside that one
file recorded: there must be none, no console error or failed request, no horizontal scrolling
on a 375 px phone, and the three charts drawn. Screenshots go to test-artifacts/report/
(git-ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser import ARTIFACTS as ALL_ARTIFACTS
from browser import watch
from conftest import run_cli
from report_history import make_year

ARTIFACTS = ALL_ARTIFACTS / "report"
pytestmark = pytest.mark.real_clock  # Chromium does not run under libfaketime


@pytest.fixture
def report_page(publication: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    with monkeypatch.context() as patch:
        make_year(publication, patch)
    out = tmp_path / "report"
    code, _, err = run_cli(publication, "report", "--html", str(out), now="2031-12-20T12:00")
    assert code == 0, err
    return out / "index.html"


def test_report_page_offline_on_a_phone_and_a_desktop(report_page: Path, browser: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    own = report_page.as_uri()
    for width in (375, 1280):
        page = browser.new_page(viewport={"width": width, "height": 800})
        errors, elsewhere = watch(page, lambda url: url == own)
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
