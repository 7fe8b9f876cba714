"""Several SMTP connections as worker processes, one connection each (GIL-free throughput).

Four threads spend their time waiting for each other's GIL (personalising, quoted-printable,
SQLite commits); four processes do not (README: Sending, the bench). `run_send_workers` forks
N workers that each run `sendrun`'s one-connection claim loop against the same send log: the
claims are transactions, so two workers never take the same row, and each worker's own
result-then-claim commit keeps "at most one message per connection in flight".

Fork, with care: the parent holds no SQLite connection at the moment it forks (SQLite forbids
using one across fork, and its per-process lock bookkeeping would be inherited), so the caller
passes `open_log` instead of an open store; each worker opens its own store and transport
after the fork. What a worker tells the parent goes through its own pipe and the stop flag is
a lock-free shared byte, so a worker killed at any moment cannot leave a lock that blocks the
others: the parent notices the death (its sentinel), stops the rest, and the dead worker's
in-flight row becomes `unknown` on the next run.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, cast

from newsletter.config import Config
from newsletter.content.render import RenderedIssue
from newsletter.delivery.engine import _BATCH, OTHERS_POLL, _Run
from newsletter.delivery.interrupts import Interrupted, SharedStop
from newsletter.delivery.journal import folder, replay
from newsletter.delivery.lifecycle import (
    Progress,
    SendReport,
    begin_send,
    finish_send,
    next_deferred,
)
from newsletter.delivery.outgoing import RateLimit, signs_ahead
from newsletter.mail.bodies import BodyEncoder
from newsletter.mail.message import IssueMessage
from newsletter.mail.transport import Transport
from newsletter.store.records import DeliveryRow, SendRecord
from newsletter.store.sends import JournalOp, SendLog
from newsletter.store.store import Store

_FLUSH_EVERY = 0.05  # seconds a worker may hold progress events before telling the parent
_FLUSH_BATCH = 100
# Rows per request: small enough that the workers finish together (50 rows are ~0.1 s of one
# connection), large enough that asking the parent is not a cost (10 cost ~4% of the CPU).
_SHARE = 50


# One progress event on its way to the parent: (state, email, reply). Plain tuples pickle in
# a twentieth of the time of the Progress dataclass (~0.2 us an event instead of ~4, both ends).
_Event = tuple[str, str, str]


class _Events:
    """A worker's progress events, batched to the parent through the worker's own pipe."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.batch: list[_Event] = []
        self.last = time.monotonic()

    def put(self, event: Progress) -> None:
        self.batch.append((event.state, event.email, event.reply))
        now = time.monotonic()
        if (
            event.state != "sent"
            or len(self.batch) >= _FLUSH_BATCH
            or now - self.last > _FLUSH_EVERY
        ):
            self.flush(now)

    def take(self) -> list[_Event]:
        """The held events, to travel with the next request for rows (one message, not two)."""
        batch, self.batch, self.last = self.batch, [], time.monotonic()
        return batch

    def flush(self, now: float = 0.0) -> None:
        if self.batch:
            # The parent gone (killed): its stop flag says so; the results are recorded anyway.
            with contextlib.suppress(OSError):
                self.conn.send(("progress", self.batch))
            self.batch, self.last = [], now or time.monotonic()


class _OneCommitAtATime:
    """The worker's store, with its journal's folds taken in turn through a lock file (flock):
    a waiting worker wakes the moment the other commits, where SQLite's busy handler sleeps
    1 ms and more per collision. The kernel drops the lock of a killed worker."""

    def __init__(self, log: SendLog, lock: Path) -> None:
        self.log = log
        self.lock = lock.open("a")  # after the fork: a lock description of this worker's own

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)

    def apply_journal(self, operations: Sequence[JournalOp], *, replay: bool = False) -> None:
        import fcntl  # POSIX only, like fork itself: imported here so the CLI starts anywhere

        fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            self.log.apply_journal(operations, replay=replay)
        finally:
            fcntl.flock(self.lock, fcntl.LOCK_UN)


