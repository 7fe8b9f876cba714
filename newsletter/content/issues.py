"""Load issues: `content/<slug>.md` = YAML front-matter + Markdown body -> frozen `Issue`.

Every problem is reported as `file:line: key: what was expected`, because editors fix issues
from the error line alone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from newsletter.cadence import first_scheduled_on_or_after
from newsletter.content.numbering import assign_numbers
from newsletter.errors import IssueError
from newsletter.links import slugify
from newsletter.settings import Config
from newsletter.yamlio import load_located

Status = Literal["draft", "ready"]
KNOWN_KEYS = ("title", "date", "summary", "tags", "author", "status", "epigraph", "number")
STATUSES: tuple[Status, ...] = ("draft", "ready")
_DATE_PREFIX = re.compile(r"^(\d{4})-(\d{2})-")
_FENCE = re.compile(r"^(---|\.\.\.)\s*$")


@dataclass(frozen=True)
class Epigraph:
    text: str
    author: str | None = None


@dataclass(frozen=True)
class Issue:
    path: Path
    slug: str
    title: str
    date: dt.date
    number: int | None  # None for drafts; see newsletter.content.numbering
    status: Status
    summary: str
    tags: tuple[str, ...]
    author: str | None
    epigraph: Epigraph | None
    body: str  # Markdown
    body_line: int  # line of the file where `body` starts, for error messages
    number_requested: int | None = None  # `number:` in the front-matter
    number_line: int | None = None  # where it was given

    @property
    def is_ready(self) -> bool:
        return self.status == "ready"


def next_scheduled_day(config: Config, today: dt.date) -> dt.date:
    """The first scheduled day on or after `today` (today itself when the rule has ended)."""
    return first_scheduled_on_or_after(config, today) or today


def parse_issues(config: Config, today: dt.date) -> tuple[list[Issue], list[IssueError]]:
    """Every `content/*.md` as an unnumbered Issue, plus one error for each file that is not one.

    A broken file never hides the others: one editor's unfinished draft must not stop the
    send of another issue. `today` dates an issue with neither a date nor a dated file name.
    """
    # Resolved once here, so later stages compare issue paths without a syscall each.
    paths = sorted(path.resolve() for path in config.content_dir.glob("*.md"))
    issues: list[Issue] = []
    broken: list[IssueError] = []
    by_slug: dict[str, Path] = {}
    for path in paths:
        try:
            issue = _parse_file(config, path, today)
        except IssueError as exc:
            broken.append(exc)
            continue
        if issue.slug in by_slug:
            broken.append(
                IssueError(
                    f"same slug {issue.slug!r} as {by_slug[issue.slug]}; rename one file",
                    path=path,
                    line=1,
                )
            )
            continue
        by_slug[issue.slug] = path
        issues.append(issue)
    return sorted(issues, key=lambda i: (i.date, i.slug)), broken


def load_issues(
    config: Config, today: dt.date, fixed: Mapping[str, int] | None = None
) -> list[Issue]:
    """Every issue, by date and numbered (`fixed`: numbers already fixed in the store);
    raises the first file's IssueError. Commands use `newsletter.content.publication`, which reads
    the fixed numbers and lets one broken file stop only what needs it."""
    issues, broken = parse_issues(config, today)
    if broken:
        raise broken[0]
    return assign_numbers(issues, fixed or {})[0]


def find_issue(config: Config, issues: list[Issue], ref: str) -> Issue:
    """An issue by slug (`2026-01-serve-inside`) or by path (`content/2026-01-serve-inside.md`)."""
    candidate = Path(ref)
    if candidate.suffix == ".md":
        resolved = (candidate if candidate.is_absolute() else (Path.cwd() / candidate)).resolve()
        for issue in issues:
            if issue.path == resolved:
                return issue
        if not resolved.is_relative_to(config.content_dir.resolve()):
            raise IssueError("not in this publication's content/ folder", path=ref, field="ISSUE")
    slug = candidate.stem if candidate.suffix == ".md" else ref
    for issue in issues:
        if issue.slug == slug:
            return issue
    known = ", ".join(i.slug for i in issues) or "none"
    raise IssueError(f"no issue {ref!r} in {config.content_dir} (issues: {known})", field="ISSUE")


def _read(path: Path, limit: int) -> str:
    # Refused before reading it whole, let alone running Markdown (a 50 MB issue took 328 s).
    size = path.stat().st_size
    if size > limit:
        raise IssueError(
            f"{size:,} bytes; issues are limited to {limit:,} (max_issue_bytes)", path=path
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise IssueError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
            path=path,
            line=line,
        ) from None
    if not text.strip():
        raise IssueError(
            "empty file; expected front-matter with at least a title", path=path, line=1
        )
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _split_front_matter(path: Path, text: str) -> tuple[str, str, int]:
    """(front-matter YAML, Markdown body, line where the body starts)."""
    lines = text.split("\n")
    if not _FENCE.match(lines[0]) or lines[0].startswith("..."):
        raise IssueError(
            "expected front-matter: a first line '---', YAML with at least 'title:', then '---'",
            path=path,
            line=1,
        )
    for index in range(1, len(lines)):
        if _FENCE.match(lines[index]):
            return "\n".join(lines[1:index]), "\n".join(lines[index + 1 :]), index + 2
    raise IssueError("front-matter is never closed; expected a line '---'", path=path, line=1)


def _parse_file(config: Config, path: Path, today: dt.date) -> Issue:
    text = _read(path, config.max_issue_bytes)
    yaml_text, body, body_line = _split_front_matter(path, text)
    located = load_located(yaml_text, path=path, first_line=2, error=IssueError)
    meta = located.data
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise IssueError(
            f"front-matter must be a mapping of keys ({', '.join(KNOWN_KEYS)}), "
            f"got {type(meta).__name__}",
            path=path,
            line=2,
        )

    def line_of(key: str) -> int:
        return located.line_of(key, default=2) or 2

    def fail(key: str, message: str) -> IssueError:
        return IssueError(message, path=path, line=line_of(key), field=key)

    for key in meta:
        if key not in KNOWN_KEYS:
            raise fail(str(key), f"unknown key; known keys are: {', '.join(KNOWN_KEYS)}")

    title = meta.get("title")
    if title is None or (isinstance(title, str) and not title.strip()):
        raise IssueError("missing title; expected 'title: ...'", path=path, line=2, field="title")
    if not isinstance(title, str | int | float):
        raise fail("title", "expected text")

    slug = slugify(path.stem)
    if not slug:
        raise IssueError("file name needs letters or digits (it becomes the URL)", path=path)
    date = _parse_date(config, meta.get("date"), path, today, fail)
    status = meta.get("status", "draft")
    if status not in STATUSES:
        raise fail("status", f"expected draft or ready, got {status!r}")
    number = meta.get("number")
    if number is not None and (
        not isinstance(number, int) or isinstance(number, bool) or number < 1
    ):
        raise fail("number", f"expected a positive whole number, got {number!r}")

    return Issue(
        path=path,
        slug=slug,
        title=str(title).strip(),
        date=date,
        number=None,
        status=cast(Status, status),
        summary=_text(meta, "summary", fail),
        tags=_tags(meta.get("tags"), fail),
        author=_text(meta, "author", fail) or None,
        epigraph=_epigraph(meta.get("epigraph"), fail),
        body=body,
        body_line=body_line,
        number_requested=number,
        number_line=line_of("number") if number else None,
    )


def _parse_date(config: Config, value: Any, path: Path, today: dt.date, fail: Any) -> dt.date:
    if value is None:
        prefix = _DATE_PREFIX.match(path.stem)
        if prefix and 1 <= int(prefix[2]) <= 12:
            # The schedule's day in the file's month (the first Tuesday by default).
            return next_scheduled_day(config, dt.date(int(prefix[1]), int(prefix[2]), 1))
        return next_scheduled_day(config, today)
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise fail("date", f"expected a date YYYY-MM-DD, got {value!r}") from None


def _text(meta: dict[str, Any], key: str, fail: Any) -> str:
    value = meta.get(key)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise fail(key, f"expected text, got a {type(value).__name__}")
    return str(value).strip()


def _tags(value: Any, fail: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str | int) for t in value):
        raise fail("tags", "expected a list of words, e.g. tags: [leadership, service]")
    tags: list[str] = []
    for tag in value:
        text = str(tag).strip()
        if not slugify(text):
            raise fail("tags", f"tag {text!r} needs at least one letter or digit")
        if text not in tags:
            tags.append(text)
    return tuple(tags)


def _epigraph(value: Any, fail: Any) -> Epigraph | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Epigraph(value.strip())
    if not isinstance(value, dict) or "text" not in value or set(value) - {"text", "author"}:
        raise fail("epigraph", "expected {text: ..., author: ...} or a quotation as text")
    author = value.get("author")
    return Epigraph(str(value["text"]).strip(), str(author).strip() if author else None)
