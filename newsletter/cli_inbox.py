"""`newsletter inbox`: process replies, bounces, complaints and auto-replies."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from newsletter.cli_feedback import list_feedback
from newsletter.config import Config
from newsletter.context import AppContext, pass_app
from newsletter.inbox import Processor, SendConfirmation, Summary
from newsletter.mailboxes import Inbox, MaildirInbox, MboxInbox, StreamInbox, open_imap
from newsletter.store import open_store
from newsletter.transport import Transport, TransportFailure, open_transport


@click.command()
@click.argument("source", required=False, type=click.Choice(["-"]))
@click.option("--mbox", type=click.Path(path_type=Path), help="Read an mbox file.")
@click.option("--maildir", type=click.Path(path_type=Path), help="Read a Maildir folder.")
@click.option("--imap", is_flag=True, help="Read the IMAP folder set in newsletter.yaml.")
@click.option(
    "--feedback", is_flag=True, help="List the readers' feedback by issue, newest first."
)
@click.option("--json", "as_json", is_flag=True, help="With --feedback: print it as JSON.")
@click.option("--no-confirm", is_flag=True, help="Send no unsubscribe confirmations.")
@click.option("-v", "--verbose", is_flag=True, help="One line per message.")
@pass_app
def inbox(
    app: AppContext,
    source: str | None,
    mbox: Path | None,
    maildir: Path | None,
    imap: bool,
    feedback: bool,
    as_json: bool,
    no_confirm: bool,
    verbose: bool,
) -> None:
    """Process incoming mail: unsubscribe requests, bounces, complaints, auto-replies.

    Reads one source (`-` is one message on standard input, for an MTA pipe), records
    what each message means in the subscriber store and prints counts per kind. Processing
    the same message twice changes nothing.

    \b
    Example:
        newsletter inbox --imap
        newsletter inbox --maildir ~/Maildir/.newsletter
        newsletter inbox --mbox replies.mbox -v
        newsletter inbox - < message.eml
        newsletter inbox --feedback
        newsletter inbox --feedback --json > feedback.json
    """
    config = app.config
    if feedback:
        list_feedback(app, as_json=as_json)
        return
    if as_json:
        raise click.UsageError("--json goes with --feedback")
    chosen = [s for s in (source, mbox, maildir, imap or None) if s]
    if len(chosen) != 1:
        raise click.UsageError("choose one source: --mbox FILE, --maildir DIR, --imap or -")
    # -v prints a table of every message; the log only says what needs a look.
    logging.basicConfig(level=logging.WARNING, format="inbox: %(message)s")
    box = _open(config, mbox, maildir, imap)
    transport: Transport | None = None

    def send(recipient: str, data: bytes, message_id: str) -> None:
        nonlocal transport
        if transport is None:
            transport = open_transport(config, slug="unsubscribe-confirmations")
        try:
            # RFC 3834 3.3: automatic responses go out with a null return path, so a
            # failure to deliver one can never start a loop of replies.
            transport.send("", recipient, data, message_id=message_id)
        except TransportFailure as exc:
            # The unsubscribe stands; only the courtesy note failed.
            logging.getLogger("newsletter.inbox").warning("confirmation to %s: %s", recipient, exc)

    confirm: SendConfirmation | None = None if no_confirm else send
    try:
        with open_store(config) as store:
            summary = Processor(config, store, confirm).run(box)
    finally:
        box.close()
        if transport is not None:
            transport.close()
    _print_summary(summary, verbose)


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
