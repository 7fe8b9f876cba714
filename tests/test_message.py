"""newsletter.mail.message: per-issue skeleton, per-reader bytes, no header injection."""

from __future__ import annotations

import binascii
import email
import random
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP, default
from pathlib import Path

import pytest

from newsletter.errors import DeliveryError
from newsletter.mail.bodies import QuotedPrintableTemplate, quoted_printable
from newsletter.mail.message import InvalidRecipient, IssueMessage, message_id
from newsletter.settings import Config, WebConfig

WHEN = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Reader:
    email: str
    first_name: str | None
    token: str


def config(**changes: object) -> Config:
    base = Config(
        root=Path("/nonexistent"),
        name="Leader Notes",
        sender="Leader Notes <news@example.com>",
        reply_to="news@example.com",
        base_url="https://example.com/newsletter/",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def render(cfg: Config, reader: Reader, subject: str = "January notes", **kw: str) -> bytes:
    skeleton = IssueMessage(cfg, slug="2026-01-notes", subject=subject, date=WHEN)
    return skeleton.render(
        reader, html=kw.get("html", "<p>Hello</p>"), text=kw.get("text", "Hello\n")
    )


def assert_line_limits(data: bytes) -> None:
    for line in data.split(b"\r\n"):
        assert len(line) <= 998, line  # RFC 5322's MUST
        # 78 is a SHOULD: only a single unbreakable word (a long name's encoded word) passes it.
        assert len(line) <= 78 or len(line.strip().split(b" ")) <= 2, line
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    "name",
    ["Zoë", 'Ann "The Boss" O\'Neil', "Smith, John", "李小龙", "=?utf-8?q?x?=", None, "a" * 120],
)
def test_reader_name_token_and_message_id_survive_a_parse(name: str | None) -> None:
    reader = Reader("reader@example.org", name, "tok_EN-123")
    data = render(config(), reader, text=f"Dear {name}\n", html=f"<p>Dear {name}</p>")
    assert_line_limits(data)
    message = parse(data)
    (to,) = message["To"].addresses
    assert to.addr_spec == "reader@example.org"
    assert to.display_name == (name or "")
    assert message["Message-ID"] == "<2026-01-notes.tok_EN-123@example.com>"
    assert message["Message-ID"] == message_id(config(), "2026-01-notes", "tok_EN-123")
    assert message["List-Unsubscribe"] == (
        "<mailto:news+tok_EN-123@example.com?subject=unsubscribe>"
    )
    assert "List-Unsubscribe-Post" not in message
    assert body(message, "plain") == f"Dear {name}\n"
    assert body(message, "html") == f"<p>Dear {name}</p>\n"


def test_static_headers() -> None:
    message = parse(render(config(), Reader("r@example.org", "R", "t1")))
    assert message["From"] == "Leader Notes <news@example.com>"
    assert message["Reply-To"] == "news@example.com"
    assert message["Subject"] == "January notes"
    assert message["List-Id"] == "Leader Notes <leader-notes.example.com>"
    assert message["List-Archive"] == "<https://example.com/newsletter/>"
    assert message["Archived-At"] == "<https://example.com/newsletter/2026-01-notes/>"
    assert message["Precedence"] == "bulk"
    assert "Auto-Submitted" not in message
    assert message["Date"].datetime == WHEN
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert not message.defects


def test_one_click_unsubscribe_when_a_web_endpoint_is_configured() -> None:
    cfg = config(web=WebConfig(public_url="https://news.example.com"))
    data = render(cfg, Reader("r@example.org", "R", "t1"))
    assert_line_limits(data)
    message = parse(data)
    assert message["List-Unsubscribe"] == (
        "<mailto:news+t1@example.com?subject=unsubscribe>, "
        "<https://news.example.com/unsubscribe/t1>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize(
    "hostile",
    [
        "Hi\r\nBcc: victim@example.net",
        "Hi\nBcc: victim@example.net",
        "Hi\rBcc: victim@example.net",
        "Hi =?utf-8?q?there=0D=0ABcc:_victim@example.net?=",
        "=?utf-8?b?SGkNCkJjYzogdmljdGltQGV4YW1wbGUubmV0?=",
        "Hi\u2028Bcc: victim@example.net",
    ],
)
def test_no_header_injection_through_subject_or_name(hostile: str) -> None:
    reader = Reader("reader@example.org", hostile, "t1")
    data = render(config(name=hostile), reader, subject=hostile)
    assert_line_limits(data)
    message = parse(data)
    assert "Bcc" not in message
    assert sorted(message.keys()) == sorted(
        ["From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "Reply-To",
         "List-Id", "List-Archive", "Archived-At", "Precedence", "MIME-Version", "Content-Type"]
    )  # fmt: skip
    for value in (message["Subject"], message["To"].addresses[0].display_name):
        assert "\r" not in value and "\n" not in value
        assert value == re.sub(r"[\r\n\u2028]+", " ", hostile)  # literal text, not decoded
    assert not message.defects


