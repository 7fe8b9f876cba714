"""Issue numbers readers have seen (newsletter.content.numbering): fixed when an issue is first
sent or archived, never changed. `how`: sent, archive, or upgrade (a send made before the
numbers were kept)."""

from __future__ import annotations

from collections.abc import Mapping

from newsletter.store.database import Database, now_stamp


class IssueNumbers:
    def __init__(self, db: Database) -> None:
        self._db = db

    def fixed_numbers(self) -> dict[str, int]:
        """Slug -> the number it was first sent or archived with."""
        return dict(self._db.rows("SELECT issue_slug, number FROM issue_numbers"))

    def fix_numbers(self, numbers: Mapping[str, int], *, how: str) -> dict[str, int]:
        """Record these numbers unless the slug (or the number) is fixed already; returns
        every fixed number afterwards. A fixed number never changes."""
        if numbers:
            with self._db.write() as tx:
                now = now_stamp()
                tx.executemany(
                    "INSERT INTO issue_numbers (issue_slug, number, how, fixed_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [(slug, number, how, now) for slug, number in numbers.items()],
                )
        return self.fixed_numbers()
