"""The static web archive: a page per published issue, index by year, tag pages, Atom feed,
sitemap, search index, subscribe/privacy/404 pages and the content/ files issues link to.

Pages link each other relatively (`../<slug>/index.html`), so the site works under any sub-path
and from file://; absolute URLs appear only in the feed, the sitemap and canonical links.

Incremental: `.archive-manifest.json` in the output folder records, for every file this module
wrote, a fingerprint of exactly the values its template received and a hash of its bytes. A
build renders only pages whose inputs changed and writes only files whose bytes changed; files
the manifest does not name are never touched. `.archive-cache.json` keeps each issue's
sanitised body keyed by its Markdown and the files it links, so Markdown runs only for issues
that changed. Both hold public data only (published issues).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import html
import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

from markupsafe import Markup

from newsletter import links
from newsletter.config import Config
from newsletter.errors import NewsletterError, TemplateError
from newsletter.issues import Issue, slugify
from newsletter.markup import render_markdown
from newsletter.render import RECENT_COUNT, RenderedIssue, render_template, template_environment
from newsletter.sanitize import sanitize_html

ARCHIVE_VERSION = "1"  # bump when page contexts change meaning without their inputs changing
MANIFEST_NAME = ".archive-manifest.json"
CACHE_NAME = ".archive-cache.json"
FEED_ENTRIES = 20
STATIC_FILES = ("style.css", "search.js")
SAFE_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,199}\Z")
RESERVED_SLUGS = frozenset({"tags", "subscribe", "privacy"})
ATOM = "http://www.w3.org/2005/Atom"
SITEMAP = "http://www.sitemaps.org/schemas/sitemap/0.9"
_LINK_DELIMITERS = " \t\n()[]<>\"'`/=:"
_HEADING = re.compile(r"<h[2-4][^>]*>(.*?)</h[2-4]>", re.S)
_TAG = re.compile(r"<[^>]+>")


class ArchiveError(NewsletterError):
    """The archive cannot be written as asked (unsafe slug, clashing files, bad output folder)."""


class SendLog(Protocol):
    """What the archive needs from the store: whether an issue has been sent."""

    def get_send(self, issue_slug: str) -> object | None: ...


@dataclass(frozen=True)
class Body:
    """An issue's body as the archive shows it: sanitised, absolute URLs."""

    key: str  # fingerprint of the Markdown it came from
    html: str
    headings: tuple[str, ...]
    # (path, size, mtime_ns) of each local file the body links; size -1 when it was missing
    deps: tuple[tuple[str, int, int], ...]


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


@dataclass(frozen=True)
class Output:
    """One file of the site: produced only when `key` differs from the last build's."""

    path: str
    key: str
    produce: Callable[[], bytes]


@dataclass(frozen=True)
class ArchiveReport:
    out_dir: Path
    published: tuple[str, ...]  # slugs, newest first
    written: tuple[str, ...]  # site paths whose bytes changed
    removed: tuple[str, ...]
    unchanged: int
    rendered: tuple[str, ...]  # slugs whose Markdown ran in this build

    def summary(self) -> str:
        return (
            f"{len(self.published)} issues in {self.out_dir}: {len(self.written)} files written, "
            f"{self.unchanged} unchanged, {len(self.removed)} removed "
            f"({len(self.rendered)} issue bodies rendered)"
        )


def default_out_dir(config: Config) -> Path:
    return config.root / "build" / "archive"


def published_issues(
    issues: Sequence[Issue], send_log: SendLog | None, today: dt.date
) -> list[Issue]:
    """Newest first: sent issues per the send log or, while nothing has been sent, the `ready`
    issues dated on or before today. Drafts never."""
    sent = {i.slug for i in issues if send_log is not None and send_log.get_send(i.slug)}
    if sent:
        chosen = [i for i in issues if i.is_ready and i.slug in sent]
    else:
        chosen = [i for i in issues if i.is_ready and i.date <= today]
    return sorted(chosen, key=lambda i: (i.date, i.number), reverse=True)


