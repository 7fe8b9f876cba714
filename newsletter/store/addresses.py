"""Subscriber addresses and names: normalisation and validation, for every way a reader
comes in (CSV import, the web sign-up, the CLI).

Validation is email-validator's, without DNS. It costs ~45 µs an address, too slow for a
million-row import, so plain ASCII addresses take a strict fast path first: it accepts only
what email-validator accepts (and normalises them the same way) and hands everything else to
email-validator. tests/test_subscribers_import.py proves the equivalence over tricky addresses.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import NamedTuple

# RFC 5322 dot-atom local part, then RFC 1123 host labels; the last label ends with a letter
# (email-validator's "valid top-level domain" rule). Anything subtler goes to email-validator.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD = r"(?:[A-Za-z0-9][A-Za-z0-9-]{0,61})?[A-Za-z]"
_FAST = re.compile(rf"({_ATEXT}(?:\.{_ATEXT})*)@((?:{_LABEL}\.)+)({_TLD})")
# Reserved names email-validator rejects (SPECIAL_USE_DOMAIN_NAMES are all single labels).
_SPECIAL_TLDS = frozenset(("arpa", "invalid", "local", "localhost", "onion", "test"))
_MAX_ADDRESS = 254


@cache
def _caseless_mailboxes() -> frozenset[str]:
    """email-validator's case-insensitive mailbox names (postmaster, abuse...). Imported on
    first use: email-validator compiles its grammar at import (~30 ms), which a command that
    never reads an address (`send`) need not pay."""
    from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

    return frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


class Address(NamedTuple):
    """A valid address: `email` for display and sending, `key` for identity (case-folded).

    (A NamedTuple, like ImportRow: immutable too, and 3x cheaper to build a million of.)"""

    email: str
    key: str


class InvalidAddress(ValueError):
    """The text is not a deliverable-looking address; the message says why."""


def fast_address(text: str) -> Address | None:
    """The Address for a plain ASCII address email-validator would accept alike, else None."""
    match = _FAST.fullmatch(text) if len(text) <= _MAX_ADDRESS else None
    if match is None:
        return None
    local, labels, tld = match.groups()
    tld = tld.lower()
    domain = labels.lower() + tld
    lowered = local.lower()
    if tld in _SPECIAL_TLDS or lowered in _caseless_mailboxes():
        return None
    # "ab--" labels are reserved (R-LDH, RFC 5890) unless Punycode, which needs decoding.
    if "--" in domain and any(label[2:4] == "--" for label in domain.split(".")):
        return None
    return Address(f"{local}@{domain}", f"{lowered}@{domain}")


def _fast_normalise(text: str) -> str | None:
    """The fast path's normalised address, for the equivalence tests."""
    address = fast_address(text)
    return None if address is None else address.email


def normalise_address(text: str) -> Address:
    """Trim and validate (no DNS); the domain is lower-cased and IDNA-decoded.

    Raises InvalidAddress with email-validator's explanation.
    """
    text = text.strip()
    address = fast_address(text)
    if address is not None:
        return address
    if not text:
        raise InvalidAddress("no address")
    from email_validator import EmailNotValidError, validate_email  # see _caseless_mailboxes

    try:
        email: str = validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
    local, _, domain = email.rpartition("@")
    # Readers who differ only in case are one reader, as in every major list manager.
    return Address(email, f"{local.lower()}@{domain}")


# Zero-width (non-)joiners are part of Persian, Indic and emoji spellings; other format
# characters (bidi overrides, BOMs) only disguise text.
_KEEP_FORMAT = frozenset("\u200c\u200d")


def clean_name(text: str | None) -> str | None:
    """A first name fit for a header or a greeting: no control characters or line breaks."""
    if text is None:
        return None
    if text.isprintable():  # the common case: no controls, format characters or odd spaces
        return unicodedata.normalize("NFC", " ".join(text.split())[:100]) or None
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cc" or category[0] == "Z":
            kept.append(" ")
        elif category[0] != "C" or ch in _KEEP_FORMAT:
            kept.append(ch)
    name = " ".join("".join(kept).split())[:100]
    return unicodedata.normalize("NFC", name) or None
