"""The archive's files: every page, feed, sitemap and search index, each as an `Output`
with the fingerprint of exactly the values its template receives (the feed's and sitemap's
XML is feeds.py's, the search index search.py's).

Pages link each other relatively (`../<slug>/index.html`, with `index.html` spelled out
because file:// has no directory index), so the site works under any sub-path and from the
filesystem; absolute URLs appear only in the feed, the sitemap and canonical links.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import json
import os
import re
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from markupsafe import Markup

from newsletter import links
from newsletter.archive import feeds
from newsletter.archive import search as archive_search
from newsletter.archive.search import SearchDoc
from newsletter.archive.write import ARCHIVE_VERSION, ArchiveError, Output, digest, json_bytes
from newsletter.content.issues import Issue
from newsletter.content.render import RECENT_COUNT, render_template, template_environment
from newsletter.content.templatesource import template_file, template_names
from newsletter.errors import TemplateError
from newsletter.links import slugify
from newsletter.settings import Config

STATIC_FILES = ("style.css", "search.js")


@dataclass(frozen=True)
class Body:
    """An issue's body as the archive shows it: sanitised, absolute URLs."""

    key: str  # fingerprint of the Markdown it came from
    html: str
    headings: tuple[str, ...]
    # (path, size, mtime_ns) of each local file the body links; size -1 when it was missing
    deps: tuple[tuple[str, int, int], ...]
    terms: str  # what the search indexes of its text (archive_search.joined_terms)


@dataclass(frozen=True)
class TagRef:
    name: str
    path: str  # site path of the tag page


@dataclass(frozen=True)
class Entry:
    """An issue as lists, feeds and the search index show it (no body)."""

    slug: str
    number: int
    title: str
    date: dt.date
    summary: str
    author: str | None
    tags: tuple[TagRef, ...]

    @property
    def path(self) -> str:
        return f"{self.slug}/index.html"

    @functools.cached_property
    def fingerprint(self) -> str:
        """Computed once: an entry appears in the fingerprints of many pages."""
        tags = [[t.name, t.path] for t in self.tags]
        fields = [self.slug, self.number, self.title, self.date.isoformat(), self.summary]
        return json.dumps([*fields, self.author, tags], ensure_ascii=False)


def subscribe_action(config: Config) -> str | None:
    """Where the subscribe form posts; None: the page offers a mailto instead."""
    if config.archive.subscribe_action:
        return config.archive.subscribe_action
    if config.web.public_url:
        return config.web.public_url.rstrip("/") + "/subscribe"
    return None


