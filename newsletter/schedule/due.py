"""What is due: the latest scheduled moment judged against the issues and the send log.

The rule (`schedule:` and `timezone:` in newsletter.yaml) is an RFC 5545 recurrence that
dateutil evaluates in local wall time; zoneinfo then places each occurrence in the zone, so
09:00 stays 09:00 across DST and "Tuesday" is the editor's Tuesday even where it is Monday in
UTC. Nothing here remembers anything between runs: the send log and the told-once notices
are the state, so a restart, a cron run and the long-running scheduler all reach one answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, Protocol, TypeVar

from newsletter.cadence import (
    catch_up_deadline,
    describe,
    is_scheduled_day,
    last_scheduled,
    scheduled_dates,
    to_utc,
)
from newsletter.config import Config

# What the send log says of one issue: never started, begun (maybe unfinished), or done.
SendStatus = Literal["none", "started", "finished"]


class ScheduledIssue(Protocol):
    """What the schedule reads from an issue (`newsletter.content.issues.Issue` has all of it)."""

    @property
    def slug(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def date(self) -> dt.date: ...
    @property
    def status(self) -> str: ...
    @property
    def path(self) -> Path: ...


I = TypeVar("I", bound=ScheduledIssue)  # noqa: E741 (the conventional name for "issue type")

DueKind = Literal[
    "due",  # on the scheduled day: send it
    "late",  # inside the catch-up window: send it late
    "resume",  # begun but not finished, past the window: finish it rather than leave readers out
    "too_late",  # past the window and never started: refuse, and say why
    "sent",  # already sent: nothing to do
    "no_issue_ready",  # the day came and no issue is ready (only a draft, or nothing)
    "conflict",  # two ready issues on one day: refuse rather than guess
    "not_due",  # nothing scheduled now
]
NOTIFY: tuple[DueKind, ...] = ("no_issue_ready", "too_late", "conflict")


@dataclass(frozen=True)
class Due(Generic[I]):
    kind: DueKind
    now: dt.datetime
    message: str
    slot: dt.datetime | None = None  # the scheduled moment judged, in the publication's zone
    deadline: dt.datetime | None = None  # when its catch-up window closes
    issue: I | None = None
    others: tuple[I, ...] = ()  # drafts on the day, or the rival ready issues of a conflict
    next_slot: dt.datetime | None = None

    @property
    def should_send(self) -> bool:
        return self.kind in ("due", "late", "resume")

    @property
    def notice_key(self) -> str | None:
        """The idempotency key of the editor notice this state calls for, if any."""
        if self.kind not in NOTIFY or self.slot is None:
            return None
        subject = self.issue.slug if self.issue is not None else self.slot.date().isoformat()
        return f"schedule-notice:{self.kind}:{subject}"


def find_due(
    config: Config,
    issues: Sequence[I],
    now: dt.datetime,
    sent_slugs: frozenset[str] | set[str],
    started_slugs: frozenset[str] | set[str] = frozenset(),
) -> Due[I]:
    """Judge the latest scheduled moment at or before `now` against the issues and send log.

    `sent_slugs`: issues whose send finished; `started_slugs`: sends begun (maybe unfinished).
    """
    local_now = to_utc(now).astimezone(config.tz)
    upcoming = scheduled_dates(config, now, 1)
    next_slot = upcoming[0] if upcoming else None
    after = f"; next: {describe(next_slot)}" if next_slot else "; the rule has no later dates"
    slot = last_scheduled(config, now)
    if slot is None:
        return Due(
            "not_due",
            local_now,
            f"nothing due at {describe(local_now)}{after}",
            next_slot=next_slot,
        )
    deadline = catch_up_deadline(config, slot)
    on_day = [i for i in issues if i.date == slot.date()]
    ready = [i for i in on_day if i.status == "ready"]
    drafts = tuple(i for i in on_day if i.status != "ready")
    inside = to_utc(now) < to_utc(deadline)

    def due(
        kind: DueKind, message: str, issue: I | None = None, others: tuple[I, ...] = ()
    ) -> Due[I]:
        return Due(kind, local_now, message, slot, deadline, issue, others, next_slot)

    when = describe(slot)
    window = f"the {config.schedule.catch_up_days}-day catch-up window"
    for issue in ready:
        if issue.slug in sent_slugs:
            return due("sent", f"already sent: {issue.slug} (scheduled {when}){after}", issue)
    if len(ready) > 1:
        names = ", ".join(f"{i.slug} ({i.path})" for i in ready)
        return due(
            "conflict",
            f"not sending: {len(ready)} issues are ready for {when}: "
            f"{names}; set all but one back to draft or move its date",
            ready[0],
            tuple(ready[1:]),
        )
    if ready:
        issue = ready[0]
        resuming = " (resuming the unfinished send)" if issue.slug in started_slugs else ""
        if inside and local_now.date() == slot.date():
            return due("due", f"due: {issue.slug} scheduled {when}; sending{resuming}", issue)
        if inside:
            late = (local_now.date() - slot.date()).days
            return due(
                "late",
                f"catching up: {issue.slug} was due {when}, {late} day(s) late, "
                f"inside {window} (until {describe(deadline)}); sending{resuming}",
                issue,
            )
        if issue.slug in started_slugs:
            return due(
                "resume",
                f"resuming: {issue.slug} (due {when}) was started but not "
                "finished; finishing it late rather than leaving readers out",
                issue,
            )
        return due(
            "too_late",
            f"too late: {issue.slug} ({issue.path}) was due {when} and "
            f"{window} closed {describe(deadline)}; not sending it. Send it by hand "
            f"with `newsletter send {issue.slug}` or move its date to a later scheduled day{after}",
            issue,
        )
    if not inside:
        return due("not_due", f"nothing due at {describe(local_now)}{after}")
    if drafts:
        names = ", ".join(f"{d.slug} ({d.path})" for d in drafts)
        why = f"only a draft: {names}; set `status: ready` to send it"
    else:
        why = f"no issue in content/ is dated {slot.date().isoformat()}"
    return due("no_issue_ready", f"no issue ready for {when}: {why}; nothing sent", None, drafts)


def judge(
    config: Config, issues: Sequence[I], now: dt.datetime, statuses: Mapping[str, SendStatus]
) -> Due[I]:
    """`find_due` from the send log's status of each issue (see newsletter.schedule.state)."""
    sent = {slug for slug, status in statuses.items() if status == "finished"}
    started = {slug for slug, status in statuses.items() if status == "started"}
    return find_due(config, issues, now, sent, started)


