"""Opening a publication's store: one database, one repository per entity.

    with open_store(config) as store:
        store.subscribers.add("ada@example.com", source="command", consent="asked in person")
        send = store.sends.start_send("2026-10-first-issue")

Each consumer takes the repository it uses (delivery: `sends` and `subscribers`; the web app:
`signups` and `subscribers`; the report: `reports`), never the whole store.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from newsletter.config import Config
from newsletter.store.database import Database
from newsletter.store.events import Events
from newsletter.store.imports import Imports
from newsletter.store.numbers import IssueNumbers
from newsletter.store.reports import Reports
from newsletter.store.sends import SendLog
from newsletter.store.signups import Signups
from newsletter.store.subscribers import Subscribers

DB_NAME = "subscribers.db"


class Store:
    """The repositories of one database, and its connection's life."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.subscribers = Subscribers(db)
        self.imports = Imports(db)
        self.events = Events(db)
        self.signups = Signups(db, self.subscribers)
        self.sends = SendLog(db)
        self.numbers = IssueNumbers(db)
        self.reports = Reports(db)

    @property
    def path(self) -> Path:
        return self.db.path

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_sqlite(path: Path, *, timeout: float = 60.0) -> Store:
    """The store in one SQLite file (created and migrated on first use)."""
    return Store(Database(path, timeout=timeout))


def open_store(config: Config, *, timeout: float = 60.0) -> Store:
    """Open (creating and migrating on first use) the publication's subscriber database.

    `timeout`: seconds a write waits for another process's transaction (an import) to end.
    """
    return open_sqlite(config.subscribers_dir / DB_NAME, timeout=timeout)


def store_exists(config: Config) -> bool:
    """Whether the publication has a store yet: commands that only look never create one."""
    return (config.subscribers_dir / DB_NAME).exists()
