"""Quoted-printable bodies (RFC 2045) for the issue message: encoded once per issue, filled per
reader. b2a_qp of a whole 14 KB HTML body per reader would cost more than the SMTP; a
`QuotedPrintableTemplate` encodes the rendered issue's literals once and per reader only the
slot values, joined by soft line breaks; `BodyEncoder` does it for both parts and checks once
per issue that the result decodes to exactly what `RenderedIssue.personalise` gives.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from html import escape

from newsletter.content.render import PreviewReader, Reader, RenderedIssue


def quoted_printable(body: str) -> bytes:
    """UTF-8, CRLF line ends, quoted-printable (lines <= 76), ending in CRLF."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    encoded = binascii.b2a_qp(text.replace("\n", "\r\n").encode("utf-8"), istext=True)
    return _limit_lines(_no_leading_dots(encoded))


def _no_leading_dots(encoded: bytes) -> bytes:
    """ "." at a line start as =2E, so SMTP never needs to dot-stuff our bodies (the
    transport then skips its pass over every message)."""
    if encoded.startswith(b"."):
        encoded = b"=2E" + encoded[1:]
    return encoded.replace(b"\r\n.", b"\r\n=2E")


_SOFT_BREAK = b"=\r\n"
_BARE_LF = re.compile(rb"(?<!\r)\n")


# Printable ASCII without "=", no space at either end, not starting with ".": QP as it is.
_QP_AS_IS = re.compile(r"[!-\-/-<>-~](?:[ -<>-~]{0,68}[!-<>-~])?")


def _qp_piece(text: str) -> bytes:
    """Quoted-printable of a piece of a body, ready to be joined to others by soft breaks:
    CRLF line ends (b2a_qp uses LF for soft breaks when the piece holds no CRLF), and a
    last line short enough (<= 75) to take the "=" of the soft break that follows it."""
    if _QP_AS_IS.fullmatch(text):  # names, addresses, tokens: most slot values
        return text.encode("ascii")
    data = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    encoded = _BARE_LF.sub(b"\r\n", binascii.b2a_qp(data.encode("utf-8"), istext=True))
    return _limit_lines(_no_leading_dots(encoded), last=75)


def _limit_lines(encoded: bytes, *, last: int = 76) -> bytes:
    """Lines of at most 76 (RFC 2045), the last at most `last`. b2a_qp alone can emit 77
    when it encodes trailing whitespace near the limit."""
    lines = encoded.split(b"\r\n")
    limits = [76] * (len(lines) - 1) + [last]
    if all(len(line) <= limit for line, limit in zip(lines, limits, strict=True)):
        return encoded
    out = []
    for line, limit in zip(lines, limits, strict=True):
        while len(line) > limit:
            cut = limit - 1  # room for the "=" of a soft break
            # Never split an =XX escape, never start a line with "." (see _no_leading_dots).
            while b"=" in line[cut - 2 : cut] or line[cut : cut + 1] == b".":
                cut -= 1
            out.append(line[:cut] + b"=")
            line = line[cut:]
        out.append(line)
    return b"\r\n".join(out)


class QuotedPrintableTemplate:
    """A body with slots (literal, slot, literal, ..., literal), its literals encoded once.

    Per reader only the slot values are encoded; soft line breaks around each value join the
    pieces, which a decoder removes, so the decoded body is exactly the filled-in text.
    b2a_qp of a 14 KB HTML body costs ~200 us; this costs a few us per slot.
    """

    def __init__(self, parts: Sequence[str]) -> None:
        self.literals = [_qp_piece(literal) if literal else b"" for literal in parts[0::2]]

    def fill(self, values: Sequence[str]) -> bytes:
        return b"".join(self.pieces(values))

    def pieces(self, values: Sequence[str]) -> list[bytes]:
        """`fill` unjoined: the literals stay the same objects for every reader, so the DKIM
        signer canonicalises each once per issue (newsletter.mail.dkim.unsigned_headers' `body`)."""
        out = [self.literals[0]]
        encoded = {value: _qp_piece(value) for value in set(values)}  # slots repeat values
        for value, literal in zip(values, self.literals[1:], strict=True):
            if value:
                out += (_SOFT_BREAK, encoded[value])
            if literal:
                out += (_SOFT_BREAK, literal)
        end = b"".join(
            out[-3:]
        )  # the body's last 3 bytes at least: no piece but the first is empty
        # The body ends with a line break before the MIME boundary.
        if not end.endswith(b"\r\n") or end.endswith(_SOFT_BREAK):
            out.append(b"\r\n")
        return out


class BodyEncoder:
    """Each reader's two quoted-printable bodies, from the rendered issue's slot templates
    encoded once (b2a_qp of a whole 14 KB body per reader would cost more than the SMTP).

    A probe reader checks once per issue that the result decodes to exactly what
    `RenderedIssue.personalise` gives; if not (the renderer changed), every reader gets the
    plain path: personalise, then encode."""

    def __init__(self, rendered: RenderedIssue) -> None:
        self.rendered = rendered
        self.html = QuotedPrintableTemplate(rendered.html.parts)
        self.text = QuotedPrintableTemplate(rendered.text.parts)
        probe = PreviewReader(first_name='Zoë "<&>" O\'Neil, Jr', token="probe")
        expected = rendered.personalise(probe)
        html, text = (b"".join(pieces) for pieces in self._fast(probe))
        self.fast = _decoded(html) == _lines(expected.html) and _decoded(text) == _lines(
            expected.text
        )

    def _fast(self, reader: Reader) -> tuple[list[bytes], list[bytes]]:
        raw = self.rendered.slot_values(reader)
        html = [escape(raw[name], quote=True) for name in self.rendered.html.slots]
        text = [raw[name] for name in self.rendered.text.slots]
        return self.html.pieces(html), self.text.pieces(text)

    def encode(self, reader: Reader) -> tuple[list[bytes], list[bytes]]:
        """(html, text), quoted-printable, each in pieces to be joined (`render_encoded`)."""
        if self.fast:
            return self._fast(reader)
        body = self.rendered.personalise(reader)
        return [quoted_printable(body.html)], [quoted_printable(body.text)]


def _lines(text: str) -> str:
    text = text.replace("\r\n", "\n")
    return text if text.endswith("\n") else text + "\n"


def _decoded(encoded: bytes) -> str:
    return binascii.a2b_qp(encoded).decode("utf-8").replace("\r\n", "\n")
