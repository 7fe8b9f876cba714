"""The failure policy: what one failed attempt means for the reader and for the send.

RFC 5321, after Mailman's outgoing runner, tabled in docs/sending.md: `classify` reads the
transport's failure (the stage and the server's reply), `judge` turns it into what the send
log records, `settled` charges a held failure once `newsletter.delivery.relaywatch` has shown
it to be the reader's own. Pure functions of their arguments and the clock: the engine
(`newsletter.delivery.engine`) records and acts on what they return.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from newsletter.config import DeliveryConfig
from newsletter.delivery.relaywatch import Held
from newsletter.mail.transport import Disconnected, TransportFailure
from newsletter.store.records import DeliveryRow, DeliveryState

_HARD_BOUNCE = (550, 551, 553)
_DEFER_AT_RCPT = (450, 451, 452, 552)  # 552 at RCPT: "too many recipients" (RFC 5321 4.5.3.1.10)
# A held row (see newsletter.delivery.relaywatch) is not due for this long, so no other
# connection or worker takes it meanwhile; a run settles or releases what it holds before it ends.
HOLD = timedelta(minutes=10)

Action = Literal["sent", "deferred", "refused", "failed", "bounced", "unknown", "retry", "pause"]


@dataclass(frozen=True)
class Outcome:
    action: Action
    reply: str


@dataclass(frozen=True)
class Result:
    """What to record for one row after its attempt."""

    state: DeliveryState
    reply: str
    due: datetime | None = None
    bounce: Literal["hard", "soft"] | None = None
    pause: str | None = None  # why the whole send must stop (nobody's fault but ours)
    # held uncharged (newsletter.delivery.relaywatch)
    hold: Literal["deferred", "refused"] | None = None


def classify(failure: TransportFailure) -> Outcome:
    """What one failed attempt means for this reader and for the send (issue 5's policy)."""
    stage, reply = failure.stage, failure.reply
    if isinstance(failure, Disconnected) or failure.code is None:
        return Outcome("unknown" if stage == "dot" else "retry", reply)
    code = failure.code
    if code == 421 or (stage in ("connect", "mail") and code is not None and code < 500):
        return Outcome("retry", reply)
    if stage == "dot" and code >= 500:
        return Outcome("refused", reply)  # this reader's server; a run of them pauses
    if stage in ("connect", "auth", "mail") or (stage == "data" and code >= 500):
        return Outcome("pause", reply)
    if stage == "rcpt" and code in _HARD_BOUNCE:
        return Outcome("bounced", reply)
    if code in _DEFER_AT_RCPT or 400 <= code < 500:
        return Outcome("deferred", reply)
    return Outcome("failed", reply)


def judge(outcome: Outcome) -> Result:
    """Issue 5's failure policy for one failed attempt (see `classify`)."""
    action, reply = outcome.action, outcome.reply
    if action in ("pause", "retry"):
        # Not this reader's fault: the row waits, unbounced, for the next run.
        why = f"the server refused the send: {reply}" if action == "pause" else None
        return Result("pending", reply, pause=why)
    if action in ("deferred", "refused"):
        # Whose trouble this is shows only later (delivery.relaywatch): wait uncharged.
        hold: Literal["deferred", "refused"] = action
        return Result("pending", reply, due=datetime.now(UTC) + HOLD, hold=hold)
    if action == "bounced":
        return Result("failed", reply, bounce="hard")
    return Result("unknown" if action == "unknown" else "failed", reply)


def settled(held: Held, delivery: DeliveryConfig) -> Result:
    """A held failure that was the reader's own: a 4xx uses up an attempt (the last one
    fails with a soft bounce); a 5xx after "." fails this reader, bouncing nobody."""
    row: DeliveryRow = held.row
    if held.kind == "refused":
        return Result("failed", held.reply)
    if row.attempts + 1 < delivery.max_attempts:
        delay = delivery.retry_delay * 2**row.attempts
        return Result("deferred", held.reply, due=datetime.now(UTC) + timedelta(seconds=delay))
    return Result("failed", held.reply, bounce="soft")
