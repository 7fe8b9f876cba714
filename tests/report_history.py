"""A year of a small list's history, made by the store's and the inbox's own code.

Twelve monthly issues in 2031 (sent on the 6th at 09:00 UTC, ten minutes each); an import at
launch and one in July; a web sign-up every month; unsubscribes by reply, mailto button,
one-click link (one undone) and admin; a hard bounce, three soft bounces that add up, a
complaint; feedback replies, one answering an older issue, one from a stranger. Replies,
bounces and complaints are real messages put through newsletter.inbox.processor's Processor, quoting
our Message-IDs as mail clients and servers do.

The store stamps what it records with its own clock (`newsletter.store.database.utcnow`);
`StoreClock` moves that clock through the year, so nothing here reads the real one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.inbox.processor import Processor
from newsletter.mail.message import message_id
from newsletter.settings import Config
from newsletter.store import database
from newsletter.store.addresses import normalise_address
from newsletter.store.csvio import ImportRow
from newsletter.store.records import Subscriber
from newsletter.store.store import Store, open_store

UTC = dt.UTC
AS_OF = dt.datetime(2031, 12, 20, 12, 0, tzinfo=UTC)


def slug(month: int) -> str:
    return f"2031-{month:02d}-issue"


class StoreClock:
    """The store's notion of now, moved by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: dt.datetime) -> None:
        self.moment = start
        monkeypatch.setattr(database, "utcnow", lambda: self.moment)

    def at(self, moment: dt.datetime) -> None:
        self.moment = moment


class History:
    def __init__(self, config: Config, store: Store, clock: StoreClock) -> None:
        self.config, self.store, self.clock = config, store, clock
        self.inbox = Processor(config, store)

    def reader(self, email: str) -> Subscriber:
        found = self.store.subscribers.get_by_email(email)
        assert found is not None, email
        return found

    def import_rows(self, when: dt.datetime, name: str, rows: list[tuple[str, str]]) -> None:
        self.clock.at(when)
        self.store.imports.import_subscribers(
            [
                ImportRow(n, normalise_address(email), None, status)  # type: ignore[arg-type]
                for n, (email, status) in enumerate(rows, start=2)
            ],
            source=f"import {name}",
        )

    def web_signup(self, when: dt.datetime, email: str) -> None:
        self.clock.at(when)
        hashed = f"hash-{email}"
        self.store.signups.add_signup(
            email, None, token_hash=hashed, client_ip="192.0.2.1", expires_at=when + dt.timedelta(1)
        )
        self.clock.at(when + dt.timedelta(minutes=5))
        assert self.store.signups.confirm_signup(hashed, client_ip="192.0.2.1") is not None

    def send(self, month: int, odd: dict[str, str]) -> None:
        """Issue `month` to every active reader; `odd`: address -> a state other than sent."""
        start = dt.datetime(2031, month, 6, 9, 0, tzinfo=UTC)
        self.clock.at(start)
        record = self.store.sends.start_send(slug(month))
        for row in self.store.sends.next_deliveries(record.id, 1000, now=start):
            self.store.sends.mark_in_flight(row.id, message_id(self.config, slug(month), row.token))
            state = odd.get(row.email, "sent")
            later = start + dt.timedelta(days=30) if state == "deferred" else None
            self.store.sends.record_delivery(row.id, state, reply="250 ok", next_attempt_at=later)  # type: ignore[arg-type]
        self.clock.at(start + dt.timedelta(minutes=10))
        self.store.sends.finish_send(record.id)

    def mail(self, when: dt.datetime, message: EmailMessage | bytes) -> str:
        self.clock.at(when)
        data = message if isinstance(message, bytes) else message.as_bytes(policy=SMTP)
        return self.inbox.process(data).action

    def ours(self, month: int, email: str) -> str:
        return message_id(self.config, slug(month), self.reader(email).token)


