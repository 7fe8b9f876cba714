"""`newsletter schedule`: the long-running scheduler, and `--list` to see what comes next.

`newsletter send --due` (in cli_send) is the cron-friendly one-shot; both end in
`schedule.send_due`, so they judge and send the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from newsletter.cadence import (
    Clock,
    OffsetClock,
    describe,
    is_scheduled_day,
    local_day,
    rule_text,
    scheduled_dates,
)
from newsletter.cli.context import AppContext, pass_app
from newsletter.content.issues import Issue
from newsletter.content.publication import load_publication
from newsletter.delivery import send as delivery
from newsletter.schedule.run import (
    SchedulerLoop,
    SendStatus,
    StopFlag,
    StoreState,
    find_due,
    scheduler_lock,
    send_due,
    stop_on_signals,
)
from newsletter.settings import Config
from newsletter.store.store import open_store, store_exists

log = logging.getLogger("newsletter.schedule.run")
SendIssue = Callable[[Issue], object]


class _EchoHandler(logging.Handler):
    """Log lines as the command's output: info on stdout, warnings and errors on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        stamp = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        # format(), not getMessage(): a failed wake-up's traceback belongs in the log.
        click.echo(f"{stamp} {self.format(record)}", err=record.levelno >= logging.WARNING)


@contextmanager
def echo_schedule_log() -> Iterator[logging.Logger]:
    """Show the schedule's log lines for the duration of one command."""
    handler = _EchoHandler(logging.INFO)
    previous = (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield log
    finally:
        log.removeHandler(handler)
        log.setLevel(previous[0])
        log.propagate = previous[1]


def _send_statuses(config: Config, issues: list[Issue]) -> dict[str, SendStatus]:
    """From the send log, without creating a database just to look."""
    if not store_exists(config):
        return {}
    with open_store(config) as store:
        state = StoreState(store.sends, store.events)
        return {i.slug: state.send_status(i.slug) for i in issues}


def print_schedule(config: Config, now: dt.datetime, count: int, as_json: bool = False) -> None:
    publication = load_publication(config, local_day(config, now))
    for warning in publication.warnings():
        click.echo(warning, err=True)
    issues = publication.issues
    statuses = _send_statuses(config, issues)
    sent = {slug for slug, status in statuses.items() if status == "finished"}
    started = {slug for slug, status in statuses.items() if status == "started"}
    s = config.schedule
    if as_json:
        slots = []
        for slot in scheduled_dates(config, now, count):
            on_day = [i for i in issues if i.date == slot.date()]
            slots.append({
                "at": slot.isoformat(),
                "ready": [i.slug for i in on_day if i.status == "ready"],
                "drafts": [i.slug for i in on_day if i.status != "ready"],
                "sent": [i.slug for i in on_day if i.slug in sent],
            })  # fmt: skip
        click.echo(json.dumps({
            "rule": rule_text(config), "time": s.time, "timezone": config.timezone,
            "catch_up_days": s.catch_up_days,
            "now": find_due(config, issues, now, sent, started).message, "slots": slots,
        }, indent=2))  # fmt: skip
        return
    click.echo(
        f"rule: {rule_text(config)} at {s.time} {config.timezone}, "
        f"catch-up {s.catch_up_days} day(s)"
    )
    click.echo(f"now: {find_due(config, issues, now, sent, started).message}")
    for slot in scheduled_dates(config, now, count):
        on_day = [i for i in issues if i.date == slot.date()]
        ready = [i for i in on_day if i.status == "ready"]
        if ready:
            what = "; ".join(
                f"{i.slug}  {i.title}" + ("  (already sent)" if i.slug in sent else "")
                for i in ready
            )
            if len(ready) > 1:
                what = f"CONFLICT, {len(ready)} ready: {what}"
        else:
            drafts = ", ".join(i.slug for i in on_day)
            what = "no issue ready" + (f" (draft: {drafts})" if drafts else "")
        click.echo(f"{describe(slot)}  {what}")
    today = local_day(config, now)
    for issue in issues:
        if issue.status != "ready" or issue.date < today or issue.slug in sent:
            continue
        if not is_scheduled_day(config, issue.date):
            click.echo(
                f"warning: {issue.slug} is ready but dated {issue.date:%a %Y-%m-%d}, not a "
                "scheduled day: the schedule will never send it (`newsletter send` can)",
                err=True,
            )


def run_scheduler(config: Config, send_issue: SendIssue, clock: Clock) -> None:
    """The long-running loop: one instance (a lock), stops cleanly on SIGTERM/SIGINT."""
    stop = StopFlag()
    with scheduler_lock(config), stop_on_signals(stop), echo_schedule_log() as logger:
        logger.info(
            "scheduler started (pid %d): %s at %s %s",
            os.getpid(),
            rule_text(config),
            config.schedule.time,
            config.timezone,
        )

        def tick(now: dt.datetime) -> None:
            send_due(config, now, send_issue, logger=logger)

        loop = SchedulerLoop(config, tick, clock=clock, stop=stop, logger=logger)
        loop.run()


@click.command("schedule")
@click.option(
    "--list",
    "list_count",
    type=click.IntRange(1, 240),
    is_flag=False,
    flag_value=6,
    default=None,
    metavar="[N]",
    help="Print the next N scheduled dates (default 6) with the issue due on each, and exit.",
)
@click.option(
    "--now",
    "now_text",
    metavar="ISO-DATETIME",
    help="Judge the schedule from this moment instead of now (local time unless it has an "
    "offset); without --list the scheduler's clock starts there and runs on.",
)
@click.option("--json", "as_json", is_flag=True, help="With --list: the dates as JSON.")
@pass_app
def schedule_command(
    app: AppContext, list_count: int | None, now_text: str | None, as_json: bool
) -> None:
    """Run the publication's schedule: send each issue on its day, once.

    Wakes at the configured time (schedule: in newsletter.yaml, first Tuesday 09:00 local by
    default) and does what `newsletter send --due` does; at start-up it checks at once, so an
    issue missed while the machine was off goes out late within schedule.catch_up_days.
    One instance at a time; SIGTERM or Ctrl-C stops it after the current step (a second
    signal interrupts a send, which the next run resumes from the send log).

    \b
    Example:
        newsletter schedule --list 12
        newsletter schedule --list 3 --now 2027-01-01T00:00
        newsletter schedule --list 3 --json
        newsletter schedule
    """
    config = app.config
    if list_count is not None:
        print_schedule(config, app.now(now_text), list_count, as_json)
        return
    # The long run: a clock that starts at --now (when given) and runs on from there.
    clock = OffsetClock(app.now(now_text)) if now_text is not None else app.clock
    run_scheduler(config, issue_sender(config, clock), clock)


def issue_sender(config: Config, clock: Clock) -> SendIssue:
    """The scheduler's send of one issue: the same runner as `newsletter send`, logged."""

    def progress(event: delivery.Progress) -> None:
        if event.state != "sent":
            log.info("%s: %s: %s", event.state, event.email, event.reply)

    def send(issue: Issue) -> delivery.SendReport:
        today = local_day(config, clock.now())
        issues = load_publication(config, today).issues
        report = delivery.send_issue(config, issue, issues, on_progress=progress)
        counts = ", ".join(f"{n} {state}" for state, n in report.counts.items() if n)
        log.info(
            "%s: %d sent by this run in %.1f s; of %d: %s",
            issue.slug,
            report.sent_now,
            report.elapsed,
            report.send.total,
            counts or "nothing",
        )
        if report.paused:
            log.error("%s paused: %s; the next wake-up resumes it", issue.slug, report.paused)
        return report

    return send


def run_send_due(
    app: AppContext,
    now: dt.datetime,
    send_one: SendIssue,
    *,
    dry_run: bool = False,
    preview: Callable[[Issue], object] | None = None,
) -> None:
    """`newsletter send --due [--now T] [--dry-run]`, called by the `send` command.

    `send_one` sends an issue the way `newsletter send ISSUE` does (with its progress and
    summary). Exits 1 when a person is needed (refused, or no issue ready: the editor was told).
    """
    config = app.config
    if dry_run:
        issues = load_publication(config, local_day(config, now)).issues
        statuses = _send_statuses(config, issues)
        due = find_due(
            config,
            issues,
            now,
            {slug for slug, status in statuses.items() if status == "finished"},
            {slug for slug, status in statuses.items() if status == "started"},
        )
        click.echo(f"dry run: {due.message}")
        if due.should_send and due.issue is not None and preview is not None:
            preview(due.issue)
        return
    with echo_schedule_log() as logger:
        run = send_due(config, now, send_one, logger=logger)
    if run.exit_code:
        sys.exit(run.exit_code)