@contextmanager
def open_send_log(config: Config) -> Iterator[SendLog | None]:
    """The publication's store when its database exists; never creates one."""
    from newsletter.store import DB_NAME, open_store

    if not (config.subscribers_dir / DB_NAME).exists():
        yield None
        return
    with open_store(config) as store:
        yield store


def check_slug(issue: Issue) -> str:
    """The slug, if it is safe as one folder name inside the archive."""
    if not SAFE_SLUG.match(issue.slug) or issue.slug in RESERVED_SLUGS:
        raise ArchiveError(
            f"slug {issue.slug!r} cannot name an archive folder; expected lowercase letters, "
            f"digits and hyphens, and not {', '.join(sorted(RESERVED_SLUGS))}",
            path=issue.path,
            field="slug",
        )
    return issue.slug


def build_archive(
    config: Config,
    issues: Sequence[Issue],
    out_dir: Path | None = None,
    *,
    send_log: SendLog | None = None,
    today: dt.date | None = None,
    rendered: Mapping[str, RenderedIssue] | None = None,
    workers: int | None = None,
) -> ArchiveReport:
    """Write (or bring up to date) the static archive in `out_dir` (default build/archive/).

    `issues`: every loaded issue (load_issues); which appear is decided here. `send_log`:
    default the publication's store when its database exists. `rendered`: issues the caller
    already rendered, by slug, so their Markdown is not run again. `workers`: processes for
    Markdown (default: one per CPU when many bodies need rendering).
    """
    out = (out_dir or default_out_dir(config)).resolve()
    if out.is_relative_to(config.content_dir.resolve()):
        raise ArchiveError("the archive cannot be written inside content/", path=out)
    today = today or dt.datetime.now(config.tz).date()
    if send_log is None:
        with open_send_log(config) as log:
            chosen = published_issues(issues, log, today)
    else:
        chosen = published_issues(issues, send_log, today)
    for issue in chosen:
        check_slug(issue)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot create the output folder: {exc.strerror}", path=out) from None
    cache = _load_json(out / CACHE_NAME).get("bodies", {})
    bodies, fresh = _bodies(config, chosen, issues, cache, rendered or {}, workers)
    if fresh or set(cache) != set(bodies):
        entries = {slug: _cache_entry(body) for slug, body in bodies.items()}
        _write_file(out / CACHE_NAME, _json_bytes({"bodies": entries}))
    outputs = _Site(config, chosen, bodies).outputs()
    written, removed, unchanged = _sync(out, outputs)
    return ArchiveReport(out, tuple(i.slug for i in chosen), written, removed, unchanged, fresh)


# -- bodies: Markdown runs only for issues whose text (or a file they link) changed ----------


def _source_key(config: Config, issue: Issue, related: list[Issue]) -> str:
    """What render_markdown reads: the text, where it lives, and the issues it links to."""
    linked = [(str(i.path), i.slug) for i in related]
    return _digest(
        json.dumps([ARCHIVE_VERSION, config.base_url, str(issue.path), issue.body, linked])
    )


def _stat(path: Path) -> tuple[str, int, int]:
    try:
        info = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), info.st_size, info.st_mtime_ns)


def _cache_entry(body: Body) -> dict[str, Any]:
    return {"key": body.key, "html": body.html, "headings": body.headings, "deps": body.deps}


def _from_cache(entry: Any, key: str) -> Body | None:
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    try:
        deps = tuple((str(p), int(s), int(m)) for p, s, m in entry["deps"])
        body = Body(key, str(entry["html"]), tuple(map(str, entry["headings"])), deps)
    except (KeyError, TypeError, ValueError):
        return None
    return body if all(_stat(Path(dep[0])) == dep for dep in deps) else None


