"""DKIM canonicalisation (RFC 6376 3.4), as dkimpy computes it, faster, and piece by piece.

dkimpy's relaxed canonicalisation runs two regex substitutions per header field and two over
the whole body that match every space (~4 ms for a 25 KB body, as much as the signature);
here the same bytes come from a few bytes.replace passes. An issue message is built from
pieces, the issue's fixed ones the same bytes objects for every reader: `hashed_in_pieces` and
`fields_in_pieces` canonicalise each fixed piece once per issue (bounded caches), a reader's
own pieces per message. Every function here is tested equal to dkimpy's on every short input
(tests/test_dkim.py); a doubtful input returns None and the signer takes the whole way.
dkimpy is imported when used, so a command that signs nothing does not load it.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dkim.canonicalization import CanonicalizationPolicy


def select_fields(
    fields: Sequence[Sequence[bytes]], names: Sequence[bytes]
) -> list[Sequence[bytes]]:
    """dkimpy's `select_headers`, without its scan of every field per name (~60 us a
    message): for each name, the last instance not yet taken."""
    instances: dict[bytes, list[Sequence[bytes]]] = {}
    for field in fields:
        instances.setdefault(field[0].lower(), []).append(field)
    return [instances[name].pop() for name in names if instances.get(name)]


def fields_in_pieces(
    policy: CanonicalizationPolicy, message: bytes, pieces: Sequence[bytes]
) -> list[tuple[bytes, bytes]] | None:
    """The canonical header fields of `message`, whose header block (with its blank line)
    is the join of `pieces`, each piece whole fields; None when the pieces are not that.
    Canonicalisation is field by field, so each piece's part is computed once
    (`_fields_cached`): an issue's fixed header lines are the same for every reader."""
    if (
        not pieces
        or not pieces[-1].endswith(b"\r\n\r\n")
        or any(piece.endswith(b"\r\n\r\n") for piece in pieces[:-1])
        or not message.startswith(b"".join(pieces))
    ):
        return None
    fields: list[tuple[bytes, bytes]] = []
    c_value = bytes(policy.to_c_value())
    for piece in pieces:
        part = _fields_cached(c_value, piece)
        if part is None:
            return None
        fields += part
    return fields


@functools.lru_cache(maxsize=64)
def _fields_cached(c_value: bytes, piece: bytes) -> tuple[tuple[bytes, bytes], ...] | None:
    """One piece's canonical fields; None unless the piece is whole CRLF-terminated fields
    (the last piece also ends with the blank line). Bounded, so a send's memory stays flat."""
    from dkim import rfc822_parse
    from dkim.canonicalization import CanonicalizationPolicy

    lines = piece.removesuffix(b"\r\n\r\n") + b"\r\n" if piece.endswith(b"\r\n\r\n") else piece
    if (
        not lines.endswith(b"\r\n")
        or lines[0] in _BLANKS_OR_CR  # a fold of the previous piece's last field
        or b"\r\n\r\n" in lines
        or not _crlf_only(lines)
    ):
        return None
    headers, _ = rfc822_parse(lines)
    policy = CanonicalizationPolicy.from_c_value(c_value)
    return tuple((bytes(name), bytes(value)) for name, value in canonical_fields(policy, headers))


def canonical_fields(
    policy: CanonicalizationPolicy, headers: Sequence[Sequence[bytes]]
) -> list[tuple[bytes, bytes]]:
    """`policy.canonicalize_headers(headers)`, faster for relaxed (RFC 6376 3.4.2): dkimpy runs
    two regex substitutions per field (~10 us each); here a few bytes.replace passes, as in
    `canonical_body`. Each field's value keeps dkimpy's form (ends with CRLF)."""
    from dkim.canonicalization import Relaxed

    if policy.header_algorithm is not Relaxed:
        return [(bytes(name), bytes(value)) for name, value in policy.canonicalize_headers(headers)]
    out = []
    for name, value in headers:
        value = value.replace(b"\r\n", b"").replace(b"\t", b" ")
        while b"  " in value:
            value = value.replace(b"  ", b" ")
        out.append((name.lower().rstrip(), value.strip() + b"\r\n"))
    return out


