"""Issue 13: a hostile mailbox. Machine mail never unsubscribes, a bounce or complaint changes
a reader only with proof, and a message that cannot be parsed is quarantined, not fatal.

Each message goes through a real Maildir or mbox (or an MTA pipe: a real `newsletter inbox -`
process) into a real store; the genuine controls still work beside the hostile ones.
"""

from __future__ import annotations

import mailbox
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from newsletter.config import load_config
from newsletter.links import bounce_address, unsubscribe_address
from newsletter.mail.message import message_id
from newsletter.store.store import open_store

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


def add_readers(root: Path, *emails: str) -> dict[str, str]:
    """Subscribe each address; returns address -> token."""
    config = load_config(root)
    tokens = {}
    with open_store(config) as store:
        for email in emails:
            added = store.subscribers.add(email, source="test", consent="issue 13 test")
            assert added.subscriber is not None
            tokens[email] = added.subscriber.token
    return tokens


def statuses(root: Path, *emails: str) -> dict[str, str]:
    with open_store(load_config(root)) as store:
        found = {email: store.subscribers.get_by_email(email) for email in emails}
    return {email: (r.status if r else "missing") for email, r in found.items()}


def mail(headers: dict[str, str], body: str = "") -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n").encode()


def dsn(to: str, failed: str, returned: str = "") -> bytes:
    """An RFC 3464 hard bounce to `to` naming `failed`, with `returned` headers of ours."""
    boundary = "b0undary"
    parts = [
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n<{failed}>: 550 5.1.1 User unknown\r\n",
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; {failed}\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n",
    ]
    if returned:
        parts.append(f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n")
    return (
        f"Return-Path: <>\r\nDelivered-To: {to}\r\nTo: {to}\r\n"
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n" + "".join(parts) + f"--{boundary}--\r\n"
    ).encode()


def arf(to: str, complainer: str, original: str = "") -> bytes:
    boundary = "arfb0undary"
    return (
        f"Delivered-To: {to}\r\nTo: {to}\r\nFrom: abuse@isp.example.net\r\n"
        "Subject: Abuse report\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\r\n'
        f"\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n"
        f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: abuse\r\nUser-Agent: test/1.0\r\nVersion: 1\r\n"
        f"Original-Rcpt-To: {complainer}\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"{original or 'From: someone@example.org'}\r\nTo: {complainer}\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def into_maildir(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.Maildir(path)
    for data in messages:
        box.add(data)  # bytes as they are: MaildirMessage() would parse them
    box.close()
    return path


READERS = [f"r{n}@example.org" for n in range(12)]


def test_machine_mail_and_forged_reports_change_nobody(publication: Path, tmp_path: Path) -> None:
    tokens = add_readers(publication, *READERS)
    config = load_config(publication)
    unsub = {e: unsubscribe_address(config, t) for e, t in tokens.items()}
    bounce = {e: bounce_address(config, t) for e, t in tokens.items()}
    r = READERS
    hostile = [
        # 0. a helpdesk acknowledgement quoting the mailto's Subject, no RFC 3834 header
        mail(
            {"From": "support@helpdesk.example.net", "To": unsub[r[0]],
             "Subject": "[Ticket #48213] unsubscribe"},
            "We have received your request and will get back to you.",
        ),
        # 1. a vacation reply without RFC 3834 headers, to the envelope sender
        mail(
            {"From": r[1], "To": bounce[r[1]], "Subject": "unsubscribe"},
            "I am away until Monday. Please unsubscribe me from nothing.",
        ),
        # 2. a vacation reply repeating an issue title that says "unsubscribe"
        mail(
            {"From": r[2], "To": unsub[r[2]], "Subject": "Re: Why readers unsubscribe"},
            "I am on leave until 3 January with no access to email.",
        ),
        # 3. a challenge-response filter
        mail(
            {"From": "guard@filter.example.net", "To": unsub[r[3]],
             "Subject": "Please verify your message to r3@example.org: unsubscribe"},
            "Click the link to confirm you are human.",
        ),
        # 4. a relay notice nobody can read, from the mail system, to the bounce address
        mail(
            {"From": "MAILER-DAEMON@relay.example.net", "To": bounce[r[4]],
             "Subject": "unsubscribe"},
            "\x00\x01 garbled",
        ),
        # 5. a forged DSN to the bare address naming a reader
        dsn("news@example.com", r[5]),
        # 6. a forged ARF report to the bare address naming a reader
        arf("news@example.com", r[6]),
        # 7. free-text "Final-Recipient" in a stranger's mail
        mail(
            {"From": "stranger@example.net", "To": "news@example.com",
             "Subject": "Delivery Status Notification (Failure)"},
            f"Final-Recipient: rfc822; {r[7]}\nAction: failed\nStatus: 5.1.1\n"
            f"550 5.1.1 <{r[7]}> user unknown",
        ),
        # 8. a DSN at a reader's *unsubscribe* address carrying nothing of ours
        dsn(unsub[r[8]], r[8]),
        # 9. a vacation responder echoing our Subject without "Re:" (name and title)
        mail(
            {"From": r[9], "To": unsub[r[9]],
             "Subject": "Leader Notes #4: Why readers unsubscribe"},
            "I am out until Monday.",
        ),
        # 10. ... or just the title, which says "unsubscribe"
        mail(
            {"From": r[10], "To": unsub[r[10]], "Subject": "Why readers unsubscribe"},
            "I am out until Monday.",
        ),
    ]  # fmt: skip
    (publication / "content" / "why-readers-unsubscribe.md").write_text(
        "---\ntitle: Why readers unsubscribe\ndate: 2027-03-02\nstatus: draft\n---\nBody.\n"
    )
    box = into_maildir(tmp_path / "Maildir", hostile)
    result = run_cli(publication, "inbox", "--maildir", str(box), "-v")
    assert result.code == 0, result.stderr
    assert set(statuses(publication, *r[:11]).values()) == {"active"}, result.stdout
    assert not list((publication / "outbox").glob("unsubscribe-confirmations/*.eml"))
    review = run_cli(publication, "inbox", "--review")
    assert review.code == 0
    # the forged and unreadable reports are listed with the reason
    assert review.stdout.count("kept for review") >= 5, review.stdout
    assert "no proof it is our mail (names r5@example.org)" in review.stdout
    assert "no proof it is our mail (names r6@example.org)" in review.stdout
    assert "unreadable mail at the bounce address" in review.stdout


def test_the_genuine_controls_still_take_effect(publication: Path, tmp_path: Path) -> None:
    tokens = add_readers(publication, *READERS)
    config = load_config(publication)
    r = READERS
    own_msgid = message_id(config, "2026-07-issue", tokens[r[3]])
    genuine = [
        # Gmail's / Apple's / Outlook's List-Unsubscribe mailto button
        mail({"From": r[0], "To": unsubscribe_address(config, tokens[r[0]]),
              "Subject": "unsubscribe"}),
        # a reader's own words, replying to the publication address
        mail({"From": r[1], "To": "news@example.com", "Subject": "Re: Leader Notes",
              "In-Reply-To": "<x@example.com>"}, "Please remove me from this list.\n"),
        # a real DSN at the reader's bounce address (VERP)
        dsn(bounce_address(config, tokens[r[2]]), "someone-else@example.org"),
        # a DSN at the bare address that returns our headers (our Message-ID for the reader)
        dsn("news@example.com", r[3], returned=f"Message-ID: {own_msgid}\r\nSubject: x"),
        # an ARF report at the reader's bounce address
        arf(bounce_address(config, tokens[r[4]]), r[4]),
        # an old-style `news+TOKEN` address from an issue sent before the split still works
        mail({"From": r[5], "To": f"news+{tokens[r[5]]}@example.com", "Subject": "Unsubscribe"}),
    ]  # fmt: skip
    path = tmp_path / "replies.mbox"
    box = mailbox.mbox(path)
    for data in genuine:
        box.add(mailbox.mboxMessage(data))
    box.close()
    result = run_cli(publication, "inbox", "--mbox", str(path))
    assert result.code == 0, result.stderr
    assert statuses(publication, *r[:6]) == {
        r[0]: "unsubscribed",
        r[1]: "unsubscribed",
        r[2]: "bounced",
        r[3]: "bounced",
        r[4]: "complained",
        r[5]: "unsubscribed",
    }


def test_mta_pipe_recipient_is_the_proof(publication: Path) -> None:
    """`inbox - --recipient ADDR` (Postfix's ${original_recipient}) in a real process: the same
    bare-addressed DSN is kept for review without it and bounces the reader with it."""
    tokens = add_readers(publication, "xia@example.org")
    config = load_config(publication)
    data = dsn("news-bounces@example.com", "xia@example.org")

    def pipe(*extra: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [NEWSLETTER, "--root", str(publication), "inbox", "-", *extra],
            input=data,
            capture_output=True,
            timeout=120,
            check=False,
        )

    bare = pipe()
    assert bare.returncode == 0, bare.stderr
    assert statuses(publication, "xia@example.org") == {"xia@example.org": "active"}
    # the MTA re-delivers it with its envelope recipient: a new delivery, processed once
    data = b"X-Redelivered: 1\r\n" + data
    proven = pipe("--recipient", bounce_address(config, tokens["xia@example.org"]))
    assert proven.returncode == 0, proven.stderr
    assert statuses(publication, "xia@example.org") == {"xia@example.org": "bounced"}
    wrong = pipe("--recipient", "x\r\ny@example.org")
    assert wrong.returncode == 2 and b"Traceback" not in wrong.stderr


def nested(depth: int) -> bytes:
    head = b"From: a@example.net\r\nTo: news@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
    opens = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
        for n in range(depth)
    )
    closes = b"".join(b"\r\n--b%d--\r\n" % n for n in reversed(range(depth)))
    return head + opens + b"Content-Type: text/plain\r\n\r\nhello\r\n" + closes


@pytest.mark.parametrize("source", ["maildir", "mbox"])
def test_an_unparseable_message_is_quarantined_and_the_rest_applied(
    publication: Path, tmp_path: Path, source: str
) -> None:
    tokens = add_readers(publication, "before@example.org", "after@example.org")
    config = load_config(publication)
    ask = [
        mail({"From": e, "To": unsubscribe_address(config, tokens[e]), "Subject": "unsubscribe"})
        for e in ("before@example.org", "after@example.org")
    ]
    messages = [ask[0], nested(1000), ask[1]]
    if source == "maildir":
        where = into_maildir(tmp_path / "Maildir", messages)
        args = ["--maildir", str(where)]
    else:
        where = tmp_path / "in.mbox"
        box = mailbox.mbox(where)
        for data in messages:
            box.add(data)
        box.close()
        args = ["--mbox", str(where)]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [NEWSLETTER, "--root", str(publication), "inbox", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = run()
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    assert "quarantined 1" in first.stdout
    assert "1 message(s) could not be read" in first.stderr
    assert statuses(publication, "before@example.org", "after@example.org") == {
        "before@example.org": "unsubscribed",
        "after@example.org": "unsubscribed",
    }
    review = run_cli(publication, "inbox", "--review")
    assert "quarantined: too deeply nested (1000 multipart parts; at most 64)" in review.stdout
    if source == "maildir":
        # moved aside into the Maildir++ folder .Quarantine; nothing left unprocessed
        assert not list((where / "new").iterdir())
        assert len(mailbox.Maildir(where).get_folder("Quarantine")) == 1
    second = run()  # mbox: recorded by digest, so skipped unread
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Traceback" not in second.stderr


def test_an_unparseable_message_on_the_mta_pipe_exits_1_once_then_is_skipped(
    publication: Path,
) -> None:
    def pipe() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [NEWSLETTER, "--root", str(publication), "inbox", "-"],
            input=nested(1000).decode(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = pipe()
    assert first.returncode == 1 and "Traceback" not in first.stderr
    assert "quarantined 1" in first.stdout
    again = pipe()  # recorded by digest: skipped unread, nothing to set aside
    assert again.returncode == 0, again.stderr
    assert "already processed 1" in again.stdout