def _worker(
    config: Config,
    open_log: Callable[[], AbstractContextManager[Store]],
    send: SendRecord,
    skeleton: IssueMessage,
    bodies: BodyEncoder,
    connect: Callable[[], Transport],
    stop: SharedStop,
    per_second: float,
    commits: Path,
    conn: Connection,
    *,
    sign_ahead: bool,
) -> None:
    """One connection's claim loop, in a forked process, on its own store and transport."""
    # Ctrl-C reaches the whole process group: the parent decides; SIGTERM asks for a stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    events = _Events(conn)
    paused: str | None = None
    try:
        with open_log() as store:
            log = store.sends
            if store.db.dialect == "sqlite":  # a server takes concurrent commits itself
                log = cast(SendLog, _OneCommitAtATime(store.sends, commits))

            def fetch() -> list[DeliveryRow]:
                try:
                    conn.send(("want", events.take()))
                except OSError:
                    return []
                while not conn.poll(0.1):
                    if stop.is_set():  # the parent was interrupted before it answered
                        return []
                try:
                    rows: list[DeliveryRow] = conn.recv()
                except EOFError:  # the parent is gone
                    return []
                return rows

            run = _Run(
                config,
                log,
                store.subscribers,
                send,
                skeleton,
                bodies,
                connect,
                events.put,
                RateLimit(per_second),
                sign_ahead=sign_ahead,
            )
            run.stop, run.fetch = stop, fetch
            try:
                run.worker()
                run.end_round()
            finally:
                run.claims.close()
            paused = run.paused
    except BaseException as exc:  # the store could not be opened: nothing may go out
        paused = f"stopped: {type(exc).__name__}: {exc}"
        stop.set()
    finally:
        events.flush()
        with contextlib.suppress(OSError):
            conn.send(("end", paused))
        conn.close()


class _Parent:
    """The parent's side: shares out due rows, relays progress, keeps the first pause."""

    def __init__(self, on_progress: Callable[[Progress], None], send_id: int) -> None:
        self.on_progress = on_progress
        self.send_id = send_id
        self.done = 0
        self.sent = 0
        self.paused: str | None = None
        self.log: SendLog | None = None  # open only while no fork is due
        self.queue: list[DeliveryRow] = []
        self.handed: set[int] = set()  # given to a worker and maybe not claimed yet

    def share(self, stop: SharedStop) -> list[DeliveryRow]:
        """The next few due rows for one worker: each row goes to one worker only, so the
        workers do not race for the same claims."""
        if stop.is_set() or self.log is None:
            return []
        if not self.queue:
            try:
                # Rows handed out and still due come first in this order: look past them.
                due = self.log.next_deliveries(self.send_id, _BATCH + len(self.handed))
            except Exception as exc:
                self.pause(f"stopped: cannot read the send log: {exc}", stop)
                return []
            self.handed &= {row.id for row in due}
            self.queue = [row for row in reversed(due) if row.id not in self.handed]
        chunk = [self.queue.pop() for _ in range(min(_SHARE, len(self.queue)))]
        self.handed.update(row.id for row in chunk)
        return chunk

    def pause(self, reason: str, stop: SharedStop) -> None:
        self.paused = self.paused or reason
        stop.set()

    def relay(self, message: tuple[str, Any], stop: SharedStop) -> bool:
        """Handle one message from a worker; True if it was the worker's last."""
        kind, body = message
        if kind == "end":
            if body:
                self.pause(body, stop)
            return True
        for state, email, reply in body:
            self.done += 1
            self.sent += state == "sent"
            self.on_progress(Progress(state, email, reply, self.done))
        return False


def _run_round(
    parent: _Parent,
    open_log: Callable[[], AbstractContextManager[Store]],
    connections: int,
    stop: SharedStop,
    target: Callable[[Connection], None],
) -> None:
    context = multiprocessing.get_context("fork")
    sys.stdout.flush()  # or a child's exit would print the parent's buffered output again
    sys.stderr.flush()
    workers: list[tuple[multiprocessing.context.ForkProcess, Connection]] = []
    for n in range(connections):
        reader, writer = context.Pipe()
        process = context.Process(target=target, args=(writer,), name=f"send-{n}", daemon=True)
        process.start()
        writer.close()
        workers.append((process, reader))
    parent.queue, parent.handed = [], set()  # a new round: every due row is up for grabs
    with contextlib.ExitStack() as stack:
        try:  # only now: no SQLite connection may cross a fork
            parent.log = stack.enter_context(open_log()).sends
        except Exception as exc:
            parent.pause(f"stopped: cannot open the send log: {exc}", stop)
        try:
            _relay(parent, workers, stop)
        finally:
            parent.log = None


