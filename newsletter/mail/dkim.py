"""DKIM signatures (RFC 6376), when `dkim: {selector, domain, private_key_env}` is set.

Gmail and Yahoo want bulk mail signed with the List-Unsubscribe headers covered, so a relay
cannot add or rewrite the one-click URL. The key's PATH comes from the environment variable the
config names; the key itself never sits in newsletter.yaml.

dkimpy does what it does well here: parsing the message, canonicalising headers and body, and
choosing the signed header instances (and, in the tests, verifying). The RSA signature itself is
OpenSSL's, through the `cryptography` package: dkimpy's pure-Python RSA took ~11 ms a message,
so signing capped a send near 90 messages a second; OpenSSL takes well under a millisecond.
dkimpy's relaxed body canonicalisation runs two regex substitutions that match every space of
a 25 KB body (~4 ms, as much as the signature); `canonical_body` gives the same bytes with a
few passes of bytes.replace (~0.1-0.4 ms). An issue message's body comes in pieces, the issue's
fixed parts the same for every reader: `signature(..., body=pieces)` hashes it piece by piece,
each fixed piece canonicalised once per issue (`_hashed_in_pieces`).

dkimpy (which imports dnspython) and cryptography are imported when a message is signed, not
with this module: a command that signs nothing does not pay for them (`newsletter --help`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.errors import ConfigError
from newsletter.settings import Config, DkimConfig

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

    from cryptography.hazmat.primitives.asymmetric import rsa
    from dkim.canonicalization import CanonicalizationPolicy

# Always signed, present or not: signing an absent header (a "null" signature) stops anyone
# from adding it later, e.g. a List-Unsubscribe-Post on a message that had none.
SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Reply-To",
    "List-Id",
    "MIME-Version",
    "Content-Type",
)
_INCLUDE = [name.lower().encode("ascii") for name in SIGNED_HEADERS]
# relaxed body canonicalisation survives relays that re-wrap trailing whitespace
DEFAULT_CANONICALIZATION = b"relaxed/relaxed"
_FOLD = 76  # columns: the header stays within RFC 5322's 78 with its CRLF


def key_path(settings: DkimConfig) -> Path:
    """The private key file named by `$private_key_env`; ConfigError when unusable."""
    if not settings.selector or not settings.domain:
        missing = "selector" if not settings.selector else "domain"
        raise ConfigError("expected a value when dkim is configured", field=f"dkim.{missing}")
    raw = os.environ.get(settings.private_key_env)
    if not raw:
        raise ConfigError(
            f"the DKIM private key path is read from ${settings.private_key_env}, which is not set",
            field="dkim.private_key_env",
        )
    return Path(raw)


@functools.lru_cache(maxsize=4)
def _load_key(path: Path, mtime_ns: int) -> rsa.RSAPrivateKey:
    """Read and check the key once per file version (a rotated key is picked up)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the DKIM private key: {exc.strerror}", path=path) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"not a PEM RSA private key ({exc})", path=path) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("not a PEM RSA private key (DKIM signs with RSA)", path=path)
    if key.key_size < 1024:
        raise ConfigError(f"the key has {key.key_size} bits; DKIM needs 1024 or more", path=path)
    return key


def private_key(settings: DkimConfig) -> rsa.RSAPrivateKey:
    path = key_path(settings)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"cannot read the DKIM private key: {exc.strerror}", path=path) from None
    return _load_key(path, mtime)


def check(config: Config) -> None:
    """Fail early (serve, send) with a one-line error instead of at the first message."""
    if config.dkim is not None:
        private_key(config.dkim)


def sign(
    config: Config,
    message: bytes,
    *,
    body: Sequence[bytes] | None = None,
    head: Sequence[bytes] | None = None,
) -> bytes:
    """`message` with a DKIM-Signature header prepended; unchanged when dkim is not configured.
    `body`, `head`: the message's body and header block in pieces, if the caller has them
    (see `signature`)."""
    return sign_later(config, message, body=body, head=head).result()


class Pending:
    """A message whose DKIM-Signature header is still being computed, by an executor's thread:
    the RSA operation releases the GIL (cryptography >= 48), so it runs beside the sending
    thread's socket writes and commits. `result()` is the signed message (waits for it)."""

    __slots__ = ("_header", "_message")

    def __init__(self, message: bytes, header: Future[bytes] | None = None) -> None:
        self._message, self._header = message, header

    def result(self) -> bytes:
        if self._header is None:
            return self._message
        return self._header.result() + self._message


def sign_later(
    config: Config,
    message: bytes,
    *,
    body: Sequence[bytes] | None = None,
    head: Sequence[bytes] | None = None,
    executor: Executor | None = None,
) -> Pending:
    """`sign`, its RSA operation handed to `executor` when one is given (else done now)."""
    settings = config.dkim
    if settings is None:
        return Pending(message)
    key = private_key(settings)
    try:
        header = unsigned_header(
            message,
            selector=settings.selector.encode("ascii"),
            domain=settings.domain.encode("ascii"),
            body=body,
            head=head,
        )
    except UnicodeEncodeError as exc:
        raise ConfigError(f"cannot DKIM-sign: {exc}", field="dkim") from None
    if executor is None:
        return Pending(header.complete(key) + message)
    return Pending(message, executor.submit(header.complete, key))


