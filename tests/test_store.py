"""The subscriber store and send log against a real SQLite file."""

from __future__ import annotations

import shutil
import sqlite3
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import REPO

from newsletter.config import load_config
from newsletter.errors import StoreError
from newsletter.store.addresses import Address
from newsletter.store.csvio import ImportRow
from newsletter.store.records import Subscriber
from newsletter.store.schema import SCHEMA_VERSION
from newsletter.store.store import DB_NAME, Store, open_sqlite, open_store, open_url
from newsletter.store.subscribers import TOKEN_LENGTH, new_tokens


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "subscribers" / DB_NAME


@pytest.fixture
def store(store_url: str | None, db_path: Path) -> Iterator[Store]:
    """The store on each backend (conftest.store_url): SQLite at db_path, or PostgreSQL."""
    with open_url(store_url or f"sqlite:{db_path}", db_path.parent) as opened:
        yield opened


@pytest.fixture
def sqlite_store(db_path: Path) -> Iterator[Store]:
    """For what only SQLite has: its files, its PRAGMAs, its query plans."""
    with open_sqlite(db_path) as opened:
        yield opened


def add(store: Store, email: str, name: str | None = None) -> Subscriber:
    result = store.subscribers.add(email, name, source="command", consent="test")
    assert result.subscriber is not None
    return result.subscriber


def bulk(store: Store, count: int, domain: str = "example.net") -> None:
    rows = (
        ImportRow(i + 1, Address(f"r{i}@{domain}", f"r{i}@{domain}"), None) for i in range(count)
    )
    store.imports.import_subscribers(rows, source="test")


