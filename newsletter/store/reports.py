"""Read-only queries for `newsletter report`: each a handful of index seeks or ranges;
newsletter/report/figures.py does the arithmetic."""

from __future__ import annotations

from collections.abc import Iterable

from newsletter.store.database import Database
from newsletter.store.records import DELIVERY_STATES

# -- issue 19: which issue a change belongs to ------------------------------------------
# Most precise first: (1) the issue its message quoted: our Message-ID `<slug.token@domain>`
# found in a bounce is on the bounce event; found in a reply or a report, on the `inbox` event
# the inbox writes right after the change it made (that reader's next `inbox` event); (2) the
# reader (the token they answered with): the latest issue begun before the change, if the send
# log tried to deliver it to them; else the last one it did try (a reader who joined after the
# latest issue began received none: no need to look); (3) time: the latest issue begun.
# Before the first send: NULL. `{events}` selects the events to give to issues; `{indexed}`
# names SQLite's index for `unreached` (PostgreSQL has no such hint).
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
    SELECT send_id, subscriber_id FROM deliveries {{indexed}}
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
    WHERE e.kind = 'inbox' AND {is_feedback}"""
_IS_FEEDBACK = {
    "sqlite": """CASE WHEN instr(e.detail, 'feedback') = 0 THEN 0
        WHEN json_valid(e.detail) THEN json_extract(e.detail, '$.kind') = 'feedback' END""",
    # json_kind (pg_schema): NULL for a detail that is not JSON, as json_valid says in SQLite.
    "postgresql": """CASE WHEN strpos(e.detail, 'feedback') = 0 THEN false
        ELSE json_kind(e.detail) = 'feedback' END""",
}
_INDEXED = {"sqlite": "INDEXED BY deliveries_due", "postgresql": ""}
_DEPARTURES = """SELECT id, at, kind, source, subscriber_id, issue_slug, detail FROM events e
    WHERE e.kind IN ('unsubscribed', 'bounced', 'soft_bounce', 'complained')
    AND substr(coalesce(e.source, ''), 1, 7) <> 'import '
    AND NOT (e.kind = 'unsubscribed' AND e.source = 'link' AND e.subscriber_id IN (
        SELECT subscriber_id FROM events WHERE kind = 'resubscribed' AND source = 'link')
        AND EXISTS (SELECT 1 FROM events r WHERE r.subscriber_id = e.subscriber_id
            AND r.kind = 'resubscribed' AND r.source = 'link' AND r.id > e.id
            AND r.id < coalesce((SELECT min(u.id) FROM events u
                WHERE u.subscriber_id = e.subscriber_id AND u.kind = 'unsubscribed'
                AND u.id > e.id), r.id + 1)))"""


class Reports:
    def __init__(self, db: Database) -> None:
        self._db = db
        feedback = _FEEDBACK.format(is_feedback=_IS_FEEDBACK[db.dialect])
        reactions = f"{_DEPARTURES}\n    UNION ALL {feedback}"
        indexed = _INDEXED[db.dialect]
        self._feedback = _ATTRIBUTED.format(events=feedback, indexed=indexed)
        self._reactions = _ATTRIBUTED.format(events=reactions, indexed=indexed)

    def sends(self) -> list[tuple[int, str, int, str, str | None, int | None]]:
        """(id, slug, total, started_at, finished_at, fixed number) of every send, in order."""
        return self._db.rows(
            "SELECT s.id, s.issue_slug, s.total, s.started_at, s.finished_at, n.number"
            " FROM sends s LEFT JOIN issue_numbers n ON n.issue_slug = s.issue_slug"
            " ORDER BY s.started_at, s.id"
        )

    def delivery_counts(self) -> dict[int, dict[str, int]]:
        """Send id -> rows per state. Only the rare states are counted (index ranges of
        `deliveries_due`); `sent` is the rest of `total`, which start_send fixed as the number
        of rows it made (rows are never added or deleted afterwards)."""
        rare = [state for state in DELIVERY_STATES if state != "sent"]
        counts: dict[int, dict[str, int]] = {}
        for send_id, total in self._db.rows("SELECT id, total FROM sends"):
            found: dict[str, int] = dict.fromkeys(DELIVERY_STATES, 0)
            found.update(
                self._db.rows(
                    "SELECT state, count(*) FROM deliveries WHERE send_id = ?"
                    f" AND state IN ({','.join('?' * len(rare))}) GROUP BY state",
                    (send_id, *rare),
                )
            )
            found["sent"] = total - sum(found.values())
            counts[send_id] = found
        return counts

    def joins(self) -> list[tuple[str, str | None, str, int]]:
        """(kind, source, UTC month YYYY-MM, count) of `subscribed` and `resubscribed` events:
        a count over an index range per source and month, not a GROUP BY over a million rows."""
        found: list[tuple[str, str | None, str, int]] = []
        for kind in ("subscribed", "resubscribed"):
            sources: list[str | None] = []
            if self._db.one("SELECT 1 FROM events WHERE kind = ? AND source IS NULL", (kind,)):
                sources.append(None)
            last = ""
            while (
                last := self._db.one(
                    "SELECT min(source) FROM events WHERE kind = ? AND source > ?", (kind, last)
                )
            ) is not None:
                sources.append(last)
            for source in sources:
                same, which = (
                    ("source IS NULL", ()) if source is None else ("source = ?", (source,))
                )
                first, final = self._db.rows(
                    f"SELECT min(at), max(at) FROM events WHERE kind = ? AND {same}",
                    (kind, *which),
                )[0]
                year, month = int(first[:4]), int(first[5:7])
                while (start := f"{year:04d}-{month:02d}") <= final[:7]:
                    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                    count = self._db.one(
                        f"SELECT count(*) FROM events WHERE kind = ? AND {same}"
                        " AND at >= ? AND at < ?",
                        (kind, *which, start, f"{year:04d}-{month:02d}"),
                    )
                    if count:
                        found.append((kind, source, start, count))
        return found

    def reactions(self) -> list[tuple[int | None, str, str, str | None, int, int]]:
        """(send id or None, UTC month, kind, source, soft-bounce streak, count) of the changes
        a report counts, each given to an issue by `_ATTRIBUTED` (see there)."""
        return self._db.rows(
            self._reactions
            + " SELECT owner, substr(at, 1, 7), kind, source, streak, count(*) FROM owned"
            " GROUP BY owner, substr(at, 1, 7), kind, source, streak"
        )

    def reaction_readers(
        self,
    ) -> list[tuple[int | None, str, str, str | None, int, int | None]]:
        """As report_reactions, one row per change with its reader's id (for --detail)."""
        return self._db.rows(
            self._reactions
            + " SELECT owner, substr(at, 1, 7), kind, source, streak, subscriber_id FROM owned"
            " ORDER BY id"
        )

    def feedback(self) -> list[tuple[int, str, int | None, str]]:
        """(event id, at, send id or None, JSON detail) of every feedback reply kept."""
        return self._db.rows(
            self._feedback + " SELECT id, at, owner, detail FROM owned ORDER BY id"
        )

    def active(self) -> int:
        count: int = self._db.one("SELECT count(*) FROM subscribers WHERE status = 'active'")
        return count

    def emails(self, subscriber_ids: Iterable[int]) -> dict[int, str]:
        """Reader id -> address, for `report --detail` only."""
        found: dict[int, str] = {}
        ids = list(set(subscriber_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            found.update(
                self._db.rows(
                    f"SELECT id, email FROM subscribers WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            )
        return found
