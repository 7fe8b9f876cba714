"""What the schedule remembers, in the store: each issue's send status and the told-once
notices. Every read and write opens the store for itself and closes it at once, so no
store is open while a send runs (a send with several connections forks worker processes,
and a SQLite connection must never be shared with a child: newsletter.delivery.workers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from newsletter.config import Config
from newsletter.schedule.due import SendStatus
from newsletter.store.store import open_store, store_exists


class SendLog(Protocol):
    """The store's send log, as the schedule sees it."""

    def send_statuses(self, slugs: Sequence[str]) -> dict[str, SendStatus]: ...


def send_statuses(config: Config, slugs: Sequence[str]) -> dict[str, SendStatus]:
    """Each issue's status in the send log, read in one short-lived store handle; no
    database is created just to look (a publication that never sent has none)."""
    if not store_exists(config):
        return dict.fromkeys(slugs, "none")
    statuses: dict[str, SendStatus] = {}
    with open_store(config) as store:
        for slug in slugs:
            record = store.sends.get_send(slug)
            if record is None:
                statuses[slug] = "none"
            else:
                statuses[slug] = "started" if record.finished_at is None else "finished"
    return statuses


class StoreState:
    """The store's send log and events table as the schedule's SendLog and NoticeLog
    (newsletter.schedule.notices), each call on its own store handle."""

    NOTICE = "schedule-notice"

    def __init__(self, config: Config) -> None:
        self.config = config

    def send_statuses(self, slugs: Sequence[str]) -> dict[str, SendStatus]:
        return send_statuses(self.config, slugs)

    def already_told(self, key: str) -> bool:
        if not store_exists(self.config):
            return False
        with open_store(self.config) as store:
            return store.events.has_event(self.NOTICE, key)

    def record_told(self, key: str, detail: str) -> None:
        with open_store(self.config) as store:
            store.events.record_event(None, self.NOTICE, detail, key=key)
