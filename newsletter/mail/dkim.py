"""DKIM signatures (RFC 6376), when `dkim: {selector, domain, private_key_env}` is set.

Gmail and Yahoo want bulk mail signed with the List-Unsubscribe headers covered, so a relay
cannot add or rewrite the one-click URL. The key's PATH comes from the environment variable the
config names; the key itself never sits in newsletter.yaml. With `dkim.ed25519: {selector,
private_key_env}` each message also gets an Ed25519 signature (RFC 8463) in the same domain,
beside the RSA one that receivers without Ed25519 verify: both cover the same headers and body
hash, computed once.

dkimpy does what it does well here: the canonicalisation policies and parsing the header
lines (and, in the tests, verifying every signature). The signatures themselves are OpenSSL's,
through the `cryptography` package: dkimpy's pure-Python RSA took ~11 ms a message; OpenSSL
takes under a millisecond (Ed25519 ~60 us), and from cryptography 48 releases the GIL while it
signs, so a send with a spare core signs the next message while the current one goes out
(`sign_later`). Canonicalising fast and piece by piece (an issue's fixed parts once per issue):
`newsletter.mail.canonical`.

dkimpy (which imports dnspython) and cryptography are imported when a message is signed, not
with this module: a command that signs nothing does not pay for them (`newsletter --help`).
"""

from __future__ import annotations

import base64
import contextlib
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

    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    SigningKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

RSA_SHA256 = b"rsa-sha256"
ED25519_SHA256 = b"ed25519-sha256"  # RFC 8463

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
DEFAULT_CANONICALIZATION = b"relaxed/relaxed"  # DkimConfig.canonicalization's default
_FOLD = 76  # columns: the header stays within RFC 5322's 78 with its CRLF


def key_path(env: str, field: str) -> Path:
    """The private key file named by `$env`; ConfigError (naming `field`) when it is unset."""
    raw = os.environ.get(env)
    if not raw:
        raise ConfigError(
            f"the DKIM private key path is read from ${env}, which is not set", field=field
        )
    return Path(raw)


def _named(settings: DkimConfig) -> None:
    """ConfigError unless every signature has its selector and the domain is set."""
    missing = [
        name
        for name, value in (("selector", settings.selector), ("domain", settings.domain))
        if not value
    ]
    if settings.ed25519 is not None and not settings.ed25519.selector:
        missing.append("ed25519.selector")
    if missing:
        raise ConfigError("expected a value when dkim is configured", field=f"dkim.{missing[0]}")


def _version(path: Path) -> int:
    """The key file's modification time: a key is parsed once per version (a rotated key is
    picked up), and a message costs one stat, not a read."""
    try:
        return path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"cannot read the DKIM private key: {exc.strerror}", path=path) from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the DKIM private key: {exc.strerror}", path=path) from None


@functools.lru_cache(maxsize=4)
def _load_rsa(path: Path, version: int) -> rsa.RSAPrivateKey:
    """Read and check the key once per file version."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"not a PEM RSA private key ({exc})", path=path) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(
            "not a PEM RSA private key (DKIM signs with RSA; an Ed25519 key goes in dkim.ed25519)",
            path=path,
        )
    if key.key_size < 1024:
        raise ConfigError(f"the key has {key.key_size} bits; DKIM needs 1024 or more", path=path)
    return key


@functools.lru_cache(maxsize=4)
def _load_ed25519(path: Path, version: int) -> ed25519.Ed25519PrivateKey:
    """A PEM key (`openssl genpkey -algorithm ed25519`), or the base64 of its 32 bytes as
    dkimpy's `dknewkey --ktype ed25519` writes it."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    data = _read(path)
    key: object = None
    if data.lstrip().startswith(b"-----BEGIN"):
        with contextlib.suppress(ValueError, TypeError, UnsupportedAlgorithm):
            key = serialization.load_pem_private_key(data, password=None)
    else:
        with contextlib.suppress(ValueError):
            raw = base64.b64decode(b"".join(data.split()), validate=True)
            key = ed25519.Ed25519PrivateKey.from_private_bytes(raw)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(
            "not an Ed25519 private key (PEM, or the base64 key dknewkey writes)", path=path
        )
    return key


def private_key(settings: DkimConfig) -> rsa.RSAPrivateKey:
    """The RSA key, read from the file `$private_key_env` names."""
    path = key_path(settings.private_key_env, "dkim.private_key_env")
    return _load_rsa(path, _version(path))


def ed25519_key(settings: DkimConfig) -> ed25519.Ed25519PrivateKey | None:
    """The Ed25519 key of `dkim.ed25519`, if one is configured."""
    if settings.ed25519 is None:
        return None
    path = key_path(settings.ed25519.private_key_env, "dkim.ed25519.private_key_env")
    return _load_ed25519(path, _version(path))


