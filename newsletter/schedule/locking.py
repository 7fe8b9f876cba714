"""One at a time: the due lock (one judge-and-send) and the scheduler lock (one scheduler).

Lock files the OS drops when the holder dies (newsletter.locks), so a killed run leaves no
stale lock; the holder records who it is, so a second instance can say who holds it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from newsletter import locks
from newsletter.config import Config
from newsletter.errors import NewsletterError


class ScheduleError(NewsletterError):
    """The schedule cannot be evaluated or run (a bad rule, another instance holding the lock)."""


class ScheduleLockedError(ScheduleError):
    """Another scheduler or `send --due` is running; it is not a usage error, so exit 1."""

    exit_code = 1


def exclusive_lock(path: Path, what: str) -> contextlib.AbstractContextManager[None]:
    """A lock file at `path`; `what` names the holder's job in the refusal."""

    def busy(holder: str) -> ScheduleLockedError:
        return ScheduleLockedError(
            f"{what} is already running ({holder}); not starting another", path=path
        )

    return locks.exclusive(path, busy)


def due_lock(config: Config) -> contextlib.AbstractContextManager[None]:
    """Held while one `send --due` (or a scheduler wake-up) judges and sends."""
    return exclusive_lock(config.subscribers_dir / "send-due.lock", "a scheduled send")


def scheduler_lock(config: Config) -> contextlib.AbstractContextManager[None]:
    """Held for the whole life of `newsletter schedule`."""
    return exclusive_lock(config.subscribers_dir / "scheduler.lock", "newsletter schedule")