def parse(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """dkimpy's `rfc822_parse(message)`, faster: it splits the whole message into lines and
    joins the body again (~0.4 ms of a 25 KB message); a CRLF message needs only its header
    block split, the body is the bytes after the blank line as they are."""
    from dkim import rfc822_parse

    head, blank, body = message.partition(b"\r\n\r\n")
    plain = (
        blank
        and not message.startswith(b"\r\n")
        and head.count(b"\n") == head.count(b"\r\n")
        and body.count(b"\n") == body.count(b"\r\n")
        and b"\r" not in body.replace(b"\r\n", b"")
    )
    if not plain:  # bare LFs: dkimpy's line ends are CRLF, its own parse converts them
        return rfc822_parse(message)  # type: ignore[no-any-return]
    headers, _ = rfc822_parse(head + b"\r\n\r\n")
    return headers, body


def canonical_body(policy: CanonicalizationPolicy, body: bytes) -> bytes:
    """`policy.canonicalize_body(body)`, faster. Relaxed (RFC 6376 3.4.4) deletes the blanks
    before each CRLF and squeezes other runs of blanks to one space; dkimpy does it with two
    regex substitutions that match every space of the body (~4 ms for 25 KB). Here: tabs become
    spaces, runs of spaces halve until none is left (a few passes of bytes.replace, in C), and
    the one space left before a CRLF goes; the end of the body is normalised as dkimpy does."""
    from dkim.canonicalization import Relaxed, correct_empty_body, strip_trailing_lines

    if policy.body_algorithm is not Relaxed:
        return bytes(policy.canonicalize_body(body))
    return bytes(correct_empty_body(strip_trailing_lines(_squeezed(body))))


def hashed_in_pieces(
    policy: CanonicalizationPolicy, message: bytes, pieces: Sequence[bytes]
) -> bytes | None:
    """The relaxed body's SHA-256 of `message`, whose body is the join of `pieces`;
    None when this way cannot tell (the caller canonicalises the whole body instead).

    Relaxed body canonicalisation only looks at runs of blanks and at the blank before a
    CRLF, so it works piece by piece wherever no such run or CRLF straddles two pieces: a
    joint where one piece ends with a blank and the next starts with a blank or CR, or a
    bare CR or LF anywhere (dkimpy's parse rewrites those), sends the message the whole way.
    The end of the body (trailing empty lines) is normalised on the last piece, which must
    hold more than line ends. An issue's fixed pieces are canonicalised once (`_relaxed_cached`)."""
    from dkim.canonicalization import Relaxed, strip_trailing_lines

    parts = [piece for piece in pieces if piece]
    head = message[: len(message) - sum(map(len, parts))]
    if (
        policy.body_algorithm is not Relaxed
        or not parts
        or head.find(b"\r\n\r\n") != len(head) - 4  # the first blank line ends the headers
        or not _crlf_only(head)
        or not message.endswith(b"".join(parts))
    ):
        return None
    for before, after in itertools.pairwise(parts):
        if before[-1] in _BLANKS and after[0] in _BLANKS_OR_CR:
            return None
    canonical: list[bytes] = []
    for part in parts:
        relaxed = _relaxed_cached(part)
        if relaxed is None:
            return None
        canonical.append(relaxed)
    if not canonical[-1].replace(b"\r\n", b""):
        return None
    canonical[-1] = strip_trailing_lines(canonical[-1])
    # One update of the joined pieces: ~35 updates of small pieces cost more than the copy.
    return hashlib.sha256(b"".join(canonical)).digest()


_BLANKS = b" \t"
_BLANKS_OR_CR = b" \t\r"


def _crlf_only(data: bytes) -> bool:
    """No bare CR or LF: every line end is CRLF."""
    crlf = data.count(b"\r\n")
    return data.count(b"\n") == crlf and data.count(b"\r") == crlf


def _squeezed(data: bytes) -> bytes:
    """Relaxed canonicalisation's blanks: tabs become spaces, runs of spaces halve until none
    is left, and the one space left before a CRLF goes."""
    data = data.replace(b"\t", b" ")
    while b"  " in data:
        data = data.replace(b"  ", b" ")
    return data.replace(b" \r\n", b"\r\n")


def _relaxed(piece: bytes) -> bytes | None:
    """`canonical_body` for one piece (no end-of-body step); None when the piece holds a bare
    CR or LF."""
    return _squeezed(piece) if _crlf_only(piece) else None


# An issue's fixed parts (~30 pieces, the same bytes objects for every reader: each one's hash
# is computed once) stay, being used by every message; a reader's own pieces (~8 a message)
# pass through. Bounded, so a send's memory stays flat however many readers it has.
_relaxed_cached = functools.lru_cache(maxsize=256)(_relaxed)
