"""Web sign-ups waiting for the reader to confirm (double opt-in).

Confirming adds the reader to `subscribers` with the sign-up's consent record (web form, when,
client IP); rows never confirmed are deleted a week after they expire, so no unasked address
lingers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from newsletter.errors import StoreError
from newsletter.store import database
from newsletter.store.addresses import clean_name, normalise_address
from newsletter.store.database import Database, now_stamp, parse_stamp, stamp
from newsletter.store.records import AddResult, Signup
from newsletter.store.subscribers import Subscribers

_COLUMNS = "id, email, first_name, token_hash, client_ip, created_at, expires_at, confirmed_at"


class Signups:
    def __init__(self, db: Database, subscribers: Subscribers) -> None:
        self._db = db
        self._subscribers = subscribers

    def add_signup(
        self,
        email: str,
        first_name: str | None,
        *,
        token_hash: str,
        client_ip: str,
        expires_at: datetime,
    ) -> Signup:
        """Record a pending web sign-up; nothing is sent to the address until it confirms."""
        try:
            address = normalise_address(email)
        except ValueError as exc:
            raise StoreError(str(exc), field="email") from None
        now = database.utcnow()
        with self._db.write() as tx:
            tx.execute(
                "DELETE FROM signups WHERE confirmed_at IS NULL AND expires_at < ?",
                (stamp(now - timedelta(days=7)),),
            )
            signup_id = tx.execute(
                "INSERT INTO signups (email, email_key, first_name, token_hash, client_ip,"
                " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    address.email,
                    address.key,
                    clean_name(first_name),
                    token_hash,
                    client_ip,
                    stamp(now),
                    stamp(expires_at),
                ),
            ).fetchone()[0]
        signup = self._signup("id = ?", signup_id)
        assert signup is not None
        return signup

    def _signup(self, where: str, value: Any) -> Signup | None:
        rows = self._db.rows(f"SELECT {_COLUMNS} FROM signups WHERE {where}", (value,))
        if not rows:
            return None
        sid, email, name, hashed, ip, created, expires, confirmed = rows[0]
        return Signup(
            sid,
            email,
            name,
            hashed,
            ip,
            datetime.fromisoformat(created),
            datetime.fromisoformat(expires),
            parse_stamp(confirmed),
        )

    def get_signup(self, token_hash: str) -> Signup | None:
        return self._signup("token_hash = ?", token_hash)

    def confirm_signup(self, token_hash: str, *, client_ip: str) -> AddResult | None:
        """The confirmation click: in one transaction, mark the sign-up confirmed and add the
        reader with its consent (web form, when, from which IP). None if it was confirmed
        before or is unknown. An unsubscribed reader comes back (the click is fresh consent);
        bounced, complained and forgotten addresses stay suppressed (outcome `suppressed`)."""
        now = now_stamp()
        with self._db.write() as tx:
            signup = self._signup("token_hash = ?", token_hash)
            if signup is None or signup.confirmed_at is not None:
                return None
            tx.execute(
                "UPDATE signups SET confirmed_at = ?, confirmed_ip = ? WHERE id = ?",
                (now, client_ip, signup.id),
            )
            existing = self._subscribers.get_by_email(signup.email)
            consent = (
                f"double opt-in: web form {stamp(signup.created_at)}"
                f" from {signup.client_ip or 'unknown'}, confirmed {now} from {client_ip}"
            )
            return self._subscribers.add(
                signup.email,
                signup.first_name,
                source="web form",
                consent=consent,
                resubscribe=existing is not None and existing.status == "unsubscribed",
                by="web",
            )
