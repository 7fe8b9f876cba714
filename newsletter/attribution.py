"""Which issue an event belongs to: the report's and the feedback list's one rule.

Most precise first:
1. the issue its message quotes: our Message-ID `<slug.token@domain>` found in a bounce is
   recorded on the bounce event; found in a reply or a complaint, on the `inbox` event the
   inbox writes right after the change it made (so a reader's unsubscribe by reply is paired
   with that reader's next `inbox` event);
2. the reader (the token they answered with): the latest issue the send log tried to deliver
   to them before the event;
3. time: the latest issue whose send had begun, until the next one begins.
An event before the first send belongs to no issue (None).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

# Delivery states in which the send log tried to reach the reader.
ATTEMPTED = frozenset({"sent", "deferred", "failed", "unknown"})
# Sources of changes the inbox makes from a message (then writes the `inbox` event).
INBOX_SOURCES = frozenset({"reply", "mailto", "complaint", "bounce"})


class AttributionStore(Protocol):
    def report_delivery_states(
        self, send_id: int, subscriber_ids: Sequence[int]
    ) -> dict[int, str]: ...
    def report_last_attempted(self, subscriber_id: int, before: str) -> int | None: ...


@dataclass(frozen=True, slots=True)
class SendPoint:
    id: int
    slug: str
    started_at: str  # the store's UTC stamp, YYYY-MM-DDTHH:MM:SSZ (sorts as text)


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    at: str  # the store's UTC stamp
    kind: str
    source: str | None
    reader: int | None  # subscriber id; None for a stranger or a forgotten reader
    slug: str | None  # the issue its message quoted, when recorded
    detail: str | None


class Attributor:
    def __init__(
        self, store: AttributionStore, sends: Sequence[SendPoint], inbox: Iterable[Event]
    ) -> None:
        self.store = store
        self.sends = sorted(sends, key=lambda s: (s.started_at, s.id))
        self._starts = [s.started_at for s in self.sends]
        self._by_slug = {s.slug: s.id for s in self.sends}
        # reader -> ([inbox event ids], [their quoted slugs]), in id order
        self._inbox: dict[int, tuple[list[int], list[str | None]]] = {}
        for event in sorted(inbox, key=lambda e: e.id):
            if event.reader is not None:
                ids, slugs = self._inbox.setdefault(event.reader, ([], []))
                ids.append(event.id)
                slugs.append(event.slug)

    def by_time(self, at: str) -> int | None:
        """The send begun last at or before `at`."""
        index = bisect_right(self._starts, at) - 1
        return self.sends[index].id if index >= 0 else None

    def quoted(self, event: Event) -> int | None:
        """The send whose Message-ID the event's message quoted, when known."""
        slug = event.slug
        if slug is None and event.kind != "inbox" and event.source in INBOX_SOURCES:
            slug = self._paired_slug(event)
        return self._by_slug.get(slug) if slug is not None else None

    def _paired_slug(self, event: Event) -> str | None:
        if event.reader is None or event.reader not in self._inbox:
            return None
        ids, slugs = self._inbox[event.reader]
        index = bisect_right(ids, event.id)
        return slugs[index] if index < len(ids) else None

    def attribute(self, events: Iterable[Event]) -> dict[int, int | None]:
        """Event id -> send id (None: before the first send)."""
        result: dict[int, int | None] = {}
        by_reader: dict[int, list[Event]] = {}  # latest send by time -> events to check
        for event in events:
            quoted = self.quoted(event)
            if quoted is not None:
                result[event.id] = quoted
                continue
            latest = self.by_time(event.at)
            result[event.id] = latest
            if latest is not None and event.reader is not None:
                by_reader.setdefault(latest, []).append(event)
        for send_id, waiting in by_reader.items():
            states = self.store.report_delivery_states(
                send_id, sorted({e.reader for e in waiting if e.reader is not None})
            )
            for event in waiting:
                assert event.reader is not None
                if states.get(event.reader) in ATTEMPTED:
                    continue  # the latest issue did reach them: time and reader agree
                earlier = self.store.report_last_attempted(event.reader, event.at)
                if earlier is not None:
                    result[event.id] = earlier
        return result