def _relay(
    parent: _Parent,
    workers: list[tuple[multiprocessing.context.ForkProcess, Connection]],
    stop: SharedStop,
) -> None:
    interrupted: KeyboardInterrupt | None = None
    ended: set[Connection] = set()
    running = {process.sentinel: (process, reader) for process, reader in workers}
    open_pipes = {reader for _, reader in workers}
    while running or open_pipes:
        try:
            for ready in wait([*running, *open_pipes]):
                if isinstance(ready, int):
                    process, reader = running.pop(ready)
                    process.join()
                    _drain(parent, reader, stop, ended)
                    open_pipes.discard(reader)
                    if reader not in ended:
                        code = process.exitcode or 0
                        why = f"signal {-code}" if code < 0 else f"exit status {code}"
                        parent.pause(f"a send worker died ({why}); stopped", stop)
                elif isinstance(ready, Connection) and _receive(parent, ready, stop, ended):
                    open_pipes.discard(ready)
        except KeyboardInterrupt as exc:
            # Ctrl-C (or SIGTERM): every worker finishes and records the message it carries.
            interrupted = interrupted or exc  # the first says which signal (exit 130/143)
            parent.pause("interrupted", stop)
    for _, reader in workers:
        reader.close()
    if interrupted is not None:
        raise interrupted


def _receive(parent: _Parent, reader: Connection, stop: SharedStop, ended: set[Connection]) -> bool:
    """One message from a worker's pipe; True once the pipe has nothing more to say."""
    try:
        message = reader.recv()
        if parent.relay(message, stop):  # "want" carries the worker's progress events too
            ended.add(reader)
            return True
        if message[0] == "want":
            reader.send(parent.share(stop))
    except EOFError:
        return True
    return False


def _drain(parent: _Parent, reader: Connection, stop: SharedStop, ended: set[Connection]) -> None:
    while reader not in ended and reader.poll():
        if _receive(parent, reader, stop, ended):
            return


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM to the parent stops the send as Ctrl-C does (exit 143, nothing lost)."""

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted(signum)  # exit 143: stopped by SIGTERM

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_send_workers(
    config: Config,
    open_log: Callable[[], AbstractContextManager[Store]],
    rendered: RenderedIssue,
    skeleton: IssueMessage,
    *,
    connect: Callable[[], Transport],
    connections: int,
    max_per_second: float = 0.0,
    resend_unknown: bool = False,
    on_progress: Callable[[Progress], None] = lambda progress: None,
    wait_for: Callable[[float], None] = time.sleep,
) -> SendReport:
    """`sendrun.run_send` with `connections` worker processes. The caller holds `send_lock`
    (the forked workers share its open file, so the lock lasts until the last one exits)."""
    started = time.monotonic()
    journal = folder(config, skeleton.slug)
    with open_log() as store:
        report = begin_send(store.sends, skeleton.slug, resend_unknown, journal)
    bodies = BodyEncoder(rendered)  # built once, inherited by every worker
    per_second = max_per_second / connections  # the limit is shared: each takes its part
    parent = _Parent(on_progress, report.send.id)
    deadline = started + config.delivery.retry_window
    with _sigterm_interrupts():
        while True:
            stop = SharedStop()

            def target(conn: Connection, stop: SharedStop = stop) -> None:
                _worker(
                    config,
                    open_log,
                    report.send,
                    skeleton,
                    bodies,
                    connect,
                    stop,
                    per_second,
                    config.subscribers_dir / f".send-{skeleton.slug}.commits",
                    conn,
                    sign_ahead=signs_ahead(config, connections),
                )

            _run_round(parent, open_log, connections, stop, target)
            if parent.paused:
                break
            with open_log() as store:
                replay(store.sends, journal)  # what a worker left unstored (its fold failed)
                due = next_deferred(store.sends, report.send.id)
                text = "waiting for the readers other senders hold"
                if due is None or due > deadline:
                    if not store.sends.others_busy(report.send.id):
                        break
                    due = time.monotonic() + OTHERS_POLL
                else:
                    text = f"next retry of deferred readers in {due - time.monotonic():.0f} s"
            seconds = max(0.0, due - time.monotonic())
            on_progress(Progress("waiting", "", text, parent.done))
            wait_for(seconds)
    with open_log() as store:
        replay(store.sends, journal)  # a killed worker's results, so the report counts them
        return finish_send(store.sends, report, parent.sent, parent.paused, started)
