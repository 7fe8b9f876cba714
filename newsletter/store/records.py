"""What the store hands out: frozen records of readers, sign-ups and the send log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from newsletter.store.database import parse_stamp

if TYPE_CHECKING:  # csvio (CSV, email-validator) is for commands that read addresses
    from newsletter.store.csvio import Status

DeliveryState = Literal["pending", "in_flight", "sent", "deferred", "failed", "unknown", "skipped"]
DELIVERY_STATES: tuple[DeliveryState, ...] = (
    "pending",
    "in_flight",
    "sent",
    "deferred",
    "failed",
    "unknown",
    "skipped",
)
# A row in one of these states was handed to a server at least once.
ATTEMPTED: tuple[DeliveryState, ...] = ("sent", "deferred", "failed", "unknown")
AddOutcome = Literal["added", "existing", "suppressed", "resubscribed"]


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    first_name: str | None
    status: Status
    token: str
    created_at: datetime
    updated_at: datetime
    email_key: str
    consent_at: datetime | None = None
    consent_source: str | None = None  # how: "import FILE", "command", "reply", "web"
    consent_by: str | None = None  # who recorded it
    consent_note: str | None = None


SUBSCRIBER_COLUMNS = (
    "id, email, first_name, status, token, created_at, updated_at, email_key,"
    " consent_at, consent_source, consent_by, consent_note"
)


def subscriber_from_row(row: Sequence[Any]) -> Subscriber:
    """A Subscriber from a row of SUBSCRIBER_COLUMNS."""
    return Subscriber(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        datetime.fromisoformat(row[5]),
        datetime.fromisoformat(row[6]),
        row[7],
        parse_stamp(row[8]),
        row[9],
        row[10],
        row[11],
    )


@dataclass(frozen=True)
class AddResult:
    outcome: AddOutcome
    subscriber: Subscriber | None  # None when a forgotten address was refused
    reason: str | None = None  # why suppressed: the status, or "forgotten"


@dataclass
class ImportReport:
    added: int = 0
    existing: int = 0  # already on the list, left as they were
    duplicates: int = 0  # repeated within the file
    status_applied: int = 0  # active readers the file marked unsubscribed/bounced/complained
    suppressed: int = 0
    suppressed_rows: list[tuple[int, str, str]] = field(default_factory=list)  # line, email, why


@dataclass(frozen=True)
class SendRecord:
    id: int
    issue_slug: str
    total: int
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A recipient of a send, with the reader's current data (a `Reader` for personalise)."""

    id: int
    send_id: int
    subscriber_id: int | None  # None once the reader was forgotten
    email: str
    first_name: str | None
    token: str
    status: str
    state: DeliveryState
    attempts: int
    last_reply: str | None
    message_id: str | None
    next_attempt_at: datetime | None
    updated_at: datetime

    def __reduce__(self) -> tuple[type[DeliveryRow], tuple[object, ...]]:
        # A send worker gets its rows pickled from the parent: by position, they unpickle in
        # a fraction of the time of a frozen dataclass's __setstate__ (a setattr per field).
        return DeliveryRow, tuple(getattr(self, name) for name in self.__slots__)


DELIVERY_SELECT = """
SELECT d.id, d.send_id, d.subscriber_id, coalesce(s.email, '(forgotten)'), s.first_name,
       coalesce(s.token, ''), coalesce(s.status, 'forgotten'), d.state, d.attempts,
       d.last_reply, d.message_id, d.next_attempt_at, d.updated_at
FROM deliveries d LEFT JOIN subscribers s ON s.id = d.subscriber_id
"""


def delivery_from_row(row: Sequence[Any]) -> DeliveryRow:
    """A DeliveryRow from a row of DELIVERY_SELECT."""
    sid, send, reader, email, name, token, status, state, attempts, reply, mid, due, at = row
    return DeliveryRow(
        sid,
        send,
        reader,
        email,
        name,
        token,
        status,
        state,
        attempts,
        reply,
        mid,
        parse_stamp(due),
        datetime.fromisoformat(at),
    )


@dataclass(frozen=True, slots=True)
class Signup:
    """A web sign-up waiting for (or past) its confirmation click."""

    id: int
    email: str
    first_name: str | None
    token_hash: str  # the link's token is never stored, only its keyed hash
    client_ip: str | None
    created_at: datetime
    expires_at: datetime
    confirmed_at: datetime | None


@dataclass(frozen=True)
class SenderProgress:
    """One sender of a send on a server store (store.sends): where it ran, and its rows."""

    id: int
    host: str
    pid: int
    started_at: datetime
    running: bool  # its connection is still there
    counts: dict[str, int]  # rows it reserved or claimed, per state