def test_stdlib_alone_would_inject_which_is_why_we_write_headers_ourselves() -> None:
    naive = EmailMessage(policy=SMTP)
    naive["Subject"] = "Hi =?utf-8?q?there=0D=0ABcc:_victim@example.net?="
    assert b"\r\nBcc: victim" in naive.as_bytes()


@pytest.mark.parametrize(
    "address", ["a@b.c\r\nBcc: x@y", "a b@c.d", "<a@b.c>", "ünï@example.org", "no-at-sign"]
)
def test_an_unusable_address_is_refused_for_that_reader(address: str) -> None:
    with pytest.raises(InvalidRecipient):
        render(config(), Reader(address, None, "t1"))


def test_an_internationalised_domain_is_written_in_its_ascii_form() -> None:
    message = parse(render(config(), Reader("Anna@Bücher.de", "Anna", "t1")))
    (to,) = message["To"].addresses
    assert to.addr_spec == "Anna@xn--bcher-kva.de"


def test_an_odd_token_is_refused() -> None:
    with pytest.raises(InvalidRecipient):
        render(config(), Reader("a@b.c", None, "t1>\r\nBcc: x"))


def test_a_bad_from_address_is_a_configuration_error() -> None:
    with pytest.raises(DeliveryError) as err:
        IssueMessage(config(sender="nobody"), slug="s", subject="x", date=WHEN)
    assert err.value.field == "from"


def test_bodies_are_quoted_printable_with_crlf_and_dots_kept() -> None:
    text = "line one\r\n.\nFrom here\n" + "é" * 100 + "\ntrailing space \n"
    html = "<p>" + "x" * 500 + "</p>"
    data = render(config(), Reader("r@example.org", None, "t1"), text=text, html=html)
    assert_line_limits(data)
    message = parse(data)
    expected = "line one\n.\nFrom here\n" + "é" * 100 + "\ntrailing space \n"
    assert body(message, "plain") == expected
    assert body(message, "html") == html + "\n"
    assert b"quoted-printable" in data


def test_the_boundary_cannot_appear_in_a_body() -> None:
    hostile = "--=_newsletter_alternative_=_\n--=_newsletter_alternative_=_--\n"
    message = parse(render(config(), Reader("r@example.org", None, "t1"), text=hostile))
    assert len(list(message.iter_parts())) == 2
    assert body(message, "plain") == hostile


def test_per_reader_bytes_share_the_skeleton() -> None:
    skeleton = IssueMessage(config(), slug="2026-01-notes", subject="S", date=WHEN)
    one = skeleton.render(Reader("a@example.org", "A", "ta"), html="<p>a</p>", text="a")
    two = skeleton.render(Reader("b@example.org", "B", "tb"), html="<p>b</p>", text="b")
    assert parse(one)["To"] != parse(two)["To"]
    assert parse(one)["Message-ID"] != parse(two)["Message-ID"]
    assert one.split(b"\r\n\r\n")[0].count(b"\r\n") == two.split(b"\r\n\r\n")[0].count(b"\r\n")
    override = skeleton.render(Reader("a@example.org", "A", "ta"), html="", text="", msgid="<x@y>")
    assert parse(override)["Message-ID"] == "<x@y>"


def test_no_body_line_starts_with_a_dot_so_smtp_needs_no_dot_stuffing() -> None:
    text = ".\n.hidden\nline\n..two\n" + "x" * 75 + ".tail\n"
    data = render(config(), Reader("r@example.org", None, "t1"), text=text, html=text)
    assert b"\r\n." not in data
    assert body(parse(data), "plain") == text


def test_quoted_printable_template_decodes_to_the_filled_text() -> None:
    """Pieces encoded separately and joined by soft breaks decode to the whole, lines <= 76."""
    rng = random.Random(5)
    alphabet = ["a", " ", "=", ".", "\n", "\r\n", "\t", "é", "€", "<", '"', "x" * 70, "   ", ""]
    for _ in range(3000):
        parts = [
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, rng.choice([3, 120]))))
            for _ in range(rng.choice([1, 3, 7]))
        ]
        expected = "".join(parts).replace("\r\n", "\n")
        expected += "" if expected.endswith("\n") else "\n"
        for encoded in (
            QuotedPrintableTemplate(parts).fill(parts[1::2]),
            quoted_printable("".join(parts)),
        ):
            lines = encoded.split(b"\r\n")
            assert encoded.endswith(b"\r\n") and all(len(line) <= 76 for line in lines)
            assert not any(line.startswith(b".") for line in lines)
            assert b"\n" not in encoded.replace(b"\r\n", b"")
            decoded = binascii.a2b_qp(encoded).decode("utf-8").replace("\r\n", "\n")
            assert decoded == expected, parts
