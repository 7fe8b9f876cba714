"""Issue 13: Ctrl-C or SIGTERM to a one-connection send (a real `newsletter send` process)
finishes the message on the wire, records it and exits 130/143 with nothing in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from test_send_cli import NEWSLETTER, SLUG, add_readers, smtp_env

from newsletter.config import load_config
from newsletter.store.store import open_store
from newsletter.testing.mta import Faults, FaultyMTA


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_one_connection_stops_with_nothing_in_flight(publication: Path, signum: int) -> None:
    emails = add_readers(publication, 60)
    # a slow server: the signal lands while a message is on the wire
    with FaultyMTA(Faults(delay=0.05)) as mta:
        env = {**os.environ, **{k: v for k, v in smtp_env(mta, 1).items() if v is not None}}
        command = [NEWSLETTER, "--root", str(publication), "send", SLUG]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while len(mta.messages) < 5 and process.poll() is None:
                assert time.monotonic() < deadline, "the send never started"
                time.sleep(0.01)
            process.send_signal(signum)
            _, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
        assert process.returncode == 128 + signum, stderr
        assert b"interrupted: `newsletter send" in stderr and b"Traceback" not in stderr
        with open_store(load_config(publication)) as store:
            record = store.sends.get_send(SLUG)
            assert record is not None
            counts = store.sends.delivery_counts(record.id)
        assert counts["in_flight"] == counts["unknown"] == 0, counts
        assert counts["sent"] == len(mta.messages) and 5 <= counts["sent"] < len(emails)
        # no --resend-unknown needed: every reader gets exactly one copy
        resumed = subprocess.run(command, env=env, capture_output=True, timeout=120, check=False)
        assert resumed.returncode == 0, resumed.stderr
    assert Counter(mta.recipients()) == dict.fromkeys(emails, 1)
