"""newsletter.mail.transport against a real aiosmtpd on 127.0.0.1 (the fault-injecting MTA)."""

from __future__ import annotations

import errno
import os
import shutil
import ssl
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.errors import DeliveryError
from newsletter.mail.smtp import SmtpTransport
from newsletter.mail.transport import Disconnected, FileTransport, Rejected, open_transport
from newsletter.settings import Config, DeliveryConfig, SmtpConfig
from newsletter.testing.mta import Faults, FaultyMTA

MESSAGE = b"Subject: hi\r\nMessage-ID: <1@example.com>\r\n\r\n.leading dot\r\nbody\r\n"


@pytest.fixture(autouse=True, params=[True, False], ids=["pipelining", "one-by-one"])
def pipelining(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every test runs against a server that offers PIPELINING and one that does not."""
    defaults = FaultyMTA.__init__.__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "pipelining", request.param)
    return bool(request.param)


def smtp(mta: FaultyMTA, **changes: object) -> SmtpTransport:
    settings = replace(SmtpConfig(host=mta.host, port=mta.port, timeout=5), **changes)  # type: ignore[arg-type]
    return SmtpTransport(settings, password=None if mta.login is None else mta.login[1])


def test_one_connection_carries_many_messages_and_dots_are_stuffed(pipelining: bool) -> None:
    with FaultyMTA() as mta:
        transport = smtp(mta)
        for n in range(5):
            reply = transport.send("s@example.com", f"r{n}@example.org", MESSAGE, message_id="x")
            assert reply.startswith("250 ")
        assert transport._conn is not None
        assert transport._conn.has_extn("pipelining") == pipelining  # both paths are tested
        transport.close()
    assert [m.rcpt_tos for m in mta.messages] == [(f"r{n}@example.org",) for n in range(5)]
    assert {m.connection for m in mta.messages} == {1}
    assert all(m.data == MESSAGE for m in mta.messages)
    assert mta.messages[0].mail_from == "s@example.com"


def test_an_internationalised_domain_goes_out_in_its_ascii_form() -> None:
    with FaultyMTA() as mta:
        transport = smtp(mta)
        transport.begin("news+tok@example.com", "anna@bücher.de")
        reply = transport.send("news+tok@example.com", "anna@bücher.de", MESSAGE, message_id="x")
        assert reply.startswith("250 ")
        # A non-ASCII local part needs SMTPUTF8: refused here as a 553, the connection goes on.
        with pytest.raises(Rejected) as err:
            transport.send("s@example.com", "jürgen@example.org", MESSAGE, message_id="y")
        assert (err.value.stage, err.value.code) == ("rcpt", 553)
        assert transport.send("s@example.com", "ok@example.org", MESSAGE, message_id="z")
        transport.close()
    assert [m.rcpt_tos for m in mta.messages] == [("anna@xn--bcher-kva.de",), ("ok@example.org",)]


@pytest.mark.parametrize("reply", ["550 5.1.1 no such user", "451 4.3.0 later", "552 5.2.2 full"])
def test_a_refused_recipient_is_reported_and_the_connection_goes_on(reply: str) -> None:
    with FaultyMTA(Faults(rcpt_replies={"bad@example.org": reply})) as mta:
        transport = smtp(mta)
        with pytest.raises(Rejected) as err:
            transport.send("s@example.com", "bad@example.org", MESSAGE, message_id="x")
        assert (err.value.stage, err.value.code, err.value.reply) == ("rcpt", int(reply[:3]), reply)
        transport.send("s@example.com", "good@example.org", MESSAGE, message_id="x")
        transport.close()
    assert mta.recipients() == ["good@example.org"]
    assert mta.connections == 1


def test_421_closes_and_the_next_send_reconnects() -> None:
    with FaultyMTA(Faults(rcpt_replies={"a@example.org": ["421 4.3.2 shutting down"]})) as mta:
        transport = smtp(mta)
        with pytest.raises(Rejected) as err:
            transport.send("s@example.com", "a@example.org", MESSAGE, message_id="x")
        assert err.value.code == 421
        transport.send("s@example.com", "a@example.org", MESSAGE, message_id="x")
        transport.close()
    assert mta.recipients() == ["a@example.org"]
    assert mta.connections == 2


def test_5xx_at_mail_from_and_at_data_name_their_stage() -> None:
    with FaultyMTA(Faults(mail_reply="553 5.7.1 sender refused")) as mta:
        with pytest.raises(Rejected) as err:
            smtp(mta).send("s@example.com", "a@example.org", MESSAGE, message_id="x")
        assert (err.value.stage, err.value.code) == ("mail", 553)
    with FaultyMTA(Faults(data_reply="554 5.6.0 content refused")) as mta:
        with pytest.raises(Rejected) as err:
            smtp(mta).send("s@example.com", "a@example.org", MESSAGE, message_id="x")
        assert (err.value.stage, err.value.reply) == ("dot", "554 5.6.0 content refused")
    assert mta.messages == []


def test_a_drop_between_messages_is_lost_before_data_and_reconnects() -> None:
    with FaultyMTA(Faults(drop_after=2)) as mta:
        transport = smtp(mta)
        transport.send("s@example.com", "a@example.org", MESSAGE, message_id="x")
        transport.send("s@example.com", "b@example.org", MESSAGE, message_id="x")
        with pytest.raises(Disconnected) as err:
            transport.send("s@example.com", "c@example.org", MESSAGE, message_id="x")
        assert err.value.stage == "mail" and not err.value.after_dot
        transport.send("s@example.com", "c@example.org", MESSAGE, message_id="x")
        transport.close()
    assert mta.recipients() == ["a@example.org", "b@example.org", "c@example.org"]
    assert [m.connection for m in mta.messages] == [1, 1, 2]


def test_a_drop_after_the_final_dot_is_after_dot() -> None:
    with FaultyMTA(Faults(drop_after_dot={"a@example.org"})) as mta:
        transport = smtp(mta)
        with pytest.raises(Disconnected) as err:
            transport.send("s@example.com", "a@example.org", MESSAGE, message_id="x")
        assert err.value.after_dot
        transport.send("s@example.com", "b@example.org", MESSAGE, message_id="x")
    assert mta.recipients() == ["a@example.org", "b@example.org"]  # the server did get it


def test_a_failed_quit_is_harmless() -> None:
    with FaultyMTA(Faults(drop_at_quit=True)) as mta:
        transport = smtp(mta)
        transport.send("s@example.com", "a@example.org", MESSAGE, message_id="x")
        transport.close()
        transport.close()
    assert mta.recipients() == ["a@example.org"]


def test_login_with_the_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultyMTA(login=("newsletter", "s3cret")) as mta:
        delivery = DeliveryConfig(
            transport="smtp",
            smtp=SmtpConfig(
                host=mta.host, port=mta.port, username="newsletter", password_env="NL_TEST_PW"
            ),
        )
        config = Config(root=Path("/nonexistent"), delivery=delivery)
        monkeypatch.delenv("NL_TEST_PW", raising=False)
        with pytest.raises(DeliveryError, match=r"\$NL_TEST_PW"):
            open_transport(config, slug="s")
        monkeypatch.setenv("NL_TEST_PW", "wrong")
        with pytest.raises(Rejected) as err:
            open_transport(config, slug="s").send("s@x.org", "a@x.org", MESSAGE, message_id="x")
        assert (err.value.stage, err.value.code) == ("auth", 535)
        monkeypatch.setenv("NL_TEST_PW", "s3cret")
        transport = open_transport(config, slug="s")
        transport.send("s@x.org", "a@x.org", MESSAGE, message_id="x")
        transport.close()
    assert mta.recipients() == ["a@x.org"]


def test_nobody_listening_is_a_connect_failure() -> None:
    mta = FaultyMTA()  # never started: its port is free
    with pytest.raises(Disconnected) as err:
        smtp(mta).send("s@example.com", "a@example.org", MESSAGE, message_id="x")
    assert err.value.stage == "connect"


def test_file_transport_writes_one_eml_per_message_id_atomically(tmp_path: Path) -> None:
    transport = open_transport(Config(root=tmp_path), slug="2026-01-notes")
    assert isinstance(transport, FileTransport)
    transport.send("s@x.org", "a@x.org", MESSAGE, message_id="<2026-01-notes.tok@example.com>")
    transport.send("s@x.org", "a@x.org", MESSAGE, message_id="<2026-01-notes.tok@example.com>")
    files = list((tmp_path / "outbox" / "2026-01-notes").iterdir())
    assert [f.name for f in files] == ["2026-01-notes.tok_example.com.eml"]
    assert files[0].read_bytes() == MESSAGE


def test_file_transport_failure_stops_the_send(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the folder should be")
    with pytest.raises(DeliveryError, match="cannot write"):
        FileTransport(tmp_path / "blocked" / "x").send("s@x", "a@x", MESSAGE, message_id="<1@x>")


def test_a_begun_envelope_is_sent_by_send_and_forgotten_by_abort_or_close() -> None:
    """begin() writes MAIL/RCPT/DATA early (PIPELINING); abort and close never let the server
    end that DATA, so an abandoned envelope delivers nothing, not even an empty message."""
    with FaultyMTA(Faults(rcpt_replies={"bad@example.org": "550 5.1.1 unknown"})) as mta:
        transport = smtp(mta)
        transport.begin("s@example.com", "a@example.org")
        transport.send("s@example.com", "a@example.org", MESSAGE, message_id="x")
        transport.begin("s@example.com", "gone@example.org")
        transport.abort()
        transport.begin("s@example.com", "stale@example.org")
        transport.send("s@example.com", "b@example.org", MESSAGE, message_id="x")  # not stale@
        transport.begin("s@example.com", "bad@example.org")
        with pytest.raises(Rejected) as err:
            transport.send("s@example.com", "bad@example.org", MESSAGE, message_id="x")
        assert (err.value.stage, err.value.code) == ("rcpt", 550)
        transport.send("s@example.com", "c@example.org", MESSAGE, message_id="x")
        transport.begin("s@example.com", "never@example.org")
        transport.close()
    assert mta.recipients() == ["a@example.org", "b@example.org", "c@example.org"]
    assert all(m.data == MESSAGE for m in mta.messages)


def test_file_transport_begin_and_abort_do_nothing(tmp_path: Path) -> None:
    transport = FileTransport(tmp_path)
    transport.begin("s@x.org", "a@x.org")
    transport.abort()
    transport.send("s@x.org", "a@x.org", MESSAGE, message_id="<m@x>")
    assert [f.name for f in tmp_path.iterdir()] == ["m_x.eml"]


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A self-signed certificate for 127.0.0.1 that the client trusts (via SSL_CERT_FILE,
    which ssl.create_default_context honours); returns the server's TLS context."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_and_login(certificate: ssl.SSLContext, security: str) -> None:
    login = ("newsletter", "s3cret")
    with FaultyMTA(login=login, tls=certificate, implicit_tls=security == "ssl") as mta:
        transport = smtp(mta, security=security, username="newsletter")
        transport.send("s@example.com", "a@example.org", MESSAGE, message_id="x")
        assert transport._conn is not None and transport._conn.sock is not None
        assert isinstance(transport._conn.sock, ssl.SSLSocket)
        transport.close()
    assert mta.recipients() == ["a@example.org"]


def test_starttls_refuses_a_server_it_cannot_verify(
    certificate: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    with FaultyMTA(tls=certificate) as mta:
        with pytest.raises(Disconnected) as err:
            smtp(mta, security="starttls").send("s@x.org", "a@x.org", MESSAGE, message_id="x")
        assert err.value.stage == "connect" and "CERTIFICATE_VERIFY_FAILED" in err.value.reply
    assert mta.messages == []


def test_file_transport_fsyncs_each_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    transport = FileTransport(tmp_path / "outbox")
    transport.send("s@x", "a@x", MESSAGE, message_id="<1@x>")
    transport.send("s@x", "b@x", MESSAGE + b"again\r\n", message_id="<1@x>")  # a re-send
    assert len(synced) == 2
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == ["1_x.eml"]
    assert (tmp_path / "outbox" / "1_x.eml").read_bytes() == MESSAGE + b"again\r\n"


def test_a_failed_file_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(DeliveryError, match="No space left"):
        FileTransport(tmp_path).send("s@x", "a@x", MESSAGE, message_id="<1@x>")
    assert list(tmp_path.iterdir()) == []
