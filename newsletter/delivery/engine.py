"""The send engine: the send log in the store, not memory, drives delivery.

`run_send` snapshots the recipients once (`start_send`), then N threads, one connection each,
claim due rows one at a time (in_flight, refusing anyone who left meanwhile), send, and record
the outcome in the same step that claims the next row (`newsletter.delivery.journal`: a line
of the claim journal on SQLite, a transaction on PostgreSQL), before that row's final "." is
sent. So after a hard kill at most one message per connection is `in_flight`; the next run
turns those into `unknown` (reported; `resend_unknown` re-sends them with the same
Message-ID). The failure policy (RFC 5321, after Mailman's outgoing runner) is
`newsletter.delivery.policy`, tabled in docs/sending.md; whose trouble a 4xx (or a 5xx after
".") is, the reader's or the relay's, `newsletter.delivery.relaywatch` decides before anyone is
charged. Where a run starts and ends in the send log: `newsletter.delivery.lifecycle`.
`newsletter.delivery.send` is the entry point.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from newsletter.config import Config
from newsletter.content.render import RenderedIssue
from newsletter.delivery.interrupts import Interrupted, Stop, stop_on_signals
from newsletter.delivery.journal import Claims, claims_for, folder
from newsletter.delivery.lifecycle import (
    Progress,
    SendReport,
    begin_send,
    finish_send,
    next_deferred,
)
from newsletter.delivery.outgoing import Link, Prepared, RateLimit, signs_ahead
from newsletter.delivery.policy import Outcome, Result, classify, judge, settled
from newsletter.delivery.relaywatch import Held, RelayWatch, describe
from newsletter.errors import DeliveryError, NewsletterError
from newsletter.mail.bodies import BodyEncoder
from newsletter.mail.message import InvalidRecipient, IssueMessage
from newsletter.mail.transport import Transport, TransportFailure
from newsletter.store.records import DeliveryRow, SendRecord
from newsletter.store.sends import SendLog
from newsletter.store.subscribers import Subscribers

if TYPE_CHECKING:
    from concurrent.futures import Executor

_BATCH = 200
_MAX_BACKOFF = 300.0
# Seconds between looks at the rows other senders hold (PostgreSQL, several senders).
OTHERS_POLL = 0.5


@dataclass
class _Run:
    config: Config
    log: SendLog
    readers: Subscribers  # a bounce at RCPT is recorded against its reader
    send: SendRecord
    skeleton: IssueMessage
    bodies: BodyEncoder
    connect: Callable[[], Transport]
    on_progress: Callable[[Progress], None]
    limiter: RateLimit
    stop: Stop = field(default_factory=threading.Event)
    # Where due rows come from: the store, or (in a worker process) the parent's share-out.
    fetch: Callable[[], list[DeliveryRow]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    queue: list[DeliveryRow] = field(default_factory=list)
    reserved: set[int] = field(default_factory=set)  # taken from the queue, not yet claimed
    claims: Claims = field(init=False)  # what records each message before its "."
    watch: RelayWatch = field(init=False)
    paused: str | None = None
    sent: int = 0
    done: int = 0
    sign_ahead: bool = False  # see signs_ahead

    def __post_init__(self) -> None:
        self.claims = claims_for(self.log, self.config, self.skeleton.slug)
        d = self.config.delivery
        self.watch = RelayWatch(d.relay_pause_after, d.refusals_pause_after)

    def worker(self) -> None:
        link = Link(self.connect())
        if self.sign_ahead:
            from concurrent.futures import ThreadPoolExecutor

            link.signer = ThreadPoolExecutor(1, thread_name_prefix="dkim")
        transport = link.transport
        try:
            row, message = self.advance(link, None)
            while row is not None and message is not None:
                row, message = self.advance(link, (row, self.deliver(transport, message)))
        except NewsletterError as exc:
            self.pause(str(exc))
        except Exception as exc:
            # The database could not claim or record a row: stop rather than send unrecorded.
            self.pause(f"stopped: {type(exc).__name__}: {exc}")
        finally:
            self.release(link)
            transport.close()
            if link.signer is not None:
                link.signer.shutdown(cancel_futures=True)

    def pause(self, reason: str) -> None:
        with self.lock:
            self.paused = self.paused or reason
        self.stop.set()

    def reserve(self) -> DeliveryRow | None:
        """The next due row, held for this connection until it is claimed."""
        with self.lock:
            if self.stop.is_set():
                return None
            if not self.queue:
                if self.fetch is None:
                    self.claims.fold()  # else rows claimed but not yet stored look due
                batch = (
                    self.fetch() if self.fetch else self.log.next_deliveries(self.send.id, _BATCH)
                )
                self.queue = [row for row in reversed(batch) if row.id not in self.reserved]
            if not self.queue:
                return None
            row = self.queue.pop()
            self.reserved.add(row.id)
            return row

    def release(self, link: Link) -> None:
        """The reader reserved ahead goes back to the queue's owner (unclaimed: still due)."""
        if link.ahead is not None:
            with self.lock:
                self.reserved.discard(link.ahead[0].id)
            link.ahead = None

    def following(self, link: Link) -> tuple[DeliveryRow, Prepared | Result] | None:
        """The next reader for this connection and its message: the one prepared ahead, or
        the next due row now; None once stopped (the reader reserved ahead stays due)."""
        if link.ahead is not None and not self.stop.is_set():
            ahead, link.ahead = link.ahead, None
            return ahead
        self.release(link)
        return self.reserve_prepared(link)

    def reserve_prepared(self, link: Link) -> tuple[DeliveryRow, Prepared | Result] | None:
        """The next due row, reserved, and its message (signed on `link.signer` if any)."""
        row = self.reserve()
        return (row, self.prepare(row, link.signer)) if row is not None else None

    def advance(
        self, link: Link, done: tuple[DeliveryRow, Result] | None
    ) -> tuple[DeliveryRow | None, Prepared | Result | None]:
        """Record the finished row and claim (in_flight) the next one in one step (`claims`),
        before the next message's final ".". Its envelope goes out first, so the server's reply
        overlaps the step; if the claim fails (the reader left), the transport drops it."""
        transport = link.transport
        while True:
            paused = done is not None and done[1].pause
            if paused:
                self.release(link)
            pair = None if paused else self.following(link)
            following, message = pair if pair is not None else (None, None)
            claim = (following, self.message_id(following)) if following else None
            if isinstance(message, Prepared):
                self.limiter.wait()
                transport.begin(message.sender, message.recipient)
            if following is not None and link.signer is not None:
                link.ahead = self.reserve_prepared(link)  # signed while this one goes out
            try:
                claimed = self.claims.commit(done, claim)
            except Exception as exc:
                transport.abort()
                what = f"the result for {done[0].email}" if done else "the next reader"
                self.pause(f"cannot record {what} ({exc}); stopped")
                raise DeliveryError(f"cannot record a delivery: {exc}") from exc
            finally:
                if following is not None:
                    with self.lock:
                        self.reserved.discard(following.id)
            if done is not None:
                self.recorded(*done)
                done = None
            if following is None:
                return None, None
            if claimed and not self.stop.is_set():
                return following, message
            transport.abort()
            if claimed:
                # Another connection paused the send meanwhile: give the row back.
                self.claims.fold()
                self.log.record_delivery(following.id, "pending", reply=following.last_reply)
                return None, None
            self.count(Progress("skipped", following.email, "no longer active", 0))

    def message_id(self, row: DeliveryRow) -> str:
        try:
            return row.message_id or self.skeleton.message_id(row)
        except InvalidRecipient:
            return f"<invalid-token.{row.id}@newsletter.invalid>"  # deliver() fails it

    def recorded(self, row: DeliveryRow, result: Result) -> None:
        if result.state != "pending":
            self.count(Progress(result.state, row.email, result.reply, 0))
        if result.pause:
            self.pause(result.pause)
        if result.hold is not None:
            why, settled = self.watch.failed(Held(row, result.hold, result.reply))
            self.charge(settled)
            if why is not None:
                self.pause(why)
        elif result.state == "sent" and not self.stop.is_set():
            # Once paused, an acceptance on another connection proves nothing about the
            # held readers: they are released uncharged at the end of the run instead.
            self.charge(self.watch.accepted())
        reader = (
            self.readers.get(row.subscriber_id) if result.bounce and row.subscriber_id else None
        )
        if reader is not None:
            self.readers.record_bounce(
                reader,
                hard=result.bounce == "hard",
                issue_slug=self.send.issue_slug,
                detail=result.reply,
                soft_limit=self.config.inbox.soft_bounce_limit,
            )

    def charge(self, held: list[Held]) -> None:
        """Held failures shown to be the readers' own: each uses up one attempt."""
        if held:
            self.claims.fold()  # their held results first, then these
        for one in held:
            result = settled(one, self.config.delivery)
            self.log.record_delivery(
                one.row.id, result.state, reply=result.reply, next_attempt_at=result.due
            )
            self.recorded(one.row, result)

    def end_round(self) -> None:
        """Before the run ends or waits: nothing may stay held. Paused: held readers go back
        uncharged. The relay never accepted this issue: its trouble, so pause uncharged too.
        (The send log's count, not this run's: a worker process sees only its own share.)"""
        try:
            self.claims.fold()
        except Exception as exc:  # the results stay in the journal for the next run
            self.pause(f"stopped: cannot record the results ({exc})")
            return
        held = self.watch.take()
        if not held:
            return
        accepted = self.sent > 0 or self.log.delivery_counts(self.send.id).get("sent", 0) > 0
        if not self.paused and accepted:
            self.charge(held)
            return
        for one in held:
            self.log.record_delivery(one.row.id, "pending", reply=one.reply)
        if not self.paused and not self.stop.is_set():  # else another connection said why
            self.pause(describe(held).replace("in a row", "and no reader accepted yet"))

    def count(self, event: Progress) -> None:
        with self.lock:
            self.done += 1
            self.sent += event.state == "sent"
            # Not dataclasses.replace: ~10x its cost, once a message.
            self.on_progress(Progress(event.state, event.email, event.reply, self.done))

    def prepare(self, row: DeliveryRow, signer: Executor | None = None) -> Prepared | Result:
        """The reader's message bytes and envelope, or why there can be none."""
        d = self.config.delivery
        try:
            html, text = self.bodies.encode(row)
            msgid = self.message_id(row)
            data = self.skeleton.render_later(
                row, html=html, text=text, msgid=msgid, executor=signer
            )
            sender = self.skeleton.envelope_sender(row) if d.verp else self.skeleton.bounce_sender
        except InvalidRecipient as exc:
            return Result("failed", f"not sent: {exc}")
        except NewsletterError as exc:  # e.g. the DKIM key went: stop, the reader stays due
            return Result("pending", f"not sent: {exc}", pause=f"stopped: {exc}")
        return Prepared(row, sender, d.redirect_to or row.email, data, msgid)

    def deliver(self, transport: Transport, message: Prepared | Result) -> Result:
        if isinstance(message, Result):
            return message
        d = self.config.delivery
        try:
            data = message.data.result()
        except Exception as exc:  # a key that cannot sign: nothing went out
            transport.abort()
            return Result("pending", f"not sent: {exc}", pause=f"stopped: cannot DKIM-sign: {exc}")
        failures = 0
        while True:
            try:
                reply = transport.send(
                    message.sender, message.recipient, data, message_id=message.msgid
                )
            except TransportFailure as exc:
                outcome = classify(exc)
            except DeliveryError as exc:  # the outbox cannot be written: nothing went out
                return Result("pending", f"not sent: {exc}", pause=f"stopped: {exc}")
            else:
                return Result("sent", reply)
            if outcome.action == "retry" and not self.stop.is_set():
                failures += 1
                if failures > d.max_reconnects:
                    reply = f"gave up after {failures} attempts: {outcome.reply}"
                    outcome = Outcome("pause", reply)
                elif not self.stop.wait(min(d.backoff * 2 ** (failures - 1), _MAX_BACKOFF)):
                    self.limiter.wait()
                    continue
            return judge(outcome)


