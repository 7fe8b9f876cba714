"""Debian's headless Chromium driven by Playwright, for the tests that look at our pages the way
readers do (test_archive_browser.py, test_email_browser.py, test_report_browser.py).

The `browser` fixture (imported by conftest.py) launches Chromium once per test module; each
test opens its own pages and contexts, which share no cookies, storage or routes. Without
Chromium or Playwright a test that asks for it is skipped, or fails in CI (CI=true), which
installs both. Chromium does not start under libfaketime: the modules are marked `real_clock`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Screenshots for a person to look at, one folder per module (git-ignored).
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# No sandbox (CI runs as root), and nothing that reaches out to the network by itself.
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip


def sync_api() -> Any:
    """playwright.sync_api, or skip (fail in CI, where `.ci/run` installs Chromium)."""
    # Imported here, not at the top: conftest.py imports this module for the fixture.
    from conftest import missing

    if not CHROMIUM.exists():
        missing("Debian chromium is not installed at /usr/bin/chromium (`.ci/run` installs it)")
    try:
        import playwright.sync_api as api
    except ImportError:
        missing("playwright (pip) is not installed")
    return api


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, shared by the tests of one module (a launch takes seconds on a loaded machine).
    Playwright gives it a fresh temporary profile itself (it refuses --user-data-dir)."""
    with sync_api().sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        try:
            yield launched
        finally:
            launched.close()


def watch(page: Any, own: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """(console errors, page errors and failed requests; requests for URLs not `own`), filled
    in as the page runs."""
    errors: list[str] = []
    elsewhere: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
    page.on("request", lambda r: None if own(r.url) else elsewhere.append(r.url))
    return errors, elsewhere
