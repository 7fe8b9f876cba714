"""The audit trail: one append-only row per change to a reader and per message the inbox
handled. Other repositories add their events through `insert_event`, inside their own
transaction, so a change and its event commit together."""

from __future__ import annotations

from datetime import datetime

from newsletter.store.database import Database, Tx, now_stamp
from newsletter.store.records import Subscriber


def insert_event(
    tx: Tx,
    subscriber_id: int | None,
    kind: str,
    source: str | None,
    detail: str | None,
    *,
    key: str | None = None,
    issue_slug: str | None = None,
) -> bool:
    """Append one event in `tx`. With `key`, an event of the same kind and key is kept once:
    False when it already was."""
    cursor = tx.execute(
        "INSERT INTO events (at, subscriber_id, kind, source, detail, issue_slug, key)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (now_stamp(), subscriber_id, kind, source, detail, issue_slug, key),
    )
    return cursor.rowcount == 1


def current_id(tx: Tx, subscriber: Subscriber | None) -> int | None:
    """The reader's id if they are still in the store (same id AND token): ids of forgotten
    readers may be reused, so a stale Subscriber never acts on someone else."""
    if subscriber is None:
        return None
    row = tx.execute(
        "SELECT id FROM subscribers WHERE id = ? AND token = ?",
        (subscriber.id, subscriber.token),
    ).fetchone()
    return None if row is None else subscriber.id


class Events:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record_event(
        self,
        subscriber: Subscriber | None,
        kind: str,
        detail: str | None,
        *,
        key: str | None = None,
        source: str | None = None,
        issue_slug: str | None = None,
    ) -> bool:
        """Append to the audit trail. With `key` (e.g. a Message-ID) an event of the same kind
        and key is recorded once: returns False when it already was."""
        with self._db.write() as tx:
            sid = current_id(tx, subscriber)  # None once forgotten
            return insert_event(tx, sid, kind, source, detail, key=key, issue_slug=issue_slug)

    def has_event(self, kind: str, key: str) -> bool:
        return bool(self._db.one("SELECT 1 FROM events WHERE kind = ? AND key = ?", (kind, key)))

    def events(self, subscriber: Subscriber) -> list[tuple[datetime, str, str | None, str | None]]:
        """(at, kind, source, detail) for one reader, oldest first."""
        rows = self._db.rows(
            "SELECT at, kind, source, detail FROM events WHERE subscriber_id = ? ORDER BY id",
            (subscriber.id,),
        )
        return [(datetime.fromisoformat(at), kind, src, detail) for at, kind, src, detail in rows]

    def events_of_kind(self, kind: str) -> list[tuple[datetime, str | None]]:
        """(at, detail) of every event of one kind, oldest first."""
        rows = self._db.rows("SELECT at, detail FROM events WHERE kind = ? ORDER BY id", (kind,))
        return [(datetime.fromisoformat(at), detail) for at, detail in rows]