def run_send(
    config: Config,
    log: SendLog,
    readers: Subscribers,
    rendered: RenderedIssue,
    skeleton: IssueMessage,
    *,
    connect: Callable[[], Transport],
    connections: int = 1,
    max_per_second: float = 0.0,
    resend_unknown: bool = False,
    on_progress: Callable[[Progress], None] = lambda progress: None,
    wait: Callable[[float], None] | None = None,
) -> SendReport:
    """Start or resume the send of `skeleton.slug` on threads in this process. The caller
    holds `send_lock`. (`newsletter.delivery.workers` runs several connections as processes.)"""
    started = time.monotonic()
    report = begin_send(log, skeleton.slug, resend_unknown, folder(config, skeleton.slug))
    send = report.send
    connections = max(1, connections)
    run = _Run(
        config,
        log,
        readers,
        send,
        skeleton,
        BodyEncoder(rendered),
        connect,
        on_progress,
        RateLimit(max_per_second),
        sign_ahead=signs_ahead(config, connections),
    )
    deadline = started + config.delivery.retry_window
    with stop_on_signals(lambda: run.pause("interrupted")) as received:
        try:
            _rounds(run, connections, deadline, on_progress, wait)
        finally:
            run.claims.close()
    if received:  # stopped cleanly: the message on the wire finished and is recorded
        finish_send(log, report, run.sent, run.paused, started)
        raise Interrupted(received[0])
    return finish_send(log, report, run.sent, run.paused, started)


