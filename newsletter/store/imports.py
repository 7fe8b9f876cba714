"""Bulk imports: a whole file of readers in one transaction, all or nothing."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from newsletter.store.csvio import ImportRow
from newsletter.store.database import Database, Tx, marks, now_stamp
from newsletter.store.events import insert_event
from newsletter.store.records import ImportReport
from newsletter.store.subscribers import new_tokens, operator, suppression_hash


class Imports:
    def __init__(self, db: Database) -> None:
        self._db = db

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
        record = (now_stamp(), source, by or operator(), consent)
        with self._db.bulk(), self._db.write() as tx:
            first_new_id = 1 + (tx.execute("SELECT max(id) FROM subscribers").fetchone()[0] or 0)
            any_forgotten = tx.execute("SELECT 1 FROM suppressions LIMIT 1").fetchone()
            iterator = iter(rows)
            while batch := list(islice(iterator, batch_size)):
                self._batch(tx, batch, report, first_new_id, any_forgotten is not None, record)
        return report

    def _batch(
        self,
        tx: Tx,
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
                for key, sid, status in tx.execute(
                    "SELECT email_key, id, status FROM subscribers"
                    f" WHERE email_key IN ({marks(len(unique))}) AND id < ?",
                    (*unique, first_new_id),
                )
            }
        forgotten: set[str] = set()
        if check_forgotten:
            hashes = {suppression_hash(self._db, k): k for k in unique if k not in existing}
            forgotten = {
                hashes[h]
                for (h,) in tx.execute(
                    f"SELECT hash FROM suppressions WHERE hash IN ({marks(len(hashes))})",
                    list(hashes),
                )
            }
        now, source, by, note = consent
        record = (now, source, by, note, now, now)
        if existing or forgotten:
            new = [
                row
                for key, row in unique.items()
                if not _known(tx, row, existing.get(key), key in forgotten, report, now, source)
            ]
        else:
            new = list(unique.values())
        if not new:
            return
        before = tx.execute("SELECT max(id) FROM subscribers").fetchone()[0] or 0
        # A key imported by an earlier batch of this import conflicts: a duplicate row.
        added = tx.executemany(
            "INSERT INTO subscribers (email, email_key, first_name, status, token, consent_at,"
            " consent_source, consent_by, consent_note, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email_key) DO NOTHING",
            [
                (r.address.email, r.address.key, r.first_name, r.status, token, *record)
                for r, token in zip(new, new_tokens(len(new)), strict=True)
            ],
        ).rowcount
        tx.execute(
            "INSERT INTO events (at, subscriber_id, kind, source, detail)"
            " SELECT ?, id, CASE status WHEN 'active' THEN 'subscribed' ELSE status END, ?, ?"
            " FROM subscribers WHERE id > ?",
            (now, source, note, before),
        )
        report.added += added
        report.duplicates += len(new) - added


def _known(
    tx: Tx,
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
            tx.execute(
                "UPDATE subscribers SET status = ?, updated_at = ? WHERE id = ?",
                (row.status, now, sid),
            )
            insert_event(tx, sid, row.status, source, f"line {row.line}")
            report.status_applied += 1
        elif status == "active" or row.status != "active":
            report.existing += 1
        else:
            _suppressed(report, row, status)
        return True
    if forgotten:
        if row.status == "active":
            _suppressed(report, row, "forgotten")
        else:
            report.existing += 1
        return True
    return False


def _suppressed(report: ImportReport, row: ImportRow, why: str) -> None:
    report.suppressed += 1
    if len(report.suppressed_rows) < 50:
        report.suppressed_rows.append((row.line, row.address.email, why))
