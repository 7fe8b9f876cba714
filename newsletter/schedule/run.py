"""The publication's calendar: which issue is due now, sent once, caught up after downtime.

The rule (`schedule:` and `timezone:` in newsletter.yaml) is an RFC 5545 recurrence that
dateutil evaluates in local wall time; zoneinfo then places each occurrence in the zone, so
09:00 stays 09:00 across DST and "Tuesday" is the editor's Tuesday even where it is Monday in
UTC. Nothing here remembers anything between runs: the send log and the told-once notices
are the state, so a restart, a cron run and the long-running scheduler all reach one answer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.policy
import email.utils
import json
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Generic, Literal, Protocol, TypeVar

import schedule

from newsletter import locks
from newsletter.cadence import (
    Clock,
    SystemClock,
    catch_up_deadline,
    describe,
    last_scheduled,
    local_day,
    scheduled_dates,
    to_utc,
)
from newsletter.config import Config
from newsletter.content.issues import Issue
from newsletter.content.publication import load_publication
from newsletter.errors import DeliveryError, NewsletterError
from newsletter.fsutil import write_atomic
from newsletter.mail.oneoff import OneOffSender, outgoing
from newsletter.mail.transport import TransportFailure
from newsletter.store.events import Events
from newsletter.store.sends import SendLog as StoreSendLog
from newsletter.store.store import open_store

log = logging.getLogger("newsletter.schedule.run")


class ScheduleError(NewsletterError):
    """The schedule cannot be evaluated or run (a bad rule, another instance holding the lock)."""


class ScheduleLockedError(ScheduleError):
    """Another scheduler or `send --due` is running; it is not a usage error, so exit 1."""

    exit_code = 1


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
T = TypeVar("T")

# ----------------------------------------------------------------------------- what is due

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
_NOTIFY: tuple[DueKind, ...] = ("no_issue_ready", "too_late", "conflict")


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
        if self.kind not in _NOTIFY or self.slot is None:
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


# ----------------------------------------------------------------------------- state


SendStatus = Literal["none", "started", "finished"]


class SendLog(Protocol):
    """The store's send log, as the schedule sees it."""

    def send_status(self, slug: str) -> SendStatus: ...


class NoticeLog(Protocol):
    """Durable "the editor was told" facts, so a notice goes out once, not every run."""

    def already_told(self, key: str) -> bool: ...
    def record_told(self, key: str, detail: str) -> None: ...


Notifier = Callable[[EmailMessage], None]


