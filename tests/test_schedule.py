"""The rule and the judgement: which moment is scheduled, which issue is due, and why not."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from schedule_support import UTC, FakeIssue, at, make_config

from newsletter.cadence import is_scheduled_day, last_scheduled, rule_text, scheduled_dates
from newsletter.errors import ConfigError
from newsletter.schedule.due import find_due
from newsletter.settings import Config


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def dates(config: Config, after: dt.datetime, count: int) -> list[str]:
    return [m.isoformat() for m in scheduled_dates(config, after, count)]


def test_default_rule_is_first_tuesday(tmp_path: Path) -> None:
    assert rule_text(make_config(tmp_path)) == "FREQ=MONTHLY;BYDAY=1TU"
    assert rule_text(make_config(tmp_path, weekday="Thursday", nth=-1)) == "FREQ=MONTHLY;BYDAY=-1TH"


def test_month_starting_on_a_tuesday_sends_on_the_first(tmp_path: Path) -> None:
    # 1 Sep 2026 and 1 Dec 2026 are Tuesdays: the 1st itself is the day.
    config = make_config(tmp_path)
    got = scheduled_dates(config, at("2026-08-20T00:00"), 4)
    assert [m.date() for m in got] == [
        dt.date(2026, 9, 1),
        dt.date(2026, 10, 6),
        dt.date(2026, 11, 3),
        dt.date(2026, 12, 1),
    ]
    assert all(m.hour == 9 and m.minute == 0 for m in got)


def test_month_starting_on_a_wednesday_waits_six_days(tmp_path: Path) -> None:
    # 1 Apr 2026 and 1 Jul 2026 are Wednesdays: the first Tuesday is the 7th, not the 31st before.
    config = make_config(tmp_path)
    assert scheduled_dates(config, at("2026-03-31T12:00"), 1)[0].date() == dt.date(2026, 4, 7)
    assert scheduled_dates(config, at("2026-06-02T09:00"), 1)[0].date() == dt.date(2026, 7, 7)


def test_strictly_after_and_at_the_minute(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert scheduled_dates(config, at("2026-12-01T08:59"), 1)[0] == at("2026-12-01T09:00")
    assert scheduled_dates(config, at("2026-12-01T09:00"), 1)[0] == at("2027-01-05T09:00")
    assert last_scheduled(config, at("2026-12-01T09:00")) == at("2026-12-01T09:00")
    assert last_scheduled(config, at("2026-12-01T08:59")) == at("2026-11-03T09:00")


def test_year_boundary(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert dates(config, at("2026-12-01T10:00"), 2) == [
        "2027-01-05T09:00:00+00:00",
        "2027-02-02T09:00:00+00:00",
    ]
    assert last_scheduled(config, at("2027-01-04T23:59")) == at("2026-12-01T09:00")
    # Last Thursday across New Year: 31 Dec 2026 is a Thursday.
    last_thursday = make_config(tmp_path, weekday="thursday", nth=-1)
    got = scheduled_dates(last_thursday, at("2026-12-01T00:00"), 2)
    assert [m.date() for m in got] == [dt.date(2026, 12, 31), dt.date(2027, 1, 28)]


def test_february_in_leap_years(tmp_path: Path) -> None:
    first = make_config(tmp_path)
    # 2028 is a leap year whose 1 February is a Tuesday; 2024's first Tuesday was the 6th.
    assert scheduled_dates(first, at("2028-01-15T00:00"), 2)[0].date() == dt.date(2028, 2, 1)
    assert scheduled_dates(first, at("2024-01-15T00:00"), 1)[0].date() == dt.date(2024, 2, 6)
    # The last Tuesday of February 2028 is the leap day; of 2027 (not leap) the 23rd.
    last = make_config(tmp_path, nth=-1)
    assert scheduled_dates(last, at("2028-02-02T00:00"), 1)[0].date() == dt.date(2028, 2, 29)
    assert scheduled_dates(last, at("2027-02-02T00:00"), 1)[0].date() == dt.date(2027, 2, 23)
    # An explicit rule for the 29th happens only in leap years.
    leap_day = make_config(tmp_path, rrule="FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29")
    got = scheduled_dates(leap_day, at("2025-01-01T00:00"), 3)
    assert [m.date() for m in got] == [
        dt.date(2028, 2, 29),
        dt.date(2032, 2, 29),
        dt.date(2036, 2, 29),
    ]


def test_dst_week_in_london_keeps_nine_oclock_local(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    # Summer time began Sunday 31 March 2024; the first Tuesday of April was two days later.
    april, may = scheduled_dates(config, at("2024-03-05T10:00"), 2)
    march = scheduled_dates(config, at("2024-03-01T00:00"), 1)[0]
    assert march.astimezone(UTC) == utc("2024-03-05T09:00")
    assert april.astimezone(UTC) == utc("2024-04-02T08:00")
    assert may.astimezone(UTC) == utc("2024-05-07T08:00")
    assert {m.strftime("%H:%M") for m in (march, april, may)} == {"09:00"}
    # Autumn: summer time ended Sunday 25 October 2026; 3 November is 09:00 GMT again.
    october, november = scheduled_dates(config, at("2026-09-10T00:00"), 2)
    assert october.astimezone(UTC) == utc("2026-10-06T08:00")
    assert november.astimezone(UTC) == utc("2026-11-03T09:00")


def test_dst_week_in_new_york(tmp_path: Path) -> None:
    config = make_config(tmp_path, tz="America/New_York")
    # DST ended Sunday 1 November 2026; the first Tuesday is the 3rd: 09:00 EST = 14:00 UTC.
    october, november = scheduled_dates(config, utc("2026-09-10T00:00"), 2)
    assert october.astimezone(UTC) == utc("2026-10-06T13:00")
    assert november.astimezone(UTC) == utc("2026-11-03T14:00")
    assert november.strftime("%Z") == "EST"
    # The due judgement follows local time: 13:30 UTC on 3 Nov is 08:30 EST, not yet due.
    issue = FakeIssue("nov", dt.date(2026, 11, 3))
    assert find_due(config, [issue], utc("2026-11-03T13:30"), set()).kind == "not_due"
    assert find_due(config, [issue], utc("2026-11-03T14:00"), set()).kind == "due"


def test_a_rule_on_the_dst_change_itself_gives_one_moment_per_day(tmp_path: Path) -> None:
    # Every Sunday at 01:30 London: skipped on 29 Mar 2026, doubled on 25 Oct 2026.
    config = make_config(tmp_path, rrule="FREQ=WEEKLY;BYDAY=SU", time="01:30")
    spring = scheduled_dates(config, utc("2026-03-21T00:00"), 3)
    autumn = scheduled_dates(config, utc("2026-10-17T00:00"), 3)
    for run in (spring, autumn):
        assert len({m.date() for m in run}) == 3
        instants = [m.astimezone(UTC) for m in run]
        assert instants == sorted(instants)
    assert autumn[1].astimezone(UTC) == utc("2026-10-25T00:30")  # the first 01:30 (BST)
    assert spring[1].astimezone(UTC) == utc("2026-03-29T01:30")  # 01:30 does not exist: 02:30


def test_pacific_auckland_tuesday_is_monday_in_utc(tmp_path: Path) -> None:
    config = make_config(tmp_path, tz="Pacific/Auckland")
    slot = scheduled_dates(config, utc("2026-11-20T00:00"), 1)[0]
    assert slot.date() == dt.date(2026, 12, 1)
    assert slot.astimezone(UTC) == utc("2026-11-30T20:00")  # Monday evening in UTC (NZDT +13)
    assert slot.astimezone(UTC).strftime("%A") == "Monday"
    issue = FakeIssue("december", dt.date(2026, 12, 1))
    assert find_due(config, [issue], utc("2026-11-30T19:59"), set()).kind == "not_due"
    due = find_due(config, [issue], utc("2026-11-30T20:00"), set())
    assert (due.kind, due.issue) == ("due", issue)
    # A UTC-minded mistake (an issue dated the UTC Monday) is not what is due.
    wrong = FakeIssue("monday", dt.date(2026, 11, 30))
    assert find_due(config, [wrong], utc("2026-11-30T20:00"), set()).kind == "no_issue_ready"
    # Winter there (NZST +12) in June: 09:00 Tuesday 2 June is 21:00 Monday 1 June UTC.
    june = scheduled_dates(config, utc("2026-05-20T00:00"), 1)[0]
    assert june.astimezone(UTC) == utc("2026-06-01T21:00")


def test_due_on_the_day_and_already_sent(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    issue = FakeIssue("2026-12-dec", dt.date(2026, 12, 1), path=Path("content/2026-12-dec.md"))
    due = find_due(config, [issue], at("2026-12-01T09:00"), set())
    assert due.kind == "due" and due.should_send and due.issue is issue
    assert "2026-12-dec" in due.message
    assert due.next_slot == at("2027-01-05T09:00")
    sent = find_due(config, [issue], at("2026-12-01T09:05"), {"2026-12-dec"})
    assert sent.kind == "sent" and not sent.should_send
    assert "already sent" in sent.message


def test_catch_up_inside_the_window(tmp_path: Path) -> None:
    config = make_config(tmp_path, catch_up_days=3)
    issue = FakeIssue("dec", dt.date(2026, 12, 1))
    for moment in ("2026-12-02T06:00", "2026-12-04T23:59:59"):
        due = find_due(config, [issue], at(moment), set())
        assert due.kind == "late" and due.should_send
        assert "day(s) late" in due.message
    assert due.deadline == at("2026-12-05T00:00")


def test_catch_up_outside_the_window_refuses_and_names_the_issue(tmp_path: Path) -> None:
    config = make_config(tmp_path, catch_up_days=3)
    issue = FakeIssue("dec", dt.date(2026, 12, 1), path=Path("content/dec.md"))
    due = find_due(config, [issue], at("2026-12-05T00:00"), set())
    assert due.kind == "too_late" and not due.should_send
    assert "dec (content/dec.md)" in due.message and "3-day catch-up window" in due.message
    assert "newsletter send dec" in due.message
    assert due.notice_key == "schedule-notice:too_late:dec"
    # With no catch-up at all only the day itself counts.
    strict = make_config(tmp_path, catch_up_days=0)
    assert find_due(config, [issue], at("2026-12-01T23:59"), set()).kind == "due"
    assert find_due(strict, [issue], at("2026-12-02T00:00"), set()).kind == "too_late"


def test_an_unfinished_send_is_resumed_even_after_the_window(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    issue = FakeIssue("dec", dt.date(2026, 12, 1))
    inside = find_due(config, [issue], at("2026-12-01T12:00"), set(), {"dec"})
    assert inside.kind == "due" and "resuming" in inside.message
    late = find_due(config, [issue], at("2026-12-20T12:00"), set(), {"dec"})
    assert late.kind == "resume" and late.should_send


def test_no_issue_ready_names_the_draft(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    draft = FakeIssue("dec", dt.date(2026, 12, 1), status="draft", path=Path("content/dec.md"))
    other = FakeIssue("nov", dt.date(2026, 11, 3))
    due = find_due(config, [other, draft], at("2026-12-01T09:00"), {"nov"})
    assert due.kind == "no_issue_ready" and not due.should_send
    assert due.others == (draft,) and "dec (content/dec.md)" in due.message
    assert due.notice_key == "schedule-notice:no_issue_ready:2026-12-01"
    nothing = find_due(config, [other], at("2026-12-01T09:00"), {"nov"})
    assert nothing.kind == "no_issue_ready" and "2026-12-01" in nothing.message
    # Past the window the missing issue is no longer news.
    assert find_due(config, [draft], at("2026-12-10T09:00"), set()).kind == "not_due"


def test_two_ready_issues_on_one_day_are_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    a = FakeIssue("a", dt.date(2026, 12, 1), path=Path("content/a.md"))
    b = FakeIssue("b", dt.date(2026, 12, 1), path=Path("content/b.md"))
    due = find_due(config, [a, b], at("2026-12-01T10:00"), set())
    assert due.kind == "conflict" and not due.should_send
    assert "content/a.md" in due.message and "content/b.md" in due.message


def test_a_ready_issue_off_the_schedule_is_not_due(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    wednesday = FakeIssue("wed", dt.date(2026, 12, 2))
    assert find_due(config, [wednesday], at("2026-12-02T10:00"), set()).kind == "no_issue_ready"


def test_custom_rrule_every_other_monday_is_stable(tmp_path: Path) -> None:
    config = make_config(tmp_path, rrule="FREQ=WEEKLY;INTERVAL=2;BYDAY=MO")
    first = scheduled_dates(config, at("2026-11-20T00:00"), 3)
    later = scheduled_dates(config, first[0], 2)
    assert later == first[1:]
    assert all(m.weekday() == 0 for m in first)
    assert (first[1] - first[0]).days == 14


@pytest.mark.parametrize("rule", ["FREQ=SOMETIMES", "DTSTART:20260105T090000Z\nRRULE:FREQ=DAILY"])
def test_a_bad_rrule_is_a_config_error(tmp_path: Path, rule: str) -> None:
    config = make_config(tmp_path, rrule=rule)
    with pytest.raises(ConfigError) as err:
        scheduled_dates(config, at("2026-01-01T00:00"), 1)
    assert err.value.field == "schedule.rrule"
    assert str(err.value).startswith(str(tmp_path / "newsletter.yaml"))


def test_walking_years_hour_by_hour_sends_each_issue_once(tmp_path: Path) -> None:
    """Three years of hourly checks in Auckland: each month's issue is due exactly once."""
    config = make_config(tmp_path, tz="Pacific/Auckland")
    slots = scheduled_dates(config, utc("2026-01-01T00:00"), 36)
    issues = [FakeIssue(f"i{n}", s.date()) for n, s in enumerate(slots)]
    sent: dict[str, dt.datetime] = {}
    moment, end = utc("2026-01-01T00:00"), slots[-1].astimezone(UTC) + dt.timedelta(days=1)
    while moment < end:
        due = find_due(config, issues, moment, set(sent))
        if due.should_send:
            assert due.issue is not None and due.issue.slug not in sent
            sent[due.issue.slug] = moment
        moment += dt.timedelta(hours=1)
    assert list(sent) == [i.slug for i in issues]
    for issue, slot in zip(issues, slots, strict=True):
        assert sent[issue.slug] == slot.astimezone(UTC)  # 09:00 local is on the hour in UTC too


def test_is_scheduled_day_is_the_local_day(tmp_path: Path) -> None:
    london = make_config(tmp_path)
    assert is_scheduled_day(london, dt.date(2026, 12, 1))
    assert not is_scheduled_day(london, dt.date(2026, 12, 8))
    auckland = make_config(tmp_path, tz="Pacific/Auckland")
    assert is_scheduled_day(auckland, dt.date(2026, 12, 1))
    assert not is_scheduled_day(auckland, dt.date(2026, 11, 30))  # the UTC date of the send
    leap = make_config(tmp_path, nth=-1)
    assert is_scheduled_day(leap, dt.date(2028, 2, 29))
