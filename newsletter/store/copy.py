"""`newsletter store copy --to URL`: the whole store into an empty one on another backend.

Everything moves in one transaction on the target (all or nothing), ids kept, so the send log
still points at its readers and events at theirs: readers, their events, the suppression list
together with the key that hashes forgotten addresses (without it no forgotten address would
match again), web sign-ups, the send log and the issue numbers. Afterwards each table's row
count is compared with the source's; a difference rolls the copy back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from newsletter.errors import StoreError
from newsletter.store.database import Database, Tx

# Every table with its columns, parents before children (foreign keys); tests/test_store_copy.py
# checks this against the schema, so a migration cannot forget it. Not copied: `meta` (its own
# on each side, but for the hash key) and `rate_hits` (the web's counts of the last hour).
TABLES: dict[str, tuple[str, ...]] = {
    "subscribers": (
        "id, email, email_key, first_name, status, token, consent_at, consent_source,"
        " consent_by, consent_note, created_at, updated_at",
    ),
    "events": ("id, at, subscriber_id, kind, source, detail, issue_slug, key",),
    "suppressions": ("hash, reason, created_at",),
    "sends": ("id, issue_slug, total, started_at, finished_at",),
    "senders": ("id, send_id, host, pid, started_at, ended_at",),
    "deliveries": (
        "id, send_id, subscriber_id, state, attempts, last_reply, message_id,"
        " next_attempt_at, updated_at, sender_id",
    ),
    "signups": (
        "id, email, email_key, first_name, token_hash, client_ip, created_at, expires_at,"
        " confirmed_at, confirmed_ip",
    ),
    "issue_numbers": ("issue_slug, number, how, fixed_at",),
}
# The first column of each is its key, which a batch resumes after.
NOT_COPIED = ("meta", "rate_hits")
_BATCH = 5000


@dataclass(frozen=True)
class CopyReport:
    rows: dict[str, int]  # table -> rows copied (equal on both sides)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def copy_store(source: Database, target: Database) -> CopyReport:
    """Copy every row of `source` into `target`, which must be empty, in one transaction."""
    for table in TABLES:
        if target.one(f"SELECT 1 FROM {table} LIMIT 1") is not None:
            raise StoreError(
                f"the target store is not empty (its {table} table has rows); copy only into"
                " a new, empty database",
                path=target.path,
            )
    counts: dict[str, int] = {}
    with target.write() as tx:
        tx.execute("UPDATE meta SET value = ? WHERE name = 'hash_key'", (source.hash_key.hex(),))
        for table, (columns,) in TABLES.items():
            marks = ", ".join("?" * len(columns.split(",")))
            insert = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
            copied = 0
            for batch in _batches(source, table, columns):
                tx.executemany(insert, batch)
                copied += len(batch)
            counts[table] = copied
        if target.dialect == "postgresql":
            _resume_identities(tx)
        for table, copied in counts.items():
            found = tx.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            expected = source.one(f"SELECT count(*) FROM {table}")
            if not found == copied == expected:
                raise StoreError(
                    f"{table}: {expected} rows in the source, {copied} copied, {found} in the"
                    " target; nothing was copied",
                    path=target.path,
                )
    target.hash_key = source.hash_key
    return CopyReport(counts)


def _batches(source: Database, table: str, columns: str) -> Iterator[list[tuple[object, ...]]]:
    """The table's rows in key order, a batch at a time (keyset pagination: flat memory)."""
    key = columns.split(",")[0]
    position: object = 0 if key == "id" else ""
    while True:
        rows = source.rows(
            f"SELECT {columns} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?",
            (position, _BATCH),
        )
        if not rows:
            return
        yield [tuple(row) for row in rows]
        position = rows[-1][0]


def _resume_identities(tx: Tx) -> None:
    """Ids were given explicitly: the next generated one must come after the copied ones."""
    from newsletter.store.pg_schema import SYNC_IDENTITIES

    for statement in SYNC_IDENTITIES.split(";\n"):
        tx.execute(statement)
