"""`newsletter schedule` and `send_due` against a real publication, store and file transport."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

import pytest
from conftest import run_cli

from newsletter.cli.schedule import echo_schedule_log
from newsletter.config import load_config
from newsletter.content.issues import Issue
from newsletter.schedule.locking import scheduler_lock
from newsletter.schedule.run import send_due_with
from newsletter.store.store import open_store
from newsletter.testing.mta import Faults, FaultyMTA

LONDON = ZoneInfo("Europe/London")
DECEMBER = "2026-12-thanks-that-travel-upstream"
NEWSLETTER = str(Path(sys.executable).with_name("newsletter"))


def set_status(publication: Path, slug: str, status: str) -> None:
    path = publication / "content" / f"{slug}.md"
    text = path.read_text(encoding="utf-8")
    head, sep, body = text.partition("\n---\n")
    lines = [line for line in head.splitlines() if not line.startswith("status:")]
    path.write_text("\n".join([*lines, f"status: {status}"]) + sep + body, encoding="utf-8")


def test_list_shows_the_next_dates_and_the_issue_due_on_each(publication: Path) -> None:
    result = run_cli(publication, "schedule", "--list", "3", "--now", "2026-11-20T00:00")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "rule: FREQ=MONTHLY;BYDAY=1TU at 09:00 Europe/London, catch-up 3 day(s)"
    assert lines[1].startswith("now: nothing due at Fri 2026-11-20 00:00 GMT")
    assert lines[2:] == [
        f"Tue 2026-12-01 09:00 GMT  no issue ready (draft: {DECEMBER})",
        "Tue 2027-01-05 09:00 GMT  no issue ready",
        "Tue 2027-02-02 09:00 GMT  no issue ready",
    ]
    set_status(publication, DECEMBER, "ready")
    ready = run_cli(publication, "schedule", "--list", "--now", "2026-11-20T00:00")
    assert f"Tue 2026-12-01 09:00 GMT  {DECEMBER}  Thanks That Travel Upstream" in ready.stdout
    assert len(ready.stdout.splitlines()) == 2 + 6  # --list alone shows six dates


def test_list_marks_what_the_send_log_says_is_sent(publication: Path) -> None:
    config = load_config(publication)
    with open_store(config) as store:
        store.sends.finish_send(store.sends.start_send("2026-10-listening-rounds").id)
    result = run_cli(publication, "schedule", "--list", "1", "--now", "2026-10-06T09:30")
    assert "already sent: 2026-10-listening-rounds" in result.stdout
    unsent = run_cli(publication, "schedule", "--list", "1", "--now", "2026-08-04T10:00")
    assert "due: 2026-08-handoffs-are-the-product" in unsent.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--list", "2", "--now", "first tuesday"), "expected an ISO 8601 date/time"),
        (("--list", "0"), "0 is not in the range"),
    ],
)
def test_bad_usage_exits_2(publication: Path, args: tuple[str, ...], message: str) -> None:
    result = run_cli(publication, "schedule", *args)
    assert result.code == 2 and message in result.stderr


def test_a_second_scheduler_is_refused_naming_the_holder(publication: Path) -> None:
    with scheduler_lock(load_config(publication)):
        result = run_cli(publication, "schedule")
    assert result.code == 1
    assert "newsletter schedule is already running (pid " in result.stderr
    assert f"pid {os.getpid()} on " in result.stderr


def test_the_editor_is_told_once_through_the_transport_and_the_store(publication: Path) -> None:
    config = load_config(publication)
    sent: list[Issue] = []
    start = dt.datetime(2026, 12, 1, 9, 0, tzinfo=LONDON)
    kinds = {
        send_due_with(config, start + dt.timedelta(minutes=m), sent.append).due.kind
        for m in range(20)
    }
    assert kinds == {"no_issue_ready"} and sent == []
    notices = list((config.outbox_dir / "schedule-notices").glob("*.eml"))
    assert len(notices) == 1
    notice = email.message_from_bytes(notices[0].read_bytes(), policy=email.policy.default)
    assert notice["To"] == "news@example.com" and notice["Auto-Submitted"] == "auto-generated"
    assert notice["Subject"] == "[Leader Notes] No issue ready for Tue 2026-12-01 09:00 GMT"
    body = notice.get_body(("plain",))
    assert body is not None and DECEMBER in body.get_content()
    with open_store(config) as store:
        assert store.events.has_event(
            "schedule-notice", "schedule-notice:no_issue_ready:2026-12-01"
        )
    # Once the editor marks it ready, the same morning's next run sends it.
    set_status(publication, DECEMBER, "ready")
    run = send_due_with(config, start + dt.timedelta(minutes=30), lambda issue: sent.append(issue))
    assert run.due.kind == "due" and [i.slug for i in sent] == [DECEMBER]


class Lines:
    """A process's output read in a thread, so every wait has a deadline that fires even
    when the process prints nothing (a bare readline() would block past any timeout)."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line)
        self.queue.put("")  # end of output

    def wait_for(self, needle: str, timeout: float = 120) -> str:
        """Everything read until a line holding `needle`."""
        deadline = time.monotonic() + timeout
        seen = ""
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if not line:
                raise AssertionError(f"{needle!r} not seen before the output ended: {seen}")
            seen += line
            if needle in line:
                return seen
        raise AssertionError(f"{needle!r} not seen within {timeout} s: {seen}")

    def rest(self, timeout: float = 60) -> str:
        """What is left once the process has ended."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the output did not end"
        return "".join(iter(self.queue.get_nowait, ""))


def stop(proc: subprocess.Popen[str], sig: signal.Signals, timeout: float = 60) -> str:
    """Signal the process, wait for it (with a deadline) and return its stderr."""
    proc.send_signal(sig)
    proc.wait(timeout=timeout)
    assert proc.stderr is not None
    return proc.stderr.read()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_long_running_scheduler_checks_at_start_and_stops_on_a_signal(
    publication: Path, sig: signal.Signals
) -> None:
    command = [NEWSLETTER, "--root", str(publication), "--now", "2026-11-20T12:00", "schedule"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = Lines(proc.stdout)
        started = lines.wait_for("nothing due at")  # the start-up check ran
        assert f"scheduler started (pid {proc.pid})" in started
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert f"already running (pid {proc.pid} on " in second.stderr
        err = stop(proc, sig)
        out = lines.rest()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "scheduler stopped" in out
    assert "stopping after the current step" in err
    assert "Traceback" not in err


def test_the_scheduler_sends_at_start_up_and_resumes_after_a_kill(publication: Path) -> None:
    """The scheduler's clock starts at --now (10:00 on a scheduled day) and runs on, so the
    issue of that day is due when the process starts, whatever day the test runs."""
    day = "2031-07-01"
    now = [f"--now={day}T10:00"]
    (publication / "content" / f"{day}-today.md").write_text(
        f"---\ntitle: Today\ndate: {day}\nstatus: ready\nsummary: Today's issue.\n---\nHello.\n",
        encoding="utf-8",
    )
    slug = f"{day}-today"
    config = load_config(publication)
    readers = [f"reader{n}@example.org" for n in range(6)]
    with open_store(config) as store:
        for address in readers:
            store.subscribers.add(address, None, source="test", consent="test fixture")
    with FaultyMTA(Faults(delay=0.1)) as mta:
        env = dict(os.environ)
        env.update(
            NEWSLETTER_TIMEZONE="UTC",
            NEWSLETTER_SCHEDULE__RRULE="FREQ=DAILY",
            NEWSLETTER_SCHEDULE__TIME="00:00",
            NEWSLETTER_DELIVERY__TRANSPORT="smtp",
            NEWSLETTER_DELIVERY__SMTP__HOST="127.0.0.1",
            NEWSLETTER_DELIVERY__SMTP__PORT=str(mta.port),
            NEWSLETTER_DELIVERY__SMTP__CONNECTIONS="1",
        )
        command = [NEWSLETTER, "--root", str(publication), *now, "schedule"]

        def start() -> subprocess.Popen[str]:
            return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env)  # fmt: skip

        victim = start()
        deadline = time.monotonic() + 180
        while len(mta.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        mta.faults.delay = 60.0  # hold the victim mid-message while it is killed
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=60)
        mta.faults.delay = 0.1
        assert 2 <= len(mta.messages) < len(readers)

        restarted = start()  # the kill left no stale lock; the start-up check resumes the send
        try:
            assert restarted.stdout is not None
            seen = Lines(restarted.stdout).wait_for("sent by this run")
            assert f"due: {slug} scheduled" in seen and "(resuming the unfinished send)" in seen
            stop(restarted, signal.SIGTERM)
        finally:
            if restarted.poll() is None:
                restarted.kill()
                restarted.wait()
        assert restarted.returncode == 0
        received = mta.recipients()

        third = start()
        try:
            assert third.stdout is not None
            assert f"already sent: {slug}" in Lines(third.stdout).wait_for("already sent")
            stop(third, signal.SIGTERM)
        finally:
            if third.poll() is None:
                third.kill()
                third.wait()
    with open_store(config) as store:
        record = store.sends.get_send(slug)
        assert record is not None and record.finished_at is not None
        unknown = store.sends.delivery_counts(record.id)["unknown"]
    assert unknown <= 1
    assert len(set(readers) - set(received)) <= unknown
    assert len(received) - len(set(received)) <= unknown


def test_list_warns_about_a_ready_issue_off_the_schedule(publication: Path) -> None:
    path = publication / "content" / f"{DECEMBER}.md"
    text = path.read_text(encoding="utf-8").replace("date: 2026-12-01", "date: 2026-12-02")
    path.write_text(text, encoding="utf-8")
    set_status(publication, DECEMBER, "ready")
    result = run_cli(publication, "schedule", "--list", "2", "--now", "2026-11-20T00:00")
    assert result.code == 0
    assert "Tue 2026-12-01 09:00 GMT  no issue ready" in result.stdout
    assert (
        f"warning: {DECEMBER} is ready but dated Wed 2026-12-02, not a scheduled day"
        in result.stderr
    )


def test_a_failed_wake_up_logs_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with echo_schedule_log() as logger:
        try:
            raise RuntimeError("disk on fire")
        except RuntimeError:
            logger.exception("the scheduled run failed")
    err = capsys.readouterr().err
    assert "the scheduled run failed" in err and "RuntimeError: disk on fire" in err
