"""The static archive, checked by parsing its output: pages, links, feed, sitemap, safety."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from conftest import run_cli

from newsletter.archive.build import (
    CACHE_NAME,
    MANIFEST_NAME,
    ArchiveError,
    build_archive,
    published_issues,
)
from newsletter.config import load_config
from newsletter.content.issues import load_issues
from newsletter.content.render import render_issue
from newsletter.errors import TemplateError
from newsletter.settings import Config
from newsletter.store.store import open_store

TODAY = dt.date(2026, 11, 25)
ATOM = "{http://www.w3.org/2005/Atom}"
SITEMAP = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
SENT_SAMPLE = [
    "2026-07-your-first-customer-sits-next-to-you",
    "2026-08-handoffs-are-the-product",
    "2026-09-service-promises-between-teams",
    "2026-10-listening-rounds",
]
DRAFT_SAMPLE = "2026-12-thanks-that-travel-upstream"


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}  # fmt: skip


class Page(HTMLParser):
    """What the tests need from one HTML page."""

    def __init__(self, path: Path) -> None:
        super().__init__(convert_charrefs=True)
        self.path = path
        self.urls: list[tuple[str, str, dict[str, str | None]]] = []  # (tag, url, attrs)
        self.headings: list[int] = []
        self.heading_text: list[str] = []
        self.ids: set[str] = set()
        self.lang: str | None = None
        self.base: str | None = None
        self.images_without_alt: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script = False
        self.event_handlers: list[str] = []
        self.forms: list[dict[str, str | None]] = []
        self.inputs: list[dict[str, str | None]] = []
        self._in_script = False
        self._in_heading = False
        self.duplicate_ids: list[str] = []
        self.unbalanced: list[str] = []  # end tags that do not close the open element
        self._open: list[str] = []
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag: str, attr_list: list[tuple[str, str | None]]) -> None:
        attrs = dict(attr_list)
        if tag == "html":
            self.lang = attrs.get("lang")
        if tag == "base":
            self.base = attrs.get("href")
        if attrs.get("id"):
            if attrs["id"] in self.ids:
                self.duplicate_ids.append(str(attrs["id"]))
            self.ids.add(str(attrs["id"]))
        if tag not in VOID:
            self._open.append(tag)
        for name in ("href", "src"):
            if attrs.get(name) is not None:
                self.urls.append((tag, str(attrs[name]), attrs))
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.headings.append(int(tag[1]))
            self.heading_text.append("")
            self._in_heading = True
        if tag == "img" and not attrs.get("alt"):
            self.images_without_alt.append(str(attrs.get("src")))
        if tag == "script":
            self.scripts.append(attrs)
            self._in_script = True
        if tag == "form":
            self.forms.append(attrs)
        if tag == "input":
            self.inputs.append(attrs)
        self.event_handlers += [name for name in attrs if name.startswith("on")]

    def handle_endtag(self, tag: str) -> None:
        if not self._open or self._open.pop() != tag:
            self.unbalanced.append(f"</{tag}> at line {self.getpos()[0]}")
        if tag == "script":
            self._in_script = False
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._in_heading = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script = True
        if self._in_heading:
            self.heading_text[-1] += data


def build(root: Path, out: Path | None = None, **kwargs: object) -> tuple[Config, Path]:
    config = load_config(root)
    out = out or root / "site"
    kwargs.setdefault("today", TODAY)
    build_archive(config, load_issues(config, TODAY), out, **kwargs)  # type: ignore[arg-type]
    return config, out


def pages(out: Path) -> dict[str, Page]:
    return {p.relative_to(out).as_posix(): Page(p) for p in sorted(out.rglob("*.html"))}


def broken_links(out: Path, base_url: str) -> list[str]:
    """Every relative href/src of every page that does not resolve to a file in `out`, and
    every link to the site by absolute URL except the canonical one."""
    problems: list[str] = []
    for name, page in pages(out).items():
        here = out if page.base else page.path.parent  # 404.html: relative to the site root
        for tag, url, attrs in page.urls:
            if tag == "base":
                continue
            parts = urlsplit(url)
            if parts.scheme or parts.netloc:
                if url.startswith(base_url) and attrs.get("rel") != "canonical":
                    problems.append(f"{name}: absolute link to the site {url}")
                continue
            if not parts.path:
                if parts.fragment and parts.fragment not in page.ids:
                    problems.append(f"{name}: no id for {url}")
                continue
            target = (here / unquote(parts.path)).resolve()
            if not target.is_file() or not target.is_relative_to(out.resolve()):
                problems.append(f"{name}: {tag} {url} -> missing {target}")
    return problems


def main_part(html: str) -> str:
    return html[html.index("<main") : html.index("</main>")]


def add_issue(root: Path, name: str, **meta: object) -> None:
    body = str(meta.pop("body", "A paragraph.\n"))
    lines = ["---", *(f"{k}: {json.dumps(v)}" for k, v in meta.items()), "---"]
    (root / "content" / f"{name}.md").write_text("\n".join(lines) + "\n" + body)


# -- which issues appear --------------------------------------------------------------------


def test_ready_past_issues_have_pages_drafts_and_future_ones_do_not(publication: Path) -> None:
    add_issue(publication, "2027-03-future", title="Not yet", date="2027-03-02", status="ready")
    _, out = build(publication)
    for slug in SENT_SAMPLE:
        page = Page(out / slug / "index.html")
        assert page.heading_text[0].strip(), slug
    assert not (out / DRAFT_SAMPLE).exists()
    assert not (out / "2027-03-future").exists()
    index = (out / "index.html").read_text()
    assert "Thanks That Travel Upstream" not in index and "Not yet" not in index
    assert "Thanks That Travel Upstream" not in (out / "search-index.js").read_text()


def test_a_send_log_adds_early_sends_and_never_drafts(publication: Path) -> None:
    add_issue(publication, "2027-03-early", title="Sent early", date="2027-03-02", status="ready")
    add_issue(publication, "2027-04-future", title="Not yet", date="2027-04-06", status="ready")
    config = load_config(publication)
    with open_store(config) as store:
        store.sends.start_send(SENT_SAMPLE[3])
        store.sends.start_send("2027-03-early")  # sent by hand before its date
        store.sends.start_send(DRAFT_SAMPLE)  # a send log entry does not publish a draft
    _, out = build(publication)
    published = sorted(p.name for p in out.iterdir() if (p / "index.html").is_file())
    # Past ready issues without a record were sent before the send log existed: they stay.
    expected = [*SENT_SAMPLE, "2027-03-early", "privacy", "subscribe", "tags"]
    assert published == sorted(expected)
    feed = ET.parse(out / "feed.xml").getroot()
    ids = [e.findtext(f"{ATOM}id") for e in feed.iter(f"{ATOM}entry")]
    assert ids[:2] == [
        config.archive_url("2027-03-early/"),
        config.archive_url(f"{SENT_SAMPLE[3]}/"),
    ]


def test_an_empty_send_log_publishes_ready_and_dated(publication: Path) -> None:
    config = load_config(publication)
    issues = load_issues(config, TODAY)
    with open_store(config) as store:  # a real database, nothing sent yet
        store.subscribers.add("reader@example.org", source="test", consent="test")
        chosen = published_issues(issues, store.sends.sent_slugs(), dt.date(2026, 8, 31))
    assert [i.slug for i in chosen] == [SENT_SAMPLE[1], SENT_SAMPLE[0]]


# -- the output parses and every link works ------------------------------------------------


def test_every_internal_link_resolves_and_pages_are_accessible(publication: Path) -> None:
    config, out = build(publication)
    assert broken_links(out, config.base_url) == []
    found = pages(out)
    assert {"index.html", "404.html", "tags/index.html", "subscribe/index.html"} <= set(found)
    for name, page in found.items():
        assert page.lang == "en", name
        assert page.headings and page.headings[0] == 1 and page.headings.count(1) == 1, name
        for before, after in zip(page.headings, page.headings[1:], strict=False):
            assert after <= before + 1, f"{name}: heading h{before} then h{after}"
        assert page.images_without_alt == [], name
        assert page.unbalanced == [] and page._open == [], name  # every element closed
        assert page.duplicate_ids == [], name
        assert not page.inline_script and not page.event_handlers, name
        for script in page.scripts:  # only our own files, no third-party scripts
            assert script.get("src") in ("lunr.min.js", "search-index.js", "search.js"), name
        for _, url, attrs in page.urls:
            if attrs.get("rel") == "stylesheet" or url.endswith((".js", ".css")):
                assert not urlsplit(url).netloc, f"{name}: third-party resource {url}"
    # the images the issues use are published at their content/ paths
    assert (out / "images" / "service-chain.png").read_bytes() == (
        publication / "content" / "images" / "service-chain.png"
    ).read_bytes()


def test_index_groups_by_year_newest_first_with_number_date_and_summary(
    publication: Path,
) -> None:
    add_issue(publication, "2025-12-older", title="An Older One", date="2025-12-02",
              status="ready", summary="From last year.")  # fmt: skip
    _, out = build(publication)
    index = Page(out / "index.html")
    assert index.heading_text[:3] == [
        "All issues",
        "2026",
        "Listening Rounds: Go Where the Work Is",
    ]
    assert "2025" in index.heading_text
    assert "Recent issues" not in index.heading_text  # the list itself; no aside repeating it
    text = (out / "index.html").read_text()
    assert text.index('id="year-2026"') < text.index('id="year-2025"')
    order = [text.index(f'href="{slug}/index.html"') for slug in reversed(SENT_SAMPLE)]
    assert order == sorted(order)
    assert "From last year." in text and "No.&nbsp;1" in text
    assert '<time datetime="2026-10-06">6 October 2026</time>' in text


def test_recent_issues_on_every_page(publication: Path) -> None:
    for n in range(14):
        add_issue(publication, f"2024-{n % 12 + 1:02d}-old-{n}", title=f"Old {n}",
                  date=f"{2023 + n // 12}-{n % 12 + 1:02d}-05", status="ready")  # fmt: skip
    _, out = build(publication)
    for name, page in pages(out).items():
        recent = [u for tag, u, a in page.urls if "index.html" in u and tag == "a"]
        assert recent, name
        html = page.path.read_text()
        if name == "index.html":  # the index lists them all: no aside there
            assert 'id="recent-heading"' not in html and 'class="layout single"' in html
            continue
        aside = html[html.index('id="recent-heading"') : html.index("</aside>")]
        assert aside.count("<li>") == 12, name
        assert "Listening Rounds" in aside and "Old 0<" not in aside


def test_feed_is_valid_atom(publication: Path) -> None:
    config, out = build(publication)
    feed = ET.parse(out / "feed.xml").getroot()
    assert feed.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated"):
        assert (feed.findtext(f"{ATOM}{required}") or "").strip(), required
    assert feed.find(f"{ATOM}author/{ATOM}name") is not None
    self_link = [x for x in feed.findall(f"{ATOM}link") if x.get("rel") == "self"]
    assert self_link and self_link[0].get("href") == config.archive_url("feed.xml")
    dt.datetime.fromisoformat(feed.findtext(f"{ATOM}updated") or "")
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == len(SENT_SAMPLE)
    for entry, slug in zip(entries, reversed(SENT_SAMPLE), strict=True):
        assert entry.findtext(f"{ATOM}id") == config.archive_url(f"{slug}/")
        assert entry.findtext(f"{ATOM}title")
        updated = dt.datetime.fromisoformat(entry.findtext(f"{ATOM}updated") or "")
        assert updated.tzinfo is not None
        link = entry.find(f"{ATOM}link")
        assert link is not None and link.get("href") == config.archive_url(f"{slug}/")
        content = entry.find(f"{ATOM}content")
        assert content is not None and content.get("type") == "html"
        assert "<p>" in (content.text or "") and "<script" not in (content.text or "")
    # absolute URLs inside the feed's content
    first = entries[-1].find(f"{ATOM}content").text or ""  # type: ignore[union-attr]
    assert f'src="{config.archive_url("images/service-chain.png")}"' in first


def test_sitemap_lists_every_issue_by_absolute_url(publication: Path) -> None:
    config, out = build(publication)
    root = ET.parse(out / "sitemap.xml").getroot()
    locs = [x.text for x in root.iter(f"{SITEMAP}loc")]
    for slug in SENT_SAMPLE:
        assert config.archive_url(f"{slug}/") in locs
    assert config.base_url in locs and all(str(x).startswith(config.base_url) for x in locs)


def test_issue_page_has_no_personal_data_and_share_links(publication: Path) -> None:
    config, out = build(publication)
    html = (out / SENT_SAMPLE[1] / "index.html").read_text()
    for personal in ("NLSLOT", "reader@example.com", "preview", "unsubscribe", "Hi there"):
        assert personal not in html
    page = Page(out / SENT_SAMPLE[1] / "index.html")
    mailto = [u for _, u, _ in page.urls if u.startswith("mailto:")]
    assert mailto and "Handoffs%20Are%20the%20Product" in mailto[0]
    assert "example.com%2Fnewsletter%2F2026-08-handoffs-are-the-product%2F" in mailto[0]
    share = [i for i in page.inputs if i.get("id") == "share-url"]
    assert share[0]["value"] == config.archive_url(f"{SENT_SAMPLE[1]}/")
    canonical = [u for _, u, a in page.urls if a.get("rel") == "canonical"]
    assert canonical == [config.archive_url(f"{SENT_SAMPLE[1]}/")]
    # footnotes, tables and images survive sanitising
    assert (
        'href="#fn:1"' in html and "<table>" in html and 'src="../images/handoff-wait.png"' in html
    )
    assert 'href="../2026-07-your-first-customer-sits-next-to-you/index.html"' in html


def test_tag_pages_list_their_issues(publication: Path) -> None:
    _, out = build(publication)
    teams = main_part((out / "tags" / "teams" / "index.html").read_text())
    assert "Service Promises Between Teams" in teams and "Your First Customer" in teams
    assert "Handoffs Are the Product" not in teams
    assert 'teams</a> <span class="meta">(2 issues)' in (out / "tags" / "index.html").read_text()


def test_subscribe_form_posts_to_the_configured_url(publication: Path) -> None:
    config = load_config(
        publication,
        environ={"NEWSLETTER_ARCHIVE__SUBSCRIBE_ACTION": "https://lists.example.org/join"},
    )
    out = publication / "site"
    build_archive(config, load_issues(config, TODAY), out, today=TODAY)
    page = Page(out / "subscribe" / "index.html")
    assert page.forms == [
        {"class": "subscribe", "method": "post", "action": "https://lists.example.org/join"}
    ]
    names = {i.get("name"): i for i in page.inputs}
    assert names["email"]["type"] == "email" and "required" in names["email"]
    assert "required" not in names["first_name"]
    assert names["website"]["tabindex"] == "-1"  # the honeypot

    config = load_config(
        publication, environ={"NEWSLETTER_WEB__PUBLIC_URL": "https://news.example.org/"}
    )
    build_archive(config, load_issues(config, TODAY), out, today=TODAY)
    assert (
        Page(out / "subscribe" / "index.html").forms[0]["action"]
        == "https://news.example.org/subscribe"
    )

    config = load_config(publication)
    build_archive(config, load_issues(config, TODAY), out, today=TODAY)
    page = Page(out / "subscribe" / "index.html")
    assert page.forms == [] and any(
        u.startswith("mailto:news@example.com") for _, u, _ in page.urls
    )


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_colours_meet_wcag_aa_contrast_in_light_and_dark(publication: Path) -> None:
    css = (publication / "templates" / "archive" / "style.css").read_text()
    blocks = re.findall(r":root \{([^}]*)\}", css)
    assert len(blocks) == 2  # light, then the prefers-color-scheme: dark override
    for block in blocks:
        colours = dict(re.findall(r"--([a-z]+): (#[0-9a-f]{6})", block))
        for text in ("ink", "heading", "muted", "link", "accent"):
            for background in ("page", "paper", "tint"):
                ratio = contrast(colours[text], colours[background])
                assert ratio >= 4.5, f"--{text} on --{background}: {ratio:.2f}"


# -- safety ---------------------------------------------------------------------------------

HOSTILE_BODY = """Hello.

