"""Classification of every message in tests/corpus against its manifest, plus edge rules."""

from __future__ import annotations

import csv
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.inbox.classify import classify, sender_unverified, unsubscribe_request

CORPUS = Path(__file__).resolve().parent / "corpus"
OURS = ("news@example.com",)


def manifest() -> list[dict[str, str]]:
    with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def load(name: str) -> EmailMessage:
    msg = message_from_bytes((CORPUS / name).read_bytes(), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_corpus_is_large_enough_and_every_file_is_listed() -> None:
    rows = manifest()
    assert len(rows) >= 30
    assert sorted(r["file"] for r in rows) == sorted(p.name for p in CORPUS.glob("*.eml"))


@pytest.mark.parametrize("row", manifest(), ids=lambda r: r["file"])
def test_corpus_message_classification(row: dict[str, str]) -> None:
    result = classify(load(row["file"]), OURS)
    assert result.kind == row["kind"], result.reason
    if row["hard"] != "-":
        assert result.hard is (row["hard"] == "true")
    if row["kind"] in ("unsubscribe", "feedback"):
        # only the reader's words: no quoted lines, no quote header, no footer of ours
        assert not any(line.startswith(">") for line in result.own_text.splitlines())
        assert "news+" not in result.own_text and "wrote:" not in result.own_text
        assert "a écrit" not in result.own_text and "Leader Notes <" not in result.own_text
    if row["kind"] in ("bounce", "complaint") and row["reader"] != "-":
        # the reader is named by the +token, or by the failed address itself
        assert result.token == row["token"] or result.recipient == row["reader"]


def test_quoted_footer_is_not_an_unsubscribe_but_own_words_are() -> None:
    thanks = classify(load("02-gmail-thanks-quoted-footer.eml"), OURS)
    assert thanks.kind == "feedback"
    assert thanks.own_text.startswith("Great issue, thanks!")
    assert "unsubscribe" not in thanks.own_text.lower()


def test_auto_replies_are_checked_after_bounces() -> None:
    bounce = classify(load("24-postfix-dsn-hard-verp.eml"), OURS)  # carries Auto-Submitted
    assert (bounce.kind, bounce.hard, bounce.status) == ("bounce", True, "5.1.1")
    assert bounce.token == "t24xia"


def test_delayed_and_4xx_are_never_hard() -> None:
    for name in ("25-postfix-dsn-delayed.eml", "29-gmail-delay-mailbox-full.eml"):
        assert classify(load(name), OURS).hard is False


def test_reply_to_the_token_address_is_judged_by_its_text() -> None:
    reply = classify(load("23-reply-to-token-address-thanks.eml"), OURS)
    assert (reply.kind, reply.token) == ("feedback", "t23wes")
    button = classify(load("19-gmail-list-unsubscribe-mailto.eml"), OURS)
    assert (button.kind, button.token) == ("unsubscribe", "t19tia")


def test_an_unreadable_bounce_at_the_verp_address_is_no_unsubscribe() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\r\nTo: news+t24xia@example.com\r\n"
        b"Subject: Returned\r\n\r\nSomething about your message.\r\n"
    )
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert classify(msg, OURS).kind != "unsubscribe"


def test_free_text_bounce_never_names_our_own_verp_address() -> None:
    raw = (
        b"From: Mail Delivery System <Mailer-Daemon@relay.example.org>\r\n"
        b"To: news@example.com\r\nSubject: Mail delivery failed: returning message to sender\r\n"
        b"\r\nA message that you sent could not be delivered. This is a permanent error.\r\n"
        b"SMTP error after MAIL FROM:<news+abcdefghijklmnop@example.com>:\r\n"
        b"  reader@example.net: 550 5.1.1 user unknown\r\n"
    )
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    result = classify(msg, OURS)
    assert (result.kind, result.hard, result.recipient) == ("bounce", True, "reader@example.net")


def test_forged_from_is_flagged() -> None:
    assert sender_unverified(load("21-forged-from-dmarc-fail.eml"))
    assert not sender_unverified(load("01-gmail-unsubscribe-top-post.eml"))


@pytest.mark.parametrize(
    ("subject", "text", "asks"),
    [
        ("Re: Leader Notes", "Please unsubscribe me.", True),
        ("unsubscribe", "", True),
        ("Re: Leader Notes", "STOP", True),
        ("Re: Leader Notes", "Opt out please", True),
        ("Re: Leader Notes", "Bitte abmelden.", True),
        ("Re: Leader Notes", "Je veux me désabonner", True),
        ("Re: Leader Notes", "Please don't unsubscribe me", False),
        ("Re: Leader Notes", "I will never unsubscribe, great stuff", False),
        ("Re: Leader Notes", "Don't stop writing these!", False),
        ("Re: Leader Notes", "I almost unsubscribed last year, glad I did not.", False),
        ("Re: Leader Notes", "To unsubscribe click here: https://example.com/u", False),
        ("Re: Stop the bus", "Great read.", False),
        ("Re: Why customers unsubscribe", "Great read.", False),
        ("Re: unsubscribe", "", True),
        ("Why customers unsubscribe", "", True),
    ],
)
def test_unsubscribe_request_rules(subject: str, text: str, asks: bool) -> None:
    assert (unsubscribe_request(subject, text) is not None) is asks


def test_a_subject_echoing_our_title_is_not_a_request_but_one_around_it_is() -> None:
    ours = ("why readers unsubscribe", "leader notes")
    assert unsubscribe_request("Why readers unsubscribe", "", ours) is None
    assert unsubscribe_request("Leader Notes #4: Why readers unsubscribe", "", ours) is None
    assert unsubscribe_request("Unsubscribe me from Leader Notes", "", ours) is not None
    assert unsubscribe_request("Please unsubscribe (Why readers unsubscribe)", "", ours)
    assert unsubscribe_request("unsubscribe", "", ours) is not None  # the mailto button
