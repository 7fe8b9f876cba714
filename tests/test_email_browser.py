"""What readers get, in a real browser: the HTML part of real personalised messages.

A real send through the file transport (outbox/*.eml, read back with the stdlib email
package) to readers with a long address and name, a non-Latin name and a right-to-left name;
each message opened in Debian's headless Chromium (Playwright) at 320, 375 and 600 px, light
and dark (`prefers-color-scheme`), with its `<style>` block and without (what Gmail does with
a style block it ignores; images blocked as well in that case). Images are answered from
content/ for the archive's base URL; any other request fails the test (no tracking, nothing
fetched from elsewhere).

Screenshots of every case land in test-artifacts/email/ (git-ignored) for a person to look at.
Chromium comes from browser.py. Marked `real_clock`: Chromium does not start under libfaketime.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import ARTIFACTS as ALL_ARTIFACTS
from conftest import SAMPLE_TODAY, copy_sample, run_cli, serving

from newsletter.config import load_config
from newsletter.content.render import PreviewReader
from newsletter.store.store import open_store
from newsletter.web import preview

pytestmark = pytest.mark.real_clock

ARTIFACTS = ALL_ARTIFACTS / "email"
SLUG = "2026-08-handoffs-are-the-product"  # image, table, footnote, epigraph
BASE_URL = "https://example.com/newsletter/"
WIDTHS = (320, 375, 600)
PHONES = (320, 375)
READERS = {
    "long": (
        "maximilian.featherstonehaugh-worthington.customer-success"
        "@operations.very-long-department-name.example.co.uk",
        "Maximiliana-Konstantina Featherstonehaugh-Worthington-Smythe",
    ),
    "cjk": ("jingyi.chen@example.cn", "陈静怡"),
    "rtl": ("fatima@example.org", "فاطمة الزهراء"),
}
_STYLE_BLOCK = re.compile(r"<style\b.*?</style>", re.S | re.I)


@dataclass(frozen=True)
class Sent:
    name: str  # key in READERS
    email: str
    first_name: str
    html: str


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Sent]]:
    """(publication root, the HTML part each reader received), from one real send."""
    root = copy_sample(tmp_path_factory.mktemp("email") / "publication")
    with open_store(load_config(root)) as store:
        for address, name in READERS.values():
            store.subscribers.add(address, name, source="test", consent="test")
    # --now: the schedule is evaluated at the issue's own send time, never the real clock.
    result = run_cli(root, "send", "--due", "--now", "2026-08-04T09:00")
    assert result.code == 0, result.stderr
    by_address = {address: key for key, (address, _) in READERS.items()}
    received: dict[str, Sent] = {}
    for path in sorted((root / "outbox" / SLUG).glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        to = str(message["To"])
        key = next(k for a, k in by_address.items() if a in to)
        part = message.get_body(("html",))  # type: ignore[attr-defined]
        html = part.get_content()
        received[key] = Sent(key, READERS[key][0], READERS[key][1], html)
    assert set(received) == set(READERS)
    return root, received


# Everything the assertions need, measured in the page in one go.
MEASURE = """() => {
  const px = (el, prop) => parseFloat(getComputedStyle(el)[prop]);
  const visible = el => { const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && !el.closest('.preheader'); };
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (!visible(el)) continue;
    const r = el.getBoundingClientRect();
    if (r.right > innerWidth + 0.5 || r.left < -0.5)
      wide.push(`${el.tagName}.${el.className} ${Math.round(r.left)}..${Math.round(r.right)}`);
  }
  const sizes = sel => [...document.querySelectorAll(sel)].filter(visible)
    .map(el => px(el, 'fontSize'));
  // A footnote marker must not push its line apart: the paragraph is as tall without it.
  const sups = [...document.querySelectorAll('.content p sup')].map(sup => {
    const p = sup.closest('p'); const before = p.getBoundingClientRect().height;
    const copy = p.cloneNode(true); copy.querySelectorAll('sup').forEach(s => s.remove());
    p.after(copy); const after = copy.getBoundingClientRect().height; copy.remove();
    return Math.abs(before - after); });
  const colour = (el, prop) => getComputedStyle(el)[prop];
  const q = sel => document.querySelector(sel);
  return {
    scrollWidth: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
    wide,
    body: sizes('.content > p, .content > ul > li, .content > ol > li'),
    footer: sizes('.footer p, .footer li'),
    footnotes: sizes('.footnote p, .footnote li'),
    epigraphAuthor: sizes('.epigraph-author'),
    supGrowth: sups,
    inPageLinks: [...document.querySelectorAll('a[href^="#"]')].length,
    text: document.body.innerText,
    wrapper: !!document.querySelector('body [lang][dir]'),
    background: colour(q('.container'), 'backgroundColor'),
    paragraph: colour(q('.content > p'), 'color'),
    masthead: colour(q('.masthead-name'), 'color'),
    // the colour of every border that is drawn (a side of width 0 reports the text colour)
    borders: ['.content table', '.content th', '.content td', 'hr', 'pre', '.epigraph']
      .map(q).filter(Boolean).flatMap(el => ['Top', 'Right', 'Bottom', 'Left']
        .filter(side => px(el, `border${side}Width`) > 0)
        .map(side => [el.tagName, colour(el, `border${side}Color`)])),
    image: q('.content img') && colour(q('.content img'), 'backgroundColor'),
  };
}"""


def luminance(css: str) -> float:
    """Relative luminance (0 black .. 1 white) of an `rgb(...)`/`rgba(...)` colour."""
    values = [float(v) for v in re.findall(r"[\d.]+", css)[:3]]

    def channel(v: float) -> float:
        v /= 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in values)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def serve_images(
    root: Path, foreign: list[str], allow: str | None = None, *, blocked: bool = False
) -> Any:
    """A route handler: the archive's files from content/ (refused when `blocked`, as a
    client that blocks images does), requests under `allow` passed on, anything else
    refused and noted."""

    def handle(route: Any) -> None:
        url = route.request.url
        if allow is not None and url.startswith(allow):
            route.continue_()
            return
        if blocked and url.startswith(BASE_URL):
            route.abort()
            return
        if url.startswith(BASE_URL):
            local = root / "content" / url.removeprefix(BASE_URL)
            if local.is_file():
                route.fulfill(status=200, body=local.read_bytes(), content_type="image/png")
                return
        foreign.append(url)
        route.abort()

    return handle


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_real_messages_fit_every_phone(
    sent: tuple[Path, dict[str, Sent]], browser: Any, scheme: str
) -> None:
    root, received = sent
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for reader in received.values():
        for styles in ("styles", "gmail"):
            html = reader.html if styles == "styles" else _STYLE_BLOCK.sub("", reader.html)
            for width in WIDTHS:
                case = f"{reader.name}-{width}-{scheme}-{styles}"
                context = browser.new_context(
                    viewport={"width": width, "height": 800}, color_scheme=scheme
                )
                foreign: list[str] = []
                # Without <style>, images are blocked too: the narrowest the layout gets.
                context.route("**/*", serve_images(root, foreign, blocked=styles == "gmail"))
                page = context.new_page()
                page.set_content(html, wait_until="load", timeout=20_000)
                got = page.evaluate(MEASURE)
                page.screenshot(path=str(ARTIFACTS / f"{case}.png"), full_page=True)
                context.close()

                assert foreign == [], case
                assert got["scrollWidth"] <= width, case
                assert got["wide"] == [], case
                assert got["body"] and got["footer"] and got["footnotes"], case
                if width in PHONES:
                    assert min(got["body"]) >= 16, case
                smallest_body = min(got["body"])
                assert max(got["footer"]) < smallest_body, case
                assert max(got["footnotes"]) < smallest_body, case
                assert max(got["epigraphAuthor"]) < smallest_body, case
                assert got["supGrowth"] and max(got["supGrowth"]) < 1, case
                assert got["inPageLinks"] == 0, case  # footnotes work without anchors
                assert got["wrapper"], case  # lang and dir survive a client that drops <html>
                # the reader's own address and their unsubscribe address are printed in full
                assert reader.email in got["text"].replace("\n", ""), case
                assert "news+" in got["text"], case
                assert reader.first_name in got["text"], case
                if scheme == "dark" and styles == "styles":
                    assert luminance(got["background"]) < 0.05, case
                    assert luminance(got["paragraph"]) > 0.6, case
                    assert got["masthead"] != got["paragraph"], case  # keeps its accent
                    assert got["borders"], case
                    for tag, border in got["borders"]:
                        assert luminance(border) < 0.1, (case, tag, border)  # no glare
                    assert luminance(got["image"]) > 0.6, case  # charts sit on a light panel
    shots = sorted(ARTIFACTS.glob(f"*-{scheme}-*.png"))
    assert len(shots) >= len(READERS) * len(WIDTHS) * 2
    assert all(shot.stat().st_size > 5000 for shot in shots)


def test_right_to_left_name_is_isolated(sent: tuple[Path, dict[str, Sent]]) -> None:
    """An Arabic name in an English greeting keeps the comma after it (a <bdi> isolate)."""
    _, received = sent
    html = received["rtl"].html
    assert "<bdi>فاطمة الزهراء</bdi>," in html


@pytest.fixture
def preview_url(sent: tuple[Path, dict[str, Sent]]) -> Iterator[str]:
    root, _ = sent
    httpd = preview.make_server(load_config(root, environ={}), SLUG, 0, SAMPLE_TODAY)
    with serving(httpd) as url:
        yield f"{url}/"


def test_preview_page_shows_every_view_without_scrolling_sideways(
    sent: tuple[Path, dict[str, Sent]], preview_url: str, browser: Any
) -> None:
    root, _ = sent
    folder = ARTIFACTS.parent / "preview"
    folder.mkdir(parents=True, exist_ok=True)
    for width in (375, 1280):
        context = browser.new_context(viewport={"width": width, "height": 900})
        foreign: list[str] = []
        context.route("**/*", serve_images(root, foreign, allow=preview_url))
        page = context.new_page()
        page.goto(preview_url, wait_until="load", timeout=30_000)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        frames = {f.url.removeprefix(preview_url): f for f in page.frames if f != page.main_frame}
        assert set(frames) == {"email.html", "email-dark.html", "email-gmail.html"}
        for frame in frames.values():  # the long address is printed in every view
            assert PreviewReader().email in frame.evaluate("document.body.innerText").replace(
                "\n", ""
            )
        dark = frames["email-dark.html"].evaluate(
            "getComputedStyle(document.querySelector('.container')).backgroundColor"
        )
        assert luminance(dark) < 0.05
        assert frames["email-gmail.html"].evaluate("document.querySelectorAll('style').length") == 0
        page.screenshot(path=str(folder / f"preview-{width}.png"))
        context.close()
        assert foreign == []
    assert all((folder / f"preview-{w}.png").stat().st_size > 5000 for w in (375, 1280))
