"""The SQLite schema of the store, as migrations: `MIGRATIONS[n]` takes version n-1 to n.

To change the schema, add MIGRATIONS[n] and set SCHEMA_VERSION = n; never edit a migration that
has shipped. Opening a store applies the missing ones in one transaction (store.database).
"""

from __future__ import annotations

SCHEMA_VERSION = 4

_SCHEMA_V1 = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE subscribers (
    -- Ids of forgotten readers may be reused: updates match id AND token, so a stale
    -- Subscriber held by a running send or inbox never acts on someone else.
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    first_name TEXT,
    status TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'unsubscribed', 'bounced', 'complained')),
    token TEXT NOT NULL,
    consent_at TEXT,
    consent_source TEXT,
    consent_by TEXT,
    consent_note TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX subscribers_email_key ON subscribers (email_key);
CREATE UNIQUE INDEX subscribers_token ON subscribers (token);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    subscriber_id INTEGER REFERENCES subscribers (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    source TEXT,
    detail TEXT,
    issue_slug TEXT,
    key TEXT
);
CREATE INDEX events_subscriber ON events (subscriber_id, kind);
CREATE UNIQUE INDEX events_key ON events (kind, key) WHERE key IS NOT NULL;
CREATE TRIGGER events_append_only BEFORE UPDATE ON events
    BEGIN SELECT RAISE (ABORT, 'events are append-only'); END;
CREATE TRIGGER events_kept BEFORE DELETE ON events
    WHEN EXISTS (SELECT 1 FROM subscribers WHERE id = OLD.subscriber_id)
    BEGIN SELECT RAISE (ABORT, 'events are deleted only with a forgotten reader'); END;
CREATE TABLE suppressions (
    hash TEXT PRIMARY KEY,
    reason TEXT,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE sends (
    id INTEGER PRIMARY KEY,
    issue_slug TEXT NOT NULL UNIQUE,
    total INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    send_id INTEGER NOT NULL REFERENCES sends (id),
    subscriber_id INTEGER REFERENCES subscribers (id) ON DELETE SET NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
        ('pending', 'in_flight', 'sent', 'deferred', 'failed', 'unknown', 'skipped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_reply TEXT,
    message_id TEXT,
    next_attempt_at TEXT,
    updated_at TEXT NOT NULL,
    UNIQUE (send_id, subscriber_id)
);
CREATE INDEX deliveries_due ON deliveries (send_id, state, next_attempt_at, id);
CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id);
"""
# Web sign-ups waiting for the reader to confirm (double opt-in). Confirming adds the reader to
# `subscribers` with this row's consent record (web form, when, client IP); rows never
# confirmed are deleted a week after they expire, so no unasked address lingers.
_SCHEMA_V2 = """
CREATE TABLE signups (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    first_name TEXT,
    token_hash TEXT NOT NULL UNIQUE,
    client_ip TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    confirmed_at TEXT,
    confirmed_ip TEXT
);
CREATE INDEX signups_email_key ON signups (email_key);
CREATE INDEX signups_pending ON signups (expires_at) WHERE confirmed_at IS NULL;
"""
# Issue numbers readers have seen (newsletter.content.numbering): fixed when an issue is first
# sent or archived, never changed. `how`: sent, archive, or upgrade (a send made before this table).
_SCHEMA_V3 = """
CREATE TABLE issue_numbers (
    issue_slug TEXT PRIMARY KEY,
    number INTEGER NOT NULL UNIQUE,
    how TEXT NOT NULL,
    fixed_at TEXT NOT NULL
);
"""
# -- issue 19 (report) -----------------------------------------------------------------
# `newsletter report` counts events per kind, source and month, and fetches the few kinds it
# attributes to issues, without reading the table: a covering index over (kind, source, at).
# The latest send begun before a moment, and the active readers, are looked up per report.
# (IF NOT EXISTS: indexes only, so re-applying it over a hand-downgraded file is harmless.)
_SCHEMA_V4 = """
CREATE INDEX IF NOT EXISTS events_kind_source_at ON events (kind, source, at);
CREATE INDEX IF NOT EXISTS sends_started ON sends (started_at, id);
CREATE INDEX IF NOT EXISTS subscribers_status ON subscribers (status);
"""
# -- end issue 19 ----------------------------------------------------------------------
MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3, 4: _SCHEMA_V4}
