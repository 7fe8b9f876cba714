"""Several senders of one send on a server store: who they are and whether they live.

A sender is one connection to the store that claims rows (store.sends). It registers in
`senders` with its first claim and holds a session-level advisory lock on its id for as long as
its connection lives, so a sender whose lock can be taken is gone: its reserved rows are free
again and its in-flight ones (one per connection at most) become `unknown`, as after a crash.
PostgreSQL only: on SQLite one sender holds the send lock.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import datetime

from newsletter.store.database import Tx, marks, now_stamp
from newsletter.store.records import SenderProgress

# The first key of the senders' advisory locks (the second is the sender's id): this
# program's own constant, beside pg_schema's MIGRATION_LOCK and postgres.WRITE_LOCK.
_SENDER_LOCK = 1852798068
INTERRUPTED = "in flight when an earlier run stopped"


class SenderRegistry:
    """The senders this connection registered (send id -> sender id), and the others' fate."""

    def __init__(self) -> None:
        self._senders: dict[int, int] = {}

    def only(self) -> int | None:
        """This connection's sender when it has one (it sends one issue at a time)."""
        return next(iter(self._senders.values())) if len(self._senders) == 1 else None

    def register(self, tx: Tx, send_id: int) -> int:
        """This connection's sender for the send: registered on first use and held alive by a
        session advisory lock until the connection closes."""
        if send_id not in self._senders:
            sender = tx.execute(
                "INSERT INTO senders (send_id, host, pid, started_at) VALUES (?, ?, ?, ?)"
                " RETURNING id",
                (send_id, socket.gethostname(), os.getpid(), now_stamp()),
            ).fetchone()[0]
            tx.execute("SELECT pg_advisory_lock(?::integer, ?::integer)", (_SENDER_LOCK, sender))
            self._senders[send_id] = sender
        return self._senders[send_id]

    def settle_dead(self, tx: Tx, send_id: int) -> int:
        """Free the reserved rows of senders whose connection is gone, and turn their
        in-flight rows `unknown`. Returns how many rows became unknown."""
        own = set(self._senders.values())
        dead = [
            sender
            for (sender,) in tx.execute(
                "SELECT id FROM senders WHERE send_id = ? AND ended_at IS NULL", (send_id,)
            ).fetchall()
            if sender not in own and _take_lock(tx, sender)
        ]
        if not dead:
            return 0
        now = now_stamp()
        which = marks(len(dead))
        tx.execute(f"UPDATE senders SET ended_at = ? WHERE id IN ({which})", (now, *dead))
        return settle_in_flight(tx, send_id, f"sender_id IN ({which})", dead)

    def others_busy(self, tx: Tx, send_id: int) -> bool:
        """Whether other live senders hold rows of the send, reserved or in flight."""
        self.settle_dead(tx, send_id)
        own = list(self._senders.values()) or [0]
        return (
            tx.execute(
                "SELECT 1 FROM deliveries d JOIN senders s ON s.id = d.sender_id"
                " WHERE d.send_id = ? AND d.state IN ('pending', 'in_flight')"
                f" AND s.ended_at IS NULL AND s.id NOT IN ({marks(len(own))}) LIMIT 1",
                (send_id, *own),
            ).fetchone()
            is not None
        )

    def progress(self, tx: Tx, send_id: int) -> list[SenderProgress]:
        """Each sender of the send: its rows per state, and whether it is still there."""
        own = set(self._senders.values())
        rows = tx.execute(
            "SELECT id, host, pid, started_at, ended_at FROM senders WHERE send_id = ? ORDER BY id",
            (send_id,),
        ).fetchall()
        running = {
            sid: ended is None and (sid in own or not _take_lock(tx, sid))
            for sid, _, _, _, ended in rows
        }
        counts: dict[int, dict[str, int]] = {}
        for sender, state, count in tx.execute(
            "SELECT sender_id, state, count(*) FROM deliveries WHERE send_id = ?"
            " AND sender_id IS NOT NULL GROUP BY sender_id, state",
            (send_id,),
        ):
            counts.setdefault(sender, {})[state] = count
        return [
            SenderProgress(
                sid, host, pid, datetime.fromisoformat(at), running[sid], counts.get(sid, {})
            )
            for sid, host, pid, at, _ in rows
        ]


def settle_in_flight(
    tx: Tx, send_id: int, which: str = "1 = 1", params: Sequence[object] = ()
) -> int:
    """The send's `in_flight` rows matching `which` become `unknown` (handed to a server, no
    answer heard: as after a crash), counted as an attempt. Returns how many."""
    return int(
        tx.execute(
            "UPDATE deliveries SET state = 'unknown', attempts = attempts + 1,"
            " last_reply = ?, updated_at = ?"
            f" WHERE send_id = ? AND state = 'in_flight' AND {which}",
            (INTERRUPTED, now_stamp(), send_id, *params),
        ).rowcount
    )


def _take_lock(tx: Tx, sender: int) -> bool:
    """Whether `sender` is gone: its advisory lock is free (taken and given back at once)."""
    taken = tx.execute(
        "SELECT pg_try_advisory_lock(?::integer, ?::integer)", (_SENDER_LOCK, sender)
    ).fetchone()[0]
    if taken:
        tx.execute("SELECT pg_advisory_unlock(?::integer, ?::integer)", (_SENDER_LOCK, sender))
    return bool(taken)
