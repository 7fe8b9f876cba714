"""The publication's cadence: when issues are scheduled, as moments in its time zone.

An RFC 5545 recurrence (python-dateutil's rrule; `FREQ=MONTHLY;BYDAY=1TU` by default) in
`zoneinfo` wall time: no hand-written calendar arithmetic. Pure functions of the config and a
moment, used by issue loading (default send dates), `check` and the scheduler.
"""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from newsletter.errors import ConfigError
from newsletter.settings import Config

if TYPE_CHECKING:  # dateutil loads when a date is computed from the schedule (see _compile)
    from dateutil.rrule import rrulebase

_BYDAY = {"monday": "MO", "tuesday": "TU", "wednesday": "WE", "thursday": "TH"}
_BYDAY |= {"friday": "FR", "saturday": "SA", "sunday": "SU"}
# Recurrences without their own DTSTART are anchored here, so "every other Monday" picks the
# same Mondays whenever it is evaluated.
_ANCHOR = dt.date(2000, 1, 3)


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current moment, timezone-aware."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


@dataclass
class FixedClock:
    """A clock that moves only when told to, so tests walk years of schedule in milliseconds."""

    moment: dt.datetime

    def now(self) -> dt.datetime:
        return self.moment

    def advance(self, delta: dt.timedelta) -> None:
        self.moment += delta


class OffsetClock:
    """Starts at a chosen moment and then runs at the real pace (monotonic time).

    `newsletter --now T schedule` rehearses a date with a live scheduler, and tests run one
    without depending on the day they run.
    """

    def __init__(self, start: dt.datetime) -> None:
        self.start = to_utc(start)
        self.started = time.monotonic()

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=time.monotonic() - self.started)


# ----------------------------------------------------------------------------- the rule


def rule_text(config: Config) -> str:
    """The RRULE in force: `schedule.rrule` if given, else built from weekday and nth."""
    if config.schedule.rrule:
        return config.schedule.rrule
    byday = _BYDAY[config.schedule.weekday.lower()]
    return f"FREQ=MONTHLY;BYDAY={config.schedule.nth}{byday}"


def _rule(config: Config) -> rrulebase:
    try:
        return _compile(rule_text(config), config.schedule.time)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"not a usable RFC 5545 recurrence rule ({exc}); expected e.g. "
            "FREQ=MONTHLY;BYDAY=-1TH (local time: no TZID or Z in DTSTART)",
            path=config.root / "newsletter.yaml",
            field="schedule.rrule" if config.schedule.rrule else "schedule",
        ) from None


@lru_cache(maxsize=32)
def _compile(text: str, hhmm: str) -> rrulebase:
    # Imported here: a send of an issue with its own date computes no schedule before it
    # renders (the check does), and needs no recurrence rules to start.
    from dateutil.rrule import rrulestr

    hour, minute = (int(part) for part in hhmm.split(":"))
    rule = rrulestr(text, dtstart=dt.datetime.combine(_ANCHOR, dt.time(hour, minute)), cache=True)
    rule.after(dt.datetime(1900, 1, 1))  # a DTSTART with a zone fails here, not later
    return rule


@lru_cache(maxsize=1024)
def _moments_in_year(rule: rrulebase, zone: str, year: int) -> tuple[dt.datetime, ...]:
    """One calendar year of scheduled moments, local wall time placed in the zone.

    Cached per year, so walking years of a schedule costs dictionary lookups. A wall time that
    DST skips maps forward; one it repeats is the first of the two (zoneinfo's fold=0).
    """
    start = dt.datetime(year, 1, 1) - dt.timedelta(microseconds=1)
    tz = zoneinfo.ZoneInfo(zone)
    return tuple(w.replace(tzinfo=tz) for w in rule.between(start, dt.datetime(year + 1, 1, 1)))


def to_utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware moment, got {moment.isoformat()}")
    # Compared in UTC: two datetimes in one ZoneInfo compare by wall time, ignoring DST folds.
    return moment.astimezone(dt.UTC)


def scheduled_dates(config: Config, after: dt.datetime, count: int) -> list[dt.datetime]:
    """The next `count` scheduled moments strictly after `after`, in the publication's zone.

    Fewer when the rule ends (an RRULE with COUNT or UNTIL).
    """
    after_utc = to_utc(after)
    rule = _rule(config)
    # Start a day early in wall time: the local wall clock may be behind or ahead of `after`.
    year = (after_utc.astimezone(config.tz) - dt.timedelta(days=1)).year
    found: list[dt.datetime] = []
    while len(found) < count and year < dt.MAXYEAR:
        moments = _moments_in_year(rule, config.timezone, year)
        if not moments and rule.after(dt.datetime(year, 12, 31, 23, 59)) is None:
            break
        found.extend(m for m in moments if m > after_utc)
        year += 1
    return found[:count]


def last_scheduled(config: Config, now: dt.datetime) -> dt.datetime | None:
    """The latest scheduled moment at or before `now`, or None before the rule's first one."""
    now_utc = to_utc(now)
    rule = _rule(config)
    first = rule.after(dt.datetime(1900, 1, 1))
    if first is None:
        return None
    year = (now_utc.astimezone(config.tz) + dt.timedelta(days=1)).year
    while year >= first.year:
        for moment in reversed(_moments_in_year(rule, config.timezone, year)):
            if moment <= now_utc:
                return moment
        year -= 1
    return None


def moment_on(config: Config, day: dt.date) -> dt.datetime | None:
    """The scheduled moment on this local day, or None when the rule has none that day."""
    just_before = dt.datetime.combine(day, dt.time(0), tzinfo=config.tz) - dt.timedelta(
        microseconds=1
    )
    upcoming = scheduled_dates(config, just_before, 1)
    return upcoming[0] if upcoming and upcoming[0].date() == day else None


def is_scheduled_day(config: Config, day: dt.date) -> bool:
    """Whether the rule has a moment on this local day (an issue dated otherwise never goes)."""
    return moment_on(config, day) is not None


def local_day(config: Config, moment: dt.datetime) -> dt.date:
    """The publication's calendar day at `moment`: what "today" means for issue dates."""
    return to_utc(moment).astimezone(config.tz).date()


def catch_up_deadline(config: Config, slot: dt.datetime) -> dt.datetime:
    """The end of the catch-up window: midnight after the last local day it allows."""
    last_day = slot.date() + dt.timedelta(days=config.schedule.catch_up_days + 1)
    return dt.datetime.combine(last_day, dt.time(0), tzinfo=config.tz)


def describe(moment: dt.datetime) -> str:
    return moment.strftime("%a %Y-%m-%d %H:%M %Z")


def first_scheduled_on_or_after(config: Config, day: dt.date) -> dt.date | None:
    """The first scheduled local day on or after `day` (None when the rule has ended)."""
    midnight = dt.datetime.combine(day, dt.time(0), tzinfo=config.tz)
    upcoming = scheduled_dates(config, midnight - dt.timedelta(microseconds=1), 1)
    return upcoming[0].date() if upcoming else None