<script>alert("x")</script>
<img src="images/service-chain.png" alt="chain" onerror="alert(1)">
<a href="javascript:alert(1)">click</a> <a href="JaVaScRiPt&#58;alert(2)">again</a>
[md link](javascript:alert(3)) <iframe src="https://evil.example/"></iframe>
<p style="position:fixed" onclick="steal()">styled</p>

| a | b |
|:--|--:|
| 1 | 2 |

Note[^n].

```python
print("code")
```

A special paragraph.
{: .note }

[^n]: The footnote.
"""


def test_sanitiser_strips_scripts_handlers_and_javascript_links(publication: Path) -> None:
    add_issue(publication, "2026-06-hostile", title="Hostile", date="2026-06-02", status="ready",
              body=HOSTILE_BODY)  # fmt: skip
    _, out = build(publication)
    html = (out / "2026-06-hostile" / "index.html").read_text()
    page = Page(out / "2026-06-hostile" / "index.html")
    assert page.scripts == [] and page.event_handlers == []
    assert "javascript" not in html.lower() and "<iframe" not in html and "alert" not in html
    assert "position" not in html
    assert '<td style="text-align:left">1</td>' in html.replace(';"', '"')
    assert '<code class="language-python">' in html and 'class="note"' in html
    assert 'class="footnote"' in html and 'alt="chain"' in html
    feed = (out / "feed.xml").read_text()
    assert "alert" not in feed and "javascript" not in feed.lower()


def test_hostile_slug_never_writes_outside(publication: Path, tmp_path: Path) -> None:
    config = load_config(publication)
    issues = load_issues(config, TODAY)
    out = tmp_path / "deep" / "site"
    for slug in ("../../escaped", "/tmp/abs", "tags", "a/b", "..", ""):
        hostile = [dataclasses.replace(issues[0], slug=slug), *issues[1:]]
        with pytest.raises(ArchiveError) as caught:
            build_archive(config, hostile, out, today=TODAY)
        assert "slug" in str(caught.value)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep" / "escaped").exists()
    assert not out.exists() or not any(out.iterdir())


def test_planted_symlink_and_manifest_cannot_reach_outside(
    publication: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    config = load_config(publication)
    out = tmp_path / "site"
    out.mkdir()
    (out / SENT_SAMPLE[0]).symlink_to(outside, target_is_directory=True)
    # Not an archive folder (no manifest): refused, and with --force the symlink still is.
    with pytest.raises(ArchiveError, match="not empty"):
        build_archive(config, load_issues(config, TODAY), out, today=TODAY)
    with pytest.raises(ArchiveError, match="outside"):
        build_archive(config, load_issues(config, TODAY), out, today=TODAY, force=True)
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    (out / SENT_SAMPLE[0]).unlink()
    manifest = {"files": {"../outside/keep.txt": {"key": "x", "sha": "y"}}}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    build_archive(config, load_issues(config, TODAY), out, today=TODAY)
    assert (outside / "keep.txt").read_text() == "mine"


def test_content_file_clashing_with_a_page_is_an_error(publication: Path) -> None:
    (publication / "content" / "index.html").write_text("<p>mine</p>")
    with pytest.raises(ArchiveError, match=r"index\.html"):
        build(publication)


def test_output_inside_content_is_refused(publication: Path) -> None:
    with pytest.raises(ArchiveError, match="content"):
        build(publication, publication / "content" / "site")


# -- incremental builds ---------------------------------------------------------------------


def rebuild(root: Path, out: Path) -> tuple[set[str], set[str], tuple[str, ...]]:
    config = load_config(root)
    report = build_archive(config, load_issues(config, TODAY), out, today=TODAY)
    return set(report.written), set(report.removed), report.rendered


def edit(root: Path, slug: str, old: str, new: str) -> None:
    path = root / "content" / f"{slug}.md"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_second_build_writes_nothing_and_renders_no_markdown(publication: Path) -> None:
    _, out = build(publication)
    (out / "CNAME").write_text("news.example.com\n")  # not ours: never touched
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert rebuild(publication, out) == (set(), set(), ())
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert before == after


def test_body_edit_rewrites_only_that_page_and_the_feed(publication: Path) -> None:
    _, out = build(publication)
    edit(publication, SENT_SAMPLE[0], "Here is the idea", "Here is the one idea")
    written, removed, rendered = rebuild(publication, out)
    assert rendered == (SENT_SAMPLE[0],)
    # the search index holds every body's text now
    assert written == {f"{SENT_SAMPLE[0]}/index.html", "feed.xml", "search-index.js"}
    assert removed == set()
    assert "Here is the one idea" in (out / SENT_SAMPLE[0] / "index.html").read_text()


def test_title_edit_outside_recent_set_rewrites_lists_not_other_issues(publication: Path) -> None:
    for n in range(14):
        add_issue(publication, f"2025-old-{n:02d}", title=f"Old {n}", tags=["old", f"t{n}"],
                  date=(dt.date(2025, 1, 7) + dt.timedelta(days=14 * n)).isoformat(),
                  status="ready")  # fmt: skip
    _, out = build(publication)
    edit(publication, "2025-old-03", "Old 3", "Renamed 3")
    written, _, rendered = rebuild(publication, out)
    assert rendered == ()  # the body did not change
    assert written == {
        "2025-old-03/index.html",  # its own page
        "2025-old-02/index.html",  # its neighbours name it in their pager
        "2025-old-04/index.html",
        "index.html",
        "tags/old/index.html",
        "tags/t3/index.html",
        "feed.xml",
        "search-index.js",
    }
    # a title inside the 12 most recent changes the list on every page
    edit(publication, SENT_SAMPLE[3], "Listening Rounds", "Listening Walks")
    written, _, _ = rebuild(publication, out)
    assert {f"{s}/index.html" for s in SENT_SAMPLE} | {"2025-old-00/index.html"} <= written


def test_unpublishing_removes_its_files_and_empty_folders(publication: Path) -> None:
    _, out = build(publication)
    edit(publication, SENT_SAMPLE[2], "status: ready", "status: draft")
    written, removed, _ = rebuild(publication, out)
    assert f"{SENT_SAMPLE[2]}/index.html" in removed and "tags/agreements/index.html" in removed
    assert not (out / SENT_SAMPLE[2]).exists() and not (out / "tags" / "agreements").exists()
    assert "index.html" in written


def test_deleted_or_interrupted_output_is_repaired(publication: Path) -> None:
    config, out = build(publication)
    (out / SENT_SAMPLE[1] / "index.html").unlink()
    written, _, _ = rebuild(publication, out)
    assert written == {f"{SENT_SAMPLE[1]}/index.html"}
    # A build cut short leaves no manifest: the next one compares bytes and rewrites nothing
    # that is already right.
    (out / MANIFEST_NAME).unlink()
    assert rebuild(publication, out)[0] == set()
    assert broken_links(out, config.base_url) == []


def test_corrupt_manifest_and_cache_are_rebuilt_not_fatal(publication: Path) -> None:
    _, out = build(publication)
    (out / MANIFEST_NAME).write_text("{not json")
    (out / CACHE_NAME).write_text('{"bodies": [1, 2]}')
    written, _, rendered = rebuild(publication, out)
    assert written == set() and sorted(rendered) == SENT_SAMPLE
    assert rebuild(publication, out) == (set(), set(), ())


def test_bodies_from_a_caller_refresh_the_cache(publication: Path) -> None:
    config, out = build(publication)
    edit(publication, SENT_SAMPLE[2], "We write careful promises", "We write promises")
    issues = load_issues(config, TODAY)
    rendered = {i.slug: render_issue(config, i, issues) for i in issues}
    report = build_archive(config, issues, out, today=TODAY, rendered=rendered)
    assert report.rendered == () and f"{SENT_SAMPLE[2]}/index.html" in report.written
    assert rebuild(publication, out) == (set(), set(), ())  # no Markdown: the cache has it


def test_build_cut_short_is_repaired_by_the_next(publication: Path, tmp_path: Path) -> None:
    """A build that dies halfway must not leave a manifest vouching for files it changed."""
    _, out = build(publication)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.html")}
    edit(publication, SENT_SAMPLE[0], "Your First Customer", "Your Very First Customer")
    tag_page = publication / "templates" / "archive" / "tag.html"
    good = tag_page.read_text()
    tag_page.write_text(good.replace("{% endblock %}", "{% endblok %}", 1))
    with pytest.raises(TemplateError):
        rebuild(publication, out)  # index and issue pages are written before the tag pages
    assert "Your Very First Customer" in (out / "index.html").read_text()
    edit(publication, SENT_SAMPLE[0], "Your Very First Customer", "Your First Customer")
    tag_page.write_text(good)
    written, _, _ = rebuild(publication, out)
    assert "index.html" in written
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.html")}
    assert after == before


def test_image_change_rerenders_the_issue_that_links_it(publication: Path) -> None:
    _, out = build(publication)
    image = publication / "content" / "images" / "service-chain.png"
    image.write_bytes(image.read_bytes() + b"\0")
    written, _, rendered = rebuild(publication, out)
    assert rendered == (SENT_SAMPLE[0],)
    assert "images/service-chain.png" in written


def test_parallel_markdown_gives_the_same_site(publication: Path, tmp_path: Path) -> None:
    _, serial = build(publication, tmp_path / "serial", workers=1)
    _, parallel = build(publication, tmp_path / "parallel", workers=2)
    files = sorted(p.relative_to(serial) for p in serial.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(parallel) for p in parallel.rglob("*") if p.is_file())
    for rel in files:
        assert (serial / rel).read_bytes() == (parallel / rel).read_bytes(), rel


def test_already_rendered_issues_skip_markdown_and_give_the_same_site(
    publication: Path, tmp_path: Path
) -> None:
    config = load_config(publication)
    issues = load_issues(config, TODAY)
    rendered = {i.slug: render_issue(config, i, issues) for i in issues}
    report = build_archive(config, issues, tmp_path / "a", today=TODAY, rendered=rendered)
    assert report.rendered == () and len(report.published) == 4
    _, plain = build(publication, tmp_path / "b")
    for page in ("index.html", f"{SENT_SAMPLE[1]}/index.html", "feed.xml"):
        assert (tmp_path / "a" / page).read_bytes() == (plain / page).read_bytes(), page


# -- the command ----------------------------------------------------------------------------


def test_archive_command_default_and_out(publication: Path, tmp_path: Path) -> None:
    result = run_cli(publication, "archive")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("archive: ") and "files written" in result.stdout
    assert (publication / "build" / "archive" / "index.html").is_file()
    out = tmp_path / "elsewhere"
    result = run_cli(publication, "archive", "--out", str(out))
    assert result.code == 0 and (out / "feed.xml").is_file()


def test_archive_command_reports_a_clash_in_one_line(publication: Path) -> None:
    (publication / "content" / "feed.xml").write_text("<x/>")
    result = run_cli(publication, "archive")
    assert result.code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "feed.xml" in result.stderr
