"""The send log: one row per reader per issue, with its delivery state.

A send snapshots every active reader as `pending` when it starts; delivery claims rows
(`in_flight`, with the Message-ID it is about to use), records each outcome, and retries
`deferred` ones when due. A crash or a second run resumes from the rows, never from memory.
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
    SendRecord,
    delivery_from_row,
)

# The send runner's group commit: (delivery_id, state, reply, next_attempt_at, claim), where
# claim is (next delivery_id, its Message-ID) or None.
Outcome = tuple[int, DeliveryState, str | None, datetime | None, tuple[int, str] | None]


class SendLog:
    def __init__(self, db: Database) -> None:
        self._db = db

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
        nulls = " NULLS FIRST" if self._db.dialect == "postgresql" else ""
        with self._db.write(exclusive=False) as tx:
            for state in ("pending", "deferred"):
                kept = 0  # active rows of this state already taken: they stay first in order
                while len(found) < limit:
                    page = [
                        delivery_from_row(row)
                        for row in tx.execute(
                            DELIVERY_SELECT + " WHERE d.send_id = ? AND d.state = ?"
                            " AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?)"
                            f" ORDER BY d.next_attempt_at{nulls}, d.id LIMIT ? OFFSET ?",
                            (send_id, state, due, limit - len(found), kept),
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
        return found

    def mark_in_flight(self, delivery_id: int, message_id: str) -> bool:
        """Claim a due row just before handing it to the server. False (and the row `skipped`)
        if the reader is no longer active; False if the row is not pending/deferred."""
        with self._db.write(exclusive=False) as tx:
            return _claim(tx, delivery_id, message_id, now_stamp())

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
                tx.execute(
                    "UPDATE deliveries SET state = ?, last_reply = ?, next_attempt_at = ?,"
                    " attempts = attempts + ?, updated_at = ? WHERE id = ?",
                    (
                        state,
                        reply,
                        stamp(due) if due else None,
                        1 if state in ATTEMPTED else 0,
                        now,
                        delivery_id,
                    ),
                )
                claimed.append(claim is not None and _claim(tx, *claim, now))
        return claimed

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


def _claim(tx: Tx, delivery_id: int, message_id: str, now: str) -> bool:
    """Mark a due row in_flight if its reader is still active, else skipped; False if it was
    not due (pending or deferred) or was skipped."""
    if tx.execute(
        "UPDATE deliveries SET state = 'in_flight', message_id = ?, updated_at = ?"
        " WHERE id = ? AND state IN ('pending', 'deferred') AND EXISTS (SELECT 1 FROM"
        " subscribers s WHERE s.id = deliveries.subscriber_id AND s.status = 'active')",
        (message_id, now, delivery_id),
    ).rowcount:
        return True
    tx.execute(
        "UPDATE deliveries SET state = 'skipped', updated_at = ?, last_reply = 'reader ' ||"
        " coalesce((SELECT status FROM subscribers WHERE id = deliveries.subscriber_id),"
        " 'forgotten') || ' before delivery' WHERE id = ? AND state IN ('pending', 'deferred')",
        (now, delivery_id),
    )
    return False
