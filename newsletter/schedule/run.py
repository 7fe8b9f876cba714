"""The runner: `newsletter send --due` and each wake-up of `newsletter schedule`.

Under the due lock it judges now (newsletter.schedule.due) from the send log, then sends the
issue due through `newsletter.delivery.send.send_issue`, tells the editor once
(newsletter.schedule.notices) or says why nothing happens. The send log and notices are read
and written through short-lived store handles (newsletter.schedule.state), none of them open
while the send runs: a send with several connections forks worker processes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from newsletter.archive.publish import publish_before_send
from newsletter.cadence import local_day
from newsletter.config import Config
from newsletter.content.issues import Issue
from newsletter.content.publication import load_publication
from newsletter.delivery.send import Progress, SendReport, send_issue
from newsletter.schedule.due import NOTIFY, Due, I, judge
from newsletter.schedule.locking import due_lock
from newsletter.schedule.notices import NoticeLog, Notifier, tell_editor_once, transport_notifier
from newsletter.schedule.state import SendLog, StoreState, send_statuses
from newsletter.store.store import open_store

log = logging.getLogger("newsletter.schedule.run")
T = TypeVar("T")


@dataclass(frozen=True)
class DueRun(Generic[I, T]):
    due: Due[I]
    outcome: T | None = None  # what the send returned, when something was sent
    told_editor: bool = False

    @property
    def exit_code(self) -> int:
        """0: sent or nothing to do; 1: the schedule needs a person (refused or no issue)."""
        return 1 if self.due.kind in NOTIFY else 0


def run_due(
    config: Config,
    now: dt.datetime,
    send: Callable[[I], T],
    *,
    issues: Sequence[I],
    send_log: SendLog,
    notices: NoticeLog,
    notify: Notifier,
    logger: logging.Logger = log,
) -> DueRun[I, T]:
    """Judge `now`, then send, notify or say why not.

    Under the due lock, so two runs at once cannot both send or both notify; the loser raises
    ScheduleLockedError naming the holder.
    """
    with due_lock(config):
        due = judge(config, issues, now, send_log.send_statuses([i.slug for i in issues]))
        if due.should_send and due.issue is not None:
            logger.info("%s", due.message)
            return DueRun(due, send(due.issue))
        if due.notice_key is not None:
            return DueRun(due, None, tell_editor_once(config, due, notices, notify, logger))
        logger.info("%s", due.message)
        return DueRun(due)


def due_issues(config: Config, now: dt.datetime, logger: logging.Logger = log) -> list[Issue]:
    """The issues in content/ as of `now`; a broken file is a warning and stops only itself."""
    publication = load_publication(config, local_day(config, now))
    for warning in publication.warnings():
        logger.warning("%s", warning)
    return publication.issues


def what_is_due(
    config: Config, now: dt.datetime, logger: logging.Logger = log
) -> tuple[Due[Issue], list[Issue]]:
    """Judge `now` without sending, locking or creating a store (`send --due --dry-run`)."""
    issues = due_issues(config, now, logger)
    return judge(config, issues, now, send_statuses(config, [i.slug for i in issues])), issues


def send_due(
    config: Config,
    now: dt.datetime,
    *,
    resend_unknown: bool = False,
    on_start: Callable[[Issue], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    notify: Notifier | None = None,
    logger: logging.Logger = log,
) -> DueRun[Issue, SendReport]:
    """What is due at `now`, sent the way `newsletter send ISSUE` sends it (send_issue).

    Once the issue is accepted (ready, checks clean, transport usable) the web version goes
    up first, since the mail links it (archive.out and archive.publish_command; its lines
    go to the log), then `on_start(issue)` runs; `on_progress` sees each result. The caller
    shows them and the returned report.
    """
    issues = due_issues(config, now, logger)

    def send(issue: Issue) -> SendReport:
        def start() -> None:
            with open_store(config) as store:  # closed again before the send may fork
                today = local_day(config, now)
                publish_before_send(config, issue, issues, store, today, logger.info)
            if on_start is not None:
                on_start(issue)

        return send_issue(
            config,
            issue,
            issues,
            resend_unknown=resend_unknown,
            on_start=start,
            on_progress=on_progress or (lambda event: None),
        )

    return send_due_with(config, now, send, issues=issues, notify=notify, logger=logger)


def send_due_with(
    config: Config,
    now: dt.datetime,
    send: Callable[[Issue], T],
    *,
    issues: list[Issue] | None = None,
    notify: Notifier | None = None,
    logger: logging.Logger = log,
) -> DueRun[Issue, T]:
    """`send_due` with another `send` (tests): the issues from content/ unless given, the
    send log and notices from the store, the notice through the configured transport."""
    state = StoreState(config)
    return run_due(
        config,
        now,
        send,
        issues=due_issues(config, now, logger) if issues is None else issues,
        send_log=state,
        notices=state,
        notify=notify or transport_notifier(config),
        logger=logger,
    )


def scheduled_send(config: Config, logger: logging.Logger = log) -> Callable[[dt.datetime], None]:
    """One wake-up of `newsletter schedule`: `send_due`, its results in the log."""

    def progress(event: Progress) -> None:
        if event.state != "sent":
            logger.info("%s: %s: %s", event.state, event.email, event.reply)

    def tick(now: dt.datetime) -> None:
        run = send_due(config, now, on_progress=progress, logger=logger)
        report = run.outcome
        if report is None or run.due.issue is None:
            return
        slug = run.due.issue.slug
        counts = ", ".join(f"{n} {state}" for state, n in report.counts.items() if n)
        logger.info(
            "%s: %d sent by this run in %.1f s; of %d: %s",
            slug,
            report.sent_now,
            report.elapsed,
            report.send.total,
            counts or "nothing",
        )
        if report.paused:
            logger.error("%s paused: %s; the next wake-up resumes it", slug, report.paused)

    return tick
