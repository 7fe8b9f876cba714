"""`newsletter new`: a draft on the next free slot, and the text it starts from.

A free slot is a scheduled moment still ahead of now that no issue (ready or draft) holds:
a new draft must never land on a day that is already past its send time, or on another
issue's day. `check` knows the scaffold text, so an issue still holding it cannot go out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from newsletter.cadence import describe, local_day, moment_on, scheduled_dates
from newsletter.content.issues import Issue
from newsletter.errors import IssueError
from newsletter.links import slugify
from newsletter.settings import Config

# What `new` writes below the front-matter; `check` refuses a ready issue that still has it.
SCAFFOLD_BODY = (
    "Start writing here. Use `##` for section headings (the title is the page's only `#`)."
)
SCAFFOLD_SUMMARY = "One sentence for the inbox preview and the archive."
_TEMPLATE = """\
---
title: {title}
date: {date}
summary: {summary}
tags: []
status: draft
---

{body}
"""
SLUG_LENGTH = 60  # characters: file names and URLs stay readable
FALLBACK_SLUG = "issue"  # a title with nothing to transliterate (emoji only, say)
_SEARCH_SLOTS = 240  # scheduled dates looked at before giving up (20 years monthly)


@dataclass(frozen=True)
class NewIssue:
    path: Path
    date: dt.date
    text: str


def free_slot(config: Config, issues: list[Issue], now: dt.datetime) -> dt.date:
    """The first scheduled day whose send time is still ahead and that no issue holds."""
    held = {issue.date for issue in issues}
    for slot in scheduled_dates(config, now, _SEARCH_SLOTS):
        if slot.date() not in held:
            return slot.date()
    raise IssueError(
        "the schedule has no free date ahead; give one with --date YYYY-MM-DD", field="--date"
    )


def _check_date(config: Config, issues: list[Issue], date: dt.date, now: dt.datetime) -> None:
    today = local_day(config, now)
    if date < today:
        raise IssueError(f"{date} is in the past; expected today or later", field="--date")
    slot = moment_on(config, date) if date == today else None
    if slot is not None and slot <= now:
        raise IssueError(
            f"{date} is today and its send time ({describe(slot)}) has passed; choose a later date",
            field="--date",
        )
    for issue in issues:
        if issue.date == date:
            raise IssueError(
                f"{date} is taken by {issue.slug} ({issue.status}, {issue.path}); one issue "
                "per send date: choose another date or move that issue",
                field="--date",
            )


def plan_new_issue(
    config: Config,
    issues: list[Issue],
    title: str,
    now: dt.datetime,
    *,
    date: dt.date | None = None,
    slug: str | None = None,
) -> NewIssue:
    """Where the new draft goes and what it holds; raises IssueError for a bad choice."""
    if not title.strip():
        raise IssueError("expected a title with some text", field="TITLE")
    if date is None:
        date = free_slot(config, issues, now)
    else:
        _check_date(config, issues, date, now)
    if slug is not None:
        name = slugify(slug, max_length=SLUG_LENGTH)
        if not name:
            raise IssueError(f"expected letters or digits, got {slug!r}", field="--slug")
    else:
        name = slugify(title, max_length=SLUG_LENGTH) or FALLBACK_SLUG
    stem = f"{date:%Y-%m}-{name}"
    path = config.content_dir / f"{stem}.md"
    taken = {issue.slug for issue in issues}
    counter = 2
    while path.exists() or path.stem in taken:
        if slug is not None:  # a chosen name is never changed behind the editor's back
            raise IssueError("already exists; choose another --slug or edit it", path=path)
        path = config.content_dir / f"{stem}-{counter}.md"
        counter += 1
    quoted = '"' + " ".join(title.split()).replace("\\", "\\\\").replace('"', '\\"') + '"'
    text = _TEMPLATE.format(
        title=quoted, date=date.isoformat(), summary=SCAFFOLD_SUMMARY, body=SCAFFOLD_BODY
    )
    return NewIssue(path, date, text)
