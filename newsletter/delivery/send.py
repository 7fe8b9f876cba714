"""Sending an issue: refuse what must not go out, then run the send log (delivery.engine).

`send_issue` is what `newsletter send` and the scheduler call: it renders once, checks, builds
the per-issue message skeleton, takes the per-issue lock and runs the send: in this process
with one connection, as worker processes (newsletter.delivery.workers) with several.
`send_test` sends one proof copy outside the log.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from newsletter import locks
from newsletter.config import Config
from newsletter.content.checks import check_rendered
from newsletter.content.issues import Issue
from newsletter.content.render import RenderedIssue, render_issue
from newsletter.delivery import journal
from newsletter.delivery.engine import run_send
from newsletter.delivery.lifecycle import Progress, SendReport
from newsletter.delivery.policy import Outcome, classify
from newsletter.errors import DeliveryError
from newsletter.mail import dkim
from newsletter.mail.bodies import BodyEncoder
from newsletter.mail.message import IssueMessage, Reader, message_id
from newsletter.mail.transport import TransportFailure, open_transport
from newsletter.store.records import DeliveryState
from newsletter.store.sends import SendLog
from newsletter.store.store import is_server, open_store

__all__ = [
    "NEEDS_ATTENTION",
    "TROUBLE",
    "UNFINISHED",
    "BodyEncoder",
    "Issue",
    "Outcome",
    "Progress",
    "SendLog",
    "SendReport",
    "classify",
    "needs_attention",
    "prepare",
    "remaining",
    "run_send",
    "send_issue",
    "send_lock",
    "send_test",
]


def send_lock(config: Config, slug: str) -> contextlib.AbstractContextManager[None]:
    """One `send` per issue at a time on SQLite; a second one is told who holds the lock. On
    PostgreSQL any number of senders share the send (store.sends: each claims its own rows),
    so there is nothing to hold: starting the send log is one transaction either way."""
    if is_server(config):
        return contextlib.nullcontext()
    path = config.subscribers_dir / f".send-{slug}.lock"

    def busy(holder: str) -> DeliveryError:
        return DeliveryError(
            f"another `newsletter send {slug}` is running ({holder}); wait for it to finish",
            path=path,
        )

    return locks.exclusive(path, busy)


def store_journals(config: Config, log: SendLog, slugs: Iterable[str]) -> None:
    """What the claim journal of a send that died holds, into the send log now (`status`
    after a crash), unless a send of that issue is running: it stores its own."""
    for slug in slugs:
        where = journal.folder(config, slug)
        if not where.is_dir() or not any(where.iterdir()):
            continue
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(send_lock(config, slug))
            except DeliveryError:  # busy: a send of it is running
                continue
            journal.replay(log, where)


# The states that still need work, named once. A send is not finished while a row is
# UNFINISHED (SendReport.complete); a run leaves work for a person while a row NEEDS_ATTENTION
# (an `unknown` row is re-sent only with --resend-unknown) or the send is paused: exit 1.
UNFINISHED: tuple[DeliveryState, ...] = ("pending", "deferred", "in_flight")
NEEDS_ATTENTION: tuple[DeliveryState, ...] = (*UNFINISHED, "unknown")
# What `newsletter status` lists reader by reader, with the server's last reply.
TROUBLE: tuple[DeliveryState, ...] = ("failed", "unknown", "deferred")


def needs_attention(report: SendReport) -> bool:
    """Readers left deferred, pending or unknown, or a paused send: someone must look."""
    return bool(report.paused) or any(report.counts.get(s) for s in NEEDS_ATTENTION)


def remaining(config: Config, slug: str, *, resend_unknown: bool = False) -> int:
    """How many messages a run of this issue's send would try: every active reader for a
    new send, the rows still needing work for a resumed one (a progress bar's total)."""
    with open_store(config) as store:
        existing = store.sends.get_send(slug)
        if existing is None:
            return store.subscribers.counts()["active"]
        counts = store.sends.delivery_counts(existing.id)
    chosen = NEEDS_ATTENTION if resend_unknown else UNFINISHED
    return sum(counts[state] for state in chosen)


TEST_PREFIX = "[TEST] "
# The file transport writes on this many threads. Each message is fsynced before its row says
# sent, as on one thread, but concurrent fsyncs share the file system's journal commits and
# the runner's group commit shares SQLite transactions: ~3x the files a second of one writer
# (bench/outbox.py). Still at most one message in flight per writer.
FILE_WRITERS = 4


def prepare(
    config: Config, issue: Issue, issues: list[Issue], *, test: bool = False
) -> tuple[RenderedIssue, IssueMessage]:
    """Render once and build the skeleton; refuse a draft and an issue `check` rejects.

    `test`: a proof copy, so a draft is fine and the subject starts with "[TEST] "."""
    if issue.status != "ready" and not test:
        raise DeliveryError(
            "is a draft; set `status: ready` in its front-matter to send it",
            path=issue.path,
            field="status",
        )
    dkim.check(config)  # a missing key is one error now, not a paused send at message one
    rendered = render_issue(config, issue, issues)
    errors = [p for p in check_rendered(config, rendered) if p.severity == "error"]
    if errors:
        raise DeliveryError(
            f"`newsletter check` finds {len(errors)} error(s), the first: {errors[0]}",
            path=issue.path,
        )
    subject = TEST_PREFIX + rendered.subject if test else rendered.subject
    skeleton = IssueMessage(config, slug=issue.slug, subject=subject, date=datetime.now(config.tz))
    return rendered, skeleton


def send_issue(
    config: Config,
    issue: Issue,
    issues: list[Issue],
    *,
    resend_unknown: bool = False,
    on_progress: Callable[[Progress], None] = lambda progress: None,
    on_start: Callable[[], None] = lambda: None,
) -> SendReport:
    """Start or resume the send of one issue to every active subscriber (the `send` command
    and the scheduler call this). Raises DeliveryError when another send of it is running.
    `on_start` runs once the issue is accepted (not a draft, checks clean, transport usable)."""
    rendered, skeleton = prepare(config, issue, issues)
    smtp = config.delivery.transport == "smtp"
    open_transport(config, slug=issue.slug)  # a missing password fails here, not per thread
    # Readers see this number from now on, and those of the earlier issues the email lists:
    # fix them all, so no later issue (backdated, a draft made ready) renumbers them.
    shown = {i.slug: i.number for i in issues if i.number and i.is_ready and i.date <= issue.date}
    if issue.number is not None:
        shown[issue.slug] = issue.number
    with open_store(config) as store:
        store.numbers.fix_numbers(shown, how="sent")
    on_start()
    connections = config.delivery.smtp.connections if smtp else FILE_WRITERS
    max_per_second = config.delivery.smtp.max_per_second if smtp else 0.0
    with send_lock(config, issue.slug):
        if smtp and connections > 1:  # worker processes: each opens its own store after fork
            # Imported here: multiprocessing is not on the way to the file transport's first
            # message (the start-up time bench/startup.py measures).
            from newsletter.delivery.workers import run_send_workers

            return run_send_workers(
                config,
                lambda: open_store(config),
                rendered,
                skeleton,
                connect=lambda: open_transport(config, slug=issue.slug),
                connections=connections,
                max_per_second=max_per_second,
                resend_unknown=resend_unknown,
                on_progress=on_progress,
            )
        with open_store(config) as store:
            return run_send(
                config,
                store.sends,
                store.subscribers,
                rendered,
                skeleton,
                connect=lambda: open_transport(config, slug=issue.slug),
                connections=connections,  # threads: the file writers wait on fsync, not the GIL
                max_per_second=max_per_second,
                resend_unknown=resend_unknown,
                on_progress=on_progress,
            )


def send_test(
    config: Config, issue: Issue, issues: list[Issue], readers: Sequence[Reader]
) -> list[tuple[str, str]]:
    """One "[TEST] " copy to each reader, outside the send log (never counted as sent):
    a proof to the editor, drafts included. Returns (address, the server's reply) pairs."""
    # Imported here: one-off mail is not on the way to a send's first message (bench/startup.py)
    from newsletter.mail.oneoff import OneOffSender, OutgoingMail, recipient_for

    rendered, skeleton = prepare(config, issue, issues, test=True)
    replies: list[tuple[str, str]] = []
    with OneOffSender(config, slug=issue.slug) as mailer:
        for reader in readers:
            body = rendered.personalise(reader)
            msgid = message_id(config, issue.slug, f"test-{secrets.token_hex(6)}")
            # Issue messages are DKIM-signed as they are rendered, test copies included.
            data = skeleton.render(reader, html=body.html, text=body.text, msgid=msgid)
            to = recipient_for(config, reader.email)
            try:
                reply = mailer.send(OutgoingMail(skeleton.sender, to, msgid, data))
            except TransportFailure as exc:
                raise DeliveryError(f"the test message to {to} failed: {exc}") from None
            replies.append((reader.email, reply))
    return replies
