"""DKIM signatures (RFC 6376), when `dkim: {selector, domain, private_key_env}` is set.

Gmail and Yahoo want bulk mail signed with the List-Unsubscribe headers covered, so a relay
cannot add or rewrite the one-click URL. The key's PATH comes from the environment variable the
config names; the key itself never sits in newsletter.yaml.

dkimpy does what it does well here: the canonicalisation policies and parsing the header
lines (and, in the tests, verifying every signature). The RSA signature itself is OpenSSL's,
through the `cryptography` package: dkimpy's pure-Python RSA took ~11 ms a message; OpenSSL
takes under a millisecond, and from cryptography 48 releases the GIL while it signs, so a send
with a spare core signs the next message while the current one goes out (`sign_later`).
Canonicalising fast and piece by piece (an issue's fixed parts once per issue):
`newsletter.mail.canonical`.

dkimpy (which imports dnspython) and cryptography are imported when a message is signed, not
with this module: a command that signs nothing does not pay for them (`newsletter --help`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.errors import ConfigError
from newsletter.mail import canonical
from newsletter.settings import Config, DkimConfig

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

    from cryptography.hazmat.primitives.asymmetric import rsa

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
    (see `unsigned_header`)."""
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
    their canonical forms are computed once per issue (`canonical.hashed_in_pieces`,
    `canonical.fields_in_pieces`) instead of the whole message's per reader.
    """
    from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError

    try:
        policy = CanonicalizationPolicy.from_c_value(canonicalization)
    except InvalidCanonicalizationPolicyError as exc:
        raise ValueError(f"not a DKIM canonicalization: {canonicalization!r}") from exc
    digest = canonical.hashed_in_pieces(policy, message, body) if body is not None else None
    fields = canonical.fields_in_pieces(policy, message, head) if head is not None else None
    if digest is None or fields is None:
        headers, whole = canonical.parse(message)
        fields = fields or canonical.canonical_fields(policy, headers)
        digest = digest or hashlib.sha256(canonical.canonical_body(policy, whole)).digest()
    stamp = str(int(time.time()) if timestamp is None else timestamp).encode("ascii")
    # b= goes last and on a line of its own, so the value hashed below (b= empty) is exactly the
    # header a verifier sees once it strips the b= value, whatever the canonicalization.
    value: bytes = (
        b" v=1; a=rsa-sha256; c=" + bytes(policy.to_c_value()) + b";\r\n\td=" + domain
        + b"; s=" + selector + b"; t=" + stamp + b";\r\n\t" + _NAMES
        + b";\r\n\tbh=" + base64.b64encode(digest) + b";\r\n\tb="
    )  # fmt: skip
    (own,) = canonical.canonical_fields(policy, [(b"DKIM-Signature", value)])
    signed = [*canonical.select_fields(fields, _INCLUDE), (own[0], own[1].rstrip())]
    return Unsigned(value, b"".join(name + b":" + field for name, field in signed))


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
