"""RFC 5322 bytes for one issue: a skeleton built once, per-reader bytes substituted into it.

`email.message.EmailMessage` costs ~2.5 ms per message, 20x the SMTP round trips (DESIGN.md,
"Measured facts"). So `IssueMessage` builds the MIME structure once with `EmailMessage` and
`policy.SMTP`, splits the bytes at three slots (the per-reader headers, the text part, the HTML
part) and per reader only joins: its header lines and its two quoted-printable bodies, which
`newsletter.mail.bodies.BodyEncoder` fills from the rendered issue's slot templates encoded
once, never a whole body per reader.

Header safety: every editor- or subscriber-controlled value (subject, names, the publication's
name) is written here, not by `EmailMessage`, because the stdlib decodes an encoded word such
as `=?utf-8?q?a=0D=0ABcc:_x?=` in a header value and re-emits the decoded CR/LF raw, which
injects a header. Control characters become spaces, and a value holding `=?` is itself
encoded, so a reader's client shows the literal text instead of decoding it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import datetime
from email.charset import Charset
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, parseaddr
from typing import TYPE_CHECKING

from newsletter.content.render import Reader as Reader  # re-exported: who gets a copy
from newsletter.errors import DeliveryError
from newsletter.links import (
    ascii_address,
    bounce_address,
    bounce_base,
    issue_url,
    unsubscribe_mailto,
    unsubscribe_web_url,
)
from newsletter.mail import dkim
from newsletter.mail.bodies import quoted_printable
from newsletter.settings import Config

if TYPE_CHECKING:
    from concurrent.futures import Executor

# Slot markers: plain ASCII words that quoted-printable leaves alone and no template contains.
_HEADER_SLOT = "X-Newsletter-Reader-Slot"
_TEXT_SLOT = "NEWSLETTERSLOTTEXTPART8d2f"
_HTML_SLOT = "NEWSLETTERSLOTHTMLPART8d2f"
# "=_" can never occur in a quoted-printable body ("=" is always encoded), so no body can
# contain this boundary.
_BOUNDARY = "=_newsletter_alternative_=_"
_MAX_LINE = 78
_MAX_NAME = 200  # keeps every line far below RFC 5322's 998
_UTF8 = Charset("utf-8")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ATEXT = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
# A dot-atom local part (no quoted strings) at an ASCII domain: nothing a header could misread.
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
_PLAIN_PHRASE = re.compile(r"[ -~]*")


class InvalidRecipient(DeliveryError):
    """This reader's address or token cannot go into a header (the send continues)."""


def clean_text(value: str) -> str:
    """A header's text on one line: CR, LF and other controls become one space."""
    return _CONTROL.sub(" ", unicodedata.normalize("NFC", value)).strip()