class Site:
    def __init__(self, config: Config, chosen: list[Issue], bodies: dict[str, Body]) -> None:
        self.config = config
        self.issues = chosen
        self.bodies = bodies
        self.env = template_environment(config)
        self.env.filters["longdate"] = _longdate
        self.tags: dict[str, TagRef] = {}
        for issue in chosen:
            for tag in issue.tags:
                self.tags.setdefault(slugify(tag), TagRef(tag, f"tags/{slugify(tag)}/index.html"))
        self.entries = [self._entry(i) for i in chosen]
        self.recent_html: dict[str, str] = {}  # the same aside on every page of one depth
        self.site: dict[str, Any] = {
            "name": config.name,
            "tagline": config.tagline,
            "publisher": config.publisher or config.name,
            "postal_address": config.postal_address,
            "language": config.language,
            "reply_to": parseaddr(config.reply_to)[1] or config.reply_to,
            "subscribe_action": subscribe_action(config),
            "recent": self.entries[:RECENT_COUNT],
            "year": chosen[0].date.year if chosen else dt.date.today().year,
        }
        sources = [template_file(config, n) for n in template_names(config, "archive", "*.html")]
        self.site_key = digest(
            json_bytes([ARCHIVE_VERSION, config.base_url, self.site])
            + b"".join(p.name.encode() + p.read_bytes() for p in sources)
        )

    def _entry(self, issue: Issue) -> Entry:
        tags = tuple(dict.fromkeys(self.tags[slugify(t)] for t in issue.tags))  # "Teams", "teams"
        number = issue.number or 0  # drafts (unnumbered) are never published
        return Entry(issue.slug, number, issue.title, issue.date, issue.summary, issue.author, tags)

    def outputs(self) -> list[Output]:
        assets = self._assets()
        fixed = [
            "index.html",
            "tags/index.html",
            "subscribe/index.html",
            "privacy/index.html",
            "feed.xml",
            "sitemap.xml",
        ]
        site_paths = {
            *fixed,
            *(e.path for e in self.entries),
            *(t.path for t in self.tags.values()),
            *STATIC_FILES,
            *(rel for rel, _ in assets),
        }
        outputs = [
            self.page("index.html", "index.html", years=_years(self.entries)),
            self.page("tags/index.html", "tags.html", tags=self._tag_counts()),
            self.page("subscribe/index.html", "subscribe.html"),
            self.page("privacy/index.html", "privacy.html"),
            # Served for any missing path at any depth, so its links start from the site root.
            self.page("404.html", "404.html", base_path=urlsplit(self.config.base_url).path),
        ]
        outputs += [self._issue_page(n, site_paths) for n in range(len(self.issues))]
        tagged: dict[str, list[Entry]] = {tag.path: [] for tag in self.tags.values()}
        for entry in self.entries:
            for tag in entry.tags:
                tagged[tag.path].append(entry)
        for tag in self.tags.values():
            outputs.append(self.page(tag.path, "tag.html", tag=tag, entries=tagged[tag.path]))
        body_html = {slug: body.html for slug, body in self.bodies.items()}
        publisher = str(self.site["publisher"])
        outputs += [
            _generated("feed.xml", feeds.atom_feed(self.config, self.issues, body_html, publisher)),
            _generated("sitemap.xml", self._sitemap()),
            self._search_index(),
            _generated(archive_search.LIBRARY, archive_search.library()),
        ]
        outputs += [
            _copy(name, template_file(self.config, f"archive/{name}")) for name in STATIC_FILES
        ]
        outputs += [_copy(rel, source) for rel, source in assets]
        return _unique(outputs, self.config)

    def page(self, path: str, template: str, **context: Any) -> Output:
        context = {"path": path, "root": "../" * path.count("/"), **context}
        key = digest(self.site_key.encode() + template.encode() + json_bytes(context))

        def produce() -> bytes:
            canonical = self.config.archive_url(path.removesuffix("index.html"))
            # The index lists every issue already: an aside of recent ones would repeat it.
            recent = "" if path == "index.html" else self._recent(context["root"])
            here = f'href="{context["root"]}{path}"'
            recent = Markup(recent.replace(here, f'{here} aria-current="page"', 1))
            full = {**context, "site": self.site, "canonical": canonical, "recent": recent}
            return render_template(self.env, f"archive/{template}", full).encode()

        return Output(path, key, produce)

    def _recent(self, root: str) -> str:
        if root not in self.recent_html:
            context = {"site": self.site, "root": root}
            self.recent_html[root] = render_template(self.env, "archive/_recent.html", context)
        return self.recent_html[root]

    def _issue_page(self, index: int, site_paths: set[str]) -> Output:
        issue, entry = self.issues[index], self.entries[index]
        body = self.bodies[issue.slug].html
        url = links.issue_url(self.config, issue.slug)
        mail_body = f"{issue.summary}\n\n{url}" if issue.summary else url
        return self.page(
            entry.path,
            "issue.html",
            entry=entry,
            epigraph=issue.epigraph,
            body=Markup(_relative_links(body, self.config.base_url, "../", site_paths)),
            newer=self.entries[index - 1] if index > 0 else None,
            older=self.entries[index + 1] if index + 1 < len(self.entries) else None,
            share_url=url,
            og_image=_first_image(body),
            share_mailto=f"mailto:?subject={quote(issue.title, safe='')}"
            f"&body={quote(mail_body, safe='')}",
        )

    def _tag_counts(self) -> list[dict[str, Any]]:
        counts = {slug: 0 for slug in self.tags}
        for entry in self.entries:
            for tag in entry.tags:
                counts[slugify(tag.name)] += 1
        ordered = sorted(self.tags.items(), key=lambda item: item[1].name.casefold())
        return [{"tag": tag, "count": counts[slug]} for slug, tag in ordered]

    def _sitemap(self) -> bytes:
        pages: list[tuple[str, dt.date | None]] = [
            (p, None) for p in ("", "tags/", "subscribe/", "privacy/")
        ]
        pages += [(f"{e.slug}/", e.date) for e in self.entries]
        pages += [(t.path.removesuffix("index.html"), None) for t in self.tags.values()]
        return feeds.sitemap(self.config, pages)

    def _search_index(self) -> Output:
        """search-index.js (archive_search.py), built only when a searchable field changed."""
        docs = [
            SearchDoc(
                e.path, e.title, e.number, _longdate(e.date), e.summary,
                " ".join([*(t.name for t in e.tags), *self.bodies[e.slug].headings]),
                archive_search.plain_text(self.bodies[e.slug].html),
                self.bodies[e.slug].terms,
            )
            for e in self.entries
        ]  # fmt: skip
        fields = json.dumps([archive_search.FIELDS, [d.keywords for d in docs]])
        key = digest((ARCHIVE_VERSION + fields + archive_search.records_json(docs)).encode())
        return Output("search-index.js", key, lambda: archive_search.search_script(docs))

    def _assets(self) -> list[tuple[str, Path]]:
        """Every non-Markdown file under content/ (the email links them under base_url)."""
        content = self.config.content_dir
        if not content.is_dir():
            return []
        inside = content.resolve()
        found: list[tuple[str, Path]] = []
        for folder, subfolders, names in os.walk(content):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in sorted(names):
                source = Path(folder) / name
                if name.startswith(".") or name.endswith(".md"):
                    continue
                if not source.resolve().is_relative_to(inside):
                    continue  # a symlink out of content/ is not published
                found.append((source.relative_to(content).as_posix(), source))
        return found


