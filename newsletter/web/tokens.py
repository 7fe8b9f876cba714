"""The web endpoints' secrets: the signing key, signed values, and what a token looks like.

Links carry a reader's token or a sign-up token; proofs (undo) and stored sign-up tokens are
HMAC-SHA256 under the key from `$web.secret_env`, so a leaked database cannot forge them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

from newsletter.config import Config
from newsletter.errors import ConfigError

TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")
_SECRET_MIN = 32


def web_secret(config: Config, environ: Mapping[str, str]) -> bytes:
    """The link-signing key from `$web.secret_env`; serve refuses to start without one."""
    value = environ.get(config.web.secret_env, "")
    if len(value) < _SECRET_MIN:
        state = "is not set" if not value else f"is shorter than {_SECRET_MIN} characters"
        raise ConfigError(
            f"the web secret is read from ${config.web.secret_env}, which {state}"
            " (make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            field="web.secret_env",
        )
    return value.encode()


class Signer:
    """HMAC-SHA256 of a purpose and values under the web secret, as hex."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, purpose: str, *values: str) -> str:
        message = "\x00".join((purpose, *values)).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    """Compared in constant time: a token's timing never tells how much of it was right."""
    return hmac.compare_digest(a.encode(), b.encode())


def mask(email: str) -> str:
    """`j•••@example.com`: enough for the reader to recognise, little for anyone else."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}•••@{domain}"