def signers(settings: DkimConfig) -> list[tuple[bytes, str, SigningKey]]:
    """(algorithm, selector, key) for each signature a message gets: RSA, then Ed25519."""
    _named(settings)
    chosen: list[tuple[bytes, str, SigningKey]] = [
        (RSA_SHA256, settings.selector, private_key(settings))
    ]
    key = ed25519_key(settings)
    if settings.ed25519 is not None and key is not None:
        chosen.append((ED25519_SHA256, settings.ed25519.selector, key))
    return chosen


def check(config: Config) -> None:
    """Fail early (serve, send) with a one-line error instead of at the first message."""
    if config.dkim is not None:
        signers(config.dkim)


def sign(
    config: Config,
    message: bytes,
    *,
    body: Sequence[bytes] | None = None,
    head: Sequence[bytes] | None = None,
) -> bytes:
    """`message` with its DKIM-Signature header(s) prepended; unchanged when dkim is not
    configured. `body`, `head`: the message's body and header block in pieces, if the caller
    has them (see `unsigned_headers`)."""
    return sign_later(config, message, body=body, head=head).result()


class Pending:
    """A message whose DKIM-Signature headers are still being computed, by an executor's
    thread: the signing releases the GIL (cryptography >= 48), so it runs beside the sending
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
    """`sign`, its signing handed to `executor` when one is given (else done now)."""
    settings = config.dkim
    if settings is None:
        return Pending(message)
    chosen = signers(settings)
    try:
        headers = unsigned_headers(
            message,
            signers=[(algorithm, selector.encode("ascii")) for algorithm, selector, _ in chosen],
            domain=settings.domain.encode("ascii"),
            canonicalization=settings.canonicalization.encode("ascii"),
            body=body,
            head=head,
        )
    except UnicodeEncodeError as exc:
        raise ConfigError(f"cannot DKIM-sign: {exc}", field="dkim") from None
    keys = [key for _, _, key in chosen]
    if executor is None:
        return Pending(_complete(headers, keys) + message)
    return Pending(message, executor.submit(_complete, headers, keys))


def _complete(headers: Sequence[Unsigned], keys: Sequence[SigningKey]) -> bytes:
    return b"".join(header.complete(key) for header, key in zip(headers, keys, strict=True))


@dataclass(frozen=True)
class Unsigned:
    """A DKIM-Signature header but for its b= value: `data` is what the key signs."""

    value: bytes  # the header's value up to and including "b="
    data: bytes

    def complete(self, key: SigningKey) -> bytes:
        """The whole header line (CRLF-terminated), signed with `key` (the one its a= names)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        if isinstance(key, rsa.RSAPrivateKey):
            signature = key.sign(self.data, padding.PKCS1v15(), hashes.SHA256())
        else:  # Ed25519 signs the data's SHA-256, not the data (RFC 8463 section 3)
            signature = key.sign(hashlib.sha256(self.data).digest())
        encoded = base64.b64encode(signature)
        lines = [encoded[i : i + _FOLD - 1] for i in range(0, len(encoded), _FOLD - 1)]
        return b"DKIM-Signature:" + self.value + b"\r\n\t" + b"\r\n\t".join(lines) + b"\r\n"


def unsigned_headers(
    message: bytes,
    *,
    signers: Sequence[tuple[bytes, bytes]],
    domain: bytes,
    canonicalization: bytes = DEFAULT_CANONICALIZATION,
    timestamp: int | None = None,
    body: Sequence[bytes] | None = None,
    head: Sequence[bytes] | None = None,
) -> list[Unsigned]:
    """Everything of each signature but signing (`Unsigned.complete` does that), one for
    each (algorithm, selector) of `signers`; the body hash and the signed header fields are
    computed once for all of them.

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
    selected = canonical.select_fields(fields, _INCLUDE)
    signed = b"".join(name + b":" + field for name, field in selected)
    unsigned = []
    for algorithm, selector in signers:
        # b= goes last and on a line of its own, so the value hashed below (b= empty) is exactly
        # the header a verifier sees once it strips the b= value, whatever the canonicalization.
        value: bytes = (
            b" v=1; a=" + algorithm + b"; c=" + bytes(policy.to_c_value()) + b";\r\n\td=" + domain
            + b"; s=" + selector + b"; t=" + stamp + b";\r\n\t" + _NAMES
            + b";\r\n\tbh=" + base64.b64encode(digest) + b";\r\n\tb="
        )  # fmt: skip
        (own,) = canonical.canonical_fields(policy, [(b"DKIM-Signature", value)])
        unsigned.append(Unsigned(value, signed + own[0] + b":" + own[1].rstrip()))
    return unsigned


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
