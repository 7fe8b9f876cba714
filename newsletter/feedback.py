"""The readers' feedback replies, grouped by the issue they answer, newest first.

The inbox keeps each reply's own words only (newsletter.replytext cut the quote and the
signature when it classified the message); the issue comes from newsletter.attribution, the
same rule the report counts by.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from newsletter.attribution import AttributionStore, Attributor, Event, SendPoint


class FeedbackStore(AttributionStore, Protocol):
    def report_sends(self) -> list[tuple[int, str, int, str, str | None, int | None]]: ...
    def report_feedback(self) -> list[tuple[int, str, int | None, str | None, str]]: ...
    def report_events(
        self, kinds: list[str]
    ) -> list[tuple[int, str, str, str | None, int | None, str | None, str | None]]: ...


@dataclass(frozen=True)
class FeedbackEntry:
    at: dt.datetime  # when the inbox processed it
    sender: str  # the From header, as the reader wrote it
    subject: str
    text: str  # the reader's own words (may be empty)


@dataclass(frozen=True)
class FeedbackGroup:
    slug: str | None  # None: before the first issue went out
    number: int | None
    title: str | None
    entries: tuple[FeedbackEntry, ...]  # newest first


def feedback_by_issue(
    store: FeedbackStore, titles: Mapping[str, str] | None = None
) -> tuple[FeedbackGroup, ...]:
    """Every feedback reply kept, grouped by issue; the newest issue first."""
    titles = titles or {}
    sends = store.report_sends()
    points = [SendPoint(sid, slug, started) for sid, slug, _, started, _, _ in sends]
    inbox = [Event(*row) for row in store.report_events(["inbox"])]
    replies = store.report_feedback()
    events = [
        Event(eid, at, "inbox", "inbox", reader, slug, None) for eid, at, reader, slug, _ in replies
    ]
    owner = Attributor(store, points, inbox).attribute(events)
    grouped: dict[int | None, list[FeedbackEntry]] = {}
    for eid, at, _, _, detail in replies:
        grouped.setdefault(owner[eid], []).append(_entry(at, detail))
    order = {sid: index for index, (sid, *_) in enumerate(sends)}
    groups = []
    for send_id in sorted(grouped, key=lambda s: -1 if s is None else order[s], reverse=True):
        row = next((r for r in sends if r[0] == send_id), None)
        slug = row[1] if row else None
        entries = sorted(grouped[send_id], key=lambda e: e.at, reverse=True)
        groups.append(
            FeedbackGroup(slug, row[5] if row else None, titles.get(slug or ""), tuple(entries))
        )
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
                    "subject": entry.subject,
                    "text": entry.text,
                }
                for entry in group.entries
            ],
        }
        for group in groups
    ]
