"""A send's start and end in the send log, and what a run tells its caller.

`begin_send` snapshots (or finds) the send and turns the rows a dead run left in flight into
`unknown`; `finish_send` counts the rows and closes a complete send; `next_deferred` says when
the earliest deferred reader is due; `Progress` is one recorded result for the CLI's display,
`SendReport` the run's summary. Both runners use them: threads in one process
(`newsletter.delivery.engine.run_send`) and worker processes
(`newsletter.delivery.workers.run_send_workers`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.delivery.journal import replay
from newsletter.store.records import SendRecord

if TYPE_CHECKING:
    from newsletter.store.sends import SendLog


@dataclass(frozen=True)
class Progress:
    """One recorded result, for the CLI's progress display."""

    state: str
    email: str
    reply: str
    done: int  # rows settled since the run began (sent, failed, unknown, skipped, deferred)


@dataclass
class SendReport:
    send: SendRecord
    counts: dict[str, int]
    sent_now: int = 0
    unknown_before: int = 0  # in flight when an earlier run stopped: now `unknown`
    paused: str | None = None
    elapsed: float = 0.0

    @property
    def complete(self) -> bool:
        return not any(self.counts.get(s, 0) for s in ("pending", "deferred", "in_flight"))


def begin_send(log: SendLog, slug: str, resend_unknown: bool, journal: Path) -> SendReport:
    """Snapshot (or find) the send; what a dead run's claim `journal` holds is stored, then
    rows it left in flight become `unknown`."""
    replay(log, journal)
    send = log.start_send(slug)
    report = SendReport(send, {})
    # A previous run died between handing these to the server and hearing back (on a server
    # store: only the rows of senders that are gone; store.sends).
    report.unknown_before = log.settle_interrupted(send.id)
    if resend_unknown:
        for row in log.deliveries_in_state(send.id, ("unknown",)):
            log.record_delivery(row.id, "pending", reply=f"re-sent after: {row.last_reply}")
    return report


def finish_send(
    log: SendLog, report: SendReport, sent: int, paused: str | None, started: float
) -> SendReport:
    report.counts = log.delivery_counts(report.send.id)
    report.sent_now, report.paused = sent, paused
    report.elapsed = time.monotonic() - started
    if report.complete and not paused:
        log.finish_send(report.send.id)
    return report


def next_deferred(log: SendLog, send_id: int) -> float | None:
    """When (time.monotonic) the earliest deferred row is due, or None if there is none."""
    rows = log.deliveries_in_state(send_id, ("deferred",))
    dues = [row.next_attempt_at for row in rows if row.next_attempt_at is not None]
    if not rows:
        return None
    if not dues:
        return time.monotonic()
    wait = (min(dues) - datetime.now(UTC)).total_seconds()
    return time.monotonic() + max(0.0, wait)
