"""Every public URL and per-reader address the pipeline hands out, in one place.

The email, the archive, the web endpoints and the inbox must agree on these, so nobody else
builds them by string concatenation.
"""

from __future__ import annotations

import functools
import re
from email.utils import parseaddr

from newsletter.settings import Config

# Already a slug: python-slugify would return it unchanged (lower-case ASCII letters and digits,
# single hyphens between), so issue files named as slugs load without importing it.
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def issue_url(config: Config, slug: str) -> str:
    """The issue's archive page (`<archive>/<slug>/index.html`), also its email "web version"."""
    return config.archive_url(f"{slug}/")


def slugify(text: str, *, max_length: int = 0) -> str:
    """Lowercase ASCII letters, digits and single hyphens: safe in URLs and as a file name.

    Any script is transliterated ("Привет мир" -> "privet-mir") by python-slugify (through
    text-unidecode), so editors writing in Cyrillic, Greek or CJK get a readable name too.
    `max_length` cuts at a word boundary.
    """
    if _SLUG.fullmatch(text) and (not max_length or len(text) <= max_length):
        return text
    from slugify import slugify as _slugify  # text-unidecode's tables: only for other text

    return _slugify(text, max_length=max_length, word_boundary=bool(max_length))


def plus_address(address: str, token: str) -> str:
    """`news@example.com` + token -> `news+token@example.com` (RFC 5233 subaddressing)."""
    local, domain = _local_and_domain(address)
    return f"{local}+{token}@{domain}"


@functools.lru_cache(maxsize=64)
def _local_and_domain(address: str) -> tuple[str, str]:
    # parseaddr costs ~15 us; the base address is the same for every reader of a send.
    _, addr = parseaddr(address)
    local, _, domain = (addr or address).rpartition("@")
    return local.split("+", 1)[0], domain


def ascii_address(address: str) -> str:
    """`anna@bücher.de` -> `anna@xn--bcher-kva.de` (IDNA 2008), so headers and RCPT stay ASCII.

    Raises ValueError for a non-ASCII local part: that needs SMTPUTF8 (RFC 6531), which a
    newsletter cannot count on every relay to offer.
    """
    if address.isascii():
        return address
    # Imported here: email-validator costs ~30 ms to import, and most lists are all ASCII.
    from email_validator import EmailNotValidError, validate_email

    try:
        ascii_email = validate_email(address, check_deliverability=False).ascii_email
    except EmailNotValidError as exc:
        raise ValueError(f"not a deliverable address: {address!r} ({exc})") from None
    if ascii_email is None:
        raise ValueError(f"{address!r} has a non-ASCII local part (needs SMTPUTF8)")
    return str(ascii_email)


def token_from_address(address: str, base: str) -> str | None:
    """The token in `news+token@example.com` when it is a subaddress of `base`, else None."""
    _, addr = parseaddr(address)
    _, base_addr = parseaddr(base)
    local, _, domain = addr.lower().rpartition("@")
    base_local, _, base_domain = base_addr.lower().rpartition("@")
    if domain != base_domain or "+" not in local:
        return None
    stem, _, token = local.partition("+")
    return token if stem == base_local and token else None


def bounce_base(config: Config) -> str:
    """The envelope sender before VERP: `bounce_address`, else the From address."""
    return config.bounce_address or parseaddr(config.sender)[1]


def bounce_address(config: Config, token: str) -> str:
    """The reader's bounce mailbox (VERP envelope sender): bounces and auto-replies only."""
    return plus_address(bounce_base(config), token)


def unsubscribe_address(config: Config, token: str) -> str:
    """The reader's own unsubscribe mailbox (the List-Unsubscribe mailto): a person asking to
    leave there unsubscribes that reader; machine mail there changes nothing."""
    return plus_address(config.reply_to, token)


def unsubscribe_mailto(config: Config, token: str) -> str:
    return f"mailto:{unsubscribe_address(config, token)}?subject=unsubscribe"


def unsubscribe_web_url(config: Config, token: str) -> str | None:
    """The https one-click endpoint (RFC 8058), when `web.public_url` is configured."""
    if not config.web.public_url:
        return None
    return config.web.public_url.rstrip("/") + f"/unsubscribe/{token}"


def unsubscribe_link(config: Config, token: str) -> str:
    """What the footer links: the web page when there is one, else the mailto."""
    return unsubscribe_web_url(config, token) or unsubscribe_mailto(config, token)