def reply(history: History, email: str, month: int | None, text: str, n: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = email
    message["To"] = "news@example.com"
    message["Subject"] = "Re: Leader Notes"
    message["Message-ID"] = f"<reply.{n}@reader.example>"
    if month is not None:
        message["In-Reply-To"] = history.ours(month, email)
    message.set_content(
        text + "\n\nOn Tue, 6 May 2031 at 09:00, Leader Notes <news@example.com> wrote:\n"
        "> quoted issue text\n> To unsubscribe, reply.\n"
    )
    return message


def mailto_button(history: History, email: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = email
    message["To"] = f"news+{history.reader(email).token}@example.com"
    message["Subject"] = "unsubscribe"
    message["Message-ID"] = f"<button.{email.split('@')[0]}@reader.example>"
    message.set_content("This message was sent by the unsubscribe button.\n")
    return message


def dsn(history: History, email: str, month: int, hard: bool) -> bytes:
    """A Postfix-style RFC 3464 report to the reader's +token address, quoting our headers."""
    token = history.reader(email).token
    status, action, said = ("5.1.1", "failed", "550 5.1.1 user unknown") if hard else (
        "4.2.2", "delayed", "452 4.2.2 mailbox full")  # fmt: skip
    return f"""Return-Path: <>
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: news+{token}@example.com
Subject: {"Undelivered Mail Returned to Sender" if hard else "Delayed Mail (still being retried)"}
Message-ID: <dsn.{month}.{email.split("@")[0]}@mx.example.net>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain; charset=us-ascii

<{email}>: host mx.example.org said: {said}

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {email}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {said}

--B
Content-Type: text/rfc822-headers

Return-Path: <news+{token}@example.com>
Message-ID: {history.ours(month, email)}
From: Leader Notes <news@example.com>
To: {email}
Subject: Leader Notes

--B--
""".replace("\n", "\r\n").encode()


def complaint(history: History, email: str, month: int) -> bytes:
    """An ARF (RFC 5965) abuse report enclosing our message's headers."""
    token = history.reader(email).token
    return f"""From: Feedback Loop <fbl@fbl.example.net>
To: news@example.com
Subject: Complaint about message
Message-ID: <fbl.{month}.{email.split("@")[0]}@fbl.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain; charset=us-ascii

A user of this mailbox provider marked the message as spam.

--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <news+{token}@example.com>

--F
Content-Type: message/rfc822

Return-Path: <news+{token}@example.com>
Message-ID: {history.ours(month, email)}
From: Leader Notes <news@example.com>
To: redacted@example.org
Subject: Leader Notes
List-Unsubscribe: <mailto:news+{token}@example.com?subject=unsubscribe>

Hello

--F--
""".replace("\n", "\r\n").encode()


def on(month: int, day: int, hour: int = 10, minute: int = 0, year: int = 2031) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def make_year(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write the year into the publication at `root` (see the module docstring)."""
    config = load_config(root, environ={})
    clock = StoreClock(monkeypatch, on(12, 10, year=2030))
    with open_store(config) as store:
        h = History(config, store, clock)
        plan: list[tuple[dt.datetime, Callable[[], object]]] = []

        def at(moment: dt.datetime, action: Callable[[], object]) -> None:
            plan.append((moment, action))

        def expect(
            moment: dt.datetime, message: Callable[[], EmailMessage | bytes], action: str
        ) -> None:
            def run() -> None:
                done = h.mail(moment, message())
                assert done == action, (moment, done)

            at(moment, run)

        def leave(moment: dt.datetime, email: str, source: str) -> None:
            def run() -> None:
                clock.at(moment)
                assert store.subscribers.unsubscribe(h.reader(email), source=source, detail=source)

            at(moment, run)

        launch = [(f"r{n}@example.org", "active") for n in range(10)]
        opening = on(12, 10, year=2030)
        at(opening, lambda: h.import_rows(opening, "launch.csv", launch))
        leave(on(12, 20, year=2030), "r9@example.org", "command")  # before the first issue
        summer = [("s1@example.org", "active"), ("s2@example.org", "active"),
                  ("s3@example.org", "active"), ("gone@example.org", "unsubscribed")]  # fmt: skip
        at(on(7, 15), lambda: h.import_rows(on(7, 15), "summer.csv", summer))
        odd = {2: {"r8@example.org": "deferred"}, 3: {"r7@example.org": "unknown"},
               4: {"r6@example.org": "failed"}}  # fmt: skip
        for month in range(1, 13):
            at(on(month, 2, 12), lambda m=month: h.web_signup(on(m, 2, 12), f"w{m}@example.org"))
            at(on(month, 6, 9), lambda m=month: h.send(m, odd.get(m, {})))
        for month in (6, 7, 8):  # the third soft bounce in a row suppresses the reader
            outcome = "bounced" if month == 8 else "soft bounce"
            expect(on(month, 7), lambda m=month: dsn(h, "w2@example.org", m, False), outcome)
        leaving = "Please unsubscribe me, thank you."
        expect(on(1, 7), lambda: reply(h, "r1@example.org", 1, leaving, 1), "unsubscribed")
        kept = "kept for the editor"
        expect(on(1, 8), lambda: reply(h, "r5@example.org", 1, "Loved the hiring piece.", 2), kept)
        expect(on(2, 8), lambda: mailto_button(h, "r2@example.org"), "unsubscribed")
        leave(on(3, 9), "r3@example.org", "link")
        leave(on(4, 10), "r4@example.org", "command")
        later = "Back to February's issue: more on onboarding, please."
        expect(on(5, 7), lambda: reply(h, "r5@example.org", 2, later, 3), kept)  # issue 2
        expect(on(5, 7, 11), lambda: dsn(h, "w1@example.org", 5, True), "bounced")

        def stranger() -> EmailMessage:
            message = reply(h, "r0@example.org", None, "Who writes this? Great stuff.", 4)
            message.replace_header("From", "stranger@elsewhere.example.net")
            return message

        expect(on(6, 10), stranger, kept + " (unknown sender)")
        expect(on(9, 8), lambda: complaint(h, "w3@example.org", 9), "complained")
        leave(on(10, 7, 12), "w4@example.org", "link")

        def undo() -> None:
            clock.at(on(10, 7, 12, 5))
            assert store.subscribers.undo_unsubscribe(
                h.reader("w4@example.org"), since=on(10, 7, 11, 55), detail="undo"
            )

        at(on(10, 7, 12, 5), undo)
        at(on(10, 20), lambda: h.web_signup(on(10, 20), "late@example.org"))
        leave(on(10, 25), "late@example.org", "link")  # never sent an issue: by time
        expect(on(11, 7), lambda: reply(h, "w5@example.org", 11, "Unsubscribe", 5), "unsubscribed")
        for n, who in enumerate(("w6@example.org", "w7@example.org")):
            words = f"Reader {n}: write about remote teams next."
            expect(on(12, 7, 10 + n), lambda w=who, t=words, k=n: reply(h, w, 12, t, 6 + k), kept)
        for _, action in sorted(plan, key=lambda step: step[0]):
            action()