def _make_body(key: str, fragment: str, linked: Sequence[Path]) -> Body:
    """Links to other issues are in the key already; other files (images) are checked by
    size and mtime, since markup.py writes their dimensions into the HTML."""
    clean = sanitize_html(fragment)
    headings = tuple(_plain(h) for h in _HEADING.findall(clean))
    files = dict.fromkeys(p for p in linked if p.suffix != ".md")
    return Body(key, clean, headings, tuple(_stat(p) for p in files))


def _render_body(config: Config, issue: Issue, related: list[Issue], key: str) -> Body:
    """One issue's Markdown (a top-level function: it runs in worker processes)."""
    body = render_markdown(config, issue, related)
    return _make_body(key, body.html, [x.local_path for x in body.links if x.local_path])


def _related(issue: Issue, by_name: dict[str, Issue]) -> list[Issue]:
    """The issue plus the issues its body names: render_markdown needs those to turn a link
    to `other.md` into that issue's page, and passing all 1,000 makes it quadratic."""
    body, named = issue.body, set()
    at = body.find(".md")
    while at != -1:  # a few occurrences per body: cheaper than a regex over all of it
        start = max(body.rfind(c, 0, at) for c in _LINK_DELIMITERS) + 1
        named.add(unquote(body[start : at + 3]))
        at = body.find(".md", at + 3)
    return [issue, *(by_name[n] for n in sorted(named) if n in by_name and by_name[n] != issue)]


