"""The archive in a real browser: Debian's headless Chromium driven by Playwright.

The site is served by http.server on 127.0.0.1 under the sub-path of its base_url
(/letters/), and opened from file://. Screenshots at 375 px and 1280 px go to
test-artifacts/archive/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from newsletter.archive import build_archive
from newsletter.config import load_config
from newsletter.issues import load_issues

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "archive"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip
TODAY = dt.date(2026, 11, 25)
pytestmark = pytest.mark.real_clock  # Chromium does not run under libfaketime

if not CHROMIUM.exists() and os.environ.get("CI") == "true":
    raise RuntimeError("CI=true but /usr/bin/chromium is missing: `.ci/run` must install it")
if not CHROMIUM.exists():
    pytest.skip(
        "Debian chromium is not installed at /usr/bin/chromium (`.ci/run` installs it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")


class QuietHandler(SimpleHTTPRequestHandler):
    """Static files; a missing path gets the archive's 404.html, as nginx's error_page does."""

    not_found_page: Path | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if code != 404 or self.not_found_page is None:
            super().send_error(code, message, explain)
            return
        body = self.not_found_page.read_bytes()
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def served(publication: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(URL of the archive under /letters/, its folder), served on 127.0.0.1."""
    config = load_config(
        publication, environ={"NEWSLETTER_BASE_URL": "https://news.example.org/letters/"}
    )
    docroot = tmp_path / "docroot"
    out = docroot / "letters"
    build_archive(config, load_issues(config, TODAY), out, today=TODAY)
    handler_class = type("Handler", (QuietHandler,), {"not_found_page": out / "404.html"})
    handler = functools.partial(handler_class, directory=str(docroot))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/letters/", out
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[Any]:
    # Playwright gives the browser a fresh temporary profile itself (it refuses
    # --user-data-dir in launch()).
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def watch(page: Any, base: str) -> tuple[list[str], list[str]]:
    """(console errors and failed requests, requests that left 127.0.0.1 or the site)."""
    errors: list[str] = []
    foreign: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
    page.on("request", lambda r: None if r.url.startswith(base) else foreign.append(r.url))
    return errors, foreign


def test_browse_follow_search_and_screenshot(served: tuple[str, Path], browser: Any) -> None:
    base, _ = served
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (375, 1280):
        page = browser.new_page(viewport={"width": width, "height": 900})
        errors, foreign = watch(page, base)
        page.goto(base)  # the directory URL: the server answers with index.html
        assert page.locator("h1").inner_text() == "All issues"
        assert page.locator("#search").is_visible()  # JavaScript on: the search form shows
        # no horizontal scrolling on a phone
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(ARTIFACTS / f"index-{width}.png"), full_page=True)

        page.locator("main a", has_text="Handoffs Are the Product").first.click()
        page.wait_for_load_state()
        assert page.url == base + "2026-08-handoffs-are-the-product/index.html"
        assert page.locator("h1").inner_text() == "Handoffs Are the Product"
        image = page.locator("main img").first
        assert image.evaluate("img => img.complete && img.naturalWidth > 0")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(ARTIFACTS / f"issue-{width}.png"), full_page=True)

        page.locator("header nav a", has_text="All issues").click()
        page.wait_for_load_state()
        page.fill("#search-input", "listening")
        results = page.locator("#search-results li")
        results.first.wait_for()
        assert results.count() == 1
        assert "Listening Rounds" in results.first.inner_text()
        assert page.locator("#search-status").inner_text() == "1 issue found"
        page.fill("#search-input", "agreements")  # a tag: only in the index, not the text
        assert page.locator("#search-results li").count() == 1
        page.screenshot(path=str(ARTIFACTS / f"search-{width}.png"))
        page.locator("#search-results a").first.click()
        page.wait_for_load_state()
        assert page.url.startswith(base) and page.url.endswith("/index.html")
        assert errors == [] and foreign == []
        page.close()
    for name in ("index", "issue", "search"):
        for width in (375, 1280):
            assert (ARTIFACTS / f"{name}-{width}.png").stat().st_size > 1000


def test_works_from_the_filesystem_and_without_javascript(
    served: tuple[str, Path], browser: Any
) -> None:
    _, out = served
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((out / "index.html").as_uri())
    page.fill("#search-input", "handoffs")
    page.locator("#search-results a").first.click()
    page.wait_for_load_state()
    assert page.url == (out / "2026-08-handoffs-are-the-product" / "index.html").as_uri()
    page.locator("a", has_text="Topics").first.click()
    page.wait_for_load_state()
    assert page.url == (out / "tags" / "index.html").as_uri()
    page.close()

    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto((out / "index.html").as_uri())
    assert not page.locator("#search").is_visible()  # no dead search box without JavaScript
    assert page.locator("main li").count() == 4
    context.close()


def test_not_found_page_works_at_any_depth(served: tuple[str, Path], browser: Any) -> None:
    base, _ = served
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, foreign = watch(page, base)
    response = page.goto(base + "no/such/deep/page/")
    assert response is not None and response.status == 404
    own_status = [e for e in errors if "404" in e]  # Chromium reports the page's own 404
    assert page.locator("h1").inner_text() == "Page not found"
    # its stylesheet came from the site root, not from /letters/no/such/deep/page/
    colour = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert colour == "rgb(243, 239, 232)"
    page.locator("main a", has_text="the list of all issues").click()
    page.wait_for_load_state()
    assert page.url == base + "index.html"
    assert [e for e in errors if e not in own_status] == [] and foreign == []
