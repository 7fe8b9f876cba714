"""The archive in a real browser: Debian's headless Chromium driven by Playwright (browser.py).

The site is served by http.server on 127.0.0.1 under the sub-path of its base_url
(/letters/), and opened from file://. Screenshots at 375 px and 1280 px go to
test-artifacts/archive/ (git-ignored) for a person to look at. Every page also passes the
W3C Nu Html Checker (vnu-jar) and axe-core (no serious or critical violations), installed
from npm by `.ci/run` into .ci/tools/. Marked `real_clock`: Chromium does not start under
libfaketime. In CI (CI=true) a missing browser or checker fails instead of skipping.
"""

from __future__ import annotations

import datetime as dt
import functools
import shutil
import subprocess
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from browser import ARTIFACTS as ALL_ARTIFACTS
from browser import watch
from conftest import copy_sample, missing, serving

from newsletter.archive.build import build_archive
from newsletter.config import load_config
from newsletter.content.issues import load_issues

pytestmark = pytest.mark.real_clock

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = ALL_ARTIFACTS / "archive"
TOOLS = REPO / ".ci" / "tools" / "node_modules"  # npm install --prefix .ci/tools (.ci/run)
VNU = TOOLS / "vnu-jar" / "build" / "dist" / "vnu.jar"
AXE = TOOLS / "axe-core" / "axe.min.js"
TODAY = dt.date(2026, 11, 25)


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


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URL of the archive under /letters/, its folder), served on 127.0.0.1. Built once for
    the module: the tests only read the site (screenshots go to test-artifacts/)."""
    folder = tmp_path_factory.mktemp("archive_browser")
    publication = copy_sample(folder / "publication")
    config = load_config(
        publication, environ={"NEWSLETTER_BASE_URL": "https://news.example.org/letters/"}
    )
    docroot = folder / "docroot"
    out = docroot / "letters"
    build_archive(config, load_issues(config, TODAY), out, today=TODAY)
    handler_class = type("Handler", (QuietHandler,), {"not_found_page": out / "404.html"})
    handler = functools.partial(handler_class, directory=str(docroot))
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        yield f"{url}/letters/", out


def on_site(base: str) -> Callable[[str], bool]:
    """For `watch`: the archive's own URLs."""
    return lambda url: url.startswith(base)


def test_browse_follow_search_and_screenshot(served: tuple[str, Path], browser: Any) -> None:
    base, _ = served
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (375, 1280):
        page = browser.new_page(viewport={"width": width, "height": 900})
        errors, foreign = watch(page, on_site(base))
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
        requested: list[str] = []
        page.on("request", lambda r, seen=requested: seen.append(r.url))
        page.wait_for_timeout(200)  # a reader who only browses never loads the index
        assert not [u for u in requested if u.endswith(("search-index.js", "lunr.min.js"))]
        # full text, ranked: the issue with the word in its title first
        page.fill("#search-input", "listening")
        results = page.locator("#search-results li")
        results.first.wait_for()
        assert results.count() == 2
        assert "Listening Rounds" in results.first.locator("h2").inner_text()
        assert page.locator("#search-status").inner_text() == "2 issues found"
        # a word only in one body: that issue, with the passage and the word marked
        page.fill("#search-input", "pallet")
        assert results.count() == 1
        assert results.first.locator("h2").inner_text() == "Service Promises Between Teams"
        passage = results.first.locator(".passage")
        assert "requests lacked the pallet count" in passage.inner_text()
        assert passage.locator("mark").all_inner_texts() == ["pallet"]
        # stemmed ("handoff" finds "handoffs"), every word required, the last one a prefix
        page.fill("#search-input", "handoff recei")
        assert results.count() >= 1
        assert results.first.locator("h2").inner_text() == "Handoffs Are the Product"
        page.fill("#search-input", "handoff zebra")
        assert results.count() == 0
        assert page.locator("#search-status").inner_text() == "0 issues found"
        page.fill("#search-input", "pallet")
        page.screenshot(path=str(ARTIFACTS / f"search-{width}.png"))
        assert base + "search-index.js" in requested and base + "lunr.min.js" in requested
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
    errors, foreign = watch(page, on_site(base))
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


def test_every_page_passes_the_nu_html_checker(served: tuple[str, Path]) -> None:
    _, out = served
    java = shutil.which("java")
    if java is None or not VNU.exists():
        missing(f"needs java and {VNU} (`npm install --prefix .ci/tools vnu-jar`)")
    result = subprocess.run(
        [str(java), "-jar", str(VNU), "--errors-only", "--skip-non-html", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_no_serious_accessibility_violations(served: tuple[str, Path], browser: Any) -> None:
    base, out = served
    if not AXE.exists():
        missing(f"needs {AXE} (`npm install --prefix .ci/tools axe-core`)")
    pages = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
    assert len(pages) >= 10
    found: dict[str, list[str]] = {}
    for scheme in ("light", "dark"):  # contrast is checked in both colour schemes
        context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
        page = context.new_page()
        for path in pages:
            page.goto(base + path)
            if path == "index.html":
                page.fill("#search-input", "pallet")  # search results are checked too
                page.locator("#search-results li").first.wait_for()
            page.add_script_tag(path=str(AXE))
            violations = page.evaluate(
                "async () => (await axe.run(document)).violations"
                ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
                ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
            )
            if violations:
                found[f"{scheme} {path}"] = violations
        context.close()
    assert found == {}
