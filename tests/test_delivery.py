"""The send runner against a real aiosmtpd (the fault-injecting MTA) and the real store."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLE_TODAY

from newsletter.config import load_config
from newsletter.content.issues import find_issue, load_issues
from newsletter.delivery import journal, outgoing
from newsletter.delivery import send as delivery
from newsletter.errors import DeliveryError
from newsletter.mail.message import message_id
from newsletter.settings import Config
from newsletter.store.records import DeliveryRow, DeliveryState
from newsletter.store.sends import SendLog
from newsletter.store.store import open_store
from newsletter.testing.mta import Faults, FaultyMTA, Received

# Every test here runs on SQLite and on PostgreSQL (conftest.store_url).
pytestmark = pytest.mark.usefixtures("store_url")

SLUG = "2026-07-your-first-customer-sits-next-to-you"
TRICKY = [
    ("zoe@example.org", "Zoë"),
    ("ann@example.org", 'Ann "The Boss" O\'Neil'),
    ("smith@example.org", "Smith, John"),
    ("li@example.org", "李小龙"),
    ("nameless@example.org", None),
]


def smtp_config(publication: Path, mta: FaultyMTA, connections: int = 2, **changes: Any) -> Config:
    base = load_config(publication)
    smtp = replace(
        base.delivery.smtp, host=mta.host, port=mta.port, connections=connections, timeout=5
    )
    settings: dict[str, Any] = dict(
        transport="smtp", smtp=smtp, backoff=0.01, retry_delay=0.05, retry_window=30
    )
    settings.update(changes)
    return replace(base, delivery=replace(base.delivery, **settings))


def add_readers(config: Config, count: int = 20) -> list[tuple[str, str | None]]:
    readers = TRICKY + [(f"r{n:03d}@example.org", f"Reader {n}") for n in range(count)]
    with open_store(config) as store:
        for email, name in readers:
            store.subscribers.add(email, name, source="test", consent="test")
    return readers


def send(config: Config, **kw: Any) -> delivery.SendReport:
    issues = load_issues(config, SAMPLE_TODAY)
    return delivery.send_issue(config, find_issue(config, issues, SLUG), issues, **kw)


def rows(config: Config, *states: DeliveryState) -> dict[str, DeliveryRow]:
    with open_store(config) as store:
        record = store.sends.get_send(SLUG)
        assert record is not None
        return {r.email: r for r in store.sends.deliveries_in_state(record.id, states)}


def status_of(config: Config, email: str) -> str:
    with open_store(config) as store:
        reader = store.subscribers.get_by_email(email)
        assert reader is not None
        return reader.status


def by_recipient(mta: FaultyMTA) -> dict[str, list[Received]]:
    got: dict[str, list[Received]] = {}
    for message in mta.messages:
        for rcpt in message.rcpt_tos:
            got.setdefault(rcpt, []).append(message)
    return got


def test_every_reader_gets_one_message_with_their_own_name_token_and_message_id(
    publication: Path,
) -> None:
    with FaultyMTA() as mta:
        config = smtp_config(publication, mta)
        readers = add_readers(config)
        with open_store(config) as store:
            gone = store.subscribers.get_by_email("r000@example.org")
            assert gone is not None
            store.subscribers.unsubscribe(gone, source="test", detail=None)
        report = send(config)
    assert report.complete and report.paused is None
    assert report.counts["sent"] == len(readers) - 1 == report.sent_now
    got = by_recipient(mta)
    assert sorted(got) == sorted(email for email, _ in readers if email != "r000@example.org")
    with open_store(config) as store:
        for email, name in readers[:6]:
            if email == "r000@example.org":
                continue
            (received,) = got[email]
            subscriber = store.subscribers.get_by_email(email)
            assert subscriber is not None
            token = subscriber.token
            message = received.parse()
            (to,) = message["To"].addresses
            assert (to.addr_spec, to.display_name) == (email, name or "")
            assert message["Message-ID"] == message_id(config, SLUG, token)
            assert token in message["List-Unsubscribe"]
            # Two addresses, two jobs (issue 13): bounces go to the VERP bounce address, the
            # List-Unsubscribe mailto is the reply address; a machine's reply to the envelope
            # sender can never reach the unsubscribe address.
            assert received.mail_from == f"news-bounces+{token}@example.com"
            assert f"<mailto:news+{token}@example.com?subject=unsubscribe>" in str(
                message["List-Unsubscribe"]
            )
            text = message.get_body(("plain",))
            html = message.get_body(("html",))
            assert text is not None and html is not None
            assert (name or config.greeting_fallback) in text.get_content()
            assert f"news+{token}@example.com" in text.get_content()
            assert token in html.get_content()
    assert status_of(config, "r000@example.org") == "unsubscribed"
    assert rows(config, "skipped") == {}  # unsubscribed before the snapshot: never a recipient
    assert {m.connection for m in mta.messages} <= {1, 2}


def test_a_delivery_row_travels_to_a_worker_whole() -> None:
    """Workers get their rows pickled (by position, DeliveryRow.__reduce__): every field,
    and every kind of value it may hold, comes back equal."""
    import pickle

    moment = datetime(2026, 11, 20, 12, 0)
    rows = [
        DeliveryRow(1, 2, 3, "zoë@example.org", "Zoë", "tok", "active", "deferred", 2,
                    "451 4.3.0 later", "<a@b>", moment, moment),
        DeliveryRow(4, 2, None, "gone@example.org", None, "t2", "forgotten", "pending", 0,
                    None, None, None, moment),
    ]  # fmt: skip
    assert pickle.loads(pickle.dumps(rows, pickle.HIGHEST_PROTOCOL)) == rows


def test_a_second_run_sends_nothing_again(publication: Path) -> None:
    with FaultyMTA() as mta:
        config = smtp_config(publication, mta)
        readers = add_readers(config, 5)
        send(config)
        again = send(config)
    assert again.sent_now == 0 and again.complete
    assert len(mta.messages) == len(readers)


def test_the_failure_policy(publication: Path) -> None:
    faults = Faults(
        drop_after=4,
        rcpt_replies={
            "r000@example.org": "550 5.1.1 no such user",
            "r001@example.org": "553 5.1.3 bad address",
            "r002@example.org": ["451 4.3.0 greylisted"],
            "r003@example.org": "452 4.2.2 mailbox full",
            "r004@example.org": ["552 5.3.1 too many recipients"],
            "r005@example.org": ["421 4.3.2 shutting down"],
            "r006@example.org": "554 5.7.1 policy",
        },
        drop_after_dot={"r007@example.org"},
    )
    with FaultyMTA(faults) as mta:
        config = smtp_config(publication, mta, max_attempts=3)
        readers = add_readers(config, 12)
        report = send(config)
    got = by_recipient(mta)
    final = rows(config, "sent", "failed", "unknown", "deferred")
    state = {email: row.state for email, row in final.items()}
    assert state["r000@example.org"] == state["r001@example.org"] == "failed"
    assert (
        status_of(config, "r000@example.org") == status_of(config, "r001@example.org") == "bounced"
    )
    assert final["r000@example.org"].last_reply == "550 5.1.1 no such user"
    # 451 and 552-at-RCPT once: deferred, retried in this run, then sent.
    assert state["r002@example.org"] == state["r004@example.org"] == "sent"
    assert final["r002@example.org"].attempts == 2
    # 452 every time: deferred until max_attempts, then failed with a soft bounce only.
    assert state["r003@example.org"] == "failed"
    assert final["r003@example.org"].attempts == 3
    assert status_of(config, "r003@example.org") == "active"
    # 421: reconnect and retry the same reader.
    assert state["r005@example.org"] == "sent" and len(got["r005@example.org"]) == 1
    # Another 5xx at RCPT: failed, not bounced.
    assert state["r006@example.org"] == "failed"
    assert status_of(config, "r006@example.org") == "active"
    # Lost after the final ".": the server has it, we do not know: unknown, not re-sent.
    assert state["r007@example.org"] == "unknown" and len(got["r007@example.org"]) == 1
    failing = {f"r00{n}@example.org" for n in (0, 1, 3, 6)}
    for email, _ in readers:
        if email not in failing:
            assert len(got[email]) == 1, email  # the drops every 4 messages lost nobody
    assert report.counts["sent"] == len(readers) - 5
    assert report.complete and report.counts["unknown"] == 1  # reported, not guessed
    assert mta.connections > 3


def test_unknown_is_resent_with_the_same_message_id_only_when_asked(publication: Path) -> None:
    with FaultyMTA(Faults(drop_after_dot={"r001@example.org"})) as mta:
        config = smtp_config(publication, mta, connections=1)
        add_readers(config, 3)
        send(config)
        assert send(config).sent_now == 0
        assert len(by_recipient(mta)["r001@example.org"]) == 1
        report = send(config, resend_unknown=True)
    assert report.sent_now == 1 and report.complete
    first, second = by_recipient(mta)["r001@example.org"]
    assert first.message_id == second.message_id
    assert rows(config, "sent")["r001@example.org"].attempts == 2


@pytest.mark.parametrize(
    "faults",
    [
        Faults(data_reply="554 5.6.0 message refused"),
        Faults(mail_reply="553 5.7.1 sender not allowed"),
    ],
)
def test_a_5xx_at_mail_from_or_data_pauses_the_send_and_bounces_nobody(
    publication: Path, faults: Faults
) -> None:
    with FaultyMTA(faults) as mta:
        config = smtp_config(publication, mta)
        readers = add_readers(config, 5)
        report = send(config)
    reply = faults.data_reply or faults.mail_reply
    assert report.paused is not None and reply is not None and reply in report.paused
    assert mta.messages == []
    assert report.counts["pending"] == len(readers)
    assert report.counts["failed"] == report.counts["sent"] == 0
    with open_store(config) as store:
        assert store.subscribers.counts()["bounced"] == 0


def test_a_server_that_never_answers_pauses_after_max_reconnects(publication: Path) -> None:
    mta = FaultyMTA()  # never started
    config = smtp_config(publication, mta, max_reconnects=2)
    readers = add_readers(config, 2)
    report = send(config)
    assert report.paused is not None and "gave up after 3 attempts" in report.paused
    assert report.counts["pending"] == len(readers)


def test_a_failed_quit_still_counts_as_sent(publication: Path) -> None:
    with FaultyMTA(Faults(drop_at_quit=True)) as mta:
        config = smtp_config(publication, mta)
        readers = add_readers(config, 3)
        report = send(config)
    assert report.complete and report.counts["sent"] == len(readers) == len(mta.messages)


def test_an_unsubscribe_recorded_mid_send_is_honoured(publication: Path) -> None:
    with FaultyMTA() as mta:
        config = smtp_config(publication, mta, connections=1)
        readers = add_readers(config, 10)
        store = open_store(config)

        def unsubscribe_the_last_reader(event: delivery.Progress) -> None:
            last = store.subscribers.get_by_email(readers[-1][0])
            if event.done == 1 and last is not None:
                store.subscribers.unsubscribe(last, source="reply", detail="mid-send")

        report = send(config, on_progress=unsubscribe_the_last_reader)
        store.close()
    assert readers[-1][0] not in by_recipient(mta)
    assert report.counts["skipped"] == 1 and report.counts["sent"] == len(readers) - 1
    assert (
        rows(config, "skipped")[readers[-1][0]].last_reply == "reader unsubscribed before delivery"
    )


class FailingLog:
    """The real send log, except that storing a result fails once `ok` have been stored (disk
    full): a commit a message on PostgreSQL, a fold of the claim journal on SQLite."""

    def __init__(self, log: SendLog, ok: int) -> None:
        self.log, self.ok = log, ok

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)

    def spend(self, sent: int) -> None:
        if sent > self.ok:
            raise sqlite3.OperationalError("database or disk is full")
        self.ok -= sent

    def record_and_claim_many(self, items: list[Any]) -> list[bool]:
        self.spend(sum(item[1] == "sent" for item in items))
        return self.log.record_and_claim_many(items)

    def apply_journal(self, operations: list[Any], *, replay: bool = False) -> None:
        self.spend(sum(op[0] == "record" and op[3] == "sent" for op in operations))
        self.log.apply_journal(operations, replay=replay)


@pytest.fixture
def fold_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """The claim journal stored every message or so (SQLite): a store that fails mid-send
    fails at a message, as a commit a message would."""
    monkeypatch.setattr(journal, "FOLD_AFTER", 2)


@pytest.mark.usefixtures("fold_often")
def test_when_a_result_cannot_be_recorded_sending_stops(publication: Path) -> None:
    with FaultyMTA() as mta:
        config = smtp_config(publication, mta, connections=1)
        add_readers(config, 10)
        issues = load_issues(config, SAMPLE_TODAY)
        rendered, skeleton = delivery.prepare(config, find_issue(config, issues, SLUG), issues)
        with open_store(config) as store:
            report = delivery.run_send(
                config,
                FailingLog(store.sends, ok=3),  # type: ignore[arg-type]
                store.subscribers,
                rendered,
                skeleton,
                connect=lambda: open_transport_for(config),
            )
    assert report.paused is not None and "disk is full" in report.paused
    # The message whose result could not be stored went out: 3 stored, then 1 or 2 more
    # (the claim journal keeps the result of the last one a fold could not store).
    assert 4 <= len(mta.messages) <= 5 and report.counts["in_flight"] == 1
    after = send(config)  # the next run reports it unknown instead of guessing
    assert after.counts["unknown"] == 1 and after.counts["sent"] == len(mta.messages) - 1
    assert Counter(mta.recipients()).most_common(1)[0][1] == 1


def open_transport_for(config: Config) -> Any:
    from newsletter.mail.transport import open_transport

    return open_transport(config, slug=SLUG)


def test_redirect_to_sends_every_copy_to_one_address(publication: Path) -> None:
    with FaultyMTA() as mta:
        config = smtp_config(publication, mta, redirect_to="dev@example.net", verp=False)
        readers = add_readers(config, 2)
        send(config)
    assert Counter(mta.recipients()) == {"dev@example.net": len(readers)}
    assert {m.mail_from for m in mta.messages} == {"news-bounces@example.com"}
    assert {m.parse()["To"].addresses[0].addr_spec for m in mta.messages} == {
        email for email, _ in readers
    }


def test_a_second_send_of_the_same_issue_is_refused_while_one_runs(
    publication: Path, store_url: str | None
) -> None:
    config = load_config(publication)
    if store_url is not None:  # PostgreSQL: senders share a send, none waits for another
        add_readers(config, 3)
        with delivery.send_lock(config, SLUG):
            assert send(config).complete
        return
    with delivery.send_lock(config, SLUG):
        with pytest.raises(DeliveryError, match=r"another `newsletter send .*` is running \(pid"):
            send(config)
        # ...from another thread too (the lock is per open file, not per process).
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: _catch(errors, lambda: send(config)))
        thread.start()
        thread.join()
        assert isinstance(errors[0], DeliveryError)


def _catch(errors: list[BaseException], call: Any) -> None:
    try:
        call()
    except BaseException as exc:
        errors.append(exc)


def test_the_file_transport_writes_one_eml_per_reader_and_resumes(publication: Path) -> None:
    config = load_config(publication)
    readers = add_readers(config, 3)
    report = send(config)
    files = sorted((publication / "outbox" / SLUG).glob("*.eml"))
    assert report.complete and len(files) == len(readers)
    assert send(config).sent_now == 0
    assert sorted((publication / "outbox" / SLUG).glob("*.eml")) == files


def test_a_draft_is_refused(publication: Path) -> None:
    config = load_config(publication)
    issues = load_issues(config, SAMPLE_TODAY)
    draft = next(i for i in issues if i.status == "draft")
    with pytest.raises(DeliveryError) as err:
        delivery.send_issue(config, draft, issues)
    assert err.value.field == "status"
    with open_store(config) as store:
        assert store.sends.get_send(draft.slug) is None


def test_classify_covers_the_policy_table() -> None:
    from newsletter.mail.transport import Disconnected, Rejected

    def action(stage: Any, code: int | None) -> str:
        if code is None:
            return delivery.classify(Disconnected(stage, "lost")).action
        return delivery.classify(Rejected(stage, f"{code} x", code)).action

    assert action("rcpt", 421) == action("mail", 421) == action("dot", 421) == "retry"
    assert [action("rcpt", c) for c in (450, 451, 452, 552)] == ["deferred"] * 4
    assert [action("rcpt", c) for c in (550, 553)] == ["bounced"] * 2
    assert action("rcpt", 554) == "failed"
    assert action("mail", 550) == action("data", 554) == "pause"
    assert action("dot", 552) == action("dot", 554) == "refused"  # held; a run of them pauses
    assert action("dot", 451) == "deferred"
    assert action("mail", None) == action("data", None) == action("connect", None) == "retry"
    assert action("dot", None) == "unknown"
    assert action("auth", 535) == "pause"


def test_next_attempt_is_later_for_a_deferred_row(publication: Path) -> None:
    with FaultyMTA(Faults(rcpt_replies={"r000@example.org": "451 4.3.0 later"})) as mta:
        config = smtp_config(publication, mta, retry_delay=3600, retry_window=0)
        add_readers(config, 1)
        report = send(config)
    row = rows(config, "deferred")["r000@example.org"]
    assert row.next_attempt_at is not None and row.next_attempt_at > datetime.now(
        row.next_attempt_at.tzinfo
    )
    assert report.counts["deferred"] == 1 and not report.complete


def test_the_rate_limit_spaces_messages_evenly(monkeypatch: pytest.MonkeyPatch) -> None:
    """max_per_second: each message gets the next slot 1/rate after the previous one."""
    clock = [100.0]
    slept: list[float] = []
    monkeypatch.setattr(outgoing.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(outgoing.time, "sleep", slept.append)
    limiter = outgoing.RateLimit(4)
    for _ in range(3):
        limiter.wait()
    assert slept == [0.25, 0.5]  # the first goes at once; nobody waited meanwhile
    clock[0] += 10  # idle for a while: no burst credit beyond the next slot
    limiter.wait()
    assert slept == [0.25, 0.5]
    outgoing.RateLimit(0).wait()  # 0: no limit
    assert slept == [0.25, 0.5]


def test_an_unwritable_outbox_stops_the_send_and_loses_nobody(publication: Path) -> None:
    config = load_config(publication)
    readers = add_readers(config, 3)
    (publication / "outbox").mkdir()
    (publication / "outbox" / SLUG).write_text("a file where the issue's folder should be")
    report = send(config)
    assert report.paused is not None and "cannot write" in report.paused
    assert report.counts["pending"] == len(readers) and report.counts["in_flight"] == 0
    (publication / "outbox" / SLUG).unlink()
    assert send(config).counts["sent"] == len(readers)


def test_worker_processes_share_the_log_and_never_take_the_same_row(
    publication: Path, tmp_path: Path
) -> None:
    """Several connections run as forked processes, each with its own store and transport;
    the claims are transactions, so every reader is sent once."""
    from newsletter.delivery.workers import run_send_workers
    from newsletter.mail.transport import open_transport

    pids = tmp_path / "pids"

    def connect() -> Any:
        with pids.open("a") as out:
            out.write(f"{os.getpid()}\n")
        return open_transport(config, slug=SLUG)

    with FaultyMTA(Faults(delay=0.005)) as mta:
        config = smtp_config(publication, mta, connections=3)
        readers = add_readers(config, 40)
        issues = load_issues(config, SAMPLE_TODAY)
        rendered, skeleton = delivery.prepare(config, find_issue(config, issues, SLUG), issues)
        events: list[delivery.Progress] = []
        report = run_send_workers(
            config,
            lambda: open_store(config),
            rendered,
            skeleton,
            connect=connect,
            connections=3,
            on_progress=events.append,
        )
    workers = set(pids.read_text().split())
    assert len(workers) == 3 and str(os.getpid()) not in workers
    assert Counter(mta.recipients()) == {email: 1 for email, _ in readers}
    assert report.complete and report.sent_now == len(readers) == report.counts["sent"]
    assert sorted(e.email for e in events) == sorted(email for email, _ in readers)
    assert [e.done for e in events] == list(range(1, len(readers) + 1))  # one count, in order


def killing_a_worker(after: int, killed: list[int]) -> Any:
    """An on_progress that SIGKILLs one send worker process once `after` readers are done;
    its pid goes into `killed`."""
    import multiprocessing
    import signal

    def kill_a_worker(event: delivery.Progress) -> None:
        workers = [p for p in multiprocessing.active_children() if p.name.startswith("send-")]
        if event.done >= after and not killed and workers and workers[0].pid:
            killed.append(workers[0].pid)
            os.kill(workers[0].pid, signal.SIGKILL)

    return kill_a_worker


def test_a_killed_worker_stops_the_send_and_its_row_is_unknown_next_run(
    publication: Path,
) -> None:
    killed: list[int] = []
    kill_a_worker = killing_a_worker(10, killed)
    with FaultyMTA(Faults(delay=0.02)) as mta:
        config = smtp_config(publication, mta, connections=2)
        readers = add_readers(config, 60)
        report = send(config, on_progress=kill_a_worker)
        assert killed, "no worker was killed"
        assert report.paused == "a send worker died (signal 9); stopped"
        assert report.counts["in_flight"] <= 1  # the dead worker's; the other stopped cleanly
        assert report.counts["pending"] > 0 and not report.complete
        after = send(config, resend_unknown=True)
    assert after.unknown_before == report.counts["in_flight"]
    assert after.complete and after.counts["sent"] == len(readers)
    per_reader = Counter(mta.recipients())
    assert set(per_reader) == {email for email, _ in readers}
    assert sum(count - 1 for count in per_reader.values()) <= 1


@pytest.mark.usefixtures("fold_often")
def test_when_a_worker_cannot_record_a_result_the_whole_send_stops(publication: Path) -> None:
    from contextlib import contextmanager

    from newsletter.delivery.workers import run_send_workers

    @contextmanager
    def failing_log() -> Any:
        with open_store(config) as store:
            # each worker's copy fails on its 4th result
            store.sends = FailingLog(store.sends, ok=3)  # type: ignore[assignment]
            yield store

    with FaultyMTA(Faults(delay=0.01)) as mta:
        config = smtp_config(publication, mta, connections=2)
        readers = add_readers(config, 40)
        issues = load_issues(config, SAMPLE_TODAY)
        rendered, skeleton = delivery.prepare(config, find_issue(config, issues, SLUG), issues)
        report = run_send_workers(
            config,
            failing_log,
            rendered,
            skeleton,
            connect=lambda: open_transport_for(config),
            connections=2,
        )
        assert report.paused is not None and "disk is full" in report.paused
        assert len(mta.messages) <= 10  # each worker: 3 stored, then at most 2 more
        after = send(config)
    assert 1 <= after.unknown_before <= 2  # one message a connection at most
    assert after.counts["sent"] + after.counts["unknown"] == len(readers)
    assert after.counts["sent"] == len(mta.messages) - after.unknown_before
