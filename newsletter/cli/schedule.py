"""`newsletter schedule`: the long-running scheduler, and `--list` to see what comes next.

`newsletter send --due` (in cli/send.py) is the cron-friendly one-shot; both end in
`newsletter.schedule.run.send_due`, so they judge and send the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import click

from newsletter.cadence import Clock, OffsetClock, describe, local_day, rule_text
from newsletter.cli.context import AppContext, pass_app
from newsletter.content.publication import load_publication
from newsletter.schedule.due import coming_slots, judge, off_schedule
from newsletter.schedule.locking import scheduler_lock
from newsletter.schedule.loop import SchedulerLoop, StopFlag, stop_on_signals
from newsletter.schedule.run import scheduled_send
from newsletter.schedule.state import send_statuses
from newsletter.settings import Config

# The parent of every schedule module's logger: the commands show all of them.
log = logging.getLogger("newsletter.schedule")


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


def print_schedule(config: Config, now: dt.datetime, count: int, as_json: bool = False) -> None:
    publication = load_publication(config, local_day(config, now))
    for warning in publication.warnings():
        click.echo(warning, err=True)
    issues = publication.issues
    statuses = send_statuses(config, [i.slug for i in issues])
    sent = {slug for slug, status in statuses.items() if status == "finished"}
    due = judge(config, issues, now, statuses)
    slots = coming_slots(config, issues, now, count)
    s = config.schedule
    if as_json:
        click.echo(json.dumps({
            "rule": rule_text(config), "time": s.time, "timezone": config.timezone,
            "catch_up_days": s.catch_up_days, "now": due.message,
            "slots": [{
                "at": slot.at.isoformat(),
                "ready": [i.slug for i in slot.ready],
                "drafts": [i.slug for i in slot.drafts],
                "sent": [i.slug for i in slot.on_day if i.slug in sent],
            } for slot in slots],
        }, indent=2))  # fmt: skip
        return
    click.echo(
        f"rule: {rule_text(config)} at {s.time} {config.timezone}, "
        f"catch-up {s.catch_up_days} day(s)"
    )
    click.echo(f"now: {due.message}")
    for slot in slots:
        if slot.ready:
            what = "; ".join(
                f"{i.slug}  {i.title}" + ("  (already sent)" if i.slug in sent else "")
                for i in slot.ready
            )
            if slot.conflict:
                what = f"CONFLICT, {len(slot.ready)} ready: {what}"
        else:
            drafts = ", ".join(i.slug for i in slot.on_day)
            what = "no issue ready" + (f" (draft: {drafts})" if drafts else "")
        click.echo(f"{describe(slot.at)}  {what}")
    for issue in off_schedule(config, issues, local_day(config, now), sent):
        click.echo(
            f"warning: {issue.slug} is ready but dated {issue.date:%a %Y-%m-%d}, not a "
            "scheduled day: the schedule will never send it (`newsletter send` can)",
            err=True,
        )


def run_scheduler(config: Config, clock: Clock) -> None:
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
        tick = scheduled_send(config, logger)
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
    run_scheduler(config, clock)
