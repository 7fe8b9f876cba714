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
from newsletter.errors import StoreError
from newsletter.store.database import Database, SQLiteDatabase
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
    def path(self) -> Path | str:
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
    return Store(SQLiteDatabase(path, timeout=timeout))


def open_url(location: str | None, root: Path, *, timeout: float = 60.0) -> Store:
    """The store at a `store:` value: None or `sqlite` (subscribers/subscribers.db under
    `root`), `sqlite:PATH` (relative to `root`), or a `postgresql://` URL."""
    if location is not None and location.startswith(("postgresql:", "postgres:")):
        from newsletter.store.postgres import PostgresDatabase  # the optional extra

        return Store(PostgresDatabase(location, timeout=timeout))
    return open_sqlite(sqlite_path(location, root), timeout=timeout)


def sqlite_path(location: str | None, root: Path) -> Path:
    if location is None or location == "sqlite":
        return root / "subscribers" / DB_NAME
    if not location.startswith("sqlite:"):
        raise StoreError(
            f"expected sqlite, sqlite:PATH or postgresql://user@host/db, got {location!r}",
            field="store",
        )
    path = Path(location.removeprefix("sqlite:")).expanduser()
    return path if path.is_absolute() else root / path


def open_store(config: Config, *, timeout: float = 60.0) -> Store:
    """Open (creating and migrating on first use) the publication's store (`store:`).

    `timeout`: seconds a write waits for another process's transaction (an import) to end.
    """
    return open_url(config.store, config.root, timeout=timeout)


def store_exists(config: Config) -> bool:
    """Whether the publication has a store yet: commands that only look never create an
    SQLite file (a PostgreSQL database is the operator's to create, so it counts as there)."""
    if config.store is not None and config.store.startswith(("postgresql:", "postgres:")):
        return True
    return sqlite_path(config.store, config.root).exists()
