"""`newsletter send` and `newsletter status`: CliRunner, and a real process killed mid-send."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_cli

from newsletter.config import load_config
from newsletter.delivery import send as delivery
from newsletter.errors import DeliveryError
from newsletter.store.store import open_store
from newsletter.testing.mta import Faults, FaultyMTA

SLUG = "2026-07-your-first-customer-sits-next-to-you"
NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


def smtp_env(mta: FaultyMTA, connections: int = 2) -> dict[str, str | None]:
    return {
        "NEWSLETTER_DELIVERY__TRANSPORT": "smtp",
        "NEWSLETTER_DELIVERY__SMTP__HOST": mta.host,
        "NEWSLETTER_DELIVERY__SMTP__PORT": str(mta.port),
        "NEWSLETTER_DELIVERY__SMTP__CONNECTIONS": str(connections),
        "NEWSLETTER_DELIVERY__SMTP__TIMEOUT": "10",
        "NEWSLETTER_DELIVERY__BACKOFF": "0.01",
        "NEWSLETTER_DELIVERY__RETRY_DELAY": "3600",
        "NEWSLETTER_DELIVERY__RETRY_WINDOW": "0",
    }


def add_readers(root: Path, count: int) -> list[str]:
    emails = [f"r{n:03d}@example.org" for n in range(count)]
    with open_store(load_config(root)) as store:
        for n, email in enumerate(emails):
            store.subscribers.add(email, f"Reader {n}", source="test", consent="test")
    return emails


def test_send_refuses_a_draft(publication: Path) -> None:
    draft = next((publication / "content").glob("2026-12-*.md")).stem
    result = run_cli(publication, "send", draft)
    assert result.code == 2
    assert "status: is a draft" in result.stderr
    assert "sending" not in result.stdout  # refused before it claims to start


def test_send_refuses_an_issue_that_check_rejects(publication: Path) -> None:
    path = publication / "content" / f"{SLUG}.md"
    path.write_text(path.read_text(encoding="utf-8") + "\nTODO: finish this\n", encoding="utf-8")
    add_readers(publication, 2)
    result = run_cli(publication, "send", SLUG)
    assert result.code == 2
    assert "`newsletter check` finds 1 error(s)" in result.stderr
    assert "leftover placeholder 'TODO'" in result.stderr
    assert not (publication / "outbox").exists()


def test_dry_run_counts_and_shows_a_sample_without_sending(publication: Path) -> None:
    add_readers(publication, 3)
    result = run_cli(publication, "send", SLUG, "--dry-run")
    assert result.code == 0, result.stderr
    assert f"would send {SLUG} to 3 active subscribers" in result.stdout
    assert "nothing sent" in result.stdout
    assert '"Reader 0" <r000@example.org>' in result.stdout or "Reader 0 <r000" in result.stdout
    assert "Message-ID: <2026-07-your-first-customer-sits-next-to-you." in result.stdout
    assert not (publication / "outbox").exists()
    with open_store(load_config(publication)) as store:
        assert store.sends.get_send(SLUG) is None


def test_to_sends_one_test_copy_outside_the_log(publication: Path) -> None:
    add_readers(publication, 3)
    with FaultyMTA() as mta:
        result = run_cli(publication, "send", SLUG, "--to", "me@example.net", env=smtp_env(mta))
    assert result.code == 0, result.stderr
    assert "test copy" in result.stdout and "250" in result.stdout
    assert mta.recipients() == ["me@example.net"]
    assert mta.messages[0].parse()["To"].addresses[0].addr_spec == "me@example.net"
    with open_store(load_config(publication)) as store:
        assert store.sends.get_send(SLUG) is None


def test_send_then_status_after_a_faulty_run_shows_each_failure(publication: Path) -> None:
    emails = add_readers(publication, 8)
    faults = Faults(
        rcpt_replies={
            emails[1]: "550 5.1.1 <r001@example.org>: user unknown",
            emails[2]: "451 4.7.1 greylisted, try later",
        },
        drop_after_dot={emails[3]},
        drop_after=3,
    )
    with FaultyMTA(faults) as mta:
        result = run_cli(publication, "send", SLUG, env=smtp_env(mta))
    assert result.code == 1, result.stderr  # deferred and unknown readers remain
    assert "failed: r001@example.org: 550 5.1.1" in result.stdout  # plain lines: not a tty
    assert "1 unknown" in result.stdout and "--resend-unknown" in result.stdout
    assert "5 sent" in result.stdout
    status = run_cli(publication, "status", SLUG)
    assert status.code == 0
    lines = status.stdout.splitlines()
    assert any(line.split() == ["sent", "5"] for line in lines)
    assert "failed    r001@example.org: 550 5.1.1 <r001@example.org>: user unknown" in lines
    assert any(
        line.startswith("deferred  r002@example.org: 451 4.7.1 greylisted") for line in lines
    )
    assert any(line.startswith("unknown   r003@example.org: ") for line in lines)
    overview = run_cli(publication, "status")
    assert f"{SLUG}: open, 8 recipients: 5 sent, 1 deferred, 1 failed, 1 unknown" in overview.stdout


def test_a_refused_send_pauses_with_a_clear_message(publication: Path) -> None:
    add_readers(publication, 3)
    with FaultyMTA(Faults(data_reply="554 5.7.1 message content rejected")) as mta:
        result = run_cli(publication, "send", SLUG, env=smtp_env(mta))
    assert result.code == 1
    # issue 13: refused after "." for every reader in a row: the content, named as such
    assert "paused: content refused" in result.stderr
    assert "554 5.7.1 message content rejected" in result.stderr
    assert "nobody was marked bounced" in result.stderr
    with open_store(load_config(publication)) as store:
        assert store.subscribers.counts()["bounced"] == 0


def test_a_second_send_reports_the_one_running(publication: Path) -> None:
    add_readers(publication, 1)
    with delivery.send_lock(load_config(publication), SLUG):
        result = run_cli(publication, "send", SLUG)
    assert result.code == 2
    # The holder: its pid, host and since when (newsletter/locks.py).
    assert f"another `newsletter send {SLUG}` is running (pid {os.getpid()} on " in result.stderr


def test_status_before_any_send(publication: Path) -> None:
    assert "no issue has been sent yet" in run_cli(publication, "status").stdout
    assert f"{SLUG}: not sent yet" in run_cli(publication, "status", SLUG).stdout


def test_a_killed_send_resumes_and_everyone_gets_the_issue_once(publication: Path) -> None:
    """SIGKILL a real `newsletter send` mid-send; the resumed send reaches everyone, and only
    the in-flight messages (at most one per connection) can arrive twice, same Message-ID."""
    emails = add_readers(publication, 150)
    connections = 2
    with FaultyMTA(Faults(delay=0.02)) as mta:
        overrides = smtp_env(mta, connections)
        env = {**os.environ, **{k: v for k, v in overrides.items() if v is not None}}
        command = [NEWSLETTER, "--root", str(publication), "send", SLUG]
        # Its own process group: the worker processes die with it, as in a power cut.
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, start_new_session=True
        )
        try:
            while len(mta.messages) < 20 and process.poll() is None:
                time.sleep(0.01)
            os.killpg(process.pid, signal.SIGKILL)
        finally:
            process.wait()
        _wait_for_the_lock(publication)  # the workers are gone too
        delivered_before_kill = len(mta.messages)
        assert process.returncode == -signal.SIGKILL
        assert 20 <= delivered_before_kill < len(emails)  # killed mid-send
        with open_store(load_config(publication)) as store:
            record = store.sends.get_send(SLUG)
            assert record is not None
            in_doubt = store.sends.delivery_counts(record.id)["in_flight"]
        assert in_doubt <= connections  # at most one message per connection
        resumed = subprocess.run(
            [*command, "--resend-unknown"], env=env, capture_output=True, text=True
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    per_reader = Counter(mta.recipients())
    assert set(per_reader) == set(emails)
    twice = [email for email, count in per_reader.items() if count > 1]
    assert len(twice) <= connections and max(per_reader.values()) <= 2
    for email in twice:
        ids = {m.message_id for m in mta.messages if email in m.rcpt_tos}
        assert len(ids) == 1
    status = run_cli(publication, "status", SLUG)
    assert any(line.split() == ["sent", str(len(emails))] for line in status.stdout.splitlines())


def _wait_for_the_lock(root: Path) -> None:
    """Until no process of the send (parent or worker) holds the issue's send lock."""
    for _ in range(3000):
        try:
            with delivery.send_lock(load_config(root), SLUG):
                return
        except DeliveryError:
            time.sleep(0.01)
    raise AssertionError("the send's processes never exited")


