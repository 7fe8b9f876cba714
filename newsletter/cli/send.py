"""`newsletter send ISSUE` and `newsletter send --due` (the schedule's, for cron)."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import click

from newsletter.cli.context import AppContext, pass_app
from newsletter.content.issues import Issue
from newsletter.content.publication import load_publication
from newsletter.content.render import PreviewReader
from newsletter.delivery import send as delivery
from newsletter.delivery.interrupts import exit_code as interrupt_exit_code
from newsletter.errors import ConfigError, DeliveryError
from newsletter.mail.message import Reader
from newsletter.settings import Config
from newsletter.store.store import open_store

PLAIN_EVERY = 5.0  # seconds between progress lines when stdout is not a terminal


def _route(config: Config, slug: str) -> str:
    d = config.delivery
    if d.transport == "file":
        where = f"files in {config.outbox_dir / slug}/"
    else:
        s = d.smtp
        rate = f", at most {s.max_per_second:g}/s" if s.max_per_second else ""
        where = f"smtp {s.host}:{s.port} ({s.security}), {s.connections} connection(s){rate}"
    if d.redirect_to:
        where += f"; every message redirected to {d.redirect_to} (delivery.redirect_to)"
    return where


@contextmanager
def _reporter(total: int) -> Iterator[Callable[[delivery.Progress], None]]:
    """A rich progress bar with rate and ETA on a terminal; plain lines otherwise."""
    if sys.stdout.isatty():
        # Imported here: rich costs ~50 ms of start-up that cron and `status` need not pay.
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("[bold]sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns) as bar:
            task = bar.add_task("send", total=total, rate="")
            started = time.monotonic()

            def show(event: delivery.Progress) -> None:
                if event.state == "waiting":
                    bar.console.print(event.reply, markup=False, highlight=False)
                    return
                if event.state not in ("sent", "deferred"):
                    line = f"{event.state}: {event.email}: {event.reply}"
                    bar.console.print(line, markup=False, highlight=False)  # replies hold "["
                rate = event.done / max(time.monotonic() - started, 1e-6)
                bar.update(task, completed=event.done, rate=f"{rate:,.0f} msg/s")

            yield show
        return
    last = [time.monotonic(), time.monotonic()]

    def log(event: delivery.Progress) -> None:
        now = time.monotonic()
        if event.state not in ("sent",):
            click.echo(f"{event.state}: {event.email}: {event.reply}".replace(": : ", ": "))
        if now - last[1] >= PLAIN_EVERY:
            rate = event.done / max(now - last[0], 1e-6)
            click.echo(f"progress: {event.done}/{total} ({rate:,.0f} msg/s)")
            last[1] = now

    yield log


@click.command()
@click.argument("issue_ref", metavar="[ISSUE]", required=False)
@click.option(
    "--to",
    "to",
    metavar="EMAIL",
    multiple=True,
    help="Send a [TEST] copy to EMAIL instead, outside the send log (repeatable; drafts too).",
)
@click.option("--test", is_flag=True, help="Send a [TEST] copy to each of test_recipients.")
@click.option("--dry-run", is_flag=True, help="Show the recipient count and a sample message.")
@click.option(
    "--resend-unknown",
    is_flag=True,
    help="Re-send messages whose fate is unknown (line lost after the final '.', or a crash), "
    "with the same Message-ID.",
)
@click.option("--due", is_flag=True, help="Send whatever the schedule says is due now (for cron).")
@click.option(
    "--now",
    "now_text",
    metavar="ISO-DATETIME",
    help="With --due: judge the schedule at this moment (local time unless it has an offset).",
)
@click.option(
    "--yes", is_flag=True, help="Send an issue dated more than a day ahead without asking."
)
@pass_app
def send(
    app: AppContext,
    issue_ref: str | None,
    to: tuple[str, ...],
    test: bool,
    dry_run: bool,
    resend_unknown: bool,
    due: bool,
    now_text: str | None,
    yes: bool,
) -> None:
    """Send ISSUE (a slug or path) to every active subscriber, or resume its send.

    Every recipient is a row in the send log: a second run never re-sends a `sent` row, and
    a crash leaves at most one message per connection `unknown`. An issue dated more than a
    day ahead is sent only after a yes on the terminal, or with --yes. Exit status 1 when
    readers are left deferred, unknown or pending, or the server refused the send.

    \b
    Example:
        newsletter send 2026-07-your-first-customer-sits-next-to-you --dry-run
        newsletter send 2026-12-thanks-that-travel-upstream --to me@example.com --to you@example.com
        newsletter send 2026-12-thanks-that-travel-upstream --test
        newsletter send 2026-07-your-first-customer-sits-next-to-you
        newsletter send 2027-01-looking-back --yes   # dated ahead: send it now anyway
        newsletter send --due        # what the schedule says is due now (README: Schedule)
    """
    if due or now_text is not None:
        if not due:
            raise click.UsageError("--now goes with --due")
        if issue_ref is not None or to or test:
            raise click.UsageError("either ISSUE or --due, not both (no --to/--test with --due)")
        _send_due(app, app.now(now_text), dry_run=dry_run, resend_unknown=resend_unknown)
        return
    if issue_ref is None:
        raise click.UsageError("expected ISSUE (a slug or path), or --due")
    if to and test:
        raise click.UsageError("either --to EMAIL... or --test (which mails test_recipients)")
    config = app.config
    publication = load_publication(config, app.today())
    issue = publication.find(config, issue_ref)
    issues = publication.issues
    if to or test:
        _send_test(config, issue, issues, to or config.test_recipients)
        return
    if dry_run:
        _dry_run(config, issue, issues)
        return
    for warning in publication.warnings():
        click.echo(warning, err=True)
    _confirm_early(app, issue, yes)
    todo = delivery.remaining(config, issue.slug, resend_unknown=resend_unknown)
    try:
        with _reporter(todo) as show:
            report = delivery.send_issue(
                config,
                issue,
                issues,
                resend_unknown=resend_unknown,
                on_progress=show,
                on_start=lambda: _start(app, issue, issues),
            )
    except KeyboardInterrupt as exc:
        click.echo(f"interrupted: `newsletter send {issue.slug}` resumes the send", err=True)
        sys.exit(interrupt_exit_code(exc))  # 130 Ctrl-C, 143 SIGTERM
    _summary(issue.slug, report)


def _summary(slug: str, report: delivery.SendReport) -> None:
    """What the run did and what is left; exit 1 when readers or a pause need a person."""
    if report.unknown_before:
        click.echo(
            f"{report.unknown_before} message(s) were in flight when an earlier run stopped: "
            "now `unknown`"
        )
    counts = report.counts
    summary = ", ".join(f"{counts[s]} {s}" for s in counts if counts[s])
    click.echo(
        f"{slug}: {report.sent_now} sent by this run in {report.elapsed:.1f} s; "
        f"of {report.send.total}: {summary or 'nothing'}"
    )
    if report.paused:
        click.echo(f"paused: {report.paused}", err=True)
        click.echo(
            "nobody was marked bounced; fix the cause and run the same command again", err=True
        )
    if counts.get("unknown"):
        click.echo(
            f"{counts['unknown']} message(s) may or may not have arrived (`newsletter status "
            f"{slug}` lists them); `--resend-unknown` re-sends them with the same Message-ID"
        )
    if counts.get("deferred") or counts.get("pending"):
        click.echo("deferred or pending readers remain: run the same command again later")
    if delivery.needs_attention(report):
        sys.exit(1)


def _send_due(app: AppContext, now: dt.datetime, *, dry_run: bool, resend_unknown: bool) -> None:
    """`newsletter send --due [--now T] [--dry-run]`: what the schedule says is due, sent as
    `newsletter send ISSUE` sends it (newsletter.schedule.run.send_due). Exit 1 when a person
    is needed: refused or no issue ready (the editor was told), or readers left to retry."""
    config = app.config
    # Imported here: the schedule's modules are not on the way to a plain send's first message.
    from newsletter.cli.schedule import echo_schedule_log
    from newsletter.schedule.run import send_due, what_is_due

    with echo_schedule_log() as logger:
        if dry_run:
            due, issues = what_is_due(config, now, logger)
            click.echo(f"dry run: {due.message}")
            if due.should_send and due.issue is not None:
                _dry_run(config, due.issue, issues)
            return
        with ExitStack() as bar:
            shows: list[Callable[[delivery.Progress], None]] = []

            def start(issue: Issue) -> None:
                click.echo(f"sending {issue.slug} via {_route(config, issue.slug)}")
                todo = delivery.remaining(config, issue.slug, resend_unknown=resend_unknown)
                shows.append(bar.enter_context(_reporter(todo)))

            try:
                run = send_due(
                    config,
                    now,
                    resend_unknown=resend_unknown,
                    on_start=start,
                    on_progress=lambda event: shows[0](event),
                    logger=logger,
                )
            except KeyboardInterrupt as exc:
                click.echo("interrupted: `newsletter send --due` resumes the send", err=True)
                sys.exit(interrupt_exit_code(exc))  # 130 Ctrl-C, 143 SIGTERM
    if run.outcome is not None and run.due.issue is not None:
        _summary(run.due.issue.slug, run.outcome)
    if run.exit_code:
        sys.exit(run.exit_code)


def _send_test(
    config: Config, issue: Issue, issues: list[Issue], addresses: tuple[str, ...]
) -> None:
    """[TEST] copies: each personalised as that reader when subscribed, else as a sample
    reader whose unsubscribe link is no real reader's; never recorded in the send log."""
    if not addresses:
        raise ConfigError(
            "no test_recipients set; add e.g. `test_recipients: [you@example.com]` or use --to",
            path=config.root / "newsletter.yaml",
            field="test_recipients",
        )
    readers: list[Reader] = []
    with open_store(config) as store:
        for address in addresses:
            known = store.subscribers.get_by_email(address) if "@" in address else None
            readers.append(known or PreviewReader(email=address, first_name=None, token="test"))
    replies = delivery.send_test(config, issue, issues, readers)
    route = _route(config, issue.slug)
    for address, reply in replies:
        click.echo(f"test copy of {issue.slug} to {address} via {route}: {reply}")


