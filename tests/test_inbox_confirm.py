"""Unsubscribe confirmations over real SMTP (aiosmtpd), and messages that must not crash."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_inbox import CORPUS, subscribe_corpus_readers

from newsletter.cli.main import main
from newsletter.config import load_config
from newsletter.inbox.processor import Processor
from newsletter.store.store import open_store
from newsletter.testing.mta import Faults, FaultyMTA


def pipe(root: Path, data: bytes, env: dict[str, str]) -> str:
    result = CliRunner().invoke(main, ["--root", str(root), "inbox", "-"], input=data, env=env)
    assert result.exit_code == 0, result.output
    return result.output


def smtp_env(mta: FaultyMTA) -> dict[str, str]:
    return {
        "NEWSLETTER_DELIVERY__TRANSPORT": "smtp",
        "NEWSLETTER_DELIVERY__SMTP__HOST": mta.host,
        "NEWSLETTER_DELIVERY__SMTP__PORT": str(mta.port),
        "NEWSLETTER_DELIVERY__SMTP__SECURITY": "none",
    }


APPLE_BUTTON = (
    b"From: tia.tran@example.org\r\nTo: news@example.com\r\nSubject: unsubscribe\r\n"
    b"Message-ID: <apple-1@icloud.example>\r\nAuto-Submitted: auto-replied\r\n"
    b"X-Apple-Unsubscribe: true\r\nContent-Type: text/plain\r\n\r\n"
    b"Apple Mail sent this email to unsubscribe from the message.\r\n"
)


@pytest.fixture
def readers(publication: Path) -> Path:
    return subscribe_corpus_readers(publication)


def test_one_confirmation_per_unsubscribe_over_smtp(readers: Path) -> None:
    with FaultyMTA() as mta:
        env = smtp_env(mta)
        request = (CORPUS / "01-gmail-unsubscribe-top-post.eml").read_bytes()
        pipe(readers, request, env)
        pipe(readers, request, env)  # the same message again: no second note
        pipe(readers, APPLE_BUTTON, env)  # a machine asked: unsubscribed, never answered
        pipe(readers, (CORPUS / "33-vacation-rfc3834.eml").read_bytes(), env)
    assert [m.rcpt_tos for m in mta.messages] == [("ann.archer@example.org",)]
    assert mta.messages[0].mail_from in ("", "<>")  # RFC 3834: null return path
    note = mta.messages[0].parse()
    assert note["Auto-Submitted"] == "auto-replied"
    original = message_from_bytes(request, policy=policy.default)
    assert note["In-Reply-To"] == original["Message-ID"]
    assert "Leader Notes" in str(note["Subject"])
    with open_store(load_config(readers)) as store:
        tia = store.subscribers.get_by_email("tia.tran@example.org")
        assert tia is not None and tia.status == "unsubscribed"


def test_a_refused_confirmation_keeps_the_unsubscribe(readers: Path) -> None:
    faults = Faults(rcpt_replies={"ann.archer@example.org": "550 5.1.1 no such user"})
    with FaultyMTA(faults) as mta:
        pipe(readers, (CORPUS / "01-gmail-unsubscribe-top-post.eml").read_bytes(), smtp_env(mta))
    assert mta.messages == []
    with open_store(load_config(readers)) as store:
        ann = store.subscribers.get_by_email("ann.archer@example.org")
        assert ann is not None and ann.status == "unsubscribed"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe not mail at all \x80\x81",
        b"Subject: =?bogus-charset?Q?caf=E9?=\r\nFrom: <>\r\n\r\nunsubscribe",
        b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno boundary",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: message/rfc822"
        b"\r\n\r\n--x--",
        b"From: a@example.org\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<div><p>unclosed",
        b"From: a@example.org\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!",
    ],
)
def test_malformed_messages_are_classified_not_crashed(readers: Path, raw: bytes) -> None:
    config = load_config(readers)
    with open_store(config) as store:
        outcome = Processor(config, store, confirm=None).process(raw)
        again = Processor(config, store, confirm=None).process(raw)
    assert outcome.classification.kind in ("feedback", "unsubscribe", "bounce", "auto_reply")
    assert again.repeat


def test_a_confirmation_is_dkim_signed_and_honours_redirect_to(
    readers: Path, tmp_path: Path
) -> None:
    """One-off mails take the one path every mail takes: signed, and redirected in dev mode."""
    import base64

    import dkim as dkimpy
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "dkim.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with FaultyMTA() as mta:
        env = {
            **smtp_env(mta),
            "NEWSLETTER_DKIM__SELECTOR": "s1",
            "NEWSLETTER_DKIM__DOMAIN": "example.com",
            "NEWSLETTER_DKIM__PRIVATE_KEY_ENV": "TEST_DKIM_PEM",
            "TEST_DKIM_PEM": str(pem),
            "NEWSLETTER_DELIVERY__REDIRECT_TO": "dev@example.net",
        }
        pipe(readers, (CORPUS / "01-gmail-unsubscribe-top-post.eml").read_bytes(), env)
    (note,) = mta.messages
    assert note.rcpt_tos == ("dev@example.net",)  # never the real reader in dev mode
    assert note.mail_from in ("", "<>")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.example.com."
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    assert dkimpy.verify(note.data, dnsfunc=dns)