@dataclass(frozen=True)
class Unsigned:
    """A DKIM-Signature header but for its b= value: `data` is what the key signs."""

    value: bytes  # the header's value up to and including "b="
    data: bytes

    def complete(self, key: rsa.RSAPrivateKey) -> bytes:
        """The whole header line (CRLF-terminated), signed with `key`."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        encoded = base64.b64encode(key.sign(self.data, padding.PKCS1v15(), hashes.SHA256()))
        lines = [encoded[i : i + _FOLD - 1] for i in range(0, len(encoded), _FOLD - 1)]
        return b"DKIM-Signature:" + self.value + b"\r\n\t" + b"\r\n\t".join(lines) + b"\r\n"


def signature(
    message: bytes,
    key: rsa.RSAPrivateKey,
    *,
    selector: bytes,
    domain: bytes,
    canonicalization: bytes = DEFAULT_CANONICALIZATION,
    timestamp: int | None = None,
    body: Sequence[bytes] | None = None,
    head: Sequence[bytes] | None = None,
) -> bytes:
    """The `DKIM-Signature: ...` header line (CRLF-terminated) for `message` (RFC 6376 3.5)."""
    return unsigned_header(
        message,
        selector=selector,
        domain=domain,
        canonicalization=canonicalization,
        timestamp=timestamp,
        body=body,
        head=head,
    ).complete(key)


def unsigned_header(
    message: bytes,
    *,
    selector: bytes,
    domain: bytes,
    canonicalization: bytes = DEFAULT_CANONICALIZATION,
    timestamp: int | None = None,
    body: Sequence[bytes] | None = None,
    head: Sequence[bytes] | None = None,
) -> Unsigned:
    """Everything of the signature but the RSA operation (`Unsigned.complete` does that).

    Every name in SIGNED_HEADERS is in h=, present or not, so nobody can add one later.
    `body` and `head`, when given, are the message's body and its header block (blank line
    included) in pieces: an issue's fixed parts are the same objects for every reader, so
    their canonical forms are computed once per issue (`_hashed_in_pieces`,
    `_fields_in_pieces`) instead of the whole message's per reader.
    """
    from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError

    try:
        policy = CanonicalizationPolicy.from_c_value(canonicalization)
    except InvalidCanonicalizationPolicyError as exc:
        raise ValueError(f"not a DKIM canonicalization: {canonicalization!r}") from exc
    digest = _hashed_in_pieces(policy, message, body) if body is not None else None
    fields = _fields_in_pieces(policy, message, head) if head is not None else None
    if digest is None or fields is None:
        headers, whole = parse(message)
        fields = fields or canonical_fields(policy, headers)
        digest = digest or hashlib.sha256(canonical_body(policy, whole)).digest()
    stamp = str(int(time.time()) if timestamp is None else timestamp).encode("ascii")
    # b= goes last and on a line of its own, so the value hashed below (b= empty) is exactly the
    # header a verifier sees once it strips the b= value, whatever the canonicalization.
    value: bytes = (
        b" v=1; a=rsa-sha256; c=" + bytes(policy.to_c_value()) + b";\r\n\td=" + domain
        + b"; s=" + selector + b"; t=" + stamp + b";\r\n\t" + _NAMES
        + b";\r\n\tbh=" + base64.b64encode(digest) + b";\r\n\tb="
    )  # fmt: skip
    (own,) = canonical_fields(policy, [(b"DKIM-Signature", value)])
    signed = [*_select(fields, _INCLUDE), (own[0], own[1].rstrip())]
    return Unsigned(value, b"".join(name + b":" + field for name, field in signed))


def _select(fields: Sequence[Sequence[bytes]], names: Sequence[bytes]) -> list[Sequence[bytes]]:
    """dkimpy's `select_headers`, without its scan of every field per name (~60 us a
    message): for each name, the last instance not yet taken."""
    instances: dict[bytes, list[Sequence[bytes]]] = {}
    for field in fields:
        instances.setdefault(field[0].lower(), []).append(field)
    return [instances[name].pop() for name in names if instances.get(name)]


def _fields_in_pieces(
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
    body = body.replace(b"\t", b" ")
    while b"  " in body:
        body = body.replace(b"  ", b" ")
    body = body.replace(b" \r\n", b"\r\n")
    return bytes(correct_empty_body(strip_trailing_lines(body)))


def _hashed_in_pieces(
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


def _relaxed(piece: bytes) -> bytes | None:
    """`canonical_body`'s blank-squeezing for one piece (no end-of-body step); None when the
    piece holds a bare CR or LF."""
    if not _crlf_only(piece):
        return None
    piece = piece.replace(b"\t", b" ")
    while b"  " in piece:
        piece = piece.replace(b"  ", b" ")
    return piece.replace(b" \r\n", b"\r\n")


# An issue's fixed parts (~30 pieces, the same bytes objects for every reader: each one's hash
# is computed once) stay, being used by every message; a reader's own pieces (~8 a message)
# pass through. Bounded, so a send's memory stays flat however many readers it has.
_relaxed_cached = functools.lru_cache(maxsize=256)(_relaxed)


def _fold_names(names: list[bytes]) -> bytes:
    """`h=a:b:c` folded before a name when the line would pass _FOLD columns (FWS is allowed
    around each colon of h=, RFC 6376 3.5)."""
    lines = [b"h="]
    for index, name in enumerate(names):
        piece = name + (b":" if index < len(names) - 1 else b"")
        if len(lines[-1]) + len(piece) > _FOLD - 8:
            lines.append(b"")
        lines[-1] += piece
    return b"\r\n\t".join(lines)


_NAMES = _fold_names(_INCLUDE)