def _rounds(
    run: _Run,
    connections: int,
    deadline: float,
    on_progress: Callable[[Progress], None],
    wait: Callable[[float], None] | None,
) -> None:
    """Send until nothing is due, then wait for deferred readers due before `deadline`."""
    while True:
        threads = [
            threading.Thread(target=run.worker, name=f"send-{n}", daemon=True)
            for n in range(connections - 1)
        ]
        for thread in threads:
            thread.start()
        try:
            run.worker()  # the last connection works on this thread
        except KeyboardInterrupt:
            # Ctrl-C: the other connections finish and record the message they carry.
            run.pause("interrupted")
            for thread in threads:
                thread.join()
            run.end_round()
            raise
        for thread in threads:
            thread.join()
        run.end_round()
        if run.paused:
            break
        due = next_deferred(run.log, run.send.id)
        text = "waiting for the readers other senders hold"
        if due is None or due > deadline:
            if not run.log.others_busy(run.send.id):
                break
            due = time.monotonic() + OTHERS_POLL  # other senders' rows: wait, or take them over
        else:
            text = f"next retry of deferred readers in {max(0.0, due - time.monotonic()):.0f} s"
        seconds = max(0.0, due - time.monotonic())
        on_progress(Progress("waiting", "", text, run.done))
        # The stop flag's wait: a signal ends the wait at once instead of after it.
        (wait or run.stop.wait)(seconds)
        if run.stop.is_set():
            break
