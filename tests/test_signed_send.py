"""A DKIM-signed send, end to end: the bytes the MTA received verify, whatever the send met.

The send signs the next reader's message on a thread while the current one goes out
(`newsletter.delivery.engine._Connection`): these tests check that the message a reader gets
is their own, signed over their own headers, on one connection (threads) and several (worker
processes), through refusals, dropped connections, a reader who leaves mid-send and a paused
send, and that the reader signed ahead is never lost or sent twice."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import dkim as dkimpy
import pytest
from test_delivery import (
    add_readers,
    by_recipient,
    killing_a_worker,
    rows,
    send,
    smtp_config,
    status_of,
)
from test_dkim import KeyPair, _generate

from newsletter.config import load_config
from newsletter.delivery import send as delivery
from newsletter.settings import Config, DkimConfig
from newsletter.store.store import open_store
from newsletter.testing.mta import Faults, FaultyMTA

pytestmark = pytest.mark.usefixtures("store_url")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return _generate(tmp_path_factory.mktemp("dkim"))


def signed(config: Config, keys: KeyPair, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("TEST_DKIM_KEY", str(keys.private_path))
    dkim = DkimConfig(selector="news2026", domain="example.com", private_key_env="TEST_DKIM_KEY")
    return replace(config, dkim=dkim)


def verify_all(mta: FaultyMTA, keys: KeyPair) -> None:
    """Every message the MTA accepted verifies, and is signed for the reader it reached."""
    for received in mta.messages:
        assert dkimpy.verify(received.data, dnsfunc=keys.dns), received.rcpt_tos
        (to,) = received.parse()["To"].addresses
        assert received.rcpt_tos == (to.addr_spec,)


# (connections, cores): one connection on threads, signing ahead on a spare core or not;
# three worker processes, signing ahead (8 cores) or each in turn (2 cores).
@pytest.mark.parametrize(("connections", "cores"), [(1, 2), (1, 1), (3, 8), (3, 2)])
def test_a_signed_send_through_refusals_and_drops_verifies_for_every_reader(
    publication: Path,
    keys: KeyPair,
    monkeypatch: pytest.MonkeyPatch,
    connections: int,
    cores: int,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    faults = Faults(
        drop_after=5,
        rcpt_replies={
            "r000@example.org": "550 5.1.1 no such user",
            "r001@example.org": ["451 4.3.0 greylisted"],
            "r002@example.org": ["421 4.3.2 shutting down"],
        },
        drop_after_dot={"r003@example.org"},
    )
    with FaultyMTA(faults) as mta:
        config = signed(smtp_config(publication, mta, connections=connections), keys, monkeypatch)
        readers = add_readers(config, 16)
        with open_store(config) as store:
            leaver = store.subscribers.get_by_email("r015@example.org")
            assert leaver is not None

            def leave_early(event: delivery.Progress) -> None:  # after the next is signed
                if event.done == 2:
                    store.subscribers.unsubscribe(leaver, source="reply", detail="mid-send")

            report = send(config, on_progress=leave_early)
    verify_all(mta, keys)
    got = by_recipient(mta)
    state = {email: row.state for email, row in rows(config, "sent", "failed", "unknown").items()}
    assert state["r000@example.org"] == "failed" and "r000@example.org" not in got
    assert status_of(config, "r000@example.org") == "bounced"
    assert state["r003@example.org"] == "unknown"
    assert "r015@example.org" not in got
    for email, _ in readers:
        if email not in {"r000@example.org", "r015@example.org"}:
            assert len(got[email]) == 1, email  # nobody lost, nobody twice
    assert report.complete and report.counts["sent"] == len(readers) - 3


def test_a_paused_signed_send_loses_nobody_and_resumes(
    publication: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay starts refusing the sender mid-send (a 5xx at MAIL FROM pauses the send)
    with the next reader already signed ahead: that reader stays due, and the resumed send
    reaches everyone once."""
    with FaultyMTA() as mta:
        config = signed(smtp_config(publication, mta, connections=1), keys, monkeypatch)
        readers = add_readers(config, 12)

        def refuse_from_now_on(event: delivery.Progress) -> None:
            if event.done == 4:
                mta.faults.mail_reply = "553 5.7.1 sender not allowed"

        report = send(config, on_progress=refuse_from_now_on)
        assert report.paused is not None and "553" in report.paused
        # The fifth reader's envelope went out before the fourth's result was counted: the
        # server may have taken it before the fault was set.
        sent = report.counts["sent"]
        assert sent in (4, 5) and report.counts["pending"] == len(readers) - sent
        assert report.counts["in_flight"] == 0
        mta.faults.mail_reply = None
        after = send(config)
    verify_all(mta, keys)
    assert after.complete and after.sent_now == len(readers) - sent
    per_reader = Counter(mta.recipients())
    assert set(per_reader) == {email for email, _ in readers}
    assert all(count == 1 for count in per_reader.values())