@dataclass(frozen=True)
class Slot(Generic[I]):
    """One coming scheduled moment and the issues dated on its day (`schedule --list`)."""

    at: dt.datetime
    on_day: tuple[I, ...]  # every issue dated that day, in content/ order

    @property
    def ready(self) -> tuple[I, ...]:
        return tuple(i for i in self.on_day if i.status == "ready")

    @property
    def drafts(self) -> tuple[I, ...]:
        return tuple(i for i in self.on_day if i.status != "ready")

    @property
    def conflict(self) -> bool:
        """Two ready issues on one day: the schedule refuses to guess (see find_due)."""
        return len(self.ready) > 1


def coming_slots(
    config: Config, issues: Sequence[I], now: dt.datetime, count: int
) -> list[Slot[I]]:
    """The next `count` scheduled moments after `now`, each with the issues on its day."""
    return [
        Slot(moment, tuple(i for i in issues if i.date == moment.date()))
        for moment in scheduled_dates(config, now, count)
    ]


def off_schedule(
    config: Config, issues: Sequence[I], today: dt.date, sent: set[str] | frozenset[str]
) -> list[I]:
    """Ready, unsent issues dated today or later on a day the rule never reaches: the
    schedule will never send them (`newsletter send ISSUE` can)."""
    return [
        issue
        for issue in issues
        if issue.status == "ready"
        and issue.date >= today
        and issue.slug not in sent
        and not is_scheduled_day(config, issue.date)
    ]