def test_when_only_the_parent_is_killed_the_workers_stop_cleanly(publication: Path) -> None:
    """SIGKILL to the `newsletter send` process alone: its workers notice, record the message
    they carry and exit, so nothing is left in flight and the resumed send sends nobody twice."""
    emails = add_readers(publication, 150)
    with FaultyMTA(Faults(delay=0.02)) as mta:
        env = {**os.environ, **{k: v for k, v in smtp_env(mta).items() if v is not None}}
        command = [NEWSLETTER, "--root", str(publication), "send", SLUG]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        try:
            while len(mta.messages) < 20 and process.poll() is None:
                time.sleep(0.01)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.wait()
        _wait_for_the_lock(publication)
        with open_store(load_config(publication)) as store:
            record = store.sends.get_send(SLUG)
            assert record is not None
            counts = store.sends.delivery_counts(record.id)
        assert counts["in_flight"] == 0 and 20 <= counts["sent"] < len(emails)
        resumed = subprocess.run(command, env=env, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert Counter(mta.recipients()) == dict.fromkeys(emails, 1)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_cleanly_and_the_send_resumes(publication: Path, signum: int) -> None:
    emails = add_readers(publication, 80)
    with FaultyMTA(Faults(delay=0.02)) as mta:
        env = {**os.environ, **{k: v for k, v in smtp_env(mta).items() if v is not None}}
        command = [NEWSLETTER, "--root", str(publication), "send", SLUG]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            while len(mta.messages) < 10 and process.poll() is None:
                time.sleep(0.01)
            process.send_signal(signum)
            _, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
        assert process.returncode == 128 + signum, stderr  # 130 Ctrl-C, 143 SIGTERM
        assert b"interrupted: `newsletter send" in stderr and b"Traceback" not in stderr
        resumed = subprocess.run([*command, "--resend-unknown"], env=env, capture_output=True)
        assert resumed.returncode == 0, resumed.stderr
    per_reader = Counter(mta.recipients())
    assert set(per_reader) == set(emails) and max(per_reader.values()) <= 2
    assert sum(count - 1 for count in per_reader.values()) <= 2  # one per connection at most


def test_the_progress_bar_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from newsletter.cli import send as cli_send

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "120")
    with cli_send._reporter(3) as show:
        show(delivery.Progress("sent", "a@example.org", "250 ok", 1))
        show(delivery.Progress("failed", "b@example.org", "550 5.1.1 [bold]unknown", 2))
        show(delivery.Progress("waiting", "", "next retry of deferred readers in 5 s", 2))
        show(delivery.Progress("sent", "c@example.org", "250 ok", 3))
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", capsys.readouterr().out)
    assert "failed: b@example.org: 550 5.1.1 [bold]unknown" in out  # not rich markup
    assert "next retry of deferred readers in 5 s" in out
    assert "sending" in out and "3/3" in out and "msg/s" in out
