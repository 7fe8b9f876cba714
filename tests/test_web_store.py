"""The store's web sign-up and undo methods (schema v2: the `signups` table)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.errors import StoreError
from newsletter.store.schema import SCHEMA_VERSION
from newsletter.store.store import Store, open_sqlite

SOON = datetime.now(UTC) + timedelta(hours=48)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_sqlite(tmp_path / "subscribers.db")


def test_a_v1_database_gains_the_signups_table_and_keeps_its_readers(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.db"
    with open_sqlite(path) as store:
        store.subscribers.add("kept@example.org", source="test", consent="t")
    with sqlite3.connect(path) as db:  # back to what a v1 program left
        db.execute("DROP TABLE signups")
        db.execute("DROP TABLE issue_numbers")
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
