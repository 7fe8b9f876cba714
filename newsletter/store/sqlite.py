"""The subscriber store and the send log: every line of SQL in the project lives here.

SQLite in `subscribers/subscribers.db`: WAL (readers never wait for the writer), a busy
timeout (writers queue instead of failing), schema migrations by PRAGMA user_version. Every
write is one `BEGIN IMMEDIATE` transaction, so two processes never interleave a
read-modify-write and a crash leaves the previous state. One Store may be shared by threads.

Identity is `email_key` (the address with its local part lower-cased); `email` keeps the
address as given for display and sending. Unsubscribed, bounced and complained readers stay as
rows: that is the suppression list. `forget` deletes a reader's personal data and keeps only a
keyed hash of the address in `suppressions`, so nothing re-adds them silently either.
"""

from __future__ import annotations

import getpass
import hashlib
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

from newsletter.config import Config
from newsletter.errors import StoreError
from newsletter.store.csvio import (
    Address,
    ImportRow,
    InvalidAddress,
    Status,
    clean_name,
    normalise_address,
)

DB_NAME = "subscribers.db"
SCHEMA_VERSION = 4
DeliveryState = Literal["pending", "in_flight", "sent", "deferred", "failed", "unknown", "skipped"]
DELIVERY_STATES: tuple[DeliveryState, ...] = (
    "pending",
    "in_flight",
    "sent",
    "deferred",
    "failed",
    "unknown",
    "skipped",
)
AddOutcome = Literal["added", "existing", "suppressed", "resubscribed"]

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
# To change the schema, add MIGRATIONS[n] (statements taking version n-1 to n) and set
# SCHEMA_VERSION = n; never edit a migration that has shipped. Opening a store applies the
# missing ones in one transaction.
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

