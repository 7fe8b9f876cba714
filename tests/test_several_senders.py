"""Several `newsletter send` processes share one send on PostgreSQL (issue 17): each claims
its own readers, and when one is killed the others take over what it had reserved and settle
what it had in flight, so every reader gets the issue, at most one per killed connection
being `unknown` (sent or not, no one can tell) or a duplicate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_cli
from pgserver import PostgresServer
from test_send_cli import NEWSLETTER, SLUG, add_readers, smtp_env

from newsletter.config import load_config
from newsletter.store.store import open_store
from newsletter.testing.mta import Faults, FaultyMTA

SENDERS = 3
READERS = 240
DEADLINE = 180.0  # seconds for the whole send on a loaded 2-core machine


def test_three_senders_one_killed_every_reader_served_once(
    publication: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL only: on SQLite one sender per issue holds the send lock (test_delivery).
    monkeypatch.setenv("NEWSLETTER_STORE", postgres_server.new_database("several_senders"))
    emails = add_readers(publication, READERS)
    with FaultyMTA(Faults(delay=0.02)) as mta:
        env = {**os.environ, **{k: v for k, v in smtp_env(mta, 1).items() if v is not None}}
        command = [NEWSLETTER, "--root", str(publication), "send", SLUG]
        senders = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(SENDERS)
        ]
        try:
            deadline = time.monotonic() + DEADLINE
            while len(mta.messages) < READERS // 4:
                assert time.monotonic() < deadline, "the send never got going"
                ended = [s for s in senders if s.poll() is not None]
                assert not ended, [s.communicate()[1][-2000:] for s in ended]
                time.sleep(0.01)
            victim = senders[1]
            victim.send_signal(signal.SIGKILL)
            outputs = [
                s.communicate(timeout=max(1.0, deadline - time.monotonic())) for s in senders
            ]
        finally:
            for s in senders:
                s.kill()
        codes = [s.returncode for s in senders]
        assert codes[1] == -signal.SIGKILL
        for index in (0, 2):
            assert b"Traceback" not in outputs[index][1], outputs[index][1]
            assert codes[index] in (0, 1), outputs[index][1]
    with open_store(load_config(publication)) as store:
        record = store.sends.get_send(SLUG)
        assert record is not None
        counts = store.sends.delivery_counts(record.id)
        unknown = {row.email for row in store.sends.deliveries_in_state(record.id, ("unknown",))}
        senders_seen = store.db.one("SELECT count(DISTINCT sender_id) FROM deliveries")
    received = Counter(mta.recipients())
    # The work was shared, not done by one (each takes its rows 200 at a time, so with this
    # few readers the third may find none left).
    assert senders_seen >= 2
    assert counts["in_flight"] == counts["pending"] == 0, counts
    assert counts["sent"] + counts["unknown"] == READERS, counts
    assert len(unknown) <= 1  # the killed connection's message on the wire, if any
    assert set(emails) - set(received) <= unknown
    duplicates = sum(n - 1 for n in received.values())
    assert duplicates <= 1, received.most_common(3)
    # `status` names each sender with its rows; together they account for every reader.
    shown = run_cli(publication, "status", SLUG, "--json")
    assert shown.code == 0, shown.stderr
    senders = json.loads(shown.stdout)[0]["senders"]
    assert len(senders) == SENDERS and not any(s["running"] for s in senders)
    assert sum(sum(s["counts"].values()) for s in senders) == READERS
    text = run_cli(publication, "status", SLUG).stdout
    assert text.count(" sender ") == SENDERS and "gone" in text