def encode_text(name: str, value: str) -> str:
    """`Name: value` folded to 78 columns with CRLF; non-ASCII or `=?` go RFC 2047 encoded."""
    text = clean_text(value)
    if _PLAIN_PHRASE.fullmatch(text) and "=?" not in text:
        line = f"{name}: {text}"
        if len(line) <= _MAX_LINE:
            return line + "\r\n"
        folded = Header(text, "us-ascii", header_name=name).encode(linesep="\r\n")
        if all(len(part) <= _MAX_LINE for part in f"{name}: {folded}".split("\r\n")):
            return f"{name}: {folded}\r\n"
    folded = Header(text, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {folded}\r\n"


def format_mailbox(field: str, display_name: str | None, address: str) -> str:
    """`Field: "Name, Jr" <addr>` folded to 78 columns; the name quoted or encoded as needed."""
    try:
        address = ascii_address(address)  # an internationalised domain in its xn-- form
    except ValueError as exc:
        raise InvalidRecipient(str(exc), field=field) from None
    if not _ADDRESS.fullmatch(address):
        raise InvalidRecipient(f"not a deliverable ASCII address: {address!r}", field=field)
    return _name_addr(field, display_name, address)


def _name_addr(field: str, display_name: str | None, address: str) -> str:
    # One encoded word, never split: the stdlib's address parser puts a space between
    # adjacent encoded words of a display name, which would change the reader's name.
    name = clean_text(display_name or "")[:_MAX_NAME]
    if not name:
        return f"{field}: {address}\r\n"
    if _PLAIN_PHRASE.fullmatch(name) and "=?" not in name:
        phrase = formataddr((name, address)).rsplit(" <", 1)[0]
    else:
        phrase = _UTF8.header_encode(name)
    line = f"{field}: {phrase} <{address}>"
    if len(line) <= _MAX_LINE:
        return line + "\r\n"
    return f"{field}: {phrase}\r\n <{address}>\r\n"


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def message_id(config: Config, slug: str, token: str) -> str:
    """The deterministic Message-ID of one issue for one reader: a re-send keeps it."""
    _, sender = parseaddr(config.sender)
    local = _ATEXT.sub("-", slug).strip(".") or "issue"
    return f"<{local}.{token}@{_domain(sender) or 'newsletter.invalid'}>"


_TOKEN_MARK = "NLTOKENMARK7f3a"


class _PerToken:
    """A string that links.py builds for a token, built once and split at the token: the
    per-reader cost is a join instead of parsing an address (~25 us per parseaddr)."""

    def __init__(self, build: Callable[[str], str]) -> None:
        self.parts = build(_TOKEN_MARK).split(_TOKEN_MARK)

    def __call__(self, token: str) -> str:
        return token.join(self.parts)


class IssueMessage:
    """The per-issue skeleton. `render(reader, html=, text=)` gives one reader's bytes."""

    def __init__(self, config: Config, *, slug: str, subject: str, date: datetime) -> None:
        self.config = config
        self.slug = slug
        sender_name, sender = parseaddr(config.sender)
        if not sender or not _ADDRESS.fullmatch(sender):
            raise DeliveryError(f"expected 'Name <address>', got {config.sender!r}", field="from")
        _, reply_to = parseaddr(config.reply_to)
        if not reply_to or not _ADDRESS.fullmatch(reply_to):
            raise DeliveryError(f"expected an address, got {config.reply_to!r}", field="reply_to")
        self.sender = sender
        # Without VERP the envelope sender is still the bounce address, never the From.
        self.bounce_sender = bounce_base(config)
        self._message_id = _PerToken(lambda token: message_id(config, slug, token))
        self._mailto = _PerToken(lambda token: unsubscribe_mailto(config, token))
        self._web = (
            _PerToken(lambda token: unsubscribe_web_url(config, token) or "")
            if unsubscribe_web_url(config, _TOKEN_MARK)
            else None
        )
        self._verp = _PerToken(lambda token: bounce_address(config, token))
        list_host = re.sub(r"[^a-z0-9]+", "-", config.name.lower()).strip("-") or "newsletter"
        self._head_from = format_mailbox("From", sender_name, sender).encode("ascii")
        self._head_middle = (
            encode_text("Subject", subject) + f"Date: {format_datetime(date)}\r\n"
        ).encode("ascii")
        self._head_static = (
            format_mailbox("Reply-To", None, reply_to)
            + _name_addr("List-Id", config.name, f"{list_host}.{_domain(sender)}")
            + f"List-Archive: <{config.base_url}>\r\n"
            + f"Archived-At: <{issue_url(config, slug)}>\r\n"
            + "Precedence: bulk\r\n"
        ).encode("ascii")
        skeleton = self._skeleton()
        head, _, rest = skeleton.partition(f"{_HEADER_SLOT}: 1\r\n".encode())
        text_at = rest.index(_TEXT_SLOT.encode() + b"\r\n")
        html_at = rest.index(_HTML_SLOT.encode() + b"\r\n")
        if head or text_at > html_at:
            raise AssertionError("the skeleton's slots moved")  # a stdlib change, not a user's
        # The header block ends at the first blank line; the body starts with the MIME preamble.
        headers_end = rest.index(b"\r\n\r\n") + 4
        if headers_end > text_at:
            raise AssertionError("the skeleton's slots moved")
        self._mime_headers, self._body_head = rest[:headers_end], rest[headers_end:text_at]
        self._between = rest[text_at + len(_TEXT_SLOT) + 2 : html_at]
        self._tail = rest[html_at + len(_HTML_SLOT) + 2 :]

    def _skeleton(self) -> bytes:
        msg = EmailMessage(policy=SMTP)
        msg[_HEADER_SLOT] = "1"
        msg.set_content(_TEXT_SLOT, subtype="plain", charset="utf-8", cte="quoted-printable")
        msg.add_alternative(_HTML_SLOT, subtype="html", charset="utf-8", cte="quoted-printable")
        msg.set_boundary(_BOUNDARY)
        for part in msg.iter_parts():
            del part["MIME-Version"]  # add_alternative copies it into the parts
        return msg.as_bytes()

    def message_id(self, reader: Reader) -> str:
        return self._message_id(_checked_token(reader.token))

    def envelope_sender(self, reader: Reader) -> str:
        """`news-bounces+TOKEN@example.com` (VERP): a bounce to it names (and proves) the
        reader; never the List-Unsubscribe address, so a machine's reply cannot unsubscribe."""
        return self._verp(_checked_token(reader.token))

    def reader_headers(self, reader: Reader, *, msgid: str | None = None) -> tuple[bytes, bytes]:
        """(To line, Message-ID + List-Unsubscribe lines) for one reader."""
        token = _checked_token(reader.token)
        to = format_mailbox("To", reader.first_name, reader.email)
        unsubscribe = [f"<{self._mailto(token)}>"]
        web = self._web(token) if self._web else None
        if web:
            unsubscribe.append(f"<{web}>")
        lines = f"Message-ID: {msgid or self._message_id(token)}\r\n"
        lines += _fold_list("List-Unsubscribe", unsubscribe)
        if web:
            lines += "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        return to.encode("ascii"), lines.encode("ascii")

    def render(self, reader: Reader, *, html: str, text: str, msgid: str | None = None) -> bytes:
        """One reader's complete message; `msgid` overrides the deterministic Message-ID.
        DKIM-signed here when `dkim:` is configured, so every path that sends an issue signs."""
        return self.render_encoded(
            reader, html=quoted_printable(html), text=quoted_printable(text), msgid=msgid
        )

    def render_encoded(
        self,
        reader: Reader,
        *,
        html: bytes | list[bytes],
        text: bytes | list[bytes],
        msgid: str | None = None,
    ) -> bytes:
        """`render` with bodies already quoted-printable (from a QuotedPrintableTemplate),
        whole or in its pieces (`QuotedPrintableTemplate.pieces`, cheaper to sign)."""
        return self.render_later(reader, html=html, text=text, msgid=msgid).result()

    def render_later(
        self,
        reader: Reader,
        *,
        html: bytes | list[bytes],
        text: bytes | list[bytes],
        msgid: str | None = None,
        executor: Executor | None = None,
    ) -> dkim.Pending:
        """`render_encoded`, its DKIM signature computed by `executor` meanwhile (the send
        signs the next reader's message while this one's goes out)."""
        to, per_reader = self.reader_headers(reader, msgid=msgid)
        text_parts = [text] if isinstance(text, bytes) else text
        html_parts = [html] if isinstance(html, bytes) else html
        body = [self._body_head, *text_parts, self._between, *html_parts, self._tail]
        head = (
            *(self._head_from, to, self._head_middle, per_reader, self._head_static),
            self._mime_headers,
        )
        message = b"".join((*head, *body))
        return dkim.sign_later(self.config, message, body=body, head=head, executor=executor)


def _checked_token(token: str) -> str:
    if not _TOKEN.fullmatch(token):
        raise InvalidRecipient(f"unexpected token {token!r}", field="token")
    return token


def _fold_list(name: str, items: list[str]) -> str:
    """`Name: <a>, <b>` with a fold after a comma when the line would pass 78 columns."""
    line = f"{name}: {items[0]}"
    out = []
    for item in items[1:]:
        if len(line) + len(item) + 2 > _MAX_LINE:
            out.append(line + ",")
            line = f" {item}"
        else:
            line += f", {item}"
    out.append(line)
    return "\r\n".join(out) + "\r\n"