def _confirm_early(app: AppContext, issue: Issue, yes: bool) -> None:
    """An issue dated more than a day ahead goes out now only when someone says so."""
    days = (issue.date - app.today()).days
    if days <= 1 or yes or not issue.is_ready:  # a draft is refused by the send itself
        return
    with open_store(app.config) as store:
        if store.sends.get_send(issue.slug) is not None:
            return  # resuming a send someone already started
    question = (
        f"{issue.slug} is dated {issue.date:%a %Y-%m-%d}, {days} days from now; "
        "send it to every reader now?"
    )
    if sys.stdin.isatty() and sys.stdout.isatty():
        if not click.confirm(question, default=False):
            click.echo("not sent")
            sys.exit(1)
        return
    raise DeliveryError(
        f"dated {issue.date:%a %Y-%m-%d}, {days} days from now; to send it now anyway, add "
        "--yes (`newsletter send --due` sends it on its day)",
        path=issue.path,
        field="date",
    )


def _start(app: AppContext, issue: Issue, issues: list[Issue]) -> None:
    """Once the issue is accepted (ready, checks clean, transport usable), before the first
    message: the web version goes up first, since the mail links it (archive.out and
    archive.publish_command); a refused issue never reaches the archive."""
    config = app.config
    if config.archive.out:
        # Imported only when there is an archive to build: the archive's modules (the site,
        # search, feeds) cost ~0.2 s of start-up that a send without one need not pay.
        from newsletter.archive.publish import publish_before_send

        with open_store(config) as store:
            publish_before_send(config, issue, issues, store, app.today(), click.echo)
    click.echo(f"sending {issue.slug} via {_route(config, issue.slug)}")


def _dry_run(config: Config, issue: Issue, issues: list[Issue]) -> None:
    rendered, skeleton = delivery.prepare(config, issue, issues)
    with open_store(config) as store:
        existing = store.sends.get_send(issue.slug)
        sample = next(store.subscribers.iter_active(batch_size=1), None)
        if existing is None:
            active = store.subscribers.counts()["active"]
            click.echo(f"would send {issue.slug} to {active} active subscribers")
        else:
            counts = store.sends.delivery_counts(existing.id)
            left = sum(counts[state] for state in delivery.UNFINISHED)
            states = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
            click.echo(f"would resume {issue.slug}: {left} left of {existing.total} ({states})")
    click.echo(f"via {_route(config, issue.slug)}; nothing sent")
    reader = sample or PreviewReader()
    body = rendered.personalise(reader)
    data = skeleton.render(reader, html=body.html, text=body.text)
    head, _, _ = data.partition(b"\r\n\r\n")
    click.echo(f"sample message for {reader.email} ({len(data):,} bytes):")
    click.echo(head.decode("ascii").replace("\r\n", "\n"))
    click.echo()
    click.echo(body.text)
