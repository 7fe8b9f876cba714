"""Load: 500 one-click POSTs from 20 concurrent clients while a real send runs.

The send (newsletter.delivery.send.send_issue, 2 SMTP connections to a real aiosmtpd) and the web
server (waitress, 8 threads) write the same SQLite database through separate connections.
The MTA holds the send after its 100th message until half the POSTs are done, so the POSTs
meet a send that is certainly under way, and the second half races it row by row.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import SAMPLE_TODAY

from newsletter.config import load_config
from newsletter.content.issues import load_issues
from newsletter.delivery.send import SendReport, send_issue
from newsletter.settings import Config, SmtpConfig, WebConfig
from newsletter.store.addresses import normalise_address
from newsletter.store.csvio import ImportRow
from newsletter.store.store import open_store
from newsletter.web.app import WebApp

READERS = 1500
TARGETS = 500
CLIENTS = 20
GATE_AT = 100
CONNECTIONS = 2


class GatedMTA:
    """aiosmtpd handler: records (arrival time, recipient); holds every session after the
    `GATE_AT`th message until `release` is set."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.reached = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            count = len(self.arrivals)
        if count >= GATE_AT and not self.release.is_set():
            self.reached.set()
            await asyncio.to_thread(self.release.wait, 120)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.arrivals.append((time.monotonic(), rcpt.lower()))
        return "250 2.0.0 queued"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_click(url: str) -> int:
    request = urllib.request.Request(
        url,
        data=b"List-Unsubscribe=One-Click",
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.timeout(240)
def test_500_one_click_posts_from_20_clients_during_a_send(publication: Path) -> None:
    from newsletter.cli.web import ServerThread

    handler = GatedMTA()
    mta = Controller(handler, hostname="127.0.0.1", port=free_port())
    web_port = free_port()
    base = load_config(publication)
    config: Config = replace(
        base,
        web=WebConfig(public_url=f"http://127.0.0.1:{web_port}/"),
        delivery=replace(
            base.delivery,
            transport="smtp",
            smtp=SmtpConfig(host="127.0.0.1", port=mta.port, connections=CONNECTIONS, timeout=120),
        ),
    )
    with open_store(config) as store:
        rows = (
            ImportRow(n, normalise_address(f"reader{n:05d}@example.org"), None)
            for n in range(1, READERS + 1)
        )
        store.imports.import_subscribers(rows, source="load test", consent="test")
        readers = list(store.subscribers.iter_active())
    # Every other reader after the gate, POSTed in reverse order: the send climbs the list
    # while the clients come down it, so the two meet mid-way.
    targets = readers[GATE_AT + 1 :: 2][:TARGETS][::-1]
    assert len(targets) == TARGETS
    issues = load_issues(config, SAMPLE_TODAY)
    issue = next(i for i in issues if i.status == "ready")
    later_issue = next(i for i in issues if i.status == "ready" and i.slug != issue.slug)

    mta.start()
    web_store = open_store(config)
    app = WebApp(config, web_store.subscribers, web_store.signups, secret=b"s" * 40)
    server = ServerThread(app, port=web_port).start()
    reports: list[SendReport] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            reports.append(send_issue(config, issue, issues))
        except BaseException as exc:  # reported by the assertions below
            errors.append(exc)

    sender = threading.Thread(target=send)
    try:
        sender.start()
        while not handler.reached.wait(0.1):
            assert sender.is_alive(), f"the send ended before the gate: {errors or reports}"
        done_at: dict[str, float] = {}
        statuses: list[int] = []
        lock = threading.Lock()

        def post(reader_token: str, email: str) -> None:
            code = one_click(f"{server.url}unsubscribe/{reader_token}")
            with lock:
                statuses.append(code)
                done_at[email] = time.monotonic()
                if len(statuses) == TARGETS // 2:
                    handler.release.set()

        with ThreadPoolExecutor(CLIENTS) as pool:
            for reader in targets:
                pool.submit(post, reader.token, reader.email.lower())
        handler.release.set()
        sender.join(180)
        assert not sender.is_alive()
    finally:
        handler.release.set()
        server.stop()
        app.close()
        web_store.close()

    assert errors == []
    assert statuses == [200] * TARGETS  # a database error would be a 503 or 500
    [report] = reports
    assert not report.paused
    counts = report.counts
    assert counts["failed"] == counts["unknown"] == counts["in_flight"] == counts["pending"] == 0
    assert counts["sent"] + counts["skipped"] == READERS

    arrivals: dict[str, list[float]] = {}
    for at, rcpt in handler.arrivals:
        arrivals.setdefault(rcpt, []).append(at)
    with open_store(config) as store:
        assert store.db.one("PRAGMA integrity_check") == "ok"
        send_record = store.sends.get_send(issue.slug)
        assert send_record is not None
        states = {
            row.email.lower(): row.state
            for state in ("sent", "skipped")
            for row in store.sends.deliveries_in_state(send_record.id, (state,))
        }
        for reader in targets:
            current = store.subscribers.get(reader.id)
            assert current is not None and current.status == "unsubscribed"
            unsubscribed = [e for e in store.events.events(current) if e[1] == "unsubscribed"]
            assert len(unsubscribed) == 1 and unsubscribed[0][2] == "link"
    target_emails = {reader.email.lower() for reader in targets}
    skipped = [e for e in target_emails if states[e] == "skipped"]
    sent = [e for e in target_emails if states[e] == "sent"]
    assert all(e not in arrivals for e in skipped)
    assert all(len(arrivals.get(e, [])) == 1 for e in sent)
    # A message may arrive after the reader's POST returned only if it was already in flight
    # (claimed before the unsubscribe committed): at most one per connection at the crossing.
    late = [e for e in sent if arrivals[e][0] > done_at[e]]
    assert len(late) <= CONNECTIONS, late
    assert len(skipped) >= TARGETS // 2  # the first half was POSTed while the send was held
    print(f"\nload: {len(skipped)} skipped, {len(sent)} sent before their POST, {len(late)} late")

    # And no later send reaches them.
    before = len(handler.arrivals)
    later = send_issue(config, later_issue, issues)
    assert later.counts["sent"] == READERS - TARGETS
    received_later = {rcpt for _, rcpt in handler.arrivals[before:]}
    assert received_later.isdisjoint(target_emails)
    assert len(received_later) == READERS - TARGETS
    mta.stop()
    with sqlite3.connect(config.subscribers_dir / "subscribers.db") as db:
        assert db.execute(
            "SELECT count(*) FROM subscribers WHERE status = 'active'"
        ).fetchone() == (READERS - TARGETS,)
