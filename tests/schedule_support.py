"""Shared by the schedule tests: an issue-shaped record, a config with a schedule, a moment."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.settings import Config, ScheduleConfig

UTC = dt.UTC


@dataclass(frozen=True)
class FakeIssue:
    """The shape of newsletter.content.issues.Issue that the schedule reads."""

    slug: str
    date: dt.date
    status: str = "ready"
    title: str = "An issue"
    path: Path = field(default=Path("content/x.md"))


def make_config(tmp_path: Path, tz: str = "Europe/London", **schedule: object) -> Config:
    return Config(root=tmp_path, timezone=tz, schedule=ScheduleConfig(**schedule))  # type: ignore[arg-type]


def at(text: str, tz: str = "Europe/London") -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))
