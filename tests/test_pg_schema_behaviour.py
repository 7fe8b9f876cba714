"""The PostgreSQL schema behaves as SQLite's: the same statements succeed, or fail for the same
reason, and leave the same rows; json_kind answers as json_valid/json_extract; identities."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
import pytest
from test_pg_schema import _lite_tables, _one, lite, pg, postgres_server, url

from newsletter.store.pg_schema import SYNC_IDENTITIES

# The fixtures this module uses, from test_pg_schema.
__all__ = ["lite", "pg", "postgres_server", "url"]
pytestmark = pytest.mark.real_clock  # starts PostgreSQL, which a faked clock would stall

# -- behaviour: the same statements on both ------------------------------------------------

T = "'2026-11-20T12:00:00Z'"
_READER = "INSERT INTO subscribers (id, email, email_key, token, created_at, updated_at) VALUES"
_EVENT = "INSERT INTO events (id, at, subscriber_id, kind, source, key) VALUES"
_DELIVERY = "INSERT INTO deliveries (id, send_id, subscriber_id, state, updated_at) VALUES"
_SIGNUP = "INSERT INTO signups (id, email, email_key, token_hash, created_at, expires_at) VALUES"
APPEND_ONLY = "events are append-only"
KEPT = "events are deleted only with a forgotten reader"
# (statement, outcome): "ok", the constraint that refuses it, or the trigger's message.
SCRIPT: list[tuple[str, str]] = [
    (f"{_READER} (1, 'A@example.com', 'a@example.com', 't1', {T}, {T})", "ok"),
    (f"{_READER} (2, 'a@example.com', 'a@example.com', 't2', {T}, {T})", "unique"),
    (f"{_READER} (2, 'b@example.com', 'b@example.com', 't1', {T}, {T})", "unique"),
    (f"{_READER} (1, 'b@example.com', 'b@example.com', 't2', {T}, {T})", "unique"),
    (f"{_READER} (2, 'b@example.com', 'b@example.com', 't2', {T}, {T})", "ok"),
    (f"{_READER} (3, 'c@example.com', 'c@example.com', 't3', {T}, {T})", "ok"),
    ("UPDATE subscribers SET status = 'gone' WHERE id = 3", "check"),
    ("UPDATE subscribers SET status = 'bounced' WHERE id = 3", "ok"),
    (
        "INSERT INTO subscribers (id, email, email_key, token, created_at)"
        f" VALUES (4, 'd@example.com', 'd@example.com', 't4', {T})",
        "not null",
    ),
    (f"{_EVENT} (1, {T}, 1, 'subscribed', 'command', NULL)", "ok"),
    (f"{_EVENT} (2, {T}, 1, 'inbox', 'reply', '<m1@example.com>')", "ok"),
    (f"{_EVENT} (3, {T}, 2, 'inbox', 'reply', '<m1@example.com>')", "unique"),
    (f"{_EVENT} (3, {T}, 2, 'schedule-notice', NULL, '<m1@example.com>')", "ok"),
    (f"{_EVENT} (4, {T}, 2, 'subscribed', NULL, NULL)", "ok"),
    (f"{_EVENT} (5, {T}, 3, 'subscribed', NULL, NULL)", "ok"),  # NULL keys never collide
    (f"{_EVENT} (6, {T}, 99, 'subscribed', NULL, NULL)", "foreign key"),
    (f"{_EVENT} (7, {T}, NULL, 'forgotten', 'admin', NULL)", "ok"),
    ("UPDATE events SET detail = 'rewritten' WHERE id = 1", APPEND_ONLY),
    ("UPDATE events SET detail = 'rewritten' WHERE id = 999", "ok"),  # no row, no trigger
    ("DELETE FROM events WHERE id = 1", KEPT),
    ("DELETE FROM events", KEPT),  # the whole statement is undone
    ("DELETE FROM events WHERE id = 7", "ok"),  # nobody's event
    ("INSERT INTO suppressions VALUES ('h1', 'GDPR', " + T + ")", "ok"),
    ("INSERT INTO suppressions VALUES ('h1', NULL, " + T + ")", "unique"),
    (f"INSERT INTO sends (id, issue_slug, total, started_at) VALUES (1, '2026-10', 3, {T})", "ok"),
    (
        f"INSERT INTO sends (id, issue_slug, total, started_at) VALUES (2, '2026-10', 3, {T})",
        "unique",
    ),
    (f"{_DELIVERY} (1, 1, 1, 'sent', {T})", "ok"),
    (f"{_DELIVERY} (2, 1, 2, 'pending', {T})", "ok"),
    (f"{_DELIVERY} (3, 1, 3, 'failed', {T})", "ok"),
    (f"{_DELIVERY} (4, 1, 1, 'pending', {T})", "unique"),
    (f"{_DELIVERY} (4, 1, 2, 'lost', {T})", "check"),
    (f"{_DELIVERY} (4, 9, 2, 'pending', {T})", "foreign key"),
    ("DELETE FROM sends WHERE id = 1", "foreign key"),  # its deliveries keep it
    # Forgetting: the reader's events go with them (the trigger lets them), deliveries stay.
    ("DELETE FROM subscribers WHERE id = 1", "ok"),
    ("DELETE FROM subscribers WHERE id = 2", "ok"),
    (f"{_DELIVERY} (4, 1, NULL, 'skipped', {T})", "ok"),  # forgotten readers are distinct
    ("UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1 WHERE id = 2", "ok"),
    (f"{_SIGNUP} (1, 'e@example.com', 'e@example.com', 'h1', {T}, {T})", "ok"),
    (f"{_SIGNUP} (2, 'e@example.com', 'e@example.com', 'h1', {T}, {T})", "unique"),
    (f"{_SIGNUP} (2, 'e@example.com', 'e@example.com', 'h2', {T}, {T})", "ok"),
    (f"INSERT INTO issue_numbers VALUES ('2026-10', 1, 'sent', {T})", "ok"),
    (f"INSERT INTO issue_numbers VALUES ('2026-11', 1, 'sent', {T})", "unique"),
    (f"INSERT INTO issue_numbers VALUES ('2026-10', 2, 'sent', {T})", "unique"),
    ("INSERT INTO meta VALUES ('note', NULL)", "not null"),
]
_LITE_REASONS = {
    "UNIQUE constraint failed": "unique",
    "CHECK constraint failed": "check",
    "FOREIGN KEY constraint failed": "foreign key",
    "NOT NULL constraint failed": "not null",
}
_PG_REASONS = {
    psycopg.errors.UniqueViolation: "unique",
    psycopg.errors.CheckViolation: "check",
    psycopg.errors.ForeignKeyViolation: "foreign key",
    psycopg.errors.NotNullViolation: "not null",
}


def _lite_outcome(lite: sqlite3.Connection, statement: str) -> str:
    try:
        lite.execute(statement)
    except sqlite3.IntegrityError as exc:
        message = str(exc)
        return next((why for key, why in _LITE_REASONS.items() if message.startswith(key)), message)
    return "ok"


def _pg_outcome(pg: psycopg.Connection[Any], statement: str) -> str:
    try:
        pg.execute(statement)
    except psycopg.IntegrityError as exc:  # the triggers' errors are IntegrityErrors too
        return _PG_REASONS.get(type(exc), exc.diag.message_primary or "")
    return "ok"


def _contents(rows: list[Any]) -> list[tuple[Any, ...]]:
    return sorted(tuple(row) for row in rows)


def test_the_same_statements_do_the_same_on_both(
    lite: sqlite3.Connection, pg: psycopg.Connection[Any]
) -> None:
    for statement, expected in SCRIPT:
        assert (_lite_outcome(lite, statement), _pg_outcome(pg, statement)) == (
            expected,
            expected,
        ), statement
    for table in _lite_tables(lite):
        if table == "meta":  # the PostgreSQL side also holds the version and the hash key
            continue
        query = f"SELECT * FROM {table}"
        assert _contents(pg.execute(query).fetchall()) == _contents(
            lite.execute(query).fetchall()
        ), table
    assert pg.execute("SELECT id, subscriber_id FROM events ORDER BY id").fetchall() == [(5, 3)]
    assert pg.execute("SELECT id, subscriber_id FROM deliveries ORDER BY id").fetchall() == [
        (1, None),
        (2, None),
        (3, 3),
        (4, None),
    ]


def test_truncate_cannot_empty_the_events(pg: psycopg.Connection[Any]) -> None:
    pg.execute(f"{_EVENT} (1, {T}, NULL, 'forgotten', 'admin', NULL)")
    with pytest.raises(psycopg.IntegrityError, match=APPEND_ONLY):
        pg.execute("TRUNCATE events")
    with pytest.raises(psycopg.IntegrityError, match=APPEND_ONLY):
        pg.execute("TRUNCATE subscribers CASCADE")
    assert _one(pg, "SELECT count(*) FROM events") == 1


def test_ids_are_generated_and_follow_copied_ones(pg: psycopg.Connection[Any]) -> None:
    def add(email: str, reader_id: int | None = None) -> int:
        row = pg.execute(
            "INSERT INTO subscribers (id, email, email_key, token, created_at, updated_at)"
            " VALUES (coalesce(%s, nextval(pg_get_serial_sequence('subscribers', 'id'))),"
            " %s, %s, %s, %s, %s) RETURNING id",
            (reader_id, email, email, email, "2026-11-20T12:00:00Z", "2026-11-20T12:00:00Z"),
        ).fetchone()
        assert row is not None
        return int(row[0])

    assert [add("a@example.com"), add("b@example.com")] == [1, 2]
    assert add("copied@example.com", 40) == 40  # as `store copy` keeps the ids
    pg.execute(SYNC_IDENTITIES)
    assert add("c@example.com") == 41
    pg.execute("DELETE FROM subscribers WHERE id = 41")
    assert add("d@example.com") == 42  # never reused (SQLite may reuse the highest)
    assert _one(pg, "SELECT nextval(pg_get_serial_sequence('signups', 'id'))") == 1


# -- json_kind: the report's json_valid/json_extract ---------------------------------------

DETAILS = [
    '{"kind": "feedback", "text": "Loved it"}',
    '{"kind": "unsubscribe"}',
    '{"other": "feedback"}',
    '{"kind": 3}',
    '["feedback"]',
    '"feedback"',
    "feedback, but not JSON",
    '{"kind": "feedback"',
    '{"kind": "feed\\u0000back"}',
    '{"kind": ' + "[" * 100000 + "]" * 100000 + "}",
    "",
    None,
]


def test_json_kind_agrees_with_sqlites_json_functions(
    lite: sqlite3.Connection, pg: psycopg.Connection[Any]
) -> None:
    lite_feedback = [
        lite.execute(
            "SELECT CASE WHEN json_valid(?) THEN json_extract(?, '$.kind') = 'feedback' END",
            (detail, detail),
        ).fetchone()[0]
        for detail in DETAILS
    ]
    pg_feedback = [_one_with(pg, "SELECT json_kind(%s) = 'feedback'", detail) for detail in DETAILS]
    # Counted the same (1/True), and not counted (0, False or NULL) the same.
    assert [bool(x) for x in pg_feedback] == [bool(x) for x in lite_feedback]
    assert [bool(x) for x in pg_feedback] == [True] + [False] * (len(DETAILS) - 1)
    kinds = [_one_with(pg, "SELECT json_kind(%s)", detail) for detail in DETAILS]
    assert kinds[:5] == ["feedback", "unsubscribe", None, "3", None]
    assert set(kinds[5:]) == {None}


def _one_with(pg: psycopg.Connection[Any], query: str, value: str | None) -> Any:
    row = pg.execute(query, (value,)).fetchone()
    assert row is not None
    return row[0]


def test_json_kind_is_usable_in_an_index(pg: psycopg.Connection[Any]) -> None:
    # IMMUTABLE: an expression index could serve the report, should it ever need one.
    pg.execute("CREATE INDEX events_json_kind ON events (json_kind(detail))")
    pg.execute(
        "INSERT INTO events (at, kind, detail) VALUES (%s, 'inbox', %s), (%s, 'inbox', %s)",
        (T.strip("'"), '{"kind": "feedback"}', T.strip("'"), "not json"),
    )
    assert _one(pg, "SELECT count(*) FROM events WHERE json_kind(detail) = 'feedback'") == 1


def test_an_event_key_conflict_names_the_partial_index(pg: psycopg.Connection[Any]) -> None:
    # SQLite's INSERT OR IGNORE: on PostgreSQL the conflict target repeats the index predicate.
    insert = (
        "INSERT INTO events (at, kind, detail, key) VALUES (%s, 'inbox', %s, %s)"
        " ON CONFLICT (kind, key) WHERE key IS NOT NULL DO NOTHING"
    )
    at = T.strip("'")
    assert pg.execute(insert, (at, "reply", "<m1@example.com>")).rowcount == 1
    assert pg.execute(insert, (at, "reply again", "<m1@example.com>")).rowcount == 0
    assert pg.execute(insert, (at, "no key", None)).rowcount == 1
    assert pg.execute(insert, (at, "no key again", None)).rowcount == 1
    details = pg.execute("SELECT detail FROM events ORDER BY id").fetchall()
    assert details == [("reply",), ("no key",), ("no key again",)]
