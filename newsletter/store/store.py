"""Opening a publication's store: one database, one repository per entity.

    with open_store(config) as store:
        store.subscribers.add("ada@example.com", source="command", consent="asked in person")
        send = store.sends.start_send("2026-10-first-issue")

Each consumer takes the repository it uses (delivery: `sends` and `subscribers`; the web app:
`signups` and `subscribers`; the report: `reports`), never the whole store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

from newsletter.config import Config
from newsletter.errors import StoreError
from newsletter.store.database import Database, SQLiteDatabase

if TYPE_CHECKING:
    from newsletter.store.events import Events
    from newsletter.store.imports import Imports
    from newsletter.store.numbers import IssueNumbers
    from newsletter.store.ratelimits import RateLimits
    from newsletter.store.reports import Reports
    from newsletter.store.sends import SendLog
    from newsletter.store.signups import Signups
    from newsletter.store.subscribers import Subscribers

DB_NAME = "subscribers.db"

R = TypeVar("R")
_BUILDING = threading.RLock()  # re-entrant: building sign-ups builds the subscribers


class _repository(Generic[R]):  # lower case: a decorator, like cached_property
    """A repository built on first use, then kept in the store's __dict__ (read from there
    with no call). Like functools.cached_property, with a lock on every Python version: the
    web app's threads share one store, and a repository with state (the send log's sender
    registry, the rate limits' counter) must be built once."""

    def __init__(self, build: Callable[[Store], R]) -> None:
        self._build = build
        self._name = build.__name__

    def __get__(self, store: Store, owner: type[Store] | None = None) -> R:
        with _BUILDING:
            if self._name not in store.__dict__:
                store.__dict__[self._name] = self._build(store)
            built: R = store.__dict__[self._name]
            return built


class Store:
    """The repositories of one database, and its connection's life.

    Each repository is built, and its module imported, the first time it is used: a command
    takes one or two of them (`send`: sends and subscribers), and the others' modules (the CSV
    import, reports, sign-ups) are start-up time it need not pay (tests/test_cli_start.py)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @_repository
    def subscribers(self) -> Subscribers:
        from newsletter.store.subscribers import Subscribers

        return Subscribers(self.db)

    @_repository
    def imports(self) -> Imports:
        from newsletter.store.imports import Imports

        return Imports(self.db)

    @_repository
    def events(self) -> Events:
        from newsletter.store.events import Events

        return Events(self.db)

    @_repository
    def signups(self) -> Signups:
        from newsletter.store.signups import Signups

        return Signups(self.db, self.subscribers)

    @_repository
    def sends(self) -> SendLog:
        from newsletter.store.sends import SendLog

        return SendLog(self.db)

    @_repository
    def numbers(self) -> IssueNumbers:
        from newsletter.store.numbers import IssueNumbers

        return IssueNumbers(self.db)

    @_repository
    def reports(self) -> Reports:
        from newsletter.store.reports import Reports

        return Reports(self.db)

    @_repository
    def rate_limits(self) -> RateLimits:
        from newsletter.store.ratelimits import RateLimits

        return RateLimits(self.db)

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


def is_server(config: Config) -> bool:
    """Whether the store is on a database server (PostgreSQL), shared by several processes
    and hosts, rather than in an SQLite file of this one."""
    return config.store is not None and config.store.startswith(("postgresql:", "postgres:"))


def store_exists(config: Config) -> bool:
    """Whether the publication has a store yet: commands that only look never create an
    SQLite file (a PostgreSQL database is the operator's to create, so it counts as there)."""
    if is_server(config):
        return True
    return sqlite_path(config.store, config.root).exists()
