"""The archive's search index (lunr), social-card tags and the subscribe-by-mail page."""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import lxml.html
from lunr import lunr
from lunr.index import Index
from lunr.lunr import get_default_builder

from newsletter.archive.build import build_archive
from newsletter.archive.search import FIELDS, SearchDoc, build_index, plain_text
from newsletter.config import load_config
from newsletter.content.issues import load_issues

TODAY = dt.date(2026, 11, 25)
SEPTEMBER = "2026-09-service-promises-between-teams/index.html"
AUGUST = "2026-08-handoffs-are-the-product"


def build(root: Path, environ: dict[str, str] | None = None) -> tuple[Path, set[str]]:
    config = load_config(root, environ=environ or {})
    out = root / "site"
    report = build_archive(config, load_issues(config, TODAY), out, today=TODAY)
    return out, set(report.written)


def search_data(out: Path) -> dict[str, Any]:
    script = (out / "search-index.js").read_text(encoding="utf-8")
    prefix = "window.NEWSLETTER_SEARCH = "
    assert script.startswith(prefix) and script.endswith(";\n")
    data: dict[str, Any] = json.loads(script[len(prefix) : -2])
    return data


def test_the_index_covers_every_body_and_ranks_like_lunr_js(publication: Path) -> None:
    out, _ = build(publication)
    data = search_data(out)
    assert data["index"]["version"] == "2.3.9"  # the lunr.js version vendored beside it
    assert data["index"]["pipeline"] == ["stemmer"]  # the search pipeline, lunr.js's own stemmer
    assert len(data["docs"]) == 4
    september = data["docs"][SEPTEMBER]
    assert september["t"] == "Service Promises Between Teams" and september["n"] == 3
    assert "half of dispatch’s requests lacked the pallet count" in september["x"]
    index = Index.load(data["index"])
    assert [r["ref"] for r in index.search("pallet")] == [SEPTEMBER]  # only in that body
    ranked = [r["ref"] for r in index.search("listening")]
    assert ranked[0] == "2026-10-listening-rounds/index.html" and len(ranked) == 2
    library = (resources.files("newsletter") / "vendor" / "lunr.min.js").read_bytes()
    assert (out / "lunr.min.js").read_bytes() == library
    assert b"lunr - http://lunrjs.com" in library[:200] and b"2.3.9" in library[:200]


def test_the_index_is_built_again_only_when_searchable_text_changes(publication: Path) -> None:
    out, _ = build(publication)
    before = (out / "search-index.js").stat().st_mtime_ns
    _, written = build(publication)
    assert "search-index.js" not in written
    assert (out / "search-index.js").stat().st_mtime_ns == before


def test_an_index_built_from_cached_terms_is_the_one_a_full_build_writes(
    publication: Path, tmp_path: Path
) -> None:
    """Rebuilt after one issue changed, from the other bodies' cached terms: byte for byte
    the index a build into an empty folder writes, and it finds the new word."""
    out, _ = build(publication)
    issue = publication / "content" / "2026-08-handoffs-are-the-product.md"
    text = issue.read_text(encoding="utf-8")
    issue.write_text(text.replace("\n\n", "\n\nZeppelins carry the handoffs.\n\n", 1))
    _, written = build(publication)
    assert "search-index.js" in written
    config = load_config(publication, environ={})
    fresh = tmp_path / "fresh"
    build_archive(config, load_issues(config, TODAY), fresh, today=TODAY)
    index_js = (out / "search-index.js").read_bytes()
    assert index_js == (fresh / "search-index.js").read_bytes()
    index = Index.load(search_data(out)["index"])
    assert [r["ref"] for r in index.search("zeppelin")] == [f"{AUGUST}/index.html"]


def test_plain_text_keeps_words_apart_and_punctuation_close() -> None:
    fragment = (
        "<h2>Where</h2><p>A <strong>bold</strong>: move&amp;more<br>next</p><ul><li>x</li></ul>"
    )
    assert plain_text(fragment) == "Where A bold: move&more next x"


def head_meta(page: Path) -> dict[str, str]:
    root = lxml.html.parse(str(page)).getroot()
    found = {}
    for meta in root.iter("meta"):
        key = meta.get("property") or meta.get("name")
        if key and (key.startswith(("og:", "twitter:", "article:"))):
            found.setdefault(key, meta.get("content"))
    return found


def test_issue_pages_have_open_graph_and_twitter_cards(publication: Path) -> None:
    out, _ = build(publication)
    meta = head_meta(out / AUGUST / "index.html")
    url = f"https://example.com/newsletter/{AUGUST}/"
    assert meta["og:type"] == "article" and meta["og:url"] == url
    assert meta["og:title"] == "Handoffs Are the Product · Leader Notes No. 2"
    assert meta["og:description"].startswith("Most customer waiting happens between teams")
    assert meta["og:site_name"] == "Leader Notes"
    assert meta["og:image"] == "https://example.com/newsletter/images/handoff-wait.png"
    assert meta["og:image:alt"].startswith("Bar chart, March to July")
    assert meta["twitter:card"] == "summary_large_image"
    assert meta["twitter:title"] == meta["og:title"]
    assert meta["article:published_time"] == "2026-08-04"
    index = head_meta(out / "index.html")
    assert index["og:type"] == "website" and index["twitter:card"] == "summary"
    assert "og:image" not in index
    assert head_meta(out / "404.html") == {}  # no address of its own to share


def test_subscribe_by_mail_without_a_sign_up_endpoint(publication: Path) -> None:
    out, _ = build(publication)
    root = lxml.html.parse(str(out / "subscribe" / "index.html")).getroot()
    assert root.find(".//form[@class='subscribe']") is None
    (mailto,) = [a.get("href") for a in root.iter("a") if a.get("href", "").startswith("mailto:")]
    parts = urlsplit(mailto)
    assert parts.path == "news@example.com"
    query = parse_qs(parts.query)
    assert query["subject"] == ["Subscribe to Leader Notes"]
    assert "please send me Leader Notes by email" in query["body"][0]
    assert "My first name, for the greeting (optional):" in query["body"][0]
    text = root.text_content()
    assert "Subscribe by email" in text and "A person reads every message" in text


def test_subscribe_form_once_there_is_an_endpoint(publication: Path) -> None:
    out, _ = build(publication, {"NEWSLETTER_WEB__PUBLIC_URL": "https://news.example.com/"})
    root = lxml.html.parse(str(out / "subscribe" / "index.html")).getroot()
    (form,) = root.findall(".//form")
    assert form.get("action") == "https://news.example.com/subscribe"
    assert "Subscribe by email" not in root.text_content()


def test_the_fast_builder_writes_exactly_the_index_lunr_writes(publication: Path) -> None:
    """archive_search feeds lunr's builder finished terms; lunr.py's own tokenizer and
    pipeline over the same documents give the same serialised index."""
    out, _ = build(publication)
    docs = [
        SearchDoc(path, d["t"], d["n"], d["d"], d["s"], keywords, d["x"])
        for (path, d), keywords in zip(
            search_data(out)["docs"].items(),
            ["a b", "handoffs operations", "", "x-y z"],
            strict=True,
        )
    ]
    ours = build_index(docs)
    builder = get_default_builder()
    theirs = lunr(
        ref="ref",
        fields=list(FIELDS),
        documents=[
            {"ref": d.path, "t": d.title, "k": d.keywords, "s": d.summary, "b": d.text}
            for d in docs
        ],
        builder=builder,
    ).serialize()
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)
