"""What every command receives: the publication root, its lazily loaded config and the clock.

The clock is the only way a command learns "now": the system clock, or the moment given by
`newsletter --now ISO-DATETIME` (a rehearsal of another day; tests pin it the same way).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import click

from newsletter.cadence import Clock, OffsetClock, SystemClock, local_day
from newsletter.config import load_config
from newsletter.errors import NewsletterError
from newsletter.settings import Config

NOW_FORM = "an ISO 8601 date/time such as 2026-12-01T09:00 or 2026-12-01T09:00+01:00"


class NowError(NewsletterError):
    """`--now` or $NEWSLETTER_NOW is not a date/time."""


def check_now(value: str, option: str = "--now") -> dt.datetime:
    """`value` as a date-time, naive when it has no offset; `option` names where it came
    from in the one-line error (`--now`, or `$NEWSLETTER_NOW`)."""
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise NowError(
            f"{option}: expected {NOW_FORM} (the offset is optional), got {value!r}"
        ) from None


def parse_now(config: Config, value: str, option: str = "--now") -> dt.datetime:
    """An ISO date-time; without an offset it is the publication's local time."""
    moment = check_now(value, option)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=config.tz)


@dataclass
class AppContext:
    root: Path
    now_text: str | None = None  # `newsletter --now`: the moment the whole command acts at
    _config: Config | None = None
    _clock: Clock | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.root)
        return self._config

    @property
    def clock(self) -> Clock:
        """The system clock, or one that starts at `--now` and runs on from there."""
        if self._clock is None:
            if self.now_text is None:
                self._clock = SystemClock()
            else:
                self._clock = OffsetClock(parse_now(self.config, self.now_text))
        return self._clock

    def now(self, override: str | None = None) -> dt.datetime:
        """This moment (timezone-aware); a command's own `--now` value wins when given."""
        if override is not None:
            return parse_now(self.config, override)
        return self.clock.now()

    def today(self, override: str | None = None) -> dt.date:
        """The publication's local date now: what "today" means for issue dates."""
        return local_day(self.config, self.now(override))


pass_app = click.make_pass_decorator(AppContext)
