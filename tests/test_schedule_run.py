"""Running the schedule: send once, tell the editor once, one instance at a time, restart-safe."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from schedule_support import FakeIssue, at, make_config

from newsletter.cadence import FixedClock
from newsletter.errors import DeliveryError
from newsletter.schedule.due import SendStatus
from newsletter.schedule.locking import ScheduleLockedError, due_lock, exclusive_lock
from newsletter.schedule.loop import SchedulerLoop, StopFlag
from newsletter.schedule.notices import StateFileNotices, state_file
from newsletter.schedule.run import run_due
from newsletter.settings import Config


class JsonSendLog:
    """A send log kept in a JSON file, so it survives a killed process like the real store."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, SendStatus]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def send_status(self, slug: str) -> SendStatus:
        return self._read().get(slug, "none")

    def send_statuses(self, slugs: list[str]) -> dict[str, SendStatus]:
        return {slug: self.send_status(slug) for slug in slugs}

    def mark(self, slug: str, status: SendStatus) -> None:
        data = self._read()
        data[slug] = status
        self.path.write_text(json.dumps(data))


class Outbox:
    """The editor's mailbox: what the configured transport would have delivered."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    def __call__(self, message: EmailMessage) -> None:
        self.messages.append(message)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


def runner(config: Config, issues: list[FakeIssue], outbox: Outbox, log: JsonSendLog):
    sent: list[tuple[str, dt.datetime]] = []

    def run(now: dt.datetime):
        def send_issue(issue: FakeIssue) -> str:
            log.mark(issue.slug, "started")
            sent.append((issue.slug, now))
            log.mark(issue.slug, "finished")
            return f"sent {issue.slug}"

        return run_due(
            config,
            now,
            send_issue,
            issues=issues,
            send_log=log,
            notices=StateFileNotices(state_file(config)),
            notify=outbox,
        )

    return run, sent


def test_every_quarter_hour_for_two_months_sends_each_issue_once(
    config: Config, tmp_path: Path
) -> None:
    issues = [FakeIssue("dec", dt.date(2026, 12, 1)), FakeIssue("jan", dt.date(2027, 1, 5))]
    outbox = Outbox()
    run, sent = runner(config, issues, outbox, JsonSendLog(tmp_path / "log.json"))
    clock = FixedClock(at("2026-11-25T00:00"))
    outcomes = []
    while clock.now() < at("2027-01-20T00:00"):
        result = run(clock.now())
        if result.outcome is not None:
            outcomes.append(result.outcome)
        assert result.exit_code == 0
        clock.advance(dt.timedelta(minutes=15))
    assert sent == [("dec", at("2026-12-01T09:00")), ("jan", at("2027-01-05T09:00"))]
    assert outcomes == ["sent dec", "sent jan"]
    assert outbox.messages == []


def test_catch_up_after_downtime_sends_late_once(config: Config, tmp_path: Path) -> None:
    issues = [FakeIssue("dec", dt.date(2026, 12, 1))]
    run, sent = runner(config, issues, Outbox(), JsonSendLog(tmp_path / "log.json"))
    # The machine was off from Monday night to Thursday morning.
    assert run(at("2026-11-30T23:00")).due.kind == "not_due"
    late = run(at("2026-12-03T07:12"))
    assert late.due.kind == "late" and late.outcome == "sent dec"
    assert run(at("2026-12-03T07:13")).due.kind == "sent"
    assert sent == [("dec", at("2026-12-03T07:12"))]


def test_past_the_window_it_refuses_and_tells_the_editor_once(
    config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    issues = [FakeIssue("dec", dt.date(2026, 12, 1), path=Path("content/dec.md"))]
    outbox = Outbox()
    run, sent = runner(config, issues, outbox, JsonSendLog(tmp_path / "log.json"))
    caplog.set_level(logging.INFO, logger="newsletter.schedule.run")
    results = [run(at("2026-12-09T10:00") + dt.timedelta(minutes=m)) for m in range(30)]
    assert sent == []
    assert {r.due.kind for r in results} == {"too_late"}
    assert {r.exit_code for r in results} == {1}
    assert [r.told_editor for r in results].count(True) == 1
    assert len(outbox.messages) == 1
    assert "dec" in str(outbox.messages[0]["Subject"])
    assert "content/dec.md" in outbox.messages[0].get_content()
    refusals = [r for r in caplog.records if r.message.startswith("too late: dec")]
    assert len(refusals) == 30  # said on every run (the log), mailed once


def test_no_ready_issue_tells_the_editor_once_not_every_minute(
    config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    draft = FakeIssue("dec", dt.date(2026, 12, 1), status="draft", path=Path("content/dec.md"))
    outbox = Outbox()
    log = JsonSendLog(tmp_path / "log.json")
    run, sent = runner(config, [draft], outbox, log)
    caplog.set_level(logging.INFO, logger="newsletter.schedule.run")
    clock = FixedClock(at("2026-12-01T08:55"))
    kinds = set()
    while clock.now() < at("2026-12-01T12:00"):  # every minute for three hours
        kinds.add(run(clock.now()).due.kind)
        clock.advance(dt.timedelta(minutes=1))
    assert kinds == {"not_due", "no_issue_ready"}
    assert sent == []
    assert len(outbox.messages) == 1
    notice = outbox.messages[0]
    assert notice["To"] == config.reply_to
    assert notice["Auto-Submitted"] == "auto-generated"
    assert "No issue ready" in str(notice["Subject"])
    assert "dec (content/dec.md)" in notice.get_content()
    assert [r.message for r in caplog.records].count(f"told the editor at {config.reply_to}") == 1
    # A restart keeps the fact (it is in the state file, not in the process).
    run_after_restart, _ = runner(config, [draft], outbox, log)
    assert run_after_restart(at("2026-12-02T09:00")).told_editor is False
    assert json.loads(state_file(config).read_text()).keys() == {
        "schedule-notice:no_issue_ready:2026-12-01"
    }
    # Next month is a new day with its own notice.
    assert run_after_restart(at("2027-01-05T09:00")).told_editor is True
    assert len(outbox.messages) == 2


def test_a_failed_notice_is_retried_not_forgotten(config: Config, tmp_path: Path) -> None:
    attempts: list[EmailMessage] = []

    def flaky(message: EmailMessage) -> None:
        attempts.append(message)
        if len(attempts) == 1:
            raise DeliveryError("connection refused")

    notices = StateFileNotices(state_file(config))
    args = {"issues": [], "send_log": JsonSendLog(tmp_path / "l.json"), "notices": notices}
    with pytest.raises(DeliveryError):
        run_due(config, at("2026-12-01T09:00"), str, notify=flaky, **args)  # type: ignore[arg-type]
    assert not state_file(config).exists()
    again = run_due(config, at("2026-12-01T09:01"), str, notify=flaky, **args)  # type: ignore[arg-type]
    assert again.told_editor
    third = run_due(config, at("2026-12-01T09:02"), str, notify=flaky, **args)  # type: ignore[arg-type]
    assert not third.told_editor and len(attempts) == 2


def test_an_editor_controlled_name_cannot_inject_headers(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    config = Config(root=tmp_path, name="Letter\r\nBcc: victim@example.org")
    outbox = Outbox()
    run_due(
        config,
        at("2026-12-01T09:00"),
        str,
        issues=[],
        send_log=JsonSendLog(tmp_path / "l.json"),
        notices=StateFileNotices(state_file(config)),
        notify=outbox,
    )
    raw = outbox.messages[0].as_bytes()
    assert b"\nBcc:" not in raw and outbox.messages[0]["Bcc"] is None


def test_two_runs_at_once_one_sends_the_other_names_the_holder(
    config: Config, tmp_path: Path
) -> None:
    issue = FakeIssue("dec", dt.date(2026, 12, 1))
    log = JsonSendLog(tmp_path / "log.json")
    inside, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow_send(i: FakeIssue) -> str:
        calls.append(i.slug)
        log.mark(i.slug, "started")
        inside.set()
        release.wait(10)
        log.mark(i.slug, "finished")
        return "sent"

    def go() -> object:
        return run_due(
            config,
            at("2026-12-01T09:00"),
            slow_send,
            issues=[issue],
            send_log=log,
            notices=StateFileNotices(state_file(config)),
            notify=Outbox(),
        )

    first = threading.Thread(target=go)
    first.start()
    assert inside.wait(10)
    with pytest.raises(ScheduleLockedError) as err:
        go()
    release.set()
    first.join(10)
    assert f"pid {os.getpid()}" in str(err.value) and err.value.exit_code == 1
    assert calls == ["dec"]
    assert go().due.kind == "sent"  # type: ignore[attr-defined]


HOLD_LOCK = """
import sys, time
from pathlib import Path
from newsletter.schedule.locking import exclusive_lock
with exclusive_lock(Path(sys.argv[1]), "a test holder"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_the_lock_dies_with_a_killed_holder(tmp_path: Path) -> None:
    path = tmp_path / "subscribers" / "send-due.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(ScheduleLockedError) as err, exclusive_lock(path, "a test"):
            pass
        assert f"pid {holder.pid}" in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    with exclusive_lock(path, "a test"):  # no stale lock after SIGKILL
        # The holder is recorded beside the lock file (newsletter/locks.py).
        assert f"pid {os.getpid()}" in path.with_name(path.name + ".holder").read_text()


KILLED_SEND = """
import datetime as dt, json, sys, time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo
from newsletter.config import Config
from newsletter.schedule.notices import StateFileNotices, state_file
from newsletter.schedule.run import run_due

@dataclass(frozen=True)
class Issue:
    slug: str
    date: dt.date
    status: str = "ready"
    title: str = "An issue"
    path: Path = Path("content/dec.md")

root = Path(sys.argv[1])
log = root / "log.json"
config = Config(root=root)

class Log:
    def send_statuses(self, slugs):
        known = json.loads(log.read_text()) if log.exists() else {}
        return {slug: known.get(slug, "none") for slug in slugs}

def send(issue):
    log.write_text(json.dumps({issue.slug: "started"}))
    print("sending", flush=True)
    time.sleep(60)

now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("Europe/London"))
run_due(config, now, send, issues=[Issue("dec", dt.date(2026, 12, 1))], send_log=Log(),
        notices=StateFileNotices(state_file(config)), notify=print)
"""


def test_a_restart_after_a_kill_resumes_the_send(config: Config, tmp_path: Path) -> None:
    victim = subprocess.Popen(
        [sys.executable, "-c", KILLED_SEND, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert victim.stdout is not None and victim.stdout.readline() == "sending\n"
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    log = JsonSendLog(tmp_path / "log.json")
    assert log.send_status("dec") == "started"
    run, sent = runner(config, [FakeIssue("dec", dt.date(2026, 12, 1))], Outbox(), log)
    resumed = run(at("2026-12-01T09:03"))
    assert resumed.due.kind == "due" and "resuming" in resumed.due.message
    assert sent == [("dec", at("2026-12-01T09:03"))]
    assert run(at("2026-12-01T09:04")).due.kind == "sent"
    # A send killed and only noticed weeks later is still finished, not abandoned.
    log.mark("dec", "started")
    assert run(at("2026-12-20T09:00")).due.kind == "resume"


def test_the_loop_checks_at_start_and_arms_the_next_moment(config: Config) -> None:
    clock = FixedClock(at("2026-12-01T08:30"))
    ticks: list[dt.datetime] = []
    loop = SchedulerLoop(config, ticks.append, clock=clock)
    loop.wake()
    assert ticks == [at("2026-12-01T08:30")]  # the start-up check: catch-up after downtime
    assert loop.next_slot == at("2026-12-01T09:00")
    [job] = loop.scheduler.jobs
    assert job.interval == 30 * 60 + 1  # wakes just after 09:00
    clock.advance(dt.timedelta(minutes=31))
    loop.scheduler.run_all()
    assert ticks[-1] == at("2026-12-01T09:01")
    [job] = loop.scheduler.jobs  # the one-shot job re-armed itself
    assert job.interval == 3600  # next moment is January: the hourly watchdog comes first
    assert loop.next_slot == at("2027-01-05T09:00")


def test_the_loop_survives_a_failing_wake_up(config: Config) -> None:
    def broken(now: dt.datetime) -> None:
        raise DeliveryError("smtp down")

    loop = SchedulerLoop(config, broken, clock=FixedClock(at("2026-12-01T09:00")))
    loop.wake()
    assert len(loop.scheduler.jobs) == 1


def test_the_loop_stops_when_asked(config: Config) -> None:
    stop = StopFlag()
    loop = SchedulerLoop(config, lambda now: None, stop=stop)
    thread = threading.Thread(target=loop.run, kwargs={"poll": 0.05})
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive()
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and loop.scheduler.jobs == []


def test_due_lock_lives_under_subscribers(config: Config) -> None:
    with due_lock(config):
        assert (config.subscribers_dir / "send-due.lock").exists()
