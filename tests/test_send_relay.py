"""Issue 13: a sick relay pauses the send instead of burning the list (fault-injecting aiosmtpd).

The same 4xx for many readers in a row, or a 4xx at connection level, charges nobody an
attempt and records no soft bounce; the next run resumes. A 5xx after "." fails that one
reader and the send goes on; a run of them pauses as "content refused".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli
from test_delivery import add_readers, rows, send, smtp_config
from test_send_cli import smtp_env

from newsletter.settings import Config
from newsletter.store.store import open_store
from newsletter.testing.mta import Faults, FaultyMTA

SLUG = "2026-07-your-first-customer-sits-next-to-you"


def soft_bounces(config: Config) -> int:
    with open_store(config) as store:
        return len(store.events.events_of_kind("soft_bounce"))


@pytest.mark.parametrize("connections", [1, 3])
@pytest.mark.parametrize(
    "faults",
    [
        Faults(data_reply="452 4.3.1 Insufficient system storage"),
        Faults(rcpt_replies={}),  # filled below: 451 at RCPT for every reader (throttling)
    ],
    ids=["452-after-data", "451-at-rcpt"],
)
def test_the_same_4xx_for_everyone_pauses_and_charges_nobody(
    publication: Path, faults: Faults, connections: int
) -> None:
    with FaultyMTA(faults) as mta:
        config = smtp_config(publication, mta, connections=connections, max_attempts=2)
        readers = add_readers(config, 25)
        if not faults.data_reply:
            faults.rcpt_replies.update(
                {email: "451 4.7.1 Rate limit exceeded, try later" for email, _ in readers}
            )
        report = send(config)
    assert report.paused is not None and report.paused.startswith("relay trouble"), report.paused
    reply = "452 4.3.1" if faults.data_reply else "451 4.7.1"
    assert reply in report.paused
    assert "readers in a row" in report.paused and "@example.org" in report.paused
    assert report.counts["pending"] == len(readers)
    assert report.counts["failed"] == report.counts["deferred"] == 0
    pending = rows(config, "pending")
    assert {row.attempts for row in pending.values()} == {0}
    assert soft_bounces(config) == 0
    # the relay recovers: the next run resumes and everyone gets exactly one copy
    with FaultyMTA() as healthy:
        config = smtp_config(publication, healthy, connections=connections)
        report = send(config)
    assert report.paused is None and report.complete
    assert sorted(healthy.recipients()) == sorted(email for email, _ in readers)


def test_a_cli_send_on_a_sick_relay_exits_1_naming_readers_and_status_shows_them(
    publication: Path,
) -> None:
    with FaultyMTA(Faults(data_reply="452 4.3.1 Insufficient system storage")) as mta:
        config = smtp_config(publication, mta, connections=1)
        readers = add_readers(config, 12)
        result = run_cli(publication, "send", SLUG, env=smtp_env(mta, connections=1))
    assert result.code == 1, result.stdout + result.stderr
    assert "paused: relay trouble" in result.stderr
    assert "452 4.3.1 Insufficient system storage" in result.stderr
    assert "Traceback" not in result.stderr
    status = run_cli(publication, "status", SLUG)
    named = [email for email, _ in readers if email in status.stdout]
    assert len(named) >= 10, status.stdout
    assert "452 4.3.1" in status.stdout


def test_a_connection_level_4xx_pauses_without_charging(publication: Path) -> None:
    with FaultyMTA(Faults(mail_reply="451 4.3.0 Mail server temporarily rejected")) as mta:
        config = smtp_config(publication, mta, connections=1, max_reconnects=1)
        readers = add_readers(config, 3)
        report = send(config)
    assert report.paused is not None and "451 4.3.0" in report.paused
    assert report.counts["pending"] == len(readers)
    assert {row.attempts for row in rows(config, "pending").values()} == {0}
    assert soft_bounces(config) == 0


def test_one_reader_refused_after_the_dot_fails_alone_and_the_send_goes_on(
    publication: Path,
) -> None:
    refused = "554 5.7.1 Message rejected as spam by this recipient's filter"
    with FaultyMTA(Faults(dot_replies={"r004@example.org": refused})) as mta:
        config = smtp_config(publication, mta, connections=2)
        readers = add_readers(config, 10)
        report = send(config)
    assert report.paused is None and report.complete
    failed = rows(config, "failed")
    assert list(failed) == ["r004@example.org"]
    assert failed["r004@example.org"].last_reply == refused
    assert report.counts["sent"] == len(readers) - 1
    with open_store(config) as store:
        reader = store.subscribers.get_by_email("r004@example.org")
        assert reader is not None and reader.status == "active"  # refused content: no bounce
    # a second run sends nothing again and names nobody new: it does not stall
    again = send(config)
    assert again.paused is None and again.sent_now == 0


def test_a_run_of_refusals_after_the_dot_pauses_as_content_refused(publication: Path) -> None:
    refused = "550 5.7.1 Content rejected"
    faults = Faults(dot_replies={f"r00{n}@example.org": refused for n in range(3)})
    with FaultyMTA(faults) as mta:
        config = smtp_config(publication, mta, connections=1, refusals_pause_after=3)
        add_readers(config, 6)
        report = send(config)
    assert report.paused is not None and report.paused.startswith("content refused")
    for n in range(3):
        assert f"r00{n}@example.org" in report.paused
    assert refused in report.paused
    pending = rows(config, "pending")
    assert {f"r00{n}@example.org" for n in range(3)} <= set(pending)
    assert rows(config, "failed") == {}