def _bodies(
    config: Config,
    chosen: list[Issue],
    issues: Sequence[Issue],
    cache: Any,
    rendered: Mapping[str, RenderedIssue],
    workers: int | None,
) -> tuple[dict[str, Body], tuple[str, ...]]:
    cache = cache if isinstance(cache, dict) else {}
    bodies: dict[str, Body] = {}
    todo: list[tuple[Issue, list[Issue], str]] = []
    by_name = {i.path.name: i for i in issues}
    for issue in chosen:
        related = _related(issue, by_name)
        key = _source_key(config, issue, related)
        cached = _from_cache(cache.get(issue.slug), key)
        if cached is not None:
            bodies[issue.slug] = cached
        elif issue.slug in rendered:
            done = rendered[issue.slug]
            linked = [x.local_path for x in done.body_links if x.local_path]
            bodies[issue.slug] = _make_body(key, done.html_body_fragment, linked)
        else:
            todo.append((issue, related, key))
    jobs = [(config, *job) for job in todo]
    count = workers or (os.cpu_count() or 1 if len(jobs) >= 32 else 1)
    if count > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=count) as pool:
            chunk = max(1, len(jobs) // (count * 4))
            results = list(pool.map(_render_body, *zip(*jobs, strict=True), chunksize=chunk))
    else:
        results = [_render_body(*job) for job in jobs]
    for (issue, _, _), body in zip(todo, results, strict=True):
        bodies[issue.slug] = body
    return bodies, tuple(issue.slug for issue, _, _ in todo)


# -- the site: every file, the fingerprint of its inputs and how to produce it --------------


def subscribe_action(config: Config) -> str | None:
    """Where the subscribe form posts; None: the page offers a mailto instead."""
    if config.archive.subscribe_action:
        return config.archive.subscribe_action
    if config.web.public_url:
        return config.web.public_url.rstrip("/") + "/subscribe"
    return None


class _Site:
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
            "reply_to": config.reply_to,
            "subscribe_action": subscribe_action(config),
            "recent": self.entries[:RECENT_COUNT],
            "year": chosen[0].date.year if chosen else dt.date.today().year,
        }
        folder = config.templates_dir / "archive"
        sources = sorted(folder.glob("*.html")) if folder.is_dir() else []
        self.site_key = _digest(
            _json_bytes([ARCHIVE_VERSION, config.base_url, self.site])
            + b"".join(p.name.encode() + p.read_bytes() for p in sources)
        )

    def _entry(self, issue: Issue) -> Entry:
        tags = tuple(self.tags[slugify(t)] for t in issue.tags)
        return Entry(
            issue.slug, issue.number, issue.title, issue.date, issue.summary, issue.author, tags
        )

    def outputs(self) -> list[Output]:
        assets = self._assets()
        fixed = ["index.html", "tags/index.html", "subscribe/index.html", "privacy/index.html"]
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
        outputs += [
            _generated("feed.xml", self._feed()),
            _generated("sitemap.xml", self._sitemap()),
            _generated("search-index.js", self._search_index()),
        ]
        folder = self.config.templates_dir / "archive"
        outputs += [_copy(name, folder / name) for name in STATIC_FILES]
        outputs += [_copy(rel, source) for rel, source in assets]
        return _unique(outputs, self.config)

    def page(self, path: str, template: str, **context: Any) -> Output:
        context = {"path": path, "root": "../" * path.count("/"), **context}
        key = _digest(self.site_key.encode() + template.encode() + _json_bytes(context))

        def produce() -> bytes:
            canonical = self.config.archive_url(path.removesuffix("index.html"))
            recent = self._recent(context["root"])
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

    def _moment(self, issue: Issue) -> str:
        hour, _, minute = self.config.schedule.time.partition(":")
        at = dt.datetime.combine(issue.date, dt.time(int(hour), int(minute)), self.config.tz)
        return at.isoformat(timespec="seconds")

    def _feed(self) -> bytes:
        """Atom (RFC 4287) with the newest issues' full content; built with ElementTree."""
        config = self.config
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
        newest = self._moment(self.issues[0]) if self.issues else "2000-01-01T00:00:00+00:00"
        _sub(feed, "updated", newest)
        author = _sub(feed, "author")
        _sub(author, "name", self.site["publisher"])
        _sub(feed, "generator", "newsletter")
        for issue in self.issues[:FEED_ENTRIES]:
            entry = _sub(feed, "entry")
            url = links.issue_url(config, issue.slug)
            _sub(entry, "title", f"No. {issue.number}: {issue.title}")
            _sub(entry, "id", url)
            _sub(entry, "link", rel="alternate", type="text/html", href=url)
            _sub(entry, "published", self._moment(issue))
            _sub(entry, "updated", self._moment(issue))
            if issue.author:
                _sub(_sub(entry, "author"), "name", issue.author)
            for tag in issue.tags:
                _sub(entry, "category", term=slugify(tag), label=tag)
            if issue.summary:
                _sub(entry, "summary", issue.summary)
            _sub(entry, "content", self.bodies[issue.slug].html, type="html")
        ET.indent(feed)
        return _xml(feed)

    def _sitemap(self) -> bytes:
        urlset = ET.Element("urlset", {"xmlns": SITEMAP})
        pages: list[tuple[str, dt.date | None]] = [
            (p, None) for p in ("", "tags/", "subscribe/", "privacy/")
        ]
        pages += [(f"{e.slug}/", e.date) for e in self.entries]
        pages += [(t.path.removesuffix("index.html"), None) for t in self.tags.values()]
        for path, modified in pages:
            url = ET.SubElement(urlset, "url")
            ET.SubElement(url, "loc").text = self.config.archive_url(path)
            if modified is not None:
                ET.SubElement(url, "lastmod").text = modified.isoformat()
        ET.indent(urlset)
        return _xml(urlset)

    def _search_index(self) -> bytes:
        """A script, not a .json file: browsers refuse fetch() from file://, not <script src>."""
        records = [
            {
                "u": e.path,
                "t": e.title,
                "n": e.number,
                "d": _longdate(e.date),
                "s": e.summary,
                "k": " ".join([*(t.name for t in e.tags), *self.bodies[e.slug].headings]),
            }
            for e in self.entries
        ]
        payload = json.dumps(records, ensure_ascii=True, separators=(",", ":"))
        return f"window.NEWSLETTER_SEARCH = {payload};\n".encode()

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


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = text
    return element


def _xml(root: ET.Element) -> bytes:
    """The root carries its namespace as an `xmlns` attribute: children need no prefixes."""
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def _longdate(day: dt.date) -> str:
    return f"{day.day} {day:%B %Y}"


