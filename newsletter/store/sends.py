"""The send log: one row per reader per issue, with its delivery state.

A send snapshots every active reader as `pending` when it starts; delivery claims rows
(`in_flight`, with the Message-ID it is about to use), records each outcome, and retries
`deferred` ones when due. A crash or a second run resumes from the rows, never from memory.

Several senders (on PostgreSQL: processes on several hosts, each connection one sender) share
one send. A sender registers in `senders` with its first claim and holds a session-level
advisory lock on its id for as long as its connection lives, so a dead sender is one whose
lock can be taken. Each batch a sender reads reserves its rows (`sender_id`) with `FOR UPDATE
SKIP LOCKED`, so senders take different readers; before reading, a sender settles the rows of
dead senders: their reserved rows are free again, their in-flight ones (one per connection at
most) become `unknown`, as after a crash. On SQLite there is one sender per send (the send
lock), and none of this is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from newsletter.store.database import Database, Tx, marks, now_stamp, parse_stamp, stamp
from newsletter.store.records import (
    ATTEMPTED,
    DELIVERY_SELECT,
    DELIVERY_STATES,
    DeliveryRow,
    DeliveryState,
    SenderProgress,
    SendRecord,
    delivery_from_row,
)
from newsletter.store.senders import SenderRegistry, settle_in_flight

# The send runner's group commit: (delivery_id, state, reply, next_attempt_at, claim), where
# claim is (next delivery_id, its Message-ID) or None.
Outcome = tuple[int, DeliveryState, str | None, datetime | None, tuple[int, str] | None]
# One operation of a send's claim journal, each ending with its moment (a stored stamp):
# ("record", id, attempts before, state, reply, next attempt stamp or None, at),
# ("claim", id, attempts before, Message-ID, at), ("skip", id, attempts, reply, at).
JournalOp = tuple[Any, ...]


class SendLog:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._registry = SenderRegistry()  # this connection's senders (a server store)

    @property
    def server(self) -> bool:
        """A database server (PostgreSQL), which several senders may share."""
        return self._db.dialect == "postgresql"

    def _sender(self, tx: Tx, send_id: int) -> int | None:
        """This connection's sender for the send, on a server (store.senders)."""
        return self._registry.register(tx, send_id) if self.server else None

    def others_busy(self, send_id: int) -> bool:
        """Whether other live senders still hold rows of the send (reserved or in flight): a
        sender that ran out of rows waits for them, and takes over if they die, rather than
        leave with the send unfinished. Always False on SQLite (one sender)."""
        if not self.server:
            return False
        with self._db.write(exclusive=False) as tx:
            return self._registry.others_busy(tx, send_id)

    def senders(self, send_id: int) -> list[SenderProgress]:
        """Who shares the send (a server store; none on SQLite): each sender's rows per state,
        and whether its connection is still there."""
        if not self.server:
            return []
        with self._db.write(exclusive=False) as tx:
            return self._registry.progress(tx, send_id)

    def settle_interrupted(self, send_id: int) -> int:
        """Rows a stopped run left `in_flight` (handed to a server, no answer heard) become
        `unknown`: on SQLite every such row (one sender at a time), on a server those of
        senders that are gone. Returns how many."""
        with self._db.write(exclusive=False) as tx:
            if not self.server:
                return settle_in_flight(tx, send_id)
            # Rows claimed before senders were kept (schema 4) have no sender.
            orphans = settle_in_flight(tx, send_id, "sender_id IS NULL")
            return orphans + self._registry.settle_dead(tx, send_id)

    def _send(self, where: str, value: Any) -> SendRecord | None:
        rows = self._db.rows(
            f"SELECT id, issue_slug, total, started_at, finished_at FROM sends WHERE {where}",
            (value,),
        )
        if not rows:
            return None
        sid, slug, total, started, finished = rows[0]
        return SendRecord(sid, slug, total, datetime.fromisoformat(started), parse_stamp(finished))

    def start_send(self, issue_slug: str) -> SendRecord:
        """The send of this issue; the first call snapshots every active reader as `pending`."""
        with self._db.write() as tx:
            if (existing := self._send("issue_slug = ?", issue_slug)) is not None:
                return existing
            now = now_stamp()
            send_id = tx.execute(
                "INSERT INTO sends (issue_slug, total, started_at) VALUES (?, 0, ?) RETURNING id",
                (issue_slug, now),
            ).fetchone()[0]
            total = tx.execute(
                "INSERT INTO deliveries (send_id, subscriber_id, updated_at)"
                " SELECT ?, id, ? FROM subscribers WHERE status = 'active' ORDER BY id",
                (send_id, now),
            ).rowcount
            tx.execute("UPDATE sends SET total = ? WHERE id = ?", (total, send_id))
            record = self._send("id = ?", send_id)
        assert record is not None
        return record

    def get_send(self, issue_slug: str) -> SendRecord | None:
        return self._send("issue_slug = ?", issue_slug)

    def sent_slugs(self) -> list[str]:
        """Every issue with a send log, begun or finished."""
        return [row[0] for row in self._db.rows("SELECT issue_slug FROM sends ORDER BY id")]

    def next_deliveries(
        self, send_id: int, limit: int, now: datetime | None = None
    ) -> list[DeliveryRow]:
        """Up to `limit` due rows of readers still active: `pending` ones by id, then
        `deferred` ones by due time. Due rows met on the way whose reader left meanwhile (or
        was forgotten) are marked `skipped`. Each call reads one index range, O(limit)."""
        due = stamp(now) if now else now_stamp()
        found: list[DeliveryRow] = []
        # Rows never held (no due time) first, as SQLite sorts NULLs; PostgreSQL is told.
        nulls = " NULLS FIRST" if self.server else ""
        with self._db.write(exclusive=False) as tx:
            sender = self._sender(tx, send_id)
            mine = ""
            if sender is not None:
                self._registry.settle_dead(tx, send_id)
                # Rows no other live sender reserved, and none another is locking right now.
                mine = (
                    " AND (d.sender_id IS NULL OR d.sender_id = ? OR d.sender_id IN"
                    " (SELECT id FROM senders WHERE ended_at IS NOT NULL))"
                )
            lock = " FOR UPDATE OF d SKIP LOCKED" if sender is not None else ""
            for state in ("pending", "deferred"):
                kept = 0  # active rows of this state already taken: they stay first in order
                while len(found) < limit:
                    page = [
                        delivery_from_row(row)
                        for row in tx.execute(
                            DELIVERY_SELECT + " WHERE d.send_id = ? AND d.state = ?"
                            " AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?)"
                            + mine
                            + f" ORDER BY d.next_attempt_at{nulls}, d.id LIMIT ? OFFSET ?"
                            + lock,
                            (
                                send_id,
                                state,
                                due,
                                *([sender] if sender is not None else []),
                                limit - len(found),
                                kept,
                            ),
                        )
                    ]
                    gone = [row for row in page if row.status != "active"]
                    tx.executemany(
                        "UPDATE deliveries SET state = 'skipped', updated_at = ?,"
                        " last_reply = ? WHERE id = ? AND state IN ('pending', 'deferred')",
                        [(now_stamp(), f"reader {r.status} before delivery", r.id) for r in gone],
                    )
                    active = [row for row in page if row.status == "active"]
                    found += active
                    kept += len(active)
                    if not gone:  # the page had no leavers: this state has no more due rows
                        break
            if sender is not None and found:
                tx.execute(
                    f"UPDATE deliveries SET sender_id = ? WHERE id IN ({marks(len(found))})",
                    (sender, *(row.id for row in found)),
                )
        return found

    def mark_in_flight(self, delivery_id: int, message_id: str) -> bool:
        """Claim a due row just before handing it to the server. False (and the row `skipped`)
        if the reader is no longer active; False if the row is not pending/deferred."""
        with self._db.write(exclusive=False) as tx:
            return _claim(tx, delivery_id, message_id, now_stamp(), self._claimer(tx, delivery_id))

    def record_delivery(
        self,
        delivery_id: int,
        state: DeliveryState,
        *,
        reply: str | None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """The outcome of an attempt (sent/deferred/failed/unknown count as attempts)."""
        self.record_and_claim_many([(delivery_id, state, reply, next_attempt_at, None)])

    def record_and_claim_many(self, items: Sequence[Outcome]) -> list[bool]:
        """The send runner's group commit, in ONE transaction: for each item
        `(delivery_id, state, reply, next_attempt_at, claim)` record the attempt (as
        `record_delivery`) and, if `claim` is `(next_id, message_id)`, mark that row in_flight
        (as `mark_in_flight`: skipped instead if its reader left). True per claimed row."""
        for item in items:
            if item[1] not in DELIVERY_STATES:
                raise ValueError(f"unknown delivery state {item[1]!r}")
        now = now_stamp()
        claimed: list[bool] = []
        # Single-row conditional UPDATEs: row locks suffice, other senders commit alongside.
        with self._db.write(exclusive=False) as tx:
            for delivery_id, state, reply, due, claim in items:
                record = (
                    state,
                    reply,
                    stamp(due) if due else None,
                    1 if state in ATTEMPTED else 0,
                    now,
                    delivery_id,
                )
                if claim is not None and self.server:
                    # One statement for the result and the next claim: on a server each
                    # statement is a round trip, and they were most of a message's cost.
                    sender = self._claimer(tx, claim[0])
                    found = tx.execute(
                        _RECORD_AND_CLAIM, (*record, *_claim_parameters(claim, now, sender))
                    )
                    claimed.append(found.fetchone()[0] == 1)
                    continue
                tx.execute(_RECORD, record)
                if claim is not None:
                    sender = self._claimer(tx, claim[0])
                    claimed.append(_claim(tx, *claim, now, sender))
                else:
                    claimed.append(False)
        return claimed

    def reader_status(self, delivery_id: int) -> str | None:
        """The status of the row's reader now (None once forgotten)."""
        return self._db.one(  # type: ignore[no-any-return]
            "SELECT s.status FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id"
            " WHERE d.id = ?",
            (delivery_id,),
        )

    def apply_journal(self, operations: Sequence[JournalOp], *, replay: bool = False) -> None:
        """A send's claim journal (newsletter.delivery.journal), in order, in ONE transaction.
        `replay`: after a crash, when some of the operations may be stored already (the fold
        that stored them died before it emptied its file): each applies only to the row as it
        was before it, told by its state and attempts, so applying one twice changes nothing."""
        record, claim = _RECORD, _JOURNAL_CLAIM
        if replay:
            record += " AND state = 'in_flight' AND attempts = ?"
            claim += " AND state IN ('pending', 'deferred', 'skipped') AND attempts = ?"
        with self._db.write(exclusive=False) as tx:
            for op in operations:
                kind, delivery_id, attempts, *rest = op
                at = rest[-1]
                if kind == "record":
                    state, reply, due = rest[0], rest[1], rest[2]
                    if state not in DELIVERY_STATES:
                        raise ValueError(f"unknown delivery state {state!r}")
                    counted = 1 if state in ATTEMPTED else 0
                    values: tuple[Any, ...] = (state, reply, due, counted, at, delivery_id)
                    tx.execute(record, (*values, attempts) if replay else values)
                elif kind == "claim":
                    values = (rest[0], at, delivery_id)
                    tx.execute(claim, (*values, attempts) if replay else values)
                elif kind == "skip":
                    tx.execute(
                        "UPDATE deliveries SET state = 'skipped', last_reply = ?, updated_at = ?"
                        " WHERE id = ? AND state IN ('pending', 'deferred')",
                        (rest[0], at, delivery_id),
                    )
                else:
                    raise ValueError(f"unknown journal operation {kind!r}")

    def _claimer(self, tx: Tx, delivery_id: int) -> int | None:
        """This connection's sender for the send the row belongs to (None on SQLite). A
        connection sends one issue at a time (each send opens its own store), so once it has
        a sender, its claims are that send's."""
        if not self.server:
            return None
        if (only := self._registry.only()) is not None:
            return only
        row = tx.execute("SELECT send_id FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
        return None if row is None else self._sender(tx, row[0])

    def delivery_counts(self, send_id: int) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(DELIVERY_STATES, 0)
        counts.update(
            self._db.rows(
                "SELECT state, count(*) FROM deliveries WHERE send_id = ? GROUP BY state",
                (send_id,),
            )
        )
        return counts

    def deliveries_in_state(
        self, send_id: int, states: tuple[DeliveryState, ...]
    ) -> list[DeliveryRow]:
        """Every row of the send in one of `states`, whatever the reader's status, by id."""
        rows = self._db.rows(
            DELIVERY_SELECT + f" WHERE d.send_id = ? AND d.state IN ({marks(len(states))})"
            " ORDER BY d.id",
            (send_id, *states),
        )
        return [delivery_from_row(row) for row in rows]

    def held_back(self, send_id: int, limit: int) -> list[DeliveryRow]:
        """`pending` rows that carry a server reply: readers a paused send held back uncharged
        (a relay's 4xx, refused content), so `status` can name them. At most `limit`."""
        rows = self._db.rows(
            DELIVERY_SELECT + " WHERE d.send_id = ? AND d.state = 'pending'"
            " AND d.last_reply IS NOT NULL ORDER BY d.id LIMIT ?",
            (send_id, limit),
        )
        return [delivery_from_row(row) for row in rows]

    def delivery_failures(self, send_id: int) -> list[DeliveryRow]:
        """`failed` and `unknown` rows, with the server's last reply."""
        return self.deliveries_in_state(send_id, ("failed", "unknown"))

    def finish_send(self, send_id: int) -> None:
        with self._db.write(exclusive=False) as tx:
            tx.execute(
                "UPDATE sends SET finished_at = ? WHERE id = ? AND finished_at IS NULL",
                (now_stamp(), send_id),
            )


_RECORD = (
    "UPDATE deliveries SET state = ?, last_reply = ?, next_attempt_at = ?,"
    " attempts = attempts + ?, updated_at = ? WHERE id = ?"
)
_JOURNAL_CLAIM = (
    "UPDATE deliveries SET state = 'in_flight', message_id = ?, updated_at = ? WHERE id = ?"
)
_ACTIVE = (
    "EXISTS (SELECT 1 FROM subscribers s WHERE s.id = d.subscriber_id AND s.status = 'active')"
)
# PostgreSQL: _RECORD, then _claim's two UPDATEs (in flight, else skipped: their conditions
# exclude each other), in one statement; the count says whether the row was claimed.
_RECORD_AND_CLAIM = f"""
WITH recorded AS ({_RECORD}),
claimed AS (
    UPDATE deliveries d SET state = 'in_flight', message_id = ?, updated_at = ?,
        sender_id = coalesce(?, d.sender_id)
    WHERE d.id = ? AND d.state IN ('pending', 'deferred') AND {_ACTIVE} RETURNING d.id
),
skipped AS (
    UPDATE deliveries d SET state = 'skipped', updated_at = ?, last_reply = 'reader ' ||
        coalesce((SELECT status FROM subscribers WHERE id = d.subscriber_id), 'forgotten')
        || ' before delivery'
    WHERE d.id = ? AND d.state IN ('pending', 'deferred') AND NOT {_ACTIVE}
)
SELECT count(*) FROM claimed"""


def _claim_parameters(claim: tuple[int, str], now: str, sender: int | None) -> tuple[object, ...]:
    delivery_id, message_id = claim
    return (message_id, now, sender, delivery_id, now, delivery_id)


def _claim(tx: Tx, delivery_id: int, message_id: str, now: str, sender: int | None) -> bool:
    """Mark a due row in_flight (by `sender`, on a server) if its reader is still active, else
    skipped; False if it was not due (pending or deferred) or was skipped."""
    if tx.execute(
        "UPDATE deliveries SET state = 'in_flight', message_id = ?, updated_at = ?,"
        " sender_id = coalesce(?, sender_id)"
        " WHERE id = ? AND state IN ('pending', 'deferred') AND EXISTS (SELECT 1 FROM"
        " subscribers s WHERE s.id = deliveries.subscriber_id AND s.status = 'active')",
        (message_id, now, sender, delivery_id),
    ).rowcount:
        return True
    tx.execute(
        "UPDATE deliveries SET state = 'skipped', updated_at = ?, last_reply = 'reader ' ||"
        " coalesce((SELECT status FROM subscribers WHERE id = deliveries.subscriber_id),"
        " 'forgotten') || ' before delivery' WHERE id = ? AND state IN ('pending', 'deferred')",
        (now, delivery_id),
    )
    return False