def test_open_store_creates_a_wal_database_in_subscribers(tmp_path: Path) -> None:
    shutil.copy(REPO / "newsletter.yaml", tmp_path / "newsletter.yaml")
    config = load_config(tmp_path)
    with open_store(config) as store:
        assert store.path == tmp_path / "subscribers" / "subscribers.db"
    db = sqlite3.connect(tmp_path / "subscribers" / "subscribers.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"subscribers", "events", "suppressions", "sends", "deliveries"} <= tables


def test_a_newer_schema_or_a_foreign_file_is_refused_with_its_path(
    tmp_path: Path, db_path: Path
) -> None:
    open_sqlite(db_path).close()
    sqlite3.connect(db_path).execute("PRAGMA user_version = 7")
    with pytest.raises(StoreError, match="schema version 7 is newer") as caught:
        open_sqlite(db_path)
    assert caught.value.path == db_path
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable subscriber database"):
        open_sqlite(junk)


def test_add_normalises_and_treats_case_variants_as_one_reader(store: Store) -> None:
    first = store.subscribers.add(
        " Jane.Doe@Example.COM ", "Jane", source="command", consent="form"
    )
    assert first.outcome == "added"
    assert first.subscriber is not None and first.subscriber.email == "Jane.Doe@example.com"
    again = store.subscribers.add("JANE.DOE@example.com", source="command", consent=None)
    assert again.outcome == "existing" and again.subscriber == first.subscriber
    assert store.subscribers.get_by_email("jane.doe@EXAMPLE.com") == first.subscriber
    idn = add(store, "zoë@Bücher.de")
    assert store.subscribers.get_by_email("ZOË@xn--bcher-kva.de") == idn
    with pytest.raises(StoreError) as caught:
        store.subscribers.add("jane@", source="command", consent=None)
    assert caught.value.field == "email"


def test_consent_record_says_when_how_and_by_whom(store: Store) -> None:
    result = store.subscribers.add(
        "a@example.com", source="web", consent="double opt-in", by="signup form"
    )
    reader = result.subscriber
    assert reader is not None
    assert (reader.consent_source, reader.consent_by, reader.consent_note) == (
        "web", "signup form", "double opt-in",
    )  # fmt: skip
    assert reader.consent_at is not None
    assert abs(reader.consent_at - datetime.now(UTC)) < timedelta(minutes=5)


def test_tokens_are_long_random_lowercase_base32_and_found_case_insensitively(
    store: Store,
) -> None:
    tokens = new_tokens(2000)
    assert len(set(tokens)) == 2000
    assert all(
        len(t) == TOKEN_LENGTH and set(t) <= set("abcdefghijklmnopqrstuvwxyz234567") for t in tokens
    )
    # Every symbol of the alphabet turns up at roughly the same rate (5 random bits each).
    counts = {
        symbol: "".join(tokens).count(symbol) for symbol in "abcdefghijklmnopqrstuvwxyz234567"
    }
    assert min(counts.values()) > 0.8 * max(counts.values())
    reader = add(store, "t@example.com")
    assert store.subscribers.get_by_token(reader.token.upper()) == reader
    assert store.subscribers.get_by_token("nope") is None


@pytest.mark.parametrize("action", ["unsubscribe", "hard bounce", "complaint", "forget"])
def test_suppressed_addresses_are_never_reactivated_by_add(store: Store, action: str) -> None:
    reader = add(store, "s@example.com", "Sam")
    if action == "unsubscribe":
        assert store.subscribers.unsubscribe(reader, source="reply", detail="please stop")
    elif action == "hard bounce":
        assert store.subscribers.record_bounce(
            reader, hard=True, issue_slug="a", detail="550 5.1.1", soft_limit=3
        )
    elif action == "complaint":
        assert store.subscribers.mark_complained(reader, detail="ARF report")
    else:
        assert store.subscribers.forget("s@example.com", reason="erasure request")
    refused = store.subscribers.add("S@example.com", source="command", consent=None)
    assert refused.outcome == "suppressed"
    assert refused.reason == {"unsubscribe": "unsubscribed", "hard bounce": "bounced",
                              "complaint": "complained", "forget": "forgotten"}[action]  # fmt: skip
    with pytest.raises(StoreError, match="consent"):
        store.subscribers.add("s@example.com", source="command", consent=" ", resubscribe=True)
    back = store.subscribers.add(
        "s@example.com", source="command", consent="phoned us", resubscribe=True
    )
    assert back.outcome == "resubscribed" and back.subscriber is not None
    assert back.subscriber.status == "active" and back.subscriber.consent_note == "phoned us"
    kinds = [(kind, detail) for _, kind, _, detail in store.events.events(back.subscriber)]
    assert kinds[-1] == ("resubscribed", f"was {refused.reason}; consent: phoned us")


def test_unsubscribe_returns_whether_it_changed_anything_and_records_the_cause(
    store: Store,
) -> None:
    reader = add(store, "u@example.com")
    assert store.subscribers.unsubscribe(reader, source="link", detail="one-click")
    assert not store.subscribers.unsubscribe(reader, source="reply", detail="again")
    events = store.events.events(reader)
    assert [(kind, source, detail) for _, kind, source, detail in events] == [
        ("subscribed", "command", "test"),
        ("unsubscribed", "link", "one-click"),
    ]


def test_soft_bounces_count_consecutive_issues_not_messages(store: Store) -> None:
    reader = add(store, "soft@example.com")
    other = add(store, "fine@example.com")
    for slug in ("2026-01", "2026-02", "2026-03", "2026-04"):
        store.sends.start_send(slug)
    bounce = {"hard": False, "detail": "452 mailbox full", "soft_limit": 3}
    assert not store.subscribers.record_bounce(reader, issue_slug="2026-02", **bounce)  # type: ignore[arg-type]
    assert not store.subscribers.record_bounce(reader, issue_slug="2026-03", **bounce)  # type: ignore[arg-type]
    assert not store.subscribers.record_bounce(reader, issue_slug="2026-03", **bounce)  # type: ignore[arg-type]
    assert store.subscribers.get_by_email("soft@example.com").status == "active"  # type: ignore[union-attr]
    # 2026-04 makes three issues in a row (02, 03, 04); 2026-01 was delivered.
    assert store.subscribers.record_bounce(reader, issue_slug="2026-04", **bounce)  # type: ignore[arg-type]
    assert store.subscribers.get_by_email("soft@example.com").status == "bounced"  # type: ignore[union-attr]
    # A gap resets the streak: 01 and 03 bounced, 02 did not.
    assert not store.subscribers.record_bounce(other, issue_slug="2026-01", **bounce)  # type: ignore[arg-type]
    assert not store.subscribers.record_bounce(other, issue_slug="2026-03", **bounce)  # type: ignore[arg-type]
    assert not store.subscribers.record_bounce(other, issue_slug="2026-04", **bounce)  # type: ignore[arg-type]
    assert store.subscribers.get_by_email("fine@example.com").status == "active"  # type: ignore[union-attr]


def test_record_event_is_idempotent_per_kind_and_key(store: Store) -> None:
    reader = add(store, "e@example.com")
    assert not store.events.has_event("inbox", "<m1@example.com>")
    assert store.events.record_event(reader, "inbox", "reply", key="<m1@example.com>")
    assert not store.events.record_event(reader, "inbox", "reply again", key="<m1@example.com>")
    assert store.events.has_event("inbox", "<m1@example.com>")
    assert store.events.record_event(None, "schedule-notice", "no issue", key="<m1@example.com>")
    assert [detail for _, detail in store.events.events_of_kind("inbox")] == ["reply"]


def test_events_are_append_only(sqlite_store: Store, db_path: Path) -> None:
    store = sqlite_store
    reader = add(store, "audit@example.com")
    db = sqlite3.connect(db_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE events SET detail = 'rewritten'")
    with pytest.raises(sqlite3.IntegrityError, match="forgotten"):
        db.execute("DELETE FROM events")
    db.close()
    assert [kind for _, kind, _, _ in store.events.events(reader)] == ["subscribed"]


def test_forget_erases_the_reader_from_the_database_files(store: Store, db_path: Path) -> None:
    keep = add(store, "keep@example.com", "Keep")
    gone = add(store, "erase.me@example.com", "Eraseme")
    send = store.sends.start_send("2026-05")
    row = store.sends.next_deliveries(send.id, 10)[1]
    store.sends.record_delivery(row.id, "failed", reply="550 <erase.me@example.com> unknown")
    store.subscribers.unsubscribe(gone, source="reply", detail="from erase.me@example.com")
    assert store.subscribers.forget("Erase.Me@example.com", reason="GDPR art. 17 request")
    assert store.subscribers.get_by_email("erase.me@example.com") is None
    assert store.subscribers.is_forgotten("ERASE.ME@example.com")
    assert not store.subscribers.unsubscribe(
        gone, source="link", detail=None
    )  # a stale object is harmless
    assert store.sends.delivery_counts(send.id)["failed"] == 1  # the send's numbers stay true
    assert [e[1] for e in store.events.events(keep)] == ["subscribed"]
    if store.db.dialect == "sqlite":  # zeroed pages: the address is in no file (WAL included)
        raw = b"".join(p.read_bytes() for p in db_path.parent.glob(DB_NAME + "*"))
        assert b"erase.me" not in raw.lower() and b"Eraseme" not in raw
        assert b"keep@example.com" in raw
    forgotten = store.events.events_of_kind("forgotten")
    assert [detail for _, detail in forgotten] == ["GDPR art. 17 request"]
    assert store.subscribers.counts()["forgotten"] == 1
    assert store.subscribers.forget(
        "never.seen@example.com", reason="asked by letter"
    )  # pre-emptive
    assert (
        store.subscribers.add("never.seen@example.com", source="command", consent=None).outcome
        == "suppressed"
    )


def test_iter_active_streams_in_batches_in_constant_memory(store: Store) -> None:
    bulk(store, 20_000)
    reader = store.subscribers.get_by_email("r5@example.net")
    assert reader is not None
    store.subscribers.unsubscribe(reader, source="test", detail=None)
    tracemalloc.start()
    count = sum(1 for _ in store.subscribers.iter_active(batch_size=500))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 19_999
    everyone = list(
        store.subscribers.iter_subscribers()
    )  # what holding them all costs, for comparison
    assert len(everyone) == 20_000
    assert peak < 2_000_000  # a few batches, not 20,000 readers (~10 MB)


def test_counts_per_status(store: Store) -> None:
    for name in "abcd":
        add(store, f"{name}@example.com")
    store.subscribers.unsubscribe(
        store.subscribers.get_by_email("a@example.com"), source="t", detail=None
    )  # type: ignore[arg-type]
    store.subscribers.mark_complained(store.subscribers.get_by_email("b@example.com"), detail=None)  # type: ignore[arg-type]
    assert store.subscribers.counts() == {
        "active": 2, "unsubscribed": 1, "bounced": 0, "complained": 1, "forgotten": 0,
    }  # fmt: skip


# -- the send log ----------------------------------------------------------------------------


def test_start_send_snapshots_only_active_readers_once(store: Store) -> None:
    for name in "abc":
        add(store, f"{name}@example.com", name.upper())
    store.subscribers.unsubscribe(
        store.subscribers.get_by_email("b@example.com"), source="t", detail=None
    )  # type: ignore[arg-type]
    send = store.sends.start_send("2026-06")
    assert send.total == 2 and send.finished_at is None
    add(store, "late@example.com")
    assert store.sends.start_send("2026-06") == send
    assert store.sends.get_send("2026-06") == send
    assert store.sends.get_send("2026-07") is None
    rows = store.sends.next_deliveries(send.id, 10)
    assert [(r.email, r.first_name, r.state, r.status) for r in rows] == [
        ("a@example.com", "A", "pending", "active"),
        ("c@example.com", "C", "pending", "active"),
    ]
    assert rows[0].token == store.subscribers.get_by_email("a@example.com").token  # type: ignore[union-attr]
    assert store.sends.delivery_counts(send.id)["pending"] == 2


def test_an_unsubscribe_during_a_send_stops_that_reader(store: Store) -> None:
    for name in "abcd":
        add(store, f"{name}@example.com")
    send = store.sends.start_send("2026-06")
    store.subscribers.unsubscribe(
        store.subscribers.get_by_email("b@example.com"), source="link", detail=None
    )  # type: ignore[arg-type]
    store.subscribers.forget("d@example.com", reason="erasure")
    rows = store.sends.next_deliveries(send.id, 10)
    assert [r.email for r in rows] == ["a@example.com", "c@example.com"]
    # Between fetching and sending: the claim re-checks the reader.
    store.subscribers.unsubscribe(
        store.subscribers.get_by_email("c@example.com"), source="reply", detail=None
    )  # type: ignore[arg-type]
    assert store.sends.mark_in_flight(rows[0].id, "<1@example.com>")
    assert not store.sends.mark_in_flight(rows[1].id, "<2@example.com>")
    assert not store.sends.mark_in_flight(rows[0].id, "<1@example.com>")  # claimed once only
    counts = store.sends.delivery_counts(send.id)
    assert (counts["in_flight"], counts["skipped"], counts["pending"]) == (1, 3, 0)
    skipped = store.sends.deliveries_in_state(send.id, ("skipped",))
    assert [r.last_reply for r in skipped] == [
        "reader unsubscribed before delivery",
        "reader unsubscribed before delivery",
        "reader forgotten before delivery",
    ]
    assert skipped[2].subscriber_id is None and skipped[2].email == "(forgotten)"


def test_delivery_states_retries_failures_and_finish(store: Store) -> None:
    for name in "abc":
        add(store, f"{name}@example.com")
    send = store.sends.start_send("2026-06")
    a, b, c = store.sends.next_deliveries(send.id, 10)
    store.sends.mark_in_flight(a.id, "<a@example.com>")
    store.sends.record_delivery(a.id, "sent", reply="250 2.0.0 queued")
    later = datetime.now(UTC) + timedelta(minutes=30)
    store.sends.record_delivery(b.id, "deferred", reply="451 try later", next_attempt_at=later)
    store.sends.record_delivery(c.id, "failed", reply="550 5.1.1 no such user")
    assert store.sends.next_deliveries(send.id, 10) == []
    due = store.sends.next_deliveries(send.id, 10, now=later + timedelta(seconds=1))
    assert [(r.email, r.state, r.attempts, r.last_reply) for r in due] == [
        ("b@example.com", "deferred", 1, "451 try later")
    ]
    assert due[0].next_attempt_at == later.replace(microsecond=0)
    failures = store.sends.delivery_failures(send.id)
    assert [(r.email, r.last_reply) for r in failures] == [
        ("c@example.com", "550 5.1.1 no such user")
    ]
    sent = store.sends.deliveries_in_state(send.id, ("sent",))
    assert [(r.message_id, r.attempts) for r in sent] == [("<a@example.com>", 1)]
    assert store.sends.delivery_counts(send.id) == {
        "pending": 0, "in_flight": 0, "sent": 1, "deferred": 1, "failed": 1, "unknown": 0,
        "skipped": 0,
    }  # fmt: skip
    store.sends.finish_send(send.id)
    finished = store.sends.get_send("2026-06")
    assert finished is not None and finished.finished_at is not None
    with pytest.raises(ValueError):
        store.sends.record_delivery(a.id, "lost", reply=None)  # type: ignore[arg-type]


def test_one_store_is_safe_to_share_between_sender_threads(store: Store) -> None:
    bulk(store, 400)
    send = store.sends.start_send("2026-06")
    claimed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while rows := store.sends.next_deliveries(send.id, 20):
            for row in rows:
                if store.sends.mark_in_flight(row.id, f"<{row.id}@example.com>"):
                    with lock:
                        claimed.append(row.id)
                    store.sends.record_delivery(row.id, "sent", reply="250 ok")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == len(set(claimed)) == 400  # every reader once, none twice
    assert store.sends.delivery_counts(send.id)["sent"] == 400


def test_next_deliveries_pages_through_leavers_without_repeats(store: Store) -> None:
    bulk(store, 3000)
    send = store.sends.start_send("2026-06")
    for i in range(3000):
        if i % 3:  # two readers in three leave after the send started
            reader = store.subscribers.get_by_email(f"r{i}@example.net")
            assert reader is not None
            store.subscribers.unsubscribe(reader, source="link", detail=None)
    seen: list[str] = []
    while rows := store.sends.next_deliveries(send.id, 100):
        assert len(rows) == 100 or len(seen) + len(rows) == 1000
        for row in rows:
            seen.append(row.email)
            store.sends.record_delivery(row.id, "sent", reply="250 ok")
    assert seen == [f"r{i}@example.net" for i in range(0, 3000, 3)]
    assert store.sends.delivery_counts(send.id)["skipped"] == 2000
    # One index range per page, no sort of the whole send (a 1M-reader send stays O(page)).
    due = (
        "SELECT id FROM deliveries WHERE send_id = 1 AND state = 'pending'"
        " AND (next_attempt_at IS NULL OR next_attempt_at <= '') ORDER BY next_attempt_at"
    )
    if store.db.dialect == "sqlite":
        plan = " ".join(str(step) for step in store.db.rows(f"EXPLAIN QUERY PLAN {due}, id"))
        assert "deliveries_due" in plan and "TEMP B-TREE" not in plan
    else:  # a tiny table is cheaper to scan: ask whether the index gives the order unsorted
        with store.db.write() as tx:
            tx.execute("SET enable_seqscan = off")
        plan = " ".join(row[0] for row in store.db.rows(f"EXPLAIN {due} NULLS FIRST, id"))
        assert "deliveries_due" in plan and "Sort" not in plan


def test_a_full_disk_is_a_store_error_and_the_transaction_is_undone(sqlite_store: Store) -> None:
    store = sqlite_store
    add(store, "before@example.com")
    pages = store.db.one("PRAGMA page_count")
    store.db._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk full"
    rows = (
        ImportRow(i, Address(f"x{i}@example.org", f"x{i}@example.org"), None) for i in range(5000)
    )
    with pytest.raises(StoreError, match="database error: database or disk is full"):
        store.imports.import_subscribers(rows, source="test")
    assert store.subscribers.counts()["active"] == 1
    assert not store.db._db.in_transaction


def test_a_postgresql_store_without_psycopg_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    with pytest.raises(StoreError, match=r"pip install 'newsletter\[postgres\]'"):
        open_url("postgresql://news@db.example.com/newsletter", tmp_path)


def test_each_repository_is_built_once_on_first_use_even_by_threads_at_once(
    tmp_path: Path,
) -> None:
    """Repositories are built lazily (a fast start); threads sharing a store (the web app)
    get one of each, and building one from another (sign-ups take the subscribers) works."""
    with open_sqlite(tmp_path / DB_NAME) as store:
        assert "subscribers" not in vars(store)
        assert store.signups is store.signups
        assert "subscribers" in vars(store)  # built by the sign-ups, under the same lock
        start = threading.Barrier(8)
        seen: list[object] = []

        def take() -> None:
            start.wait()
            seen.extend((store.sends, store.rate_limits))

        threads = [threading.Thread(target=take) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(seen) == 16
        assert {id(s) for s in seen} == {id(store.sends), id(store.rate_limits)}