def test_a_killed_signing_worker_leaves_at_most_one_unknown(
    publication: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed: list[int] = []
    kill_a_worker = killing_a_worker(8, killed)
    with FaultyMTA(Faults(delay=0.02)) as mta:
        config = signed(smtp_config(publication, mta, connections=2), keys, monkeypatch)
        readers = add_readers(config, 40)
        report = send(config, on_progress=kill_a_worker)
        assert killed and report.counts["in_flight"] <= 1 and not report.complete
        after = send(config, resend_unknown=True)
    verify_all(mta, keys)
    assert after.complete and after.counts["sent"] == len(readers)
    per_reader = Counter(mta.recipients())
    assert set(per_reader) == {email for email, _ in readers}
    assert sum(count - 1 for count in per_reader.values()) <= 1


def test_signing_ahead_only_where_a_core_is_left_idle(
    monkeypatch: pytest.MonkeyPatch, keys: KeyPair, publication: Path
) -> None:
    from newsletter.delivery.outgoing import signs_ahead

    config = load_config(publication)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert not signs_ahead(config, 1)  # nothing to sign
    config = signed(config, keys, monkeypatch)
    assert signs_ahead(config, 1) and not signs_ahead(config, 2) and not signs_ahead(config, 4)


def test_a_key_that_cannot_sign_stops_before_anything_goes_out(
    publication: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The key is checked before the send starts."""
    with FaultyMTA() as mta:
        config = signed(smtp_config(publication, mta, connections=1), keys, monkeypatch)
        add_readers(config, 3)
        monkeypatch.setenv("TEST_DKIM_KEY", str(tmp_path / "gone.pem"))
        with pytest.raises(Exception, match="DKIM private key"):
            send(config)
    assert mta.messages == []


@pytest.mark.parametrize("cores", [1, 2])
def test_a_key_lost_mid_send_pauses_it_and_loses_nobody(
    publication: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cores: int
) -> None:
    """The key file removed mid-send (a botched rotation): the send stops with the reason,
    no message goes out unsigned, no row is left in flight, and once the key is back the
    send reaches everyone else once."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    key = tmp_path / "rotating.pem"
    key.write_bytes(keys.private_path.read_bytes())
    with FaultyMTA() as mta:
        config = signed(smtp_config(publication, mta, connections=1), keys, monkeypatch)
        monkeypatch.setenv("TEST_DKIM_KEY", str(key))
        readers = add_readers(config, 10)

        def lose_the_key(event: delivery.Progress) -> None:
            if event.done == 3:
                key.rename(tmp_path / "elsewhere.pem")

        report = send(config, on_progress=lose_the_key)
        assert report.paused is not None and "DKIM private key" in report.paused
        assert report.counts["in_flight"] == 0 and report.counts["unknown"] == 0
        sent = report.counts["sent"]
        assert 3 <= sent <= 5 and report.counts["pending"] == len(readers) - sent
        (tmp_path / "elsewhere.pem").rename(key)
        after = send(config)
    verify_all(mta, keys)
    assert after.complete and after.sent_now == len(readers) - sent
    assert Counter(mta.recipients()) == {email: 1 for email, _ in readers}