def _years(entries: list[Entry]) -> list[dict[str, Any]]:
    years: dict[int, list[Entry]] = {}
    for entry in entries:
        years.setdefault(entry.date.year, []).append(entry)
    return [{"year": year, "entries": found} for year, found in years.items()]


def _generated(path: str, data: bytes) -> Output:
    return Output(path, _digest(data), lambda: data)


def _copy(path: str, source: Path) -> Output:
    try:
        info = source.stat()
    except OSError:
        raise TemplateError("missing; the archive publishes this file", path=source) from None
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


# -- writing: only what changed, each file whole or not at all ------------------------------


def _sync(out: Path, outputs: list[Output]) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    manifest_path = out / MANIFEST_NAME
    old = _load_json(manifest_path).get("files", {})
    old = old if isinstance(old, dict) else {}
    current = {o.path for o in outputs}
    stale = sorted(p for p in old if p not in current)
    new: dict[str, Any] = {}
    todo: list[Output] = []
    for output in outputs:
        prev = old.get(output.path)
        if (
            isinstance(prev, dict)
            and prev.get("key") == output.key
            and (out / output.path).is_file()
        ):
            new[output.path] = prev
        else:
            todo.append(output)
    unchanged = len(outputs) - len(todo)
    if not todo and not stale:
        return (), (), unchanged
    # From here the folder changes: a build cut short leaves no manifest, so the next one
    # compares every file instead of trusting fingerprints of files it may not have written.
    manifest_path.unlink(missing_ok=True)
    written: list[str] = []
    for output in todo:
        data = output.produce()
        sha = _digest(data)
        target = _inside(out, output.path)
        prev = old.get(output.path)
        same = isinstance(prev, dict) and prev.get("sha") == sha and target.is_file()
        if same or (prev is None and _same_bytes(target, data)):
            unchanged += 1
        else:
            _write_file(target, data)
            written.append(output.path)
        new[output.path] = {"key": output.key, "sha": sha}
    removed = [path for path in stale if _remove(out, path)]
    _write_file(manifest_path, _json_bytes({"version": ARCHIVE_VERSION, "files": new}))
    return tuple(written), tuple(removed), unchanged


def _inside(out: Path, path: str) -> Path:
    """`out/path`, refusing anything that would land outside `out` (`..`, absolute paths,
    symlinks planted in the output folder)."""
    target = out.joinpath(*path.split("/"))
    if path.startswith("/") or ".." in path.split("/") or not target.resolve().is_relative_to(out):
        raise ArchiveError("refusing to write outside the archive folder", path=target)
    return target


def _same_bytes(target: Path, data: bytes) -> bool:
    try:
        return (
            target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data
        )
    except OSError:
        return False


def _remove(out: Path, path: str) -> bool:
    """Delete a file an earlier build wrote (and folders left empty)."""
    try:
        target = _inside(out, path)
    except ArchiveError:
        return False  # not ours to delete, whatever the manifest says
    if not target.is_file():
        return False
    target.unlink()
    folder = target.parent
    while folder != out and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
    return True


def _write_file(path: Path, data: bytes) -> None:
    """Temp file in the same folder, then rename: readers never see half a page."""
    try:
        try:
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except FileNotFoundError:  # cheaper than a mkdir for every file of a full build
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ArchiveError(f"cannot write: {exc.strerror}", path=path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, 0o644)  # mkstemp makes 0600; the web server reads as another user
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise ArchiveError(f"cannot write: {exc.strerror}", path=path) from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Entry):
        return value.fingerprint
    if isinstance(value, TagRef):
        return [value.name, value.path]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def _json_bytes(value: Any) -> bytes:
    return json.dumps(
        value, default=_jsonable, sort_keys=True, ensure_ascii=False, separators=(",", ":")
    ).encode()


def _digest(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _plain(fragment: str) -> str:
    return " ".join(html.unescape(_TAG.sub("", fragment)).split())