class StateFileNotices:
    """Told-once facts in a small JSON file, replaced atomically (never half-written)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ScheduleError(f"cannot read the schedule state: {exc}", path=self.path) from None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def already_told(self, key: str) -> bool:
        return key in self._read()

    def record_told(self, key: str, detail: str) -> None:
        data = self._read()
        data[key] = detail
        write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n", durable=True)


class StoreState:
    """The store's send log and events table as the schedule's SendLog and NoticeLog."""

    NOTICE = "schedule-notice"

    def __init__(self, sends: StoreSendLog, events: Events) -> None:
        self.sends, self.events = sends, events

    def send_status(self, slug: str) -> SendStatus:
        record = self.sends.get_send(slug)
        if record is None:
            return "none"
        return "started" if record.finished_at is None else "finished"

    def already_told(self, key: str) -> bool:
        return self.events.has_event(self.NOTICE, key)

    def record_told(self, key: str, detail: str) -> None:
        self.events.record_event(None, self.NOTICE, detail, key=key)


def state_file(config: Config) -> Path:
    return config.subscribers_dir / "schedule-state.json"


def editor_notice(config: Config, due: Due[I]) -> EmailMessage:
    """A short message to `reply_to` (RFC 3834: auto-generated, so nobody auto-replies)."""
    when = describe(due.slot) if due.slot else describe(due.now)
    headline = {
        "no_issue_ready": f"No issue ready for {when}",
        "too_late": f"Not sent: {due.issue.slug if due.issue else ''} missed its catch-up window",
        "conflict": f"Not sent: two issues are ready for {when}",
    }.get(due.kind, due.kind)
    msg = EmailMessage()
    msg["Subject"] = _one_line(f"[{config.name}] {headline}")
    msg["From"] = config.sender
    msg["To"] = config.reply_to
    msg["Date"] = email.utils.format_datetime(due.now)
    msg["Message-ID"] = email.utils.make_msgid("schedule", _domain(config.reply_to))
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"{due.message}\n\nThe scheduler says this once; nothing was sent to readers.\n"
        f"Check with `newsletter schedule --list`.\n"
    )
    return msg


def _one_line(text: str) -> str:
    return " ".join(text.split())  # no CR/LF from editor-controlled names reaches a header


def _domain(address: str) -> str:
    return email.utils.parseaddr(address)[1].rpartition("@")[2] or "localhost"


def tell_editor_once(
    config: Config, due: Due[I], notices: NoticeLog, notify: Notifier, logger: logging.Logger = log
) -> bool:
    """Log the problem and mail the editor, once per key; True if told now.

    The fact is recorded only after the message went out, so a transport failure is retried
    on the next run instead of being forgotten.
    """
    key = due.notice_key
    if key is None:
        return False
    logger.warning("%s", due.message)
    if notices.already_told(key):
        logger.info("the editor was already told (%s)", key)
        return False
    notify(editor_notice(config, due))
    notices.record_told(key, f"{due.now.isoformat()} {due.message}")
    logger.warning("told the editor at %s", config.reply_to)
    return True


# ----------------------------------------------------------------------------- one at a time


def exclusive_lock(path: Path, what: str) -> contextlib.AbstractContextManager[None]:
    """A lock file the OS drops when the holder dies (newsletter.locks), so no stale locks.

    The holder records who it is, so a second instance can say who holds it.
    """

    def busy(holder: str) -> ScheduleLockedError:
        return ScheduleLockedError(
            f"{what} is already running ({holder}); not starting another", path=path
        )

    return locks.exclusive(path, busy)


def due_lock(config: Config) -> contextlib.AbstractContextManager[None]:
    """Held while one `send --due` (or a scheduler wake-up) judges and sends."""
    return exclusive_lock(config.subscribers_dir / "send-due.lock", "a scheduled send")


def scheduler_lock(config: Config) -> contextlib.AbstractContextManager[None]:
    """Held for the whole life of `newsletter schedule`."""
    return exclusive_lock(config.subscribers_dir / "scheduler.lock", "newsletter schedule")


# ----------------------------------------------------------------------------- send --due


@dataclass(frozen=True)
class DueRun(Generic[I, T]):
    due: Due[I]
    outcome: T | None = None  # what send_issue returned, when something was sent
    told_editor: bool = False

    @property
    def exit_code(self) -> int:
        """0: sent or nothing to do; 1: the schedule needs a person (refused or no issue)."""
        return 1 if self.due.kind in _NOTIFY else 0


def run_due(
    config: Config,
    now: dt.datetime,
    send_issue: Callable[[I], T],
    *,
    issues: Sequence[I],
    send_log: SendLog,
    notices: NoticeLog,
    notify: Notifier,
    logger: logging.Logger = log,
) -> DueRun[I, T]:
    """What `newsletter send --due` does: judge `now`, then send, notify or say why not.

    Under the due lock, so two runs at once cannot both send or both notify; the loser raises
    ScheduleLockedError naming the holder.
    """
    with due_lock(config):
        statuses = {i.slug: send_log.send_status(i.slug) for i in issues}
        sent = {slug for slug, status in statuses.items() if status == "finished"}
        started = {slug for slug, status in statuses.items() if status == "started"}
        due = find_due(config, issues, now, sent, started)
        if due.should_send and due.issue is not None:
            logger.info("%s", due.message)
            return DueRun(due, send_issue(due.issue))
        if due.notice_key is not None:
            return DueRun(due, None, tell_editor_once(config, due, notices, notify, logger))
        logger.info("%s", due.message)
        return DueRun(due)


# ----------------------------------------------------------------------------- the long run


class StopFlag:
    """Set by SIGTERM/SIGINT (a plain attribute: safe to touch from a signal handler)."""

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True

    def is_set(self) -> bool:
        return self.requested


class SchedulerLoop:
    """`newsletter schedule`: wake at each scheduled moment and run `tick` (send --due).

    The `schedule` library keeps the timetable; each wake-up is a one-shot job armed for the
    next moment this module computes (zoneinfo-exact, so DST never shifts it). A watchdog
    wake-up at least every `watchdog` seconds covers a suspended machine or a clock jump; a
    wake-up with nothing due is harmless because `tick` judges from the send log.
    """

    def __init__(
        self,
        config: Config,
        tick: Callable[[dt.datetime], object],
        *,
        clock: Clock | None = None,
        stop: StopFlag | None = None,
        watchdog: float = 3600,
        logger: logging.Logger = log,
    ) -> None:
        self.config = config
        self.tick = tick
        self.clock = clock or SystemClock()
        self.stop = stop or StopFlag()
        self.watchdog = watchdog
        self.log = logger
        self.scheduler = schedule.Scheduler()
        self.next_slot: dt.datetime | None = None

    def run(self, *, poll: float = 1.0) -> None:
        """Check once now (catch-up after downtime), then sleep between wake-ups until stopped."""
        self.wake()
        while not self.stop.is_set():
            self.scheduler.run_pending()
            idle = self.scheduler.idle_seconds
            # Short slices: a stop request is seen within `poll` seconds even mid-wait.
            time.sleep(max(0.0, min(poll, idle if idle is not None else poll)))
        self.scheduler.clear()
        self.log.info("scheduler stopped")

    def wake(self) -> type[schedule.CancelJob]:
        """One wake-up: judge now, then arm the next one. Errors are logged, never fatal."""
        now = self.clock.now()
        try:
            self.tick(now)
        except NewsletterError as exc:
            self.log.error("error: %s", exc)
        except Exception:  # a long-running service outlives one bad wake-up; the log keeps it
            self.log.exception("the scheduled run failed; trying again at the next wake-up")
        self.arm()
        return schedule.CancelJob

    def arm(self) -> float:
        """Arm the next wake-up; returns its delay in seconds."""
        now = self.clock.now()
        upcoming = scheduled_dates(self.config, now, 1)
        self.next_slot = upcoming[0] if upcoming else None
        delay = self.watchdog
        if self.next_slot is not None:
            delay = min(delay, (to_utc(self.next_slot) - to_utc(now)).total_seconds() + 1)
        seconds = max(1, math.ceil(delay))
        self.scheduler.every(seconds).seconds.do(self.wake)
        if self.next_slot is not None:
            self.log.debug("next scheduled %s; waking in %ss", describe(self.next_slot), seconds)
        return seconds


@contextmanager
def stop_on_signals(stop: StopFlag) -> Iterator[None]:
    """First SIGTERM/SIGINT: stop after the current step (a send runs to its end). A second:
    interrupt it (the send log keeps its place; at most the message in flight is `unknown`).
    The previous handlers come back afterwards."""

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        # os.write, not logging or click: buffered streams are not safe inside a handler.
        name = signal.Signals(signum).name
        os.write(2, f"{name}: stopping after the current step\n".encode())

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ----------------------------------------------------------------------------- wiring


def transport_notifier(config: Config) -> Notifier:
    """Editor notices through the configured transport (an .eml in outbox/ by default)."""

    def notify(message: EmailMessage) -> None:
        mail = outgoing(
            config,
            sender=email.utils.parseaddr(config.sender)[1],
            recipient=email.utils.parseaddr(config.reply_to)[1],
            message_id=str(message["Message-ID"]),
            data=message.as_bytes(policy=email.policy.SMTP),
        )
        with OneOffSender(config, slug="schedule-notices") as mailer:
            try:
                mailer.send(mail)
            except TransportFailure as exc:
                raise DeliveryError(f"cannot tell the editor at {mail.recipient}: {exc}") from None

    return notify


def send_due(
    config: Config,
    now: dt.datetime,
    send_issue: Callable[[Issue], T],
    *,
    notify: Notifier | None = None,
    logger: logging.Logger = log,
) -> DueRun[Issue, T]:
    """`newsletter send --due` and each wake-up of `newsletter schedule`: the issues from
    content/, the send log and notices from the store, the notice through the transport."""
    publication = load_publication(config, local_day(config, now))
    for warning in publication.warnings():  # a broken file stops only itself
        logger.warning("%s", warning)
    issues = publication.issues
    with open_store(config) as store:
        state = StoreState(store.sends, store.events)
        return run_due(
            config,
            now,
            send_issue,
            issues=issues,
            send_log=state,
            notices=state,
            notify=notify or transport_notifier(config),
            logger=logger,
        )
