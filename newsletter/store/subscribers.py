"""Readers: who is on the list, in what status, and the suppression list.

Identity is `email_key` (the address with its local part lower-cased); `email` keeps the
address as given for display and sending. Unsubscribed, bounced and complained readers stay as
rows: that is the suppression list. `forget` deletes a reader's personal data and keeps only a
keyed hash of the address in `suppressions`, so nothing re-adds them silently either.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from newsletter.errors import StoreError
from newsletter.store.database import Database, Tx, marks, now_stamp, stamp
from newsletter.store.events import current_id, insert_event
from newsletter.store.records import (
    SUBSCRIBER_COLUMNS,
    AddResult,
    Subscriber,
    subscriber_from_row,
)

# Address validation (store/addresses.py; email-validator inside it, ~30 ms to import) loads
# when an address is read; a send only reads rows.
if TYPE_CHECKING:
    from newsletter.store.addresses import Address
    from newsletter.store.csvio import Status

# RFC 4648 base32 alphabet, lower case: survives case-folding mail servers and URLs. Each
# random byte's low 5 bits pick a symbol (256 is a multiple of 32, so uniformly), which equals
# base32-encoding the bits and runs in C: base64.b32encode is pure Python before 3.12.
_TOKEN_ALPHABET = b"abcdefghijklmnopqrstuvwxyz234567"
_TOKEN_TABLE = bytes(_TOKEN_ALPHABET[byte & 31] for byte in range(256))
TOKEN_LENGTH = 32  # 160 random bits


def new_tokens(count: int) -> list[str]:
    """`count` unguessable tokens from `secrets`, 160 bits each."""
    text = secrets.token_bytes(TOKEN_LENGTH * count).translate(_TOKEN_TABLE).decode("ascii")
    return [text[i : i + TOKEN_LENGTH] for i in range(0, len(text), TOKEN_LENGTH)]


def operator() -> str:
    """Who runs this command, for consent records."""
    import getpass  # termios and pwd: only when a consent is recorded

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def address(email: str) -> Address:
    """The normalised address, or StoreError naming the bad one."""
    from newsletter.store.addresses import InvalidAddress, normalise_address

    try:
        return normalise_address(email)
    except InvalidAddress as exc:
        raise StoreError(str(exc), path=email.strip() or None, field="email") from None


def suppression_hash(db: Database, email_key: str) -> str:
    """Keyed with a per-database secret, so a leaked hash list cannot be matched against
    address lists from elsewhere."""
    return hashlib.blake2b(email_key.encode(), key=db.hash_key, digest_size=20).hexdigest()


class Subscribers:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _fetch(self, where: str, value: Any) -> Subscriber | None:
        rows = self._db.rows(
            f"SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE {where}", (value,)
        )
        return subscriber_from_row(rows[0]) if rows else None

    def get(self, subscriber_id: int) -> Subscriber | None:
        return self._fetch("id = ?", subscriber_id)

    def get_by_email(self, email: str) -> Subscriber | None:
        from newsletter.store.addresses import normalise_address

        try:
            key = normalise_address(email).key
        except ValueError:
            return None
        return self._fetch("email_key = ?", key)

    def get_by_token(self, token: str) -> Subscriber | None:
        return self._fetch("token = ?", token.strip().lower())

    def is_forgotten(self, email: str) -> bool:
        hashed = suppression_hash(self._db, address(email).key)
        return bool(self._db.one("SELECT 1 FROM suppressions WHERE hash = ?", (hashed,)))

    def add(
        self,
        email: str,
        first_name: str | None = None,
        *,
        source: str,
        consent: str | None,
        resubscribe: bool = False,
        by: str | None = None,
    ) -> AddResult:
        """Add a reader. A suppressed address (unsubscribed, bounced, complained, forgotten) is
        reported, not re-activated, unless `resubscribe` with a `consent` note is given.

        Raises StoreError for an invalid address, or `resubscribe` without `consent`.
        """
        from newsletter.store.addresses import clean_name

        parsed = address(email)
        if resubscribe and not (consent and consent.strip()):
            raise StoreError("re-subscribing needs a consent note", field="consent")
        name = clean_name(first_name)
        now = now_stamp()
        consent_record = (now, source, by or operator(), consent)
        with self._db.write() as tx:
            existing = self._fetch("email_key = ?", parsed.key)
            if existing is not None and existing.status == "active":
                return AddResult("existing", existing)
            hashed = suppression_hash(self._db, parsed.key)
            forgotten = tx.execute("SELECT 1 FROM suppressions WHERE hash = ?", (hashed,))
            reason = existing.status if existing else "forgotten" if forgotten.fetchone() else None
            if reason is not None and not resubscribe:
                return AddResult("suppressed", existing, reason)
            tx.execute("DELETE FROM suppressions WHERE hash = ?", (hashed,))
            if existing is not None:
                tx.execute(
                    "UPDATE subscribers SET status = 'active', consent_at = ?, consent_source = ?,"
                    " consent_by = ?, consent_note = ?, updated_at = ?,"
                    " first_name = coalesce(?, first_name) WHERE id = ?",
                    (*consent_record, now, name, existing.id),
                )
                subscriber_id = existing.id
            else:
                subscriber_id = tx.execute(
                    "INSERT INTO subscribers (email, email_key, first_name, token, consent_at,"
                    " consent_source, consent_by, consent_note, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (parsed.email, parsed.key, name, new_tokens(1)[0], *consent_record, now, now),
                ).fetchone()[0]
            if reason is None:
                insert_event(tx, subscriber_id, "subscribed", source, consent)
            else:
                detail = f"was {reason}; consent: {consent}"
                insert_event(tx, subscriber_id, "resubscribed", source, detail)
            added = self._fetch("id = ?", subscriber_id)
        assert added is not None
        return AddResult("added" if reason is None else "resubscribed", added, reason)

    def _set_status(
        self,
        subscriber: Subscriber,
        status: Status,
        from_statuses: tuple[str, ...],
        source: str,
        detail: str | None,
        issue_slug: str | None = None,
    ) -> bool:
        with self._db.write() as tx:
            changed = tx.execute(
                "UPDATE subscribers SET status = ?, updated_at = ?"
                f" WHERE id = ? AND token = ? AND status IN ({marks(len(from_statuses))})",
                (status, now_stamp(), subscriber.id, subscriber.token, *from_statuses),
            ).rowcount
            if changed:
                insert_event(tx, subscriber.id, status, source, detail, issue_slug=issue_slug)
            return changed == 1

    def unsubscribe(self, subscriber: Subscriber, *, source: str, detail: str | None) -> bool:
        """Mark an active reader unsubscribed; True if that changed anything."""
        return self._set_status(subscriber, "unsubscribed", ("active",), source, detail)

    def mark_complained(self, subscriber: Subscriber, *, detail: str | None) -> bool:
        """A spam complaint (feedback loop) suppresses the reader whatever their status."""
        statuses = ("active", "unsubscribed", "bounced")
        return self._set_status(subscriber, "complained", statuses, "complaint", detail)

    def record_bounce(
        self,
        subscriber: Subscriber,
        *,
        hard: bool,
        issue_slug: str | None,
        detail: str | None,
        soft_limit: int,
    ) -> bool:
        """Record a bounce; True if the reader is now `bounced`. A hard bounce does it at once;
        soft bounces do it when the reader's last `soft_limit` issues all soft-bounced."""
        with self._db.write() as tx:
            if hard:
                return self._set_status(
                    subscriber, "bounced", ("active",), "bounce", detail, issue_slug
                )
            if current_id(tx, subscriber) is None:
                return False
            insert_event(tx, subscriber.id, "soft_bounce", "bounce", detail, issue_slug=issue_slug)
            if _soft_bounce_streak(tx, subscriber.id) < soft_limit:
                return False
            why = f"soft bounces on {soft_limit} consecutive issues; last: {detail}"
            return self._set_status(subscriber, "bounced", ("active",), "bounce", why, issue_slug)

    def undo_unsubscribe(self, subscriber: Subscriber, *, since: datetime, detail: str) -> bool:
        """Re-activate a reader whose unsubscribe through the web link (source `link`) at or
        after `since` is still their latest change: the "undo" button. True if it did."""
        with self._db.write() as tx:
            last = tx.execute(
                "SELECT at, source FROM events WHERE subscriber_id = ? AND kind = 'unsubscribed'"
                " ORDER BY id DESC LIMIT 1",
                (subscriber.id,),
            ).fetchone()
            if last is None or last[1] != "link" or last[0] < stamp(since):
                return False
            changed = tx.execute(
                "UPDATE subscribers SET status = 'active', updated_at = ?"
                " WHERE id = ? AND status = 'unsubscribed'",
                (now_stamp(), subscriber.id),
            ).rowcount
            if changed:
                insert_event(tx, subscriber.id, "resubscribed", "link", detail)
            return changed == 1

    def forget(self, email: str, *, reason: str, by: str | None = None) -> bool:
        """Erasure: delete the reader's row and history, keep a keyed hash so no import or add
        re-subscribes them. Works for unknown addresses too. True if anything changed."""
        key = address(email).key
        hashed = suppression_hash(self._db, key)
        with self._db.erasing(), self._db.write() as tx:
            added = tx.execute(
                "INSERT INTO suppressions VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (hashed, reason, now_stamp()),
            ).rowcount
            row = tx.execute("SELECT id FROM subscribers WHERE email_key = ?", (key,)).fetchone()
            if row is not None:
                # Server replies may quote the address; the row still counts in its send.
                tx.execute("UPDATE deliveries SET last_reply = NULL WHERE subscriber_id = ?", row)
                tx.execute("DELETE FROM subscribers WHERE id = ?", row)
            # Web sign-ups keep the address and the client IP as consent evidence.
            tx.execute("DELETE FROM signups WHERE email_key = ?", (key,))
            if added or row is not None:
                insert_event(tx, None, "forgotten", by or operator(), reason)
        return bool(added or row is not None)

    def _iter(self, where: str, params: tuple[Any, ...], batch_size: int) -> Iterator[Subscriber]:
        """Keyset pagination: one short read per batch, so memory stays constant and a
        writer is never blocked for the length of a listing."""
        last = 0
        while True:
            rows = self._db.rows(
                f"SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE {where} AND id > ?"
                " ORDER BY id LIMIT ?",
                (*params, last, batch_size),
            )
            for row in rows:
                yield subscriber_from_row(row)
            if len(rows) < batch_size:
                return
            last = rows[-1][0]

    def iter_active(self, batch_size: int = 1000) -> Iterator[Subscriber]:
        return self._iter("status = ?", ("active",), batch_size)

    def iter_subscribers(
        self, status: Status | None = None, batch_size: int = 1000
    ) -> Iterator[Subscriber]:
        if status is None:
            return self._iter("1 = 1", (), batch_size)
        return self._iter("status = ?", (status,), batch_size)

    def counts(self) -> dict[str, int]:
        """Readers per status (every status present), plus `forgotten` suppressions."""
        counts = dict.fromkeys(("active", "unsubscribed", "bounced", "complained"), 0)
        counts.update(self._db.rows("SELECT status, count(*) FROM subscribers GROUP BY status"))
        counts["forgotten"] = self._db.one("SELECT count(*) FROM suppressions")
        return counts


def _soft_bounce_streak(tx: Tx, subscriber_id: int) -> int:
    """How many of the reader's latest issues in a row soft-bounced."""
    bounced = {
        slug
        for (slug,) in tx.execute(
            "SELECT DISTINCT issue_slug FROM events WHERE subscriber_id = ?"
            " AND kind = 'soft_bounce' AND issue_slug IS NOT NULL",
            (subscriber_id,),
        )
    }
    sent = [
        slug
        for (slug,) in tx.execute(
            "SELECT s.issue_slug FROM deliveries d JOIN sends s ON s.id = d.send_id"
            " WHERE d.subscriber_id = ? AND d.state != 'skipped'"
            " ORDER BY s.started_at DESC, s.id DESC",
            (subscriber_id,),
        )
    ]
    if not sent:  # issues sent before this store kept a send log
        return len(bounced)
    streak = 0
    for slug in sent:
        if slug not in bounced:
            break
        streak += 1
    return streak
