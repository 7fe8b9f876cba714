"""How did each issue do: privacy-first figures from what the store already records.

No opens and no clicks, by design: nothing we send carries a pixel or a rewritten link. What
the store knows honestly is the send log (who was targeted, what each server answered) and
the events table (sign-ups, imports, unsubscribes with their source, bounces, complaints,
feedback replies). Every figure here is a count from indexed queries (newsletter.store.reports);
each change is given to an issue by the rule beside `_ATTRIBUTED` there (the Message-ID it
quotes, else the last issue the reader was sent, else the issue out at the time).
Addresses only with `detail=True`.

What is not counted: imported statuses (a CSV marking someone unsubscribed is no reaction to
an issue), web-link unsubscribes undone on the spot, and the history of forgotten readers
(erasure deletes it; their delivery rows still count as sent).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from newsletter.store.reports import Reports

SOURCES = ("reply", "mailto", "link", "admin", "other")
# The store's event sources -> the report's names (`command` is `subscribers remove`).
_SOURCE_NAMES = {"reply": "reply", "mailto": "mailto", "link": "link", "command": "admin"}
_MONTH_COLUMNS = ("signups", "imports", "unsubscribes", "bounces", "complaints")
_MONTH_COLUMN_OF = {"unsubscribed": "unsubscribes", "bounced": "bounces", "complaint": "complaints"}


@dataclass(frozen=True)
class Unsubscribes:
    reply: int = 0  # asked in a reply (subject or own words)
    mailto: int = 0  # the mail client's unsubscribe button (List-Unsubscribe mailto)
    link: int = 0  # the one-click link or the unsubscribe page (RFC 8058)
    admin: int = 0  # `newsletter subscribers remove`
    other: int = 0

    @property
    def total(self) -> int:
        return self.reply + self.mailto + self.link + self.admin + self.other


@dataclass(frozen=True)
class IssueFigures:
    slug: str
    number: int | None
    title: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    targeted: int  # active readers when the send began
    sent: int
    deferred: int
    failed: int
    unknown: int
    skipped: int  # left before their turn came
    waiting: int  # pending or in flight: the send is not finished
    hard_bounces: int
    soft_bounces: int
    complaints: int
    unsubscribes: Unsubscribes
    feedback: int
    duration_seconds: float | None  # start to finish, pauses included
    rate_per_second: float | None  # sent / duration
    churn: float | None  # unsubscribes / sent


@dataclass(frozen=True)
class Month:
    month: str  # YYYY-MM, UTC
    signups: int  # web form, `subscribers add`, a returning reader
    imports: int
    unsubscribes: int
    bounces: int  # readers suppressed after bouncing
    complaints: int


@dataclass(frozen=True)
class ListPoint:
    slug: str
    at: dt.datetime
    active: int  # active readers when the send began


@dataclass(frozen=True)
class Detail:
    slug: str | None
    what: str  # "unsubscribed (reply)", "hard bounce", "complaint", "feedback"...
    email: str


@dataclass(frozen=True)
class Report:
    as_of: dt.datetime
    active_now: int
    issues: tuple[IssueFigures, ...]  # oldest first
    months: tuple[Month, ...]
    list_size: tuple[ListPoint, ...]
    most_feedback: tuple[tuple[str, int], ...]  # (slug, replies), most first
    before_first_issue: int  # unsubscribes, bounces, complaints, feedback before any send
    details: tuple[Detail, ...] = ()  # only when asked for (addresses)

    @property
    def empty(self) -> bool:
        return not self.issues


def _time(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp)


def _label(kind: str, source: str | None, streak: int) -> str:
    """What a counted change is: "unsubscribed:reply", "bounced:hard", "feedback"..."""
    if kind == "inbox":
        return "feedback"
    if kind == "unsubscribed":
        return "unsubscribed:" + _SOURCE_NAMES.get(source or "", "other")
    if kind == "bounced":
        return "bounced:soft" if streak else "bounced:hard"
    return {"soft_bounce": "soft bounce", "complained": "complaint"}.get(kind, kind)


def build_report(
    reports: Reports,
    *,
    as_of: dt.datetime,
    titles: Mapping[str, str] | None = None,
    detail: bool = False,
) -> Report:
    """Every figure, from a handful of indexed reads. `titles`: slug -> title, for display."""
    titles = titles or {}
    sends = reports.sends()
    per_send: dict[int | None, Counter[str]] = {}
    per_month: dict[str, Counter[str]] = {}
    details: tuple[Detail, ...] = ()
    if detail:  # one row per change: the same figures, and who
        rows = reports.reaction_readers()
        tally = [
            (owner, month, _label(kind, source, streak), 1)
            for owner, month, kind, source, streak, _ in rows
        ]
        emails = reports.emails([row[5] for row in rows if row[5] is not None])
        slug_of = {row[0]: row[1] for row in sends}
        details = tuple(
            Detail(
                slug_of.get(owner) if owner is not None else None,
                _describe(_label(kind, source, streak)),
                emails.get(reader, "(forgotten)") if reader else "(unknown sender)",
            )
            for owner, _, kind, source, streak, reader in rows
        )
    else:
        tally = [
            (owner, month, _label(kind, source, streak), count)
            for owner, month, kind, source, streak, count in reports.reactions()
        ]
    for owner, month, label, count in tally:
        per_send.setdefault(owner, Counter())[label] += count
        column = _MONTH_COLUMN_OF.get(label.partition(":")[0])
        if column is not None:
            per_month.setdefault(month, Counter())[column] += count
    states = reports.delivery_counts()
    issues = tuple(
        _issue(row, Counter(states.get(row[0], {})), per_send.get(row[0], Counter()), titles)
        for row in sends
    )
    ranked = sorted((i for i in issues if i.feedback), key=lambda i: (-i.feedback, i.started_at))
    return Report(
        as_of=as_of,
        active_now=reports.active(),
        issues=issues,
        months=_months(reports, per_month, as_of),
        list_size=tuple(ListPoint(slug, _time(at), total) for _, slug, total, at, _, _ in sends),
        most_feedback=tuple((i.slug, i.feedback) for i in ranked[:5]),
        before_first_issue=sum(per_send.get(None, Counter()).values()),
        details=details,
    )


def _describe(label: str) -> str:
    kind, _, how = label.partition(":")
    if kind == "unsubscribed":
        return f"unsubscribed ({how})"
    if kind == "bounced":
        return "hard bounce" if how == "hard" else "bounced after soft bounces"
    return label


def _issue(
    row: tuple[int, str, int, str, str | None, int | None],
    states: Counter[str],
    reactions: Counter[str],
    titles: Mapping[str, str],
) -> IssueFigures:
    _, slug, total, started, finished, number = row
    start = _time(started)
    end = _time(finished) if finished else None
    duration = (end - start).total_seconds() if end else None
    sent = states["sent"]
    unsubscribes = Unsubscribes(**{s: reactions[f"unsubscribed:{s}"] for s in SOURCES})
    return IssueFigures(
        slug=slug,
        number=number,
        title=titles.get(slug),
        started_at=start,
        finished_at=end,
        targeted=total,
        sent=sent,
        deferred=states["deferred"],
        failed=states["failed"],
        unknown=states["unknown"],
        skipped=states["skipped"],
        waiting=states["pending"] + states["in_flight"],
        hard_bounces=reactions["bounced:hard"],
        soft_bounces=reactions["soft bounce"],
        complaints=reactions["complaint"],
        unsubscribes=unsubscribes,
        feedback=reactions["feedback"],
        duration_seconds=duration,
        rate_per_second=sent / duration if duration else None,
        churn=unsubscribes.total / sent if sent else None,
    )


def _months(
    reports: Reports, tally: dict[str, Counter[str]], as_of: dt.datetime
) -> tuple[Month, ...]:
    """Per UTC month, from the first recorded change to `as_of`; quiet months are zeros."""
    for kind, source, stamp, count in reports.joins():
        if kind == "resubscribed" and source == "link":
            continue  # an undo on the unsubscribe page, not a new reader
        column = "imports" if (source or "").startswith("import ") else "signups"
        tally.setdefault(stamp, Counter())[column] += count
    if not tally:
        return ()
    last = max(max(tally), as_of.astimezone(dt.UTC).strftime("%Y-%m"))
    months = []
    year, month = map(int, min(tally).split("-"))
    while (key := f"{year:04d}-{month:02d}") <= last:
        counts = tally.get(key, Counter())
        months.append(Month(key, *(counts[c] for c in _MONTH_COLUMNS)))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return tuple(months)


def only_issue(report: Report, slug: str) -> Report:
    """The report narrowed to one issue (its figures and, with detail, its addresses)."""
    return dataclasses.replace(
        report,
        issues=tuple(i for i in report.issues if i.slug == slug),
        details=tuple(d for d in report.details if d.slug == slug),
    )


def as_json(report: Report) -> dict[str, Any]:
    """Plain JSON types; times in ISO 8601 UTC; unsubscribes with their total."""

    def plain(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        if isinstance(value, Unsubscribes):
            return {**dataclasses.asdict(value), "total": value.total}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    data: dict[str, Any] = plain(report)
    if not report.details:
        del data["details"]  # counts, not addresses, unless asked
    return data
