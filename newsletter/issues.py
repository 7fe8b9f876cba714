"""Load issues: `content/<slug>.md` = YAML front-matter + Markdown body -> frozen `Issue`.

Every problem is reported as `file:line: key: what was expected`, because editors fix issues
from the error line alone.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

from newsletter.cadence import first_scheduled_on_or_after
from newsletter.config import Config
from newsletter.errors import IssueError
from newsletter.links import slugify
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
    number: int
    status: Status
    summary: str
    tags: tuple[str, ...]
    author: str | None
    epigraph: Epigraph | None
    body: str  # Markdown
    body_line: int  # line of the file where `body` starts, for error messages

    @property
    def is_ready(self) -> bool:
        return self.status == "ready"


def next_scheduled_day(config: Config, today: dt.date) -> dt.date:
    """The first scheduled day on or after `today` (today itself when the rule has ended)."""
    return first_scheduled_on_or_after(config, today) or today


def load_issues(config: Config, today: dt.date | None = None) -> list[Issue]:
    """Every `content/*.md`, sorted by date and numbered; raises IssueError on the first problem."""
    today = today or dt.datetime.now(config.tz).date()
    # Resolved once here, so later stages compare issue paths without a syscall each.
    paths = sorted(path.resolve() for path in config.content_dir.glob("*.md"))
    parsed = [_parse_file(config, path, today) for path in paths]
    return _number(_check_unique(parsed))


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


@dataclass(frozen=True)
class _Parsed:
    issue: Issue
    number_line: int | None  # where an explicit `number` was given
    date_line: int


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


def _parse_file(config: Config, path: Path, today: dt.date) -> _Parsed:
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

    issue = Issue(
        path=path,
        slug=slug,
        title=str(title).strip(),
        date=date,
        number=number or 0,
        status=cast(Status, status),
        summary=_text(meta, "summary", fail),
        tags=_tags(meta.get("tags"), fail),
        author=_text(meta, "author", fail) or None,
        epigraph=_epigraph(meta.get("epigraph"), fail),
        body=body,
        body_line=body_line,
    )
    return _Parsed(issue, line_of("number") if number else None, line_of("date"))


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


def _check_unique(parsed: list[_Parsed]) -> list[_Parsed]:
    by_slug: dict[str, _Parsed] = {}
    by_date: dict[dt.date, _Parsed] = {}
    for item in parsed:
        issue = item.issue
        if issue.slug in by_slug:
            other = by_slug[issue.slug].issue.path
            raise IssueError(
                f"same slug {issue.slug!r} as {other}; rename one file", path=issue.path, line=1
            )
        if issue.date in by_date:
            other = by_date[issue.date].issue.path
            raise IssueError(
                f"same date {issue.date} as {other}; one issue per send date",
                path=issue.path,
                line=item.date_line,
                field="date",
            )
        by_slug[issue.slug] = by_date[issue.date] = item
    return parsed


def _number(parsed: list[_Parsed]) -> list[Issue]:
    """Explicit numbers win; the others count up in date order after the previous issue."""
    ordered = sorted(parsed, key=lambda p: p.issue.date)
    issues: list[Issue] = []
    seen: dict[int, Path] = {}
    previous = 0
    for item in ordered:
        number = item.issue.number or previous + 1
        if number in seen:
            raise IssueError(
                f"issue number {number} is also used by {seen[number]}",
                path=item.issue.path,
                line=item.number_line or 1,
                field="number",
            )
        seen[number] = item.issue.path
        previous = number
        issues.append(replace(item.issue, number=number))
    return issues