_IMG = re.compile(r"<img\b[^>]*>")
_ATTR = re.compile(r'\b(src|alt)="([^"]*)"')


def _first_image(body: str) -> dict[str, str] | None:
    """The body's first image (absolute URL and alt text): a shared link's picture."""
    tag = _IMG.search(body)
    if tag is None:
        return None
    attrs = {name: html.unescape(value) for name, value in _ATTR.findall(tag[0])}
    if not attrs.get("src", "").startswith(("https://", "http://")):
        return None
    return {"url": attrs["src"], "alt": attrs.get("alt", "")}


def _longdate(day: dt.date) -> str:
    return f"{day.day} {day:%B %Y}"


def _years(entries: list[Entry]) -> list[dict[str, Any]]:
    years: dict[int, list[Entry]] = {}
    for entry in entries:
        years.setdefault(entry.date.year, []).append(entry)
    return [{"year": year, "entries": found} for year, found in years.items()]


def _generated(path: str, data: bytes) -> Output:
    return Output(path, digest(data), lambda: data)


def _copy(path: str, source: Path) -> Output:
    try:
        info = source.stat()
    except OSError:
        raise TemplateError(
            "missing; the archive needs it (`newsletter init --templates` copies the defaults)",
            path=source,
        ) from None
    return Output(path, f"{source}:{info.st_size}:{info.st_mtime_ns}", source.read_bytes)


def _unique(outputs: list[Output], config: Config) -> list[Output]:
    seen: set[str] = set()
    for output in outputs:
        if output.path in seen:
            raise ArchiveError(
                f"two files want the archive path {output.path!r} (content/ files and archive "
                "pages share one folder); rename the file",
                path=config.content_dir / output.path,
            )
        seen.add(output.path)
    return outputs


_LINK_PATTERNS: dict[str, re.Pattern[str]] = {}


def _relative_links(fragment: str, base_url: str, root: str, site_paths: set[str]) -> str:
    """Absolute links to files of this site become relative (`../images/x.png`, with
    `index.html` spelled out, since file:// has no directory index); others stay as they are."""
    pattern = _LINK_PATTERNS.get(base_url)
    if pattern is None:
        prefix = re.escape(html.escape(base_url, quote=True))
        # Starts with a literal, so the regex engine skips ahead to candidates quickly.
        pattern = _LINK_PATTERNS[base_url] = re.compile(rf'="{prefix}([^"#?]*)([^"]*)"')

    def swap(match: re.Match[str]) -> str:
        before = match.string[max(0, match.start() - 5) : match.start()]
        if not before.endswith((" href", " src")):
            return match[0]
        written, rest = match[1], match[2]
        local = unquote(html.unescape(written))
        if local == "" or local.endswith("/"):
            target, added = local + "index.html", "index.html"
        elif local in site_paths:
            target, added = local, ""
        else:
            target, added = local + "/index.html", "/index.html"
        if target not in site_paths:
            return match[0]
        return f'="{root}{written}{added}{rest}"'

    return pattern.sub(swap, fragment) if base_url in fragment else fragment
