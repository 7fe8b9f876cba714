"""`newsletter schedule`: the long-running loop that wakes at each scheduled moment.

Each wake-up does what `newsletter send --due` does (newsletter.schedule.run); the loop only
keeps the timetable and stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import schedule

from newsletter.cadence import Clock, SystemClock, describe, scheduled_dates, to_utc
from newsletter.config import Config
from newsletter.errors import NewsletterError

log = logging.getLogger("newsletter.schedule.loop")


class StopFlag:
    """Set by SIGTERM/SIGINT (a plain attribute: safe to touch from a signal handler)."""

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True

    def is_set(self) -> bool:
        return self.requested


class SchedulerLoop:
    """`newsletter schedule`: wake at each scheduled moment and run `tick` (send --due).

    The `schedule` library keeps the timetable; each wake-up is a one-shot job armed for the
    next moment this module computes (zoneinfo-exact, so DST never shifts it). A watchdog
    wake-up at least every `watchdog` seconds covers a suspended machine or a clock jump; a
    wake-up with nothing due is harmless because `tick` judges from the send log.
    """

    def __init__(
        self,
        config: Config,
        tick: Callable[[dt.datetime], object],
        *,
        clock: Clock | None = None,
        stop: StopFlag | None = None,
        watchdog: float = 3600,
        logger: logging.Logger = log,
    ) -> None:
        self.config = config
        self.tick = tick
        self.clock = clock or SystemClock()
        self.stop = stop or StopFlag()
        self.watchdog = watchdog
        self.log = logger
        self.scheduler = schedule.Scheduler()
        self.next_slot: dt.datetime | None = None

    def run(self, *, poll: float = 1.0) -> None:
        """Check once now (catch-up after downtime), then sleep between wake-ups until stopped."""
        self.wake()
        while not self.stop.is_set():
            self.scheduler.run_pending()
            idle = self.scheduler.idle_seconds
            # Short slices: a stop request is seen within `poll` seconds even mid-wait.
            time.sleep(max(0.0, min(poll, idle if idle is not None else poll)))
        self.scheduler.clear()
        self.log.info("scheduler stopped")

    def wake(self) -> type[schedule.CancelJob]:
        """One wake-up: judge now, then arm the next one. Errors are logged, never fatal."""
        now = self.clock.now()
        try:
            self.tick(now)
        except NewsletterError as exc:
            self.log.error("error: %s", exc)
        except Exception:  # a long-running service outlives one bad wake-up; the log keeps it
            self.log.exception("the scheduled run failed; trying again at the next wake-up")
        self.arm()
        return schedule.CancelJob

    def arm(self) -> float:
        """Arm the next wake-up; returns its delay in seconds."""
        now = self.clock.now()
        upcoming = scheduled_dates(self.config, now, 1)
        self.next_slot = upcoming[0] if upcoming else None
        delay = self.watchdog
        if self.next_slot is not None:
            delay = min(delay, (to_utc(self.next_slot) - to_utc(now)).total_seconds() + 1)
        seconds = max(1, math.ceil(delay))
        self.scheduler.every(seconds).seconds.do(self.wake)
        if self.next_slot is not None:
            self.log.debug("next scheduled %s; waking in %ss", describe(self.next_slot), seconds)
        return seconds


@contextmanager
def stop_on_signals(stop: StopFlag) -> Iterator[None]:
    """First SIGTERM/SIGINT: stop after the current step (a send runs to its end). A second:
    interrupt it (the send log keeps its place; at most the message in flight is `unknown`).
    The previous handlers come back afterwards."""

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        # os.write, not logging or click: buffered streams are not safe inside a handler.
        name = signal.Signals(signum).name
        os.write(2, f"{name}: stopping after the current step\n".encode())

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
