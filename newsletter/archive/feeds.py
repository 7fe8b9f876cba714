"""The archive's files for programs: the Atom feed (RFC 4287) and the sitemap, built with
ElementTree (the pages are site.py's)."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

from newsletter import links
from newsletter.content.issues import Issue
from newsletter.links import slugify
from newsletter.settings import Config

FEED_ENTRIES = 20
ATOM = "http://www.w3.org/2005/Atom"
SITEMAP = "http://www.sitemaps.org/schemas/sitemap/0.9"


def atom_feed(
    config: Config, issues: Sequence[Issue], bodies: Mapping[str, str], publisher: str
) -> bytes:
    """The newest of `issues` (newest first) with their full content: `bodies`, the archive's
    HTML by slug."""
    feed = ET.Element("feed", {"xmlns": ATOM, "xml:lang": config.language})
    _sub(feed, "title", config.name)
    if config.tagline:
        _sub(feed, "subtitle", config.tagline)
    _sub(feed, "id", config.base_url)
    _sub(
        feed,
        "link",
        rel="self",
        type="application/atom+xml",
        href=config.archive_url("feed.xml"),
    )
    _sub(feed, "link", rel="alternate", type="text/html", href=config.base_url)
    newest = _moment(config, issues[0]) if issues else "2000-01-01T00:00:00+00:00"
    _sub(feed, "updated", newest)
    author = _sub(feed, "author")
    _sub(author, "name", publisher)
    _sub(feed, "generator", "newsletter")
    for issue in issues[:FEED_ENTRIES]:
        entry = _sub(feed, "entry")
        url = links.issue_url(config, issue.slug)
        _sub(entry, "title", f"No. {issue.number}: {issue.title}")
        _sub(entry, "id", url)
        _sub(entry, "link", rel="alternate", type="text/html", href=url)
        _sub(entry, "published", _moment(config, issue))
        _sub(entry, "updated", _moment(config, issue))
        if issue.author:
            _sub(_sub(entry, "author"), "name", issue.author)
        for tag in issue.tags:
            _sub(entry, "category", term=slugify(tag), label=tag)
        if issue.summary:
            _sub(entry, "summary", issue.summary)
        _sub(entry, "content", bodies[issue.slug], type="html")
    ET.indent(feed)
    return _xml(feed)


def sitemap(config: Config, pages: Sequence[tuple[str, dt.date | None]]) -> bytes:
    """`pages`: each page's path under the archive's URL and, when known, its date."""
    urlset = ET.Element("urlset", {"xmlns": SITEMAP})
    for path, modified in pages:
        url = ET.SubElement(urlset, "url")
        ET.SubElement(url, "loc").text = config.archive_url(path)
        if modified is not None:
            ET.SubElement(url, "lastmod").text = modified.isoformat()
    ET.indent(urlset)
    return _xml(urlset)


def _moment(config: Config, issue: Issue) -> str:
    """When the issue went out: its date at the schedule's time, in the publication's zone."""
    hour, _, minute = config.schedule.time.partition(":")
    at = dt.datetime.combine(issue.date, dt.time(int(hour), int(minute)), config.tz)
    return at.isoformat(timespec="seconds")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = text
    return element


def _xml(root: ET.Element) -> bytes:
    """The root carries its namespace as an `xmlns` attribute: children need no prefixes."""
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data