_SUBSCRIBER_COLUMNS = (
    "id, email, first_name, status, token, created_at, updated_at, email_key,"
    " consent_at, consent_source, consent_by, consent_note"
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(stamp: str | None) -> datetime | None:
    return None if stamp is None else datetime.fromisoformat(stamp)


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


def new_token() -> str:
    return new_tokens(1)[0]


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    first_name: str | None
    status: Status
    token: str
    created_at: datetime
    updated_at: datetime
    email_key: str
    consent_at: datetime | None = None
    consent_source: str | None = None  # how: "import FILE", "command", "reply", "web"
    consent_by: str | None = None  # who recorded it
    consent_note: str | None = None


def _subscriber(row: Sequence[Any]) -> Subscriber:
    return Subscriber(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        datetime.fromisoformat(row[5]),
        datetime.fromisoformat(row[6]),
        row[7],
        _parse(row[8]),
        row[9],
        row[10],
        row[11],
    )


@dataclass(frozen=True)
class AddResult:
    outcome: AddOutcome
    subscriber: Subscriber | None  # None when a forgotten address was refused
    reason: str | None = None  # why suppressed: the status, or "forgotten"


@dataclass
class ImportReport:
    added: int = 0
    existing: int = 0  # already on the list, left as they were
    duplicates: int = 0  # repeated within the file
    status_applied: int = 0  # active readers the file marked unsubscribed/bounced/complained
    suppressed: int = 0
    suppressed_rows: list[tuple[int, str, str]] = field(default_factory=list)  # line, email, why


@dataclass(frozen=True)
class SendRecord:
    id: int
    issue_slug: str
    total: int
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A recipient of a send, with the reader's current data (a `Reader` for personalise)."""

    id: int
    send_id: int
    subscriber_id: int | None  # None once the reader was forgotten
    email: str
    first_name: str | None
    token: str
    status: str
    state: DeliveryState
    attempts: int
    last_reply: str | None
    message_id: str | None
    next_attempt_at: datetime | None
    updated_at: datetime


_DELIVERY_SELECT = """
SELECT d.id, d.send_id, d.subscriber_id, coalesce(s.email, '(forgotten)'), s.first_name,
       coalesce(s.token, ''), coalesce(s.status, 'forgotten'), d.state, d.attempts,
       d.last_reply, d.message_id, d.next_attempt_at, d.updated_at
FROM deliveries d LEFT JOIN subscribers s ON s.id = d.subscriber_id
"""


def _delivery(row: Sequence[Any]) -> DeliveryRow:
    sid, send, reader, email, name, token, status, state, attempts, reply, mid, due, at = row
    return DeliveryRow(
        sid,
        send,
        reader,
        email,
        name,
        token,
        status,
        state,
        attempts,
        reply,
        mid,
        _parse(due),
        datetime.fromisoformat(at),
    )


@dataclass(frozen=True, slots=True)
class Signup:
    """A web sign-up waiting for (or past) its confirmation click."""

    id: int
    email: str
    first_name: str | None
    token_hash: str  # the link's token is never stored, only its keyed hash
    client_ip: str | None
    created_at: datetime
    expires_at: datetime
    confirmed_at: datetime | None


_SIGNUP_COLUMNS = (
    "id, email, first_name, token_hash, client_ip, created_at, expires_at, confirmed_at"
)


# -- issue 19: which issue a change belongs to ------------------------------------------
# Most precise first: (1) the issue its message quoted: our Message-ID `<slug.token@domain>`
# found in a bounce is on the bounce event; found in a reply or a report, on the `inbox` event
# the inbox writes right after the change it made (that reader's next `inbox` event); (2) the
# reader (the token they answered with): the latest issue begun before the change, if the send
# log tried to deliver it to them; else the last one it did try (a reader who joined after the
# latest issue began received none: no need to look); (3) time: the latest issue begun.
# Before the first send: NULL. `{events}` selects the events to give to issues.
_ATTEMPTED = "('sent', 'deferred', 'failed', 'unknown')"
_UNATTEMPTED = "('pending', 'in_flight', 'skipped')"  # the rest of DELIVERY_STATES
_ATTRIBUTED = f"""
WITH picked AS MATERIALIZED (
    SELECT e.id, e.at, e.kind, e.source, e.subscriber_id, e.detail,
        CASE WHEN e.kind = 'bounced' AND e.detail LIKE 'soft bounces on %' THEN 1 ELSE 0 END
            AS streak,
        coalesce(e.issue_slug, CASE WHEN e.kind <> 'inbox'
            AND e.source IN ('reply', 'mailto', 'complaint', 'bounce') THEN
            (SELECT i.issue_slug FROM events i WHERE i.subscriber_id = e.subscriber_id
             AND i.kind = 'inbox' AND i.id > e.id ORDER BY i.id LIMIT 1) END) AS quoted,
        (SELECT s.id FROM sends s WHERE s.started_at <= e.at
         ORDER BY s.started_at DESC, s.id DESC LIMIT 1) AS latest
    FROM ({{events}}) e
), unreached AS MATERIALIZED (
    -- the few rows the send log did not try: the row alone (index only) means "tried".
    -- (INDEXED BY: with ANALYZE figures the planner may scan 24M rows for a few.)
    SELECT send_id, subscriber_id FROM deliveries INDEXED BY deliveries_due
    WHERE send_id IN (SELECT id FROM sends) AND state IN {_UNATTEMPTED}
), owned AS MATERIALIZED (
    SELECT p.*, coalesce((SELECT s.id FROM sends s WHERE s.issue_slug = p.quoted), CASE
        WHEN p.latest IS NULL OR p.subscriber_id IS NULL THEN p.latest
        WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.send_id = p.latest
            AND d.subscriber_id = p.subscriber_id) AND NOT EXISTS (SELECT 1 FROM unreached n
            WHERE n.send_id = p.latest AND n.subscriber_id = p.subscriber_id) THEN p.latest
        WHEN (SELECT r.created_at FROM subscribers r WHERE r.id = p.subscriber_id)
            > (SELECT s.started_at FROM sends s WHERE s.id = p.latest) THEN p.latest
        ELSE coalesce((SELECT d.send_id FROM deliveries d JOIN sends s ON s.id = d.send_id
            WHERE d.subscriber_id = p.subscriber_id AND s.started_at <= p.at
            AND d.state IN {_ATTEMPTED} ORDER BY s.started_at DESC, s.id DESC LIMIT 1),
            p.latest)
        END) AS owner
    FROM picked p
)"""
# What a report counts: departures and bounces (not statuses an import file set, not a link
# unsubscribe undone on the page before any other unsubscribe) and feedback replies. Two
# plain selects in a UNION ALL: one WHERE mixing both costs SQLite twice the CPU.
# (instr first: a cheap necessary condition that spares most details a JSON parse)
_FEEDBACK = """SELECT id, at, kind, source, subscriber_id, issue_slug, detail FROM events e
    WHERE e.kind = 'inbox' AND CASE WHEN instr(e.detail, 'feedback') = 0 THEN 0
        WHEN json_valid(e.detail) THEN json_extract(e.detail, '$.kind') = 'feedback' END"""
_REACTIONS = """SELECT id, at, kind, source, subscriber_id, issue_slug, detail FROM events e
    WHERE e.kind IN ('unsubscribed', 'bounced', 'soft_bounce', 'complained')
    AND substr(coalesce(e.source, ''), 1, 7) <> 'import '
    AND NOT (e.kind = 'unsubscribed' AND e.source = 'link' AND e.subscriber_id IN (
        SELECT subscriber_id FROM events WHERE kind = 'resubscribed' AND source = 'link')
        AND EXISTS (SELECT 1 FROM events r WHERE r.subscriber_id = e.subscriber_id
            AND r.kind = 'resubscribed' AND r.source = 'link' AND r.id > e.id
            AND r.id < coalesce((SELECT min(u.id) FROM events u
                WHERE u.subscriber_id = e.subscriber_id AND u.kind = 'unsubscribed'
                AND u.id > e.id), r.id + 1)))
    UNION ALL """ + _FEEDBACK
# -- end issue 19 ----------------------------------------------------------------------


class Store(Protocol):
    """What delivery, inbox and the CLI need from a subscriber store."""

    def close(self) -> None: ...
    def add(
        self,
        email: str,
        first_name: str | None = None,
        *,
        source: str,
        consent: str | None,
        resubscribe: bool = False,
        by: str | None = None,
    ) -> AddResult: ...
    def get_by_email(self, email: str) -> Subscriber | None: ...
    def get_by_token(self, token: str) -> Subscriber | None: ...
    def get(self, subscriber_id: int) -> Subscriber | None: ...
    def iter_active(self, batch_size: int = 1000) -> Iterator[Subscriber]: ...
    def unsubscribe(self, subscriber: Subscriber, *, source: str, detail: str | None) -> bool: ...
    def record_bounce(
        self,
        subscriber: Subscriber,
        *,
        hard: bool,
        issue_slug: str | None,
        detail: str | None,
        soft_limit: int,
    ) -> bool: ...
    def mark_complained(self, subscriber: Subscriber, *, detail: str | None) -> bool: ...
    def record_event(
        self,
        subscriber: Subscriber | None,
        kind: str,
        detail: str | None,
        *,
        key: str | None = None,
        source: str | None = None,
        issue_slug: str | None = None,
    ) -> bool: ...
    def has_event(self, kind: str, key: str) -> bool: ...
    def events_of_kind(self, kind: str) -> list[tuple[datetime, str | None]]: ...
    def start_send(self, issue_slug: str) -> SendRecord: ...
    def get_send(self, issue_slug: str) -> SendRecord | None: ...
    def next_deliveries(
        self, send_id: int, limit: int, now: datetime | None = None
    ) -> list[DeliveryRow]: ...
    def mark_in_flight(self, delivery_id: int, message_id: str) -> bool: ...
    def record_delivery(
        self,
        delivery_id: int,
        state: DeliveryState,
        *,
        reply: str | None,
        next_attempt_at: datetime | None = None,
    ) -> None: ...
    def delivery_counts(self, send_id: int) -> dict[str, int]: ...
    def deliveries_in_state(
        self, send_id: int, states: tuple[DeliveryState, ...]
    ) -> list[DeliveryRow]: ...
    def delivery_failures(self, send_id: int) -> list[DeliveryRow]: ...
    def held_back(self, send_id: int, limit: int) -> list[DeliveryRow]: ...
    def finish_send(self, send_id: int) -> None: ...


def open_store(config: Config, *, timeout: float = 60.0) -> SQLiteStore:
    """Open (creating and migrating on first use) the publication's subscriber database.

    `timeout`: seconds a write waits for another process's transaction (an import) to end.
    """
    return SQLiteStore(config.subscribers_dir / DB_NAME, timeout=timeout)


class SQLiteStore:
    def __init__(self, path: Path, *, timeout: float = 60.0) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the subscriber database: {exc}", path=path) from None
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"not a usable subscriber database: {exc}", path=path) from None
        self._hash_key = bytes.fromhex(self._one("SELECT value FROM meta WHERE name = 'hash_key'"))

    # -- plumbing -------------------------------------------------------------------------

    def _migrate(self) -> None:
        # Read first: opening the store during another process's import must not wait for
        # its write lock unless there is something to migrate.
        if self._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"schema version {version} is newer than this program ({SCHEMA_VERSION})",
                    path=self.path,
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _statements(MIGRATIONS[target]):
                    db.execute(statement)
                if target == 1:
                    db.execute("INSERT INTO meta VALUES ('hash_key', ?)", (secrets.token_hex(32),))
                db.execute(f"PRAGMA user_version = {target}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction (re-entrant): the write lock is taken up front, so a
        concurrent writer waits (busy_timeout) instead of failing halfway."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(
                    f"the subscriber database is busy ({exc}); another import or send "
                    "may be running, try again",
                    path=self.path,
                ) from None
            self._depth = 1
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error) and _is_environmental(exc):
                    raise StoreError(f"database error: {exc}", path=self.path) from None
                raise
            finally:
                self._depth = 0

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._rows(sql, params)
        return rows[0][0] if rows else None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def suppression_hash(self, email_key: str) -> str:
        """Keyed with a per-database secret, so a leaked hash list cannot be matched
        against address lists from elsewhere."""
        return hashlib.blake2b(email_key.encode(), key=self._hash_key, digest_size=20).hexdigest()

    # -- subscribers ----------------------------------------------------------------------

    def _fetch(self, where: str, value: Any) -> Subscriber | None:
        rows = self._rows(f"SELECT {_SUBSCRIBER_COLUMNS} FROM subscribers WHERE {where}", (value,))
        return _subscriber(rows[0]) if rows else None

    def get(self, subscriber_id: int) -> Subscriber | None:
        return self._fetch("id = ?", subscriber_id)

    def get_by_email(self, email: str) -> Subscriber | None:
        try:
            key = normalise_address(email).key
        except ValueError:
            return None
        return self._fetch("email_key = ?", key)

    def get_by_token(self, token: str) -> Subscriber | None:
        return self._fetch("token = ?", token.strip().lower())

    def is_forgotten(self, email: str) -> bool:
        key = _address(email).key
        hashed = self.suppression_hash(key)
        return bool(self._one("SELECT 1 FROM suppressions WHERE hash = ?", (hashed,)))

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
        address = _address(email)
        if resubscribe and not (consent and consent.strip()):
            raise StoreError("re-subscribing needs a consent note", field="consent")
        name = clean_name(first_name)
        now = _now()
        consent_record = (now, source, by or _operator(), consent)
        with self._write() as db:
            existing = self._fetch("email_key = ?", address.key)
            if existing is not None and existing.status == "active":
                return AddResult("existing", existing)
            hashed = self.suppression_hash(address.key)
            forgotten = db.execute("SELECT 1 FROM suppressions WHERE hash = ?", (hashed,))
            reason = existing.status if existing else "forgotten" if forgotten.fetchone() else None
            if reason is not None and not resubscribe:
                return AddResult("suppressed", existing, reason)
            db.execute("DELETE FROM suppressions WHERE hash = ?", (hashed,))
            if existing is not None:
                db.execute(
                    "UPDATE subscribers SET status = 'active', consent_at = ?, consent_source = ?,"
                    " consent_by = ?, consent_note = ?, updated_at = ?,"
                    " first_name = coalesce(?, first_name) WHERE id = ?",
                    (*consent_record, now, name, existing.id),
                )
                subscriber_id = existing.id
            else:
                subscriber_id = _inserted_id(
                    db.execute(
                        "INSERT INTO subscribers (email, email_key, first_name, token, consent_at,"
                        " consent_source, consent_by, consent_note, created_at, updated_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (address.email, address.key, name, new_token(), *consent_record, now, now),
                    )
                )
            if reason is None:
                self._event(db, subscriber_id, "subscribed", source, consent)
            else:
                detail = f"was {reason}; consent: {consent}"
                self._event(db, subscriber_id, "resubscribed", source, detail)
            added = self._fetch("id = ?", subscriber_id)
        assert added is not None
        return AddResult("added" if reason is None else "resubscribed", added, reason)

    def import_subscribers(
        self,
        rows: Iterable[ImportRow],
        *,
        source: str,
        consent: str | None = None,
        by: str | None = None,
        batch_size: int = 2000,
    ) -> ImportReport:
        """Add every row in ONE transaction: all or nothing. If iterating `rows` raises (an
        invalid row without --skip-invalid, a kill), the list is left as it was.

        Existing readers are left alone; suppressed ones are reported, never re-activated. A
        row whose status is not `active` (an export from elsewhere) adds or marks the reader
        with that status, so suppressions survive a migration.
        """
        report = ImportReport()
        by = by or _operator()
        now = _now()
        with self._lock:
            self._db.execute("PRAGMA cache_size = -32000")  # 32 MB for the indexes' pages
            try:
                with self._write() as db:
                    first_new_id = 1 + (
                        db.execute("SELECT max(id) FROM subscribers").fetchone()[0] or 0
                    )
                    check_forgotten = db.execute("SELECT 1 FROM suppressions LIMIT 1").fetchone()
                    iterator = iter(rows)
                    while batch := list(islice(iterator, batch_size)):
                        self._import_batch(
                            db,
                            batch,
                            report,
                            first_new_id,
                            check_forgotten is not None,
                            (now, source, by, consent),
                        )
            finally:
                self._db.execute("PRAGMA cache_size = -2000")
        return report

    def _import_batch(
        self,
        db: sqlite3.Connection,
        batch: list[ImportRow],
        report: ImportReport,
        first_new_id: int,
        check_forgotten: bool,
        consent: tuple[str, str, str, str | None],
    ) -> None:
        unique: dict[str, ImportRow] = {}
        for row in batch:
            if row.address.key in unique:
                report.duplicates += 1
            else:
                unique[row.address.key] = row
        existing: dict[str, tuple[int, str]] = {}
        if first_new_id > 1:  # readers from before this import: classify them
            existing = {
                key: (sid, status)
                for key, sid, status in db.execute(
                    "SELECT email_key, id, status FROM subscribers"
                    f" WHERE email_key IN ({','.join('?' * len(unique))}) AND id < ?",
                    (*unique, first_new_id),
                )
            }
        forgotten: set[str] = set()
        if check_forgotten:
            hashes = {self.suppression_hash(key): key for key in unique if key not in existing}
            forgotten = {
                hashes[h]
                for (h,) in db.execute(
                    f"SELECT hash FROM suppressions WHERE hash IN ({','.join('?' * len(hashes))})",
                    list(hashes),
                )
            }
        now, source, by, note = consent
        if existing or forgotten:
            new = [
                row
                for key, row in unique.items()
                if not self._import_known(
                    db, row, existing.get(key), key in forgotten, report, now, source
                )
            ]
        else:
            new = list(unique.values())
        if not new:
            return
        before = db.execute("SELECT max(id) FROM subscribers").fetchone()[0] or 0
        # A key imported by an earlier batch of this import conflicts: a duplicate row.
        added = db.executemany(
            "INSERT INTO subscribers (email, email_key, first_name, status, token, consent_at,"
            " consent_source, consent_by, consent_note, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email_key) DO NOTHING",
            [
                (
                    r.address.email,
                    r.address.key,
                    r.first_name,
                    r.status,
                    token,
                    now,
                    source,
                    by,
                    note,
                    now,
                    now,
                )
                for r, token in zip(new, new_tokens(len(new)), strict=True)
            ],
        ).rowcount
        db.execute(
            "INSERT INTO events (at, subscriber_id, kind, source, detail)"
            " SELECT ?, id, CASE status WHEN 'active' THEN 'subscribed' ELSE status END, ?, ?"
            " FROM subscribers WHERE id > ?",
            (now, source, note, before),
        )
        report.added += added
        report.duplicates += len(new) - added

    def _import_known(
        self,
        db: sqlite3.Connection,
        row: ImportRow,
        existing: tuple[int, str] | None,
        forgotten: bool,
        report: ImportReport,
        now: str,
        source: str,
    ) -> bool:
        """Handle a row whose reader the store already knows; False if it is new."""
        if existing is not None:
            sid, status = existing
            if status == "active" and row.status != "active":
                db.execute(
                    "UPDATE subscribers SET status = ?, updated_at = ? WHERE id = ?",
                    (row.status, now, sid),
                )
                self._event(db, sid, row.status, source, f"line {row.line}")
                report.status_applied += 1
            elif status == "active" or row.status != "active":
                report.existing += 1
            else:
                self._report_suppressed(report, row, status)
            return True
        if forgotten:
            if row.status == "active":
                self._report_suppressed(report, row, "forgotten")
            else:
                report.existing += 1
            return True
        return False

    @staticmethod
    def _report_suppressed(report: ImportReport, row: ImportRow, why: str) -> None:
        report.suppressed += 1
        if len(report.suppressed_rows) < 50:
            report.suppressed_rows.append((row.line, row.address.email, why))

    def _event(
        self,
        db: sqlite3.Connection,
        subscriber_id: int | None,
        kind: str,
        source: str | None,
        detail: str | None,
        *,
        key: str | None = None,
        issue_slug: str | None = None,
    ) -> bool:
        cursor = db.execute(
            "INSERT OR IGNORE INTO events (at, subscriber_id, kind, source, detail, issue_slug,"
            " key) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (_now(), subscriber_id, kind, source, detail, issue_slug, key),
        )
        return cursor.rowcount == 1

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
        with self._write() as db:
            sid = self._current_id(db, subscriber)  # None once forgotten
            return self._event(db, sid, kind, source, detail, key=key, issue_slug=issue_slug)

    @staticmethod
    def _current_id(db: sqlite3.Connection, subscriber: Subscriber | None) -> int | None:
        """The reader's id if they are still in the store (same id AND token)."""
        if subscriber is None:
            return None
        row = db.execute(
            "SELECT id FROM subscribers WHERE id = ? AND token = ?",
            (subscriber.id, subscriber.token),
        ).fetchone()
        return None if row is None else subscriber.id

    def has_event(self, kind: str, key: str) -> bool:
        return bool(self._one("SELECT 1 FROM events WHERE kind = ? AND key = ?", (kind, key)))

    def events(self, subscriber: Subscriber) -> list[tuple[datetime, str, str | None, str | None]]:
        """(at, kind, source, detail) for one reader, oldest first."""
        rows = self._rows(
            "SELECT at, kind, source, detail FROM events WHERE subscriber_id = ? ORDER BY id",
            (subscriber.id,),
        )
        return [(datetime.fromisoformat(at), kind, src, detail) for at, kind, src, detail in rows]

    def events_of_kind(self, kind: str) -> list[tuple[datetime, str | None]]:
        """(at, detail) of every event of one kind, oldest first."""
        rows = self._rows("SELECT at, detail FROM events WHERE kind = ? ORDER BY id", (kind,))
        return [(datetime.fromisoformat(at), detail) for at, detail in rows]

    def _set_status(
        self,
        subscriber: Subscriber,
        status: Status,
        from_statuses: tuple[str, ...],
        source: str,
        detail: str | None,
        issue_slug: str | None = None,
    ) -> bool:
        with self._write() as db:
            marks = ",".join("?" * len(from_statuses))
            changed = db.execute(
                "UPDATE subscribers SET status = ?, updated_at = ?"
                f" WHERE id = ? AND token = ? AND status IN ({marks})",
                (status, _now(), subscriber.id, subscriber.token, *from_statuses),
            ).rowcount
            if changed:
                self._event(db, subscriber.id, status, source, detail, issue_slug=issue_slug)
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
        with self._write() as db:
            if hard:
                return self._set_status(
                    subscriber, "bounced", ("active",), "bounce", detail, issue_slug
                )
            if self._current_id(db, subscriber) is None:
                return False
            self._event(db, subscriber.id, "soft_bounce", "bounce", detail, issue_slug=issue_slug)
            if self._soft_bounce_streak(db, subscriber.id) < soft_limit:
                return False
            why = f"soft bounces on {soft_limit} consecutive issues; last: {detail}"
            return self._set_status(subscriber, "bounced", ("active",), "bounce", why, issue_slug)

    @staticmethod
    def _soft_bounce_streak(db: sqlite3.Connection, subscriber_id: int) -> int:
        bounced = {
            slug
            for (slug,) in db.execute(
                "SELECT DISTINCT issue_slug FROM events WHERE subscriber_id = ?"
                " AND kind = 'soft_bounce' AND issue_slug IS NOT NULL",
                (subscriber_id,),
            )
        }
        sent = [
            slug
            for (slug,) in db.execute(
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

    def forget(self, email: str, *, reason: str, by: str | None = None) -> bool:
        """Erasure: delete the reader's row and history, keep a keyed hash so no import or add
        re-subscribes them. Works for unknown addresses too. True if anything changed.

        Deleted pages are zeroed (secure_delete) and the WAL is checkpointed, so the address
        does not linger in the database files."""
        key = _address(email).key
        hashed = self.suppression_hash(key)
        with self._lock:
            self._db.execute("PRAGMA secure_delete = ON")
            try:
                with self._write() as db:
                    added = db.execute(
                        "INSERT OR IGNORE INTO suppressions VALUES (?, ?, ?)",
                        (hashed, reason, _now()),
                    ).rowcount
                    row = db.execute(
                        "SELECT id FROM subscribers WHERE email_key = ?", (key,)
                    ).fetchone()
                    if row is not None:
                        # Server replies may quote the address; the row still counts in its send.
                        db.execute(
                            "UPDATE deliveries SET last_reply = NULL WHERE subscriber_id = ?", row
                        )
                        db.execute("DELETE FROM subscribers WHERE id = ?", row)
                    # Web sign-ups keep the address and the client IP as consent evidence.
                    db.execute("DELETE FROM signups WHERE email_key = ?", (key,))
                    if added or row is not None:
                        self._event(db, None, "forgotten", by or _operator(), reason)
            finally:
                self._db.execute("PRAGMA secure_delete = OFF")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return bool(added or row is not None)

    def _iter(self, where: str, params: tuple[Any, ...], batch_size: int) -> Iterator[Subscriber]:
        """Keyset pagination: one short read per batch, so memory stays constant and a
        writer is never blocked for the length of a listing."""
        last = 0
        while True:
            rows = self._rows(
                f"SELECT {_SUBSCRIBER_COLUMNS} FROM subscribers WHERE {where} AND id > ?"
                " ORDER BY id LIMIT ?",
                (*params, last, batch_size),
            )
            for row in rows:
                yield _subscriber(row)
            if len(rows) < batch_size:
                return
            last = rows[-1][0]

    def iter_active(self, batch_size: int = 1000) -> Iterator[Subscriber]:
        return self._iter("status = ?", ("active",), batch_size)

    def iter_subscribers(
        self, status: Status | None = None, batch_size: int = 1000
    ) -> Iterator[Subscriber]:
        if status is None:
            return self._iter("1", (), batch_size)
        return self._iter("status = ?", (status,), batch_size)

    def counts(self) -> dict[str, int]:
        """Readers per status (every status present), plus `forgotten` suppressions."""
        counts = dict.fromkeys(("active", "unsubscribed", "bounced", "complained"), 0)
        counts.update(self._rows("SELECT status, count(*) FROM subscribers GROUP BY status"))
        counts["forgotten"] = self._one("SELECT count(*) FROM suppressions")
        return counts

    # -- web sign-ups and undo ------------------------------------------------------------

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
        now = datetime.now(UTC)
        with self._write() as db:
            db.execute(
                "DELETE FROM signups WHERE confirmed_at IS NULL AND expires_at < ?",
                (_stamp(now - timedelta(days=7)),),
            )
            signup_id = _inserted_id(
                db.execute(
                    "INSERT INTO signups (email, email_key, first_name, token_hash, client_ip,"
                    " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        address.email,
                        address.key,
                        clean_name(first_name),
                        token_hash,
                        client_ip,
                        _stamp(now),
                        _stamp(expires_at),
                    ),
                )
            )
        signup = self._signup("id = ?", signup_id)
        assert signup is not None
        return signup

    def _signup(self, where: str, value: Any) -> Signup | None:
        rows = self._rows(f"SELECT {_SIGNUP_COLUMNS} FROM signups WHERE {where}", (value,))
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
            _parse(confirmed),
        )

    def get_signup(self, token_hash: str) -> Signup | None:
        return self._signup("token_hash = ?", token_hash)

    def confirm_signup(self, token_hash: str, *, client_ip: str) -> AddResult | None:
        """The confirmation click: in one transaction, mark the sign-up confirmed and add the
        reader with its consent (web form, when, from which IP). None if it was confirmed
        before or is unknown. An unsubscribed reader comes back (the click is fresh consent);
        bounced, complained and forgotten addresses stay suppressed (outcome `suppressed`)."""
        now = _now()
        with self._write() as db:
            signup = self._signup("token_hash = ?", token_hash)
            if signup is None or signup.confirmed_at is not None:
                return None
            db.execute(
                "UPDATE signups SET confirmed_at = ?, confirmed_ip = ? WHERE id = ?",
                (now, client_ip, signup.id),
            )
            existing = self.get_by_email(signup.email)
            consent = (
                f"double opt-in: web form {_stamp(signup.created_at)}"
                f" from {signup.client_ip or 'unknown'}, confirmed {now} from {client_ip}"
            )
            return self.add(
                signup.email,
                signup.first_name,
                source="web form",
                consent=consent,
                resubscribe=existing is not None and existing.status == "unsubscribed",
                by="web",
            )

    def undo_unsubscribe(self, subscriber: Subscriber, *, since: datetime, detail: str) -> bool:
        """Re-activate a reader whose unsubscribe through the web link (source `link`) at or
        after `since` is still their latest change: the "undo" button. True if it did."""
        with self._write() as db:
            last = db.execute(
                "SELECT at, source FROM events WHERE subscriber_id = ? AND kind = 'unsubscribed'"
                " ORDER BY id DESC LIMIT 1",
                (subscriber.id,),
            ).fetchone()
            if last is None or last[1] != "link" or last[0] < _stamp(since):
                return False
            changed = db.execute(
                "UPDATE subscribers SET status = 'active', updated_at = ?"
                " WHERE id = ? AND status = 'unsubscribed'",
                (_now(), subscriber.id),
            ).rowcount
            if changed:
                self._event(db, subscriber.id, "resubscribed", "link", detail)
            return changed == 1

    # -- issue numbers --------------------------------------------------------------------

    def fixed_numbers(self) -> dict[str, int]:
        """Slug -> the number it was first sent or archived with."""
        return dict(self._rows("SELECT issue_slug, number FROM issue_numbers"))

    def fix_numbers(self, numbers: Mapping[str, int], *, how: str) -> dict[str, int]:
        """Record these numbers unless the slug (or the number) is fixed already; returns
        every fixed number afterwards. A fixed number never changes."""
        if numbers:
            with self._write() as db:
                now = _now()
                db.executemany(
                    "INSERT OR IGNORE INTO issue_numbers (issue_slug, number, how, fixed_at)"
                    " VALUES (?, ?, ?, ?)",
                    [(slug, number, how, now) for slug, number in numbers.items()],
                )
        return self.fixed_numbers()

    def sent_slugs(self) -> list[str]:
        """Every issue with a send log, begun or finished."""
        return [row[0] for row in self._rows("SELECT issue_slug FROM sends ORDER BY id")]

    # -- the send log ---------------------------------------------------------------------

    def _send(self, where: str, value: Any) -> SendRecord | None:
        rows = self._rows(
            f"SELECT id, issue_slug, total, started_at, finished_at FROM sends WHERE {where}",
            (value,),
        )
        if not rows:
            return None
        sid, slug, total, started, finished = rows[0]
        return SendRecord(sid, slug, total, datetime.fromisoformat(started), _parse(finished))

    def start_send(self, issue_slug: str) -> SendRecord:
        """The send of this issue; the first call snapshots every active reader as `pending`."""
        with self._write() as db:
            if (existing := self._send("issue_slug = ?", issue_slug)) is not None:
                return existing
            now = _now()
            send_id = _inserted_id(
                db.execute(
                    "INSERT INTO sends (issue_slug, total, started_at) VALUES (?, 0, ?)",
                    (issue_slug, now),
                )
            )
            total = db.execute(
                "INSERT INTO deliveries (send_id, subscriber_id, updated_at)"
                " SELECT ?, id, ? FROM subscribers WHERE status = 'active' ORDER BY id",
                (send_id, now),
            ).rowcount
            db.execute("UPDATE sends SET total = ? WHERE id = ?", (total, send_id))
            record = self._send("id = ?", send_id)
        assert record is not None
        return record

    def get_send(self, issue_slug: str) -> SendRecord | None:
        return self._send("issue_slug = ?", issue_slug)

    def next_deliveries(
        self, send_id: int, limit: int, now: datetime | None = None
    ) -> list[DeliveryRow]:
        """Up to `limit` due rows of readers still active: `pending` ones by id, then
        `deferred` ones by due time. Due rows met on the way whose reader left meanwhile (or
        was forgotten) are marked `skipped`. Each call reads one index range, O(limit)."""
        due = _stamp(now) if now else _now()
        found: list[DeliveryRow] = []
        with self._write() as db:
            for state in ("pending", "deferred"):
                kept = 0  # active rows of this state already taken: they stay first in order
                while len(found) < limit:
                    page = [
                        _delivery(row)
                        for row in db.execute(
                            _DELIVERY_SELECT + " WHERE d.send_id = ? AND d.state = ?"
                            " AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?)"
                            " ORDER BY d.next_attempt_at, d.id LIMIT ? OFFSET ?",
                            (send_id, state, due, limit - len(found), kept),
                        )
                    ]
                    gone = [row for row in page if row.status != "active"]
                    db.executemany(
                        "UPDATE deliveries SET state = 'skipped', updated_at = ?,"
                        " last_reply = ? WHERE id = ?",
                        [(_now(), f"reader {row.status} before delivery", row.id) for row in gone],
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
        now = _now()
        with self._write() as db:
            row = db.execute(
                "SELECT d.state, s.status FROM deliveries d"
                " LEFT JOIN subscribers s ON s.id = d.subscriber_id WHERE d.id = ?",
                (delivery_id,),
            ).fetchone()
            if row is None or row[0] not in ("pending", "deferred"):
                return False
            if row[1] != "active":
                db.execute(
                    "UPDATE deliveries SET state = 'skipped', updated_at = ?, last_reply = ?"
                    " WHERE id = ?",
                    (now, f"reader {row[1] or 'forgotten'} before delivery", delivery_id),
                )
                return False
            db.execute(
                "UPDATE deliveries SET state = 'in_flight', message_id = ?, updated_at = ?"
                " WHERE id = ?",
                (message_id, now, delivery_id),
            )
            return True

    def record_delivery(
        self,
        delivery_id: int,
        state: DeliveryState,
        *,
        reply: str | None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """The outcome of an attempt (sent/deferred/failed/unknown count as attempts)."""
        if state not in DELIVERY_STATES:
            raise ValueError(f"unknown delivery state {state!r}")
        attempt = 1 if state in ("sent", "deferred", "failed", "unknown") else 0
        with self._write() as db:
            db.execute(
                "UPDATE deliveries SET state = ?, last_reply = ?, next_attempt_at = ?,"
                " attempts = attempts + ?, updated_at = ? WHERE id = ?",
                (
                    state,
                    reply,
                    _stamp(next_attempt_at) if next_attempt_at else None,
                    attempt,
                    _now(),
                    delivery_id,
                ),
            )

    def record_and_claim_many(
        self,
        items: Sequence[
            tuple[int, DeliveryState, str | None, datetime | None, tuple[int, str] | None]
        ],
    ) -> list[bool]:
        """The send runner's group commit, in ONE transaction: for each item
        `(delivery_id, state, reply, next_attempt_at, claim)` record the attempt (as
        `record_delivery`) and, if `claim` is `(next_id, message_id)`, mark that row in_flight
        (as `mark_in_flight`: skipped instead if its reader left). True per claimed row."""
        now = _now()
        claimed: list[bool] = []
        with self._write() as db:
            for delivery_id, state, reply, due, claim in items:
                if state not in DELIVERY_STATES:
                    raise ValueError(f"unknown delivery state {state!r}")
                attempt = 1 if state in ("sent", "deferred", "failed", "unknown") else 0
                db.execute(
                    "UPDATE deliveries SET state = ?, last_reply = ?, next_attempt_at = ?,"
                    " attempts = attempts + ?, updated_at = ? WHERE id = ?",
                    (state, reply, _stamp(due) if due else None, attempt, now, delivery_id),
                )
                claimed.append(claim is not None and self._claim(db, *claim, now))
        return claimed

    @staticmethod
    def _claim(db: sqlite3.Connection, delivery_id: int, message_id: str, now: str) -> bool:
        if db.execute(
            "UPDATE deliveries SET state = 'in_flight', message_id = ?, updated_at = ?"
            " WHERE id = ? AND state IN ('pending', 'deferred') AND EXISTS (SELECT 1 FROM"
            " subscribers s WHERE s.id = deliveries.subscriber_id AND s.status = 'active')",
            (message_id, now, delivery_id),
        ).rowcount:
            return True
        db.execute(
            "UPDATE deliveries SET state = 'skipped', updated_at = ?, last_reply = 'reader ' ||"
            " coalesce((SELECT status FROM subscribers WHERE id = deliveries.subscriber_id),"
            " 'forgotten') || ' before delivery' WHERE id = ? AND state IN ('pending', 'deferred')",
            (now, delivery_id),
        )
        return False

    def reset_in_flight(self, send_id: int) -> int:
        """After a crash: `in_flight` rows go back to `pending`, keeping their Message-ID so a
        resend is recognisably the same message. Returns how many."""
        with self._write() as db:
            return db.execute(
                "UPDATE deliveries SET state = 'pending', updated_at = ?"
                " WHERE send_id = ? AND state = 'in_flight'",
                (_now(), send_id),
            ).rowcount

    def delivery_counts(self, send_id: int) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(DELIVERY_STATES, 0)
        counts.update(
            self._rows(
                "SELECT state, count(*) FROM deliveries WHERE send_id = ? GROUP BY state",
                (send_id,),
            )
        )
        return counts

    def deliveries_in_state(
        self, send_id: int, states: tuple[DeliveryState, ...]
    ) -> list[DeliveryRow]:
        """Every row of the send in one of `states`, whatever the reader's status, by id."""
        marks = ",".join("?" * len(states))
        rows = self._rows(
            _DELIVERY_SELECT + f" WHERE d.send_id = ? AND d.state IN ({marks}) ORDER BY d.id",
            (send_id, *states),
        )
        return [_delivery(row) for row in rows]

    def held_back(self, send_id: int, limit: int) -> list[DeliveryRow]:
        """`pending` rows that carry a server reply: readers a paused send held back uncharged
        (a relay's 4xx, refused content), so `status` can name them. At most `limit`."""
        rows = self._rows(
            _DELIVERY_SELECT + " WHERE d.send_id = ? AND d.state = 'pending'"
            " AND d.last_reply IS NOT NULL ORDER BY d.id LIMIT ?",
            (send_id, limit),
        )
        return [_delivery(row) for row in rows]

    def delivery_failures(self, send_id: int) -> list[DeliveryRow]:
        """`failed` and `unknown` rows, with the server's last reply."""
        rows = self._rows(
            _DELIVERY_SELECT
            + " WHERE d.send_id = ? AND d.state IN ('failed', 'unknown') ORDER BY d.id",
            (send_id,),
        )
        return [_delivery(row) for row in rows]

    def finish_send(self, send_id: int) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE sends SET finished_at = ? WHERE id = ? AND finished_at IS NULL",
                (_now(), send_id),
            )

    # -- issue 19: read-only queries for `newsletter report` ------------------------------
    # Each is a handful of index seeks or ranges; newsletter/report.py does the arithmetic.

    def report_sends(self) -> list[tuple[int, str, int, str, str | None, int | None]]:
        """(id, slug, total, started_at, finished_at, fixed number) of every send, in order."""
        return self._rows(
            "SELECT s.id, s.issue_slug, s.total, s.started_at, s.finished_at, n.number"
            " FROM sends s LEFT JOIN issue_numbers n ON n.issue_slug = s.issue_slug"
            " ORDER BY s.started_at, s.id"
        )

    def report_delivery_counts(self) -> dict[int, dict[str, int]]:
        """Send id -> rows per state. Only the rare states are counted (index ranges of
        `deliveries_due`); `sent` is the rest of `total`, which start_send fixed as the number
        of rows it made (rows are never added or deleted afterwards)."""
        rare = [state for state in DELIVERY_STATES if state != "sent"]
        counts: dict[int, dict[str, int]] = {}
        for send_id, total in self._rows("SELECT id, total FROM sends"):
            found: dict[str, int] = dict.fromkeys(DELIVERY_STATES, 0)
            found.update(
                self._rows(
                    "SELECT state, count(*) FROM deliveries WHERE send_id = ?"
                    f" AND state IN ({','.join('?' * len(rare))}) GROUP BY state",
                    (send_id, *rare),
                )
            )
            found["sent"] = total - sum(found.values())
            counts[send_id] = found
        return counts

    def report_joins(self) -> list[tuple[str, str | None, str, int]]:
        """(kind, source, UTC month YYYY-MM, count) of `subscribed` and `resubscribed` events:
        a count over an index range per source and month, not a GROUP BY over a million rows."""
        found: list[tuple[str, str | None, str, int]] = []
        for kind in ("subscribed", "resubscribed"):
            sources: list[str | None] = []
            if self._one("SELECT 1 FROM events WHERE kind = ? AND source IS NULL", (kind,)):
                sources.append(None)
            last = ""
            while (
                last := self._one(
                    "SELECT min(source) FROM events WHERE kind = ? AND source > ?", (kind, last)
                )
            ) is not None:
                sources.append(last)
            for source in sources:
                same = "source IS ?" if source is None else "source = ?"
                first, final = self._rows(
                    f"SELECT min(at), max(at) FROM events WHERE kind = ? AND {same}",
                    (kind, source),
                )[0]
                year, month = int(first[:4]), int(first[5:7])
                while (start := f"{year:04d}-{month:02d}") <= final[:7]:
                    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                    count = self._one(
                        f"SELECT count(*) FROM events WHERE kind = ? AND {same}"
                        " AND at >= ? AND at < ?",
                        (kind, source, start, f"{year:04d}-{month:02d}"),
                    )
                    if count:
                        found.append((kind, source, start, count))
        return found

    def report_reactions(self) -> list[tuple[int | None, str, str, str | None, int, int]]:
        """(send id or None, UTC month, kind, source, soft-bounce streak, count) of the changes
        a report counts, each given to an issue by `_ATTRIBUTED` (see there)."""
        return self._rows(
            _ATTRIBUTED.format(events=_REACTIONS)
            + " SELECT owner, substr(at, 1, 7), kind, source, streak, count(*) FROM owned"
            " GROUP BY owner, substr(at, 1, 7), kind, source, streak"
        )

    def report_reaction_readers(
        self,
    ) -> list[tuple[int | None, str, str, str | None, int, int | None]]:
        """As report_reactions, one row per change with its reader's id (for --detail)."""
        return self._rows(
            _ATTRIBUTED.format(events=_REACTIONS)
            + " SELECT owner, substr(at, 1, 7), kind, source, streak, subscriber_id FROM owned"
            " ORDER BY id"
        )

    def report_feedback(self) -> list[tuple[int, str, int | None, str]]:
        """(event id, at, send id or None, JSON detail) of every feedback reply kept."""
        return self._rows(
            _ATTRIBUTED.format(events=_FEEDBACK) + " SELECT id, at, owner, detail FROM owned"
            " ORDER BY id"
        )

    def report_active(self) -> int:
        count: int = self._one("SELECT count(*) FROM subscribers WHERE status = 'active'")
        return count

    def report_emails(self, subscriber_ids: Iterable[int]) -> dict[int, str]:
        """Reader id -> address, for `report --detail` only."""
        found: dict[int, str] = {}
        ids = list(set(subscriber_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            found.update(
                self._rows(
                    f"SELECT id, email FROM subscribers WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            )
        return found

    # -- end issue 19 ---------------------------------------------------------------------


# Errors a user can cause or fix (disk full, read-only file, locked): a message, not a traceback.
_ENVIRONMENTAL = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR")


def _is_environmental(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(_ENVIRONMENTAL)


def _address(email: str) -> Address:
    try:
        return normalise_address(email)
    except InvalidAddress as exc:
        raise StoreError(str(exc), path=email.strip() or None, field="email") from None


def _inserted_id(cursor: sqlite3.Cursor) -> int:
    assert cursor.lastrowid is not None  # always set after a one-row INSERT
    return cursor.lastrowid


def _statements(script: str) -> Iterator[str]:
    """Split a schema script on `;` at line ends (triggers keep their inner `;`)."""
    buffer: list[str] = []
    for line in script.strip().splitlines():
        buffer.append(line)
        if line.rstrip().endswith(";") and sqlite3.complete_statement("\n".join(buffer)):
            yield "\n".join(buffer)
            buffer = []


def _implements_store(store: SQLiteStore) -> Store:
    return store  # mypy proves here that SQLiteStore satisfies the Store protocol
