"""The store on PostgreSQL (`store: postgresql://user@host/db`), through psycopg 3.

The same repositories run on it: they write `?` placeholders, which `_Tx` turns into psycopg's
`%s` (doubling any literal `%`). The schema is `pg_schema.PG_MIGRATIONS`, versioned in `meta`.

Writes keep SQLite's guarantee that two processes never interleave a read-modify-write: a
write transaction takes one transaction-level advisory lock first (`WRITE_LOCK`), so writers
queue as they do behind SQLite's `BEGIN IMMEDIATE`. The send log's claim-and-record path asks
for `exclusive=False` instead: its statements are single-row conditional UPDATEs, atomic under
PostgreSQL's row locks, so several senders on several hosts commit side by side.

The password never sits in newsletter.yaml: it comes from $NEWSLETTER_STORE_PASSWORD, or from
libpq's own PGPASSWORD / ~/.pgpass.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from newsletter.errors import StoreError
from newsletter.store.database import Cursor
from newsletter.store.pg_schema import (
    HAS_META,
    MIGRATION_LOCK,
    PG_MIGRATIONS,
    PG_SCHEMA_VERSION,
    READ_VERSION,
    WRITE_VERSION,
)

if TYPE_CHECKING:
    import psycopg

PASSWORD_ENV = "NEWSLETTER_STORE_PASSWORD"
# Serialises the writes that read before they write (add, import, start_send...): the key is
# this program's own constant, next to pg_schema's MIGRATION_LOCK.
WRITE_LOCK = "SELECT pg_advisory_xact_lock(7954895654443381877)"
_PLACEHOLDER = re.compile(r"%|\?")
INSERT_HASH_KEY = "INSERT INTO meta (name, value) VALUES ('hash_key', %s)"


def to_psycopg(sql: str) -> str:
    """`?` placeholders as psycopg's `%s`, and a literal `%` (in LIKE patterns) as `%%`."""
    return _PLACEHOLDER.sub(lambda m: "%s" if m.group() == "?" else "%%", sql)


def redact(url: str) -> str:
    """The URL without a password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class _Tx:
    """A psycopg connection inside a transaction, speaking the repositories' `?` SQL."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        return self._conn.execute(to_psycopg(sql), tuple(parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        cursor = self._conn.cursor()
        cursor.executemany(to_psycopg(sql), [tuple(p) for p in parameters])
        return cursor


class PostgresDatabase:
    """The connection every repository of one store shares, on PostgreSQL."""

    dialect = "postgresql"

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        try:
            import psycopg  # the optional extra: imported only when a store asks for PostgreSQL
        except ImportError:
            raise StoreError(
                "a PostgreSQL store needs psycopg: pip install 'newsletter[postgres]'",
                field="store",
            ) from None

        self.url = url
        self.path = redact(url)
        self._psycopg = psycopg
        self._lock = threading.RLock()
        self._depth = 0
        # lock_timeout: a write waits this long for another process's transaction, as SQLite's
        # busy_timeout does; connect_timeout bounds an unreachable server.
        settings: dict[str, Any] = {
            "connect_timeout": max(1, int(min(timeout, 30))),
            "options": f"-c lock_timeout={int(timeout * 1000)}",
            "application_name": "newsletter",
        }
        if password := os.environ.get(PASSWORD_ENV):
            settings["password"] = password
        try:
            self._conn = psycopg.connect(url, autocommit=True, **settings)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot open the subscriber database: {_first_line(exc)}", path=self.path
            ) from None
        try:
            self._migrate()
            self.hash_key = bytes.fromhex(
                self.one("SELECT value FROM meta WHERE name = 'hash_key'")
            )
        except psycopg.Error as exc:
            self._conn.close()
            raise StoreError(
                f"not a usable subscriber database: {_first_line(exc)}", path=self.path
            ) from None

    def _version(self) -> int:
        if not self._conn.execute(HAS_META).fetchone()[0]:  # type: ignore[index]
            return 0
        row = self._conn.execute(READ_VERSION).fetchone()
        return 0 if row is None else int(row[0])

    def _migrate(self) -> None:
        if self._version() == PG_SCHEMA_VERSION:
            return
        with self._lock, self._conn.transaction():
            self._conn.execute(MIGRATION_LOCK)
            version = self._version()
            if version > PG_SCHEMA_VERSION:
                raise StoreError(
                    f"schema version {version} is newer than this program ({PG_SCHEMA_VERSION})",
                    path=self.path,
                )
            for target in range(version + 1, PG_SCHEMA_VERSION + 1):
                self._conn.execute(PG_MIGRATIONS[target].encode())  # one script, many statements
                if target == 1:
                    self._conn.execute(INSERT_HASH_KEY, (secrets.token_hex(32),))
                self._conn.execute(to_psycopg(WRITE_VERSION), (str(target),))

    @contextmanager
    def write(self, *, exclusive: bool = True) -> Iterator[_Tx]:
        """One transaction (re-entrant). `exclusive`: queue behind every other writer first, as
        SQLite does; the send log's row-level claims pass False."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield _Tx(self._conn)
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                with self._conn.transaction():
                    if exclusive:
                        self._conn.execute(WRITE_LOCK)
                    yield _Tx(self._conn)
            except self._psycopg.errors.LockNotAvailable as exc:
                raise StoreError(
                    f"the subscriber database is busy ({_first_line(exc)}); another import or"
                    " send may be running, try again",
                    path=self.path,
                ) from None
            except self._psycopg.OperationalError as exc:
                raise StoreError(f"database error: {_first_line(exc)}", path=self.path) from None
            finally:
                self._depth = 0

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(to_psycopg(sql), tuple(params)).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """A large write: PostgreSQL sizes its own caches."""
        yield

    @contextmanager
    def erasing(self) -> Iterator[None]:
        """Deletes that must not linger: a deleted row's bytes stay in the table's pages until
        VACUUM reuses them, so the tables an erasure touches are vacuumed afterwards."""
        yield
        with self._lock:
            for table in ("subscribers", "events", "signups", "deliveries"):
                self._conn.execute(f"VACUUM {table}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
