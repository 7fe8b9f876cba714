"""`newsletter inbox`: process replies, bounces, complaints and auto-replies."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path

import click

from newsletter.cli.context import AppContext, pass_app
from newsletter.cli.feedback import list_feedback
from newsletter.content.issues import parse_issues
from newsletter.inbox.mailboxes import Inbox, MaildirInbox, MboxInbox, StreamInbox, open_imap
from newsletter.inbox.processor import (
    Processor,
    Summary,
    review_entries,
    transport_confirmations,
)
from newsletter.mail.oneoff import OneOffSender
from newsletter.settings import Config
from newsletter.store.store import open_store


@click.command()
@click.argument("source", required=False, type=click.Choice(["-"]))
@click.option("--mbox", type=click.Path(path_type=Path), help="Read an mbox file.")
@click.option("--maildir", type=click.Path(path_type=Path), help="Read a Maildir folder.")
@click.option("--imap", is_flag=True, help="Read the IMAP folder set in newsletter.yaml.")
@click.option(
    "--recipient",
    metavar="ADDR",
    help="With -: the envelope recipient the MTA delivered to (Postfix ${original_recipient}).",
)
@click.option("--feedback", is_flag=True, help="List the readers' feedback by issue, newest first.")
@click.option("--json", "as_json", is_flag=True, help="With --feedback: print it as JSON.")
@click.option(
    "--review", is_flag=True, help="List what was kept for review or quarantined, with why."
)
@click.option("--no-confirm", is_flag=True, help="Send no unsubscribe confirmations.")
@click.option("-v", "--verbose", is_flag=True, help="One line per message.")
@pass_app
def inbox(
    app: AppContext,
    source: str | None,
    mbox: Path | None,
    maildir: Path | None,
    imap: bool,
    recipient: str | None,
    feedback: bool,
    review: bool,
    as_json: bool,
    no_confirm: bool,
    verbose: bool,
) -> None:
    """Process incoming mail: unsubscribe requests, bounces, complaints, auto-replies.

    Reads one source (`-` is one message on standard input, for an MTA pipe), records
    what each message means in the subscriber store and prints counts per kind. Processing
    the same message twice changes nothing. Bounces and complaints change a reader only with
    proof (their bounce address, or our Message-ID quoted); the rest is kept for review.
    A message that cannot be parsed is quarantined and the run exits 1.

    \b
    Example:
        newsletter inbox --imap
        newsletter inbox --maildir ~/Maildir/.newsletter
        newsletter inbox --mbox replies.mbox -v
        newsletter inbox - --recipient news-bounces+TOKEN@example.com < message.eml
        newsletter inbox --feedback
        newsletter inbox --review
        newsletter inbox --feedback --json > feedback.json
    """
    config = app.config
    if feedback:
        list_feedback(app, as_json=as_json)
        return
    if review:
        _list_review(config)
        return
    if as_json:
        raise click.UsageError("--json goes with --feedback")
    chosen = [s for s in (source, mbox, maildir, imap or None) if s]
    if len(chosen) != 1:
        raise click.UsageError("choose one source: --mbox FILE, --maildir DIR, --imap or -")
    if recipient is not None and source != "-":
        raise click.UsageError("--recipient goes with - (one message from an MTA pipe)")
    if recipient is not None and (not recipient.isprintable() or "@" not in recipient):
        raise click.BadParameter(
            f"expected an address, got {recipient!r}", param_hint="--recipient"
        )
    # -v prints a table of every message; the log only says what needs a look.
    logging.basicConfig(level=logging.WARNING, format="inbox: %(message)s")
    box = _open(config, mbox, maildir, imap)
    mailer = OneOffSender(config, slug="unsubscribe-confirmations")
    confirm = None if no_confirm else transport_confirmations(config, mailer)
    titles = _titles(config, app.today())
    try:
        with open_store(config) as store:
            summary = Processor(config, store, confirm, titles).run(box, recipient)
    finally:
        box.close()
        mailer.close()
    _print_summary(summary, verbose)
    quarantined = summary.actions.get("quarantined", 0)
    if quarantined:
        click.echo(
            f"{quarantined} message(s) could not be read and were set aside: "
            "see `newsletter inbox --review`",
            err=True,
        )
        sys.exit(1)


def _titles(config: Config, today: dt.date) -> list[str]:
    """Our issue titles, so an auto-responder echoing one is not taken for a request. A broken
    issue file must not stop the inbox: its title is simply not known."""
    issues, broken = parse_issues(config, today)
    for error in broken:
        logging.getLogger("newsletter.inbox.processor").warning("issue title unknown: %s", error)
    return [issue.title for issue in issues]


def _open(config: Config, mbox: Path | None, maildir: Path | None, imap: bool) -> Inbox:
    if mbox is not None:
        return MboxInbox(mbox)
    if maildir is not None:
        return MaildirInbox(maildir)
    if imap:
        return open_imap(config.inbox.imap)
    return StreamInbox(sys.stdin.buffer)


def _print_summary(summary: Summary, verbose: bool) -> None:
    if verbose:
        for o in summary.outcomes:
            who = o.reader or o.classification.recipient or "-"
            click.echo(f"{o.classification.kind:<12} {who:<40} {o.action}")
    total = len(summary.outcomes)
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(summary.kinds.items())) or "none"
    actions = ", ".join(f"{a} {n}" for a, n in sorted(summary.actions.items())) or "none"
    click.echo(f"{total} message(s): {kinds}")
    click.echo(f"changes: {actions}")


def _list_review(config: Config) -> None:
    with open_store(config) as store:
        details = [detail for _, detail in store.events.events_of_kind("inbox") if detail]
    entries = review_entries(details)
    if not entries:
        click.echo("nothing to review")
        return
    for entry in entries:
        click.echo(f"{entry.get('kind', '')}: {entry.get('action', '')}")
        for label, key in (("From", "from"), ("Subject", "subject"), ("Names", "named")):
            if entry.get(key):
                click.echo(f"  {label}: {entry[key]}")
        if entry.get("reason") and entry["reason"] not in entry.get("action", ""):
            click.echo(f"  Why: {entry['reason']}")
        click.echo("")
