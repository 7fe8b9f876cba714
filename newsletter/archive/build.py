"""The static web archive: which issues appear, their bodies, and `build_archive`.

A page per published issue, the index by year, topic pages, an Atom feed, a sitemap, a search
index, subscribe/privacy/404 pages and the content/ files issues link to (site.py), written
incrementally (write.py). `.archive-cache.json` in the output folder keeps each issue's
sanitised body and its search terms, keyed by its Markdown and the files it links, so Markdown
and the search's analysis run only for issues that changed. The cache and the manifest hold
public data only.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from newsletter.archive import search as archive_search
from newsletter.archive.sanitize import sanitize_html
from newsletter.archive.site import Body, Site
from newsletter.archive.write import (
    ARCHIVE_VERSION,
    MANIFEST_NAME,
    ArchiveError,
    check_out_folder,
    digest,
    json_bytes,
    load_json,
    sync,
    write_file,
)
from newsletter.content.issues import Issue
from newsletter.content.markup import render_markdown
from newsletter.content.render import RenderedIssue
from newsletter.settings import Config

if TYPE_CHECKING:  # the store is imported only when a build opens it
    from newsletter.store.numbers import IssueNumbers

__all__ = [
    "CACHE_NAME",
    "MANIFEST_NAME",
    "ArchiveError",
    "ArchiveReport",
    "build_archive",
    "check_slug",
    "default_out_dir",
    "published_issues",
]

CACHE_NAME = ".archive-cache.json"
PARALLEL_FROM = 32  # bodies to render before Markdown runs in several processes
SAFE_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,199}\Z")
RESERVED_SLUGS = frozenset({"tags", "subscribe", "privacy"})
_LINK_DELIMITERS = " \t\n()[]<>\"'`/=:"
_HEADING = re.compile(r"<h[2-4][^>]*>(.*?)</h[2-4]>", re.S)
_TAG = re.compile(r"<[^>]+>")


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
    """archive.out (relative to the publication) when set, else build/archive/."""
    if config.archive.out:
        out = Path(config.archive.out).expanduser()
        return out if out.is_absolute() else config.root / out
    return config.root / "build" / "archive"


def published_issues(issues: Sequence[Issue], sent: Collection[str], today: dt.date) -> list[Issue]:
    """Newest first: `ready` issues that the send log has sent (`sent`: their slugs, even when
    sent early), and `ready` issues dated on or before today that it has no record of (sent
    before this tool took over, or by hand). Drafts never, even with a send record."""
    chosen = [i for i in issues if i.is_ready and (i.slug in sent or i.date <= today)]
    return sorted(chosen, key=lambda i: (i.date, i.number or 0), reverse=True)


@contextmanager
def _send_log(config: Config) -> Iterator[tuple[frozenset[str], IssueNumbers | None]]:
    """The issues with a send log and the numbers repository, when the publication's database
    exists; never creates one."""
    from newsletter.store.store import open_store, store_exists

    if not store_exists(config):
        yield frozenset(), None
        return
    with open_store(config) as store:
        yield frozenset(store.sends.sent_slugs()), store.numbers


def _fix_numbers(chosen: Sequence[Issue], numbers: IssueNumbers | None) -> None:
    """Readers see the numbers of the issues listed from now on: fix them."""
    if numbers is not None:
        numbers.fix_numbers({i.slug: i.number for i in chosen if i.number}, how="archive")


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
    today: dt.date,
    sent: Collection[str] | None = None,
    numbers: IssueNumbers | None = None,
    rendered: Mapping[str, RenderedIssue] | None = None,
    workers: int | None = None,
    force: bool = False,
) -> ArchiveReport:
    """Write (or bring up to date) the static archive in `out_dir` (default build/archive/).

    `issues`: every loaded issue (load_issues); which appear is decided here, as of `today`.
    `sent`: the slugs the send log has begun (default: from the publication's store when its
    database exists); the numbers of the issues listed are fixed in `numbers` (default: that
    store's). `rendered`: issues the caller
    already rendered, by slug, so their Markdown is not run again. `workers`: processes for
    Markdown (default: one per CPU when many bodies need rendering). `force`: write into a
    non-empty folder no build wrote before (its foreign files are still never overwritten).
    """
    out = (out_dir or default_out_dir(config)).resolve()
    if out.is_relative_to(config.content_dir.resolve()):
        raise ArchiveError("the archive cannot be written inside content/", path=out)
    check_out_folder(out, config.root, (MANIFEST_NAME, CACHE_NAME), force)
    if sent is None:
        with _send_log(config) as (sent, numbers):
            chosen = published_issues(issues, sent, today)
            _fix_numbers(chosen, numbers)
    else:
        chosen = published_issues(issues, sent, today)
        _fix_numbers(chosen, numbers)
    for issue in chosen:
        check_slug(issue)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot create the output folder: {exc.strerror}", path=out) from None
    cache = load_json(out / CACHE_NAME).get("bodies")
    cache = cache if isinstance(cache, dict) else {}
    bodies, fresh = _bodies(config, chosen, issues, cache, rendered or {}, workers)
    outputs = Site(config, chosen, bodies).outputs()
    written, removed, unchanged = sync(out, outputs)
    # After sync: a build refused for a foreign file leaves nothing of ours in that folder.
    if fresh or _cache_stale(cache, bodies):
        entries = {slug: _cache_entry(body) for slug, body in bodies.items()}
        write_file(out / CACHE_NAME, json_bytes({"bodies": entries}))
    return ArchiveReport(out, tuple(i.slug for i in chosen), written, removed, unchanged, fresh)


# -- bodies: Markdown runs only for issues whose text (or a file they link) changed ----------


def _source_key(config: Config, issue: Issue, related: list[Issue]) -> str:
    """What render_markdown reads: the text, where it lives, and the issues it links to."""
    linked = [(str(i.path), i.slug) for i in related]
    return digest(
        json.dumps([ARCHIVE_VERSION, config.base_url, str(issue.path), issue.body, linked])
    )


def _stat(path: Path) -> tuple[str, int, int]:
    try:
        info = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), info.st_size, info.st_mtime_ns)


def _cache_entry(body: Body) -> dict[str, Any]:
    return {"key": body.key, "html": body.html, "headings": body.headings, "deps": body.deps,
            "terms": body.terms}  # fmt: skip


def _cache_stale(cache: dict[str, Any], bodies: dict[str, Body]) -> bool:
    if set(cache) != set(bodies):
        return True
    for slug, body in bodies.items():
        entry = cache[slug]
        if not isinstance(entry, dict) or entry.get("key") != body.key:
            return True
        if entry.get("deps") != [list(dep) for dep in body.deps]:
            return True
    return False


def _from_cache(entry: Any, key: str) -> Body | None:
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    try:
        deps = tuple((str(p), int(s), int(m)) for p, s, m in entry["deps"])
        headings = tuple(map(str, entry["headings"]))
        body = Body(key, str(entry["html"]), headings, deps, str(entry["terms"]))
    except (KeyError, TypeError, ValueError):
        return None
    return body if all(_stat(Path(dep[0])) == dep for dep in deps) else None


def _make_body(key: str, fragment: str, linked: Sequence[Path]) -> Body:
    """Links to other issues are in the key already; other files (images) are checked by
    size and mtime, since markup.py writes their dimensions into the HTML."""
    clean = sanitize_html(fragment)
    headings = tuple(_plain(h) for h in _HEADING.findall(clean))
    files = dict.fromkeys(p for p in linked if p.suffix != ".md")
    # The search's analysis of the text, done once per body (in the Markdown workers) and
    # cached with it: analysing all of them again on every rebuild cost half a second.
    terms = archive_search.joined_terms(archive_search.plain_text(clean))
    return Body(key, clean, headings, tuple(_stat(p) for p in files), terms)


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
    cache: dict[str, Any],
    rendered: Mapping[str, RenderedIssue],
    workers: int | None,
) -> tuple[dict[str, Body], tuple[str, ...]]:
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
    # Starting processes costs ~50 ms; worth it from a few dozen bodies (7 ms each) up.
    count = workers or ((os.cpu_count() or 1) if len(jobs) >= PARALLEL_FROM else 1)
    if count > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=count) as pool:
            chunk = max(1, len(jobs) // (count * 4))
            results = list(pool.map(_render_body, *zip(*jobs, strict=True), chunksize=chunk))
    else:
        results = [_render_body(*job) for job in jobs]
    for (issue, _, _), body in zip(todo, results, strict=True):
        bodies[issue.slug] = body
    return bodies, tuple(issue.slug for issue, _, _ in todo)


def _plain(fragment: str) -> str:
    return " ".join(html.unescape(_TAG.sub("", fragment)).split())
