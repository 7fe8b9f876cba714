"""The readers' feedback replies, grouped by the issue they answer, newest first.

The inbox keeps each reply's own words only (newsletter.inbox.replytext cut the quote and the
signature when it classified the message); the issue comes from the store, the
same rule the report counts by.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from newsletter.store.reports import Reports


@dataclass(frozen=True)
class FeedbackEntry:
    at: dt.datetime  # when the inbox processed it
    sender: str  # the From header, as the reader wrote it
    date: str  # the message's Date header, as sent
    subject: str
    text: str  # the reader's own words (may be empty)


@dataclass(frozen=True)
class FeedbackGroup:
    slug: str | None  # None: before the first issue went out
    number: int | None
    title: str | None
    entries: tuple[FeedbackEntry, ...]  # newest first


def feedback_by_issue(
    reports: Reports, titles: Mapping[str, str] | None = None
) -> tuple[FeedbackGroup, ...]:
    """Every feedback reply kept, grouped by issue; the newest issue first."""
    titles = titles or {}
    sends = {row[0]: row for row in reports.sends()}  # in order, oldest first
    order = {send_id: index for index, send_id in enumerate(sends)}
    grouped: dict[int | None, list[FeedbackEntry]] = {}
    for _, at, owner, detail in reports.feedback():
        grouped.setdefault(owner, []).append(_entry(at, detail))
    groups = []
    for owner in sorted(grouped, key=lambda s: -1 if s is None else order[s], reverse=True):
        row = sends.get(owner) if owner is not None else None
        slug = row[1] if row else None
        entries = sorted(grouped[owner], key=lambda e: e.at, reverse=True)
        number = row[5] if row else None
        groups.append(FeedbackGroup(slug, number, titles.get(slug or ""), tuple(entries)))
    return tuple(groups)


def _entry(at: str, detail: str) -> FeedbackEntry:
    try:
        data: Any = json.loads(detail)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    return FeedbackEntry(
        at=dt.datetime.fromisoformat(at),
        sender=str(data.get("from", "")),
        date=str(data.get("date", "")),
        subject=str(data.get("subject", "")),
        text=str(data.get("text", "")).strip(),
    )


def as_json(groups: tuple[FeedbackGroup, ...]) -> list[dict[str, Any]]:
    return [
        {
            "issue": group.slug,
            "number": group.number,
            "title": group.title,
            "replies": [
                {
                    "at": entry.at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
                    "from": entry.sender,
                    "date": entry.date,
                    "subject": entry.subject,
                    "text": entry.text,
                }
                for entry in group.entries
            ],
        }
        for group in groups
    ]
