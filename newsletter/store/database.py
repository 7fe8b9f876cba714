"""The database under every repository: one connection, migrations, one write path.

`Database` is what a repository needs; `SQLiteDatabase` is the embedded default and
`newsletter.store.postgres.PostgresDatabase` the server. SQLite lives in
`subscribers/subscribers.db`: WAL (readers never wait for the writer), a busy timeout (writers
queue instead of failing), schema migrations by PRAGMA user_version. Every write is one
`BEGIN IMMEDIATE` transaction (`write`), so two processes never interleave a read-modify-write
and a crash leaves the previous state. One database may be shared by threads.

The repositories (subscribers, imports, events, signups, sends, numbers, reports) write SQL that
runs on SQLite and PostgreSQL alike where it can (`?` placeholders, `ON CONFLICT DO NOTHING`,
`RETURNING id`); what only one backend has stays in its Database (PRAGMAs here), and the few
statements that must differ ask `db.dialect`.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from newsletter.errors import StoreError
from newsletter.store.schema import MIGRATIONS, SCHEMA_VERSION


class Cursor(Protocol):
    """What a repository reads back from a statement (sqlite3's and psycopg's cursors)."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """An open write transaction: statements run in it commit or roll back together."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


def utcnow() -> datetime:
    """The store's clock: every moment it records reads it here, and only here (a test that
    writes a year of history moves it)."""
    return datetime.now(UTC)


class Database(Protocol):
    """One store's connection, as the repositories use it."""

    dialect: str  # "sqlite" or "postgresql"
    hash_key: bytes  # the per-database key of suppression hashes

    @property
    def path(self) -> Path | str: ...
    def write(self, *, exclusive: bool = True) -> AbstractContextManager[Tx]: ...
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...
    def one(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def bulk(self) -> AbstractContextManager[None]: ...
    def erasing(self) -> AbstractContextManager[None]: ...
    def close(self) -> None: ...


def now_stamp() -> str:
    """The current moment as stored: UTC, whole seconds, `2026-11-20T12:00:00Z`."""
    return stamp(utcnow())


def stamp(moment: datetime) -> str:
    # isoformat, not strftime("%Y-%m-%dT%H:%M:%SZ"): the same text in a tenth of the time
    # (once a message in a send).
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def parse_stamp(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def marks(count: int) -> str:
    """`?, ?, ?`: the placeholders of an IN list of `count` values."""
    return ",".join("?" * count)


class SQLiteDatabase:
    """The connection every repository of one store shares, on SQLite."""

    dialect = "sqlite"

    def __init__(self, path: Path, *, timeout: float = 60.0) -> None:
        self._path = path
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
        self.hash_key = bytes.fromhex(self.one("SELECT value FROM meta WHERE name = 'hash_key'"))

    @property
    def path(self) -> Path:
        return self._path

    def _migrate(self) -> None:
        # Read first: opening the store during another process's import must not wait for
        # its write lock unless there is something to migrate.
        if self._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with self.write() as db:
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
    def write(self, *, exclusive: bool = True) -> Iterator[Tx]:
        """One IMMEDIATE transaction (re-entrant): the write lock is taken up front, so a
        concurrent writer waits (busy_timeout) instead of failing halfway. (`exclusive`: SQLite
        has one writer at a time whatever is asked.)"""
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

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """A large write (an import): 32 MB of page cache for the indexes while it runs."""
        with self._lock:
            self._db.execute("PRAGMA cache_size = -32000")
            try:
                yield
            finally:
                self._db.execute("PRAGMA cache_size = -2000")

    @contextmanager
    def erasing(self) -> Iterator[None]:
        """Deletes that must not linger: deleted pages are zeroed (secure_delete) and the WAL
        is checkpointed afterwards, so erased data leaves the database files."""
        with self._lock:
            self._db.execute("PRAGMA secure_delete = ON")
            try:
                yield
            finally:
                self._db.execute("PRAGMA secure_delete = OFF")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._db.close()


# Errors a user can cause or fix (disk full, read-only file, locked): a message, not a traceback.
_ENVIRONMENTAL = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR")


def _is_environmental(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(_ENVIRONMENTAL)


def _statements(script: str) -> Iterator[str]:
    """Split a schema script on `;` at line ends (triggers keep their inner `;`)."""
    buffer: list[str] = []
    for line in script.strip().splitlines():
        buffer.append(line)
        if line.rstrip().endswith(";") and sqlite3.complete_statement("\n".join(buffer)):
            yield "\n".join(buffer)
            buffer = []
