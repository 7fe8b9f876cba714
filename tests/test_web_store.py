"""The store's web sign-up and undo methods (schema v2: the `signups` table)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.errors import StoreError
from newsletter.store.schema import MIGRATIONS, SCHEMA_VERSION
from newsletter.store.store import Store, open_sqlite, open_url

SOON = datetime.now(UTC) + timedelta(hours=48)


@pytest.fixture
def store(store_url: str | None, tmp_path: Path) -> Iterator[Store]:
    """On each backend (conftest.store_url)."""
    with open_url(store_url or "sqlite:subscribers.db", tmp_path) as opened:
        yield opened


def test_a_v1_database_gains_the_signups_table_and_keeps_its_readers(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.db"
    with sqlite3.connect(path) as db:  # what a v1 program left: its schema and one reader
        db.executescript(MIGRATIONS[1])
        db.execute("INSERT INTO meta VALUES ('hash_key', ?)", ("00" * 32,))
        db.execute(
            "INSERT INTO subscribers (email, email_key, token, created_at, updated_at)"
            " VALUES ('kept@example.org', 'kept@example.org', 't1', '2026-01-01T00:00:00Z',"
            " '2026-01-01T00:00:00Z')"
        )
        db.execute("PRAGMA user_version = 1")
    with open_sqlite(path) as store:
        assert store.subscribers.get_by_email("kept@example.org") is not None
        store.signups.add_signup(
            "new@example.org", None, token_hash="h1", client_ip="::1", expires_at=SOON
        )
        assert store.signups.get_signup("h1") is not None
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2


def test_a_pending_signup_is_not_a_subscriber_until_confirmed(store: Store) -> None:
    signup = store.signups.add_signup(
        " Mixed@Example.org ",
        "  Ada\r\nLovelace ",
        token_hash="h",
        client_ip="192.0.2.7",
        expires_at=SOON,
    )
    assert (signup.email, signup.first_name, signup.client_ip) == (
        "Mixed@example.org",
        "Ada Lovelace",
        "192.0.2.7",
    )
    assert store.subscribers.get_by_email("mixed@example.org") is None
    assert list(store.subscribers.iter_active()) == []
    result = store.signups.confirm_signup("h", client_ip="198.51.100.9")
    assert result is not None and result.outcome == "added" and result.subscriber is not None
    reader = result.subscriber
    assert (reader.status, reader.consent_source, reader.consent_by) == (
        "active",
        "web form",
        "web",
    )
    assert reader.consent_at is not None
    assert "from 192.0.2.7" in (reader.consent_note or "")
    assert "from 198.51.100.9" in (reader.consent_note or "")
    assert store.signups.confirm_signup("h", client_ip="198.51.100.9") is None  # once only
    assert store.signups.confirm_signup("unknown", client_ip="x") is None
    confirmed = store.signups.get_signup("h")
    assert confirmed is not None and confirmed.confirmed_at is not None


def test_confirming_never_reactivates_bounced_complained_or_forgotten(store: Store) -> None:
    for n, address in enumerate(("b@example.org", "c@example.org", "f@example.org")):
        store.signups.add_signup(address, None, token_hash=f"h{n}", client_ip="ip", expires_at=SOON)
    bounced = store.subscribers.add("b@example.org", source="t", consent="t").subscriber
    complained = store.subscribers.add("c@example.org", source="t", consent="t").subscriber
    assert bounced is not None and complained is not None
    store.subscribers.record_bounce(bounced, hard=True, issue_slug=None, detail="550", soft_limit=3)
    store.subscribers.mark_complained(complained, detail="arf")
    store.subscribers.forget(
        "f@example.org", reason="erasure"
    )  # deletes its pending sign-up as well
    assert store.signups.confirm_signup("h2", client_ip="ip") is None
    store.signups.add_signup(
        "f@example.org", None, token_hash="h2", client_ip="ip", expires_at=SOON
    )
    outcomes = [store.signups.confirm_signup(f"h{n}", client_ip="ip") for n in range(3)]
    assert [(o.outcome, o.reason) for o in outcomes if o] == [
        ("suppressed", "bounced"),
        ("suppressed", "complained"),
        ("suppressed", "forgotten"),
    ]
    assert store.subscribers.counts()["active"] == 0


def test_undo_only_after_a_link_unsubscribe_within_the_window(store: Store) -> None:
    reader = store.subscribers.add("u@example.org", source="t", consent="t").subscriber
    assert reader is not None
    since = datetime.now(UTC) - timedelta(minutes=15)
    assert not store.subscribers.undo_unsubscribe(
        reader, since=since, detail="undo"
    )  # never unsubscribed
    store.subscribers.unsubscribe(reader, source="reply", detail="by mail")
    assert not store.subscribers.undo_unsubscribe(
        reader, since=since, detail="undo"
    )  # not via the link
    store.subscribers.add("u@example.org", source="t", consent="back", resubscribe=True)
    store.subscribers.unsubscribe(reader, source="link", detail="one-click")
    later = datetime.now(UTC) + timedelta(seconds=2)
    assert not store.subscribers.undo_unsubscribe(reader, since=later, detail="undo")  # too old
    assert store.subscribers.undo_unsubscribe(reader, since=since, detail="undo")
    assert not store.subscribers.undo_unsubscribe(
        reader, since=since, detail="undo"
    )  # already active
    current = store.subscribers.get_by_email("u@example.org")
    assert current is not None and current.status == "active"
    assert store.events.events(current)[-1][1:] == ("resubscribed", "link", "undo")


def test_expired_unconfirmed_signups_are_deleted_a_week_later(store: Store) -> None:
    old = datetime.now(UTC) - timedelta(days=8)
    store.signups.add_signup(
        "old@example.org", None, token_hash="old", client_ip="ip", expires_at=old
    )
    recent = datetime.now(UTC) - timedelta(days=1)
    store.signups.add_signup(
        "late@example.org", None, token_hash="late", client_ip="ip", expires_at=recent
    )
    store.signups.add_signup(
        "new@example.org", None, token_hash="new", client_ip="ip", expires_at=SOON
    )
    assert store.signups.get_signup("old") is None
    assert store.signups.get_signup("late") is not None  # still answers "expired", not "unknown"


def test_an_invalid_address_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.signups.add_signup(
            "not an address", None, token_hash="x", client_ip="ip", expires_at=SOON
        )


def test_forget_erases_the_web_signups_too(store: Store) -> None:
    store.signups.add_signup(
        "gone@example.org", "G", token_hash="g1", client_ip="203.0.113.5", expires_at=SOON
    )
    store.signups.confirm_signup("g1", client_ip="203.0.113.5")
    store.signups.add_signup(
        "Gone@example.org", None, token_hash="g2", client_ip="203.0.113.5", expires_at=SOON
    )
    store.subscribers.forget("gone@example.org", reason="erasure request")
    assert store.signups.get_signup("g1") is None and store.signups.get_signup("g2") is None
    assert store.db.one("SELECT count(*) FROM signups") == 0


def test_rate_limits_slide_and_are_shared_by_every_handle(store: Store, tmp_path: Path) -> None:
    def hit(key: str, now: float) -> float | None:
        return store.rate_limits.hit("client", key, limit=2, window=3600.0, now=now)

    start = 1_800_000_000.0
    assert hit("192.0.2.1", start) is None
    assert hit("192.0.2.1", start + 10) is None
    assert hit("192.0.2.1", start + 20) == pytest.approx(3580.0)
    assert hit("192.0.2.9", start + 20) is None  # another client, its own count
    assert hit("192.0.2.1", start + 3601) is None  # the first hit left the window
    # The key is kept only as a keyed hash: no address or IP in the table.
    assert all("192.0.2" not in key for (key,) in store.db.rows("SELECT key FROM rate_hits"))
    # Another process's handle on the same database counts the same hits.
    with open_url(os.environ.get("NEWSLETTER_STORE") or "sqlite:subscribers.db", tmp_path) as other:
        # its hits at +10 and +3601 are in the window; the one at +10 leaves it in 8 s
        retry = other.rate_limits.hit("client", "192.0.2.1", limit=2, window=3600, now=start + 3602)
        assert retry == pytest.approx(8.0)
