"""Parsing incoming mail within bounds, so one hostile message never stops the inbox.

The stdlib parser recurses once per nested multipart: ~300 levels exhaust Python's stack
(RecursionError), and every part costs memory. So the raw bytes are measured before parsing:
size, multipart declarations (an upper bound on the nesting depth) and part count. A message
outside the bounds, or one the parser or the classifier chokes on, is `Unreadable`: the inbox
records it by the digest of its bytes and sets it aside (quarantine) instead of crashing.
"""

from __future__ import annotations

import hashlib
import re
from email import message_from_bytes, policy
from email.message import EmailMessage

MAX_BYTES = 25 * 1024 * 1024  # the usual provider limit on one message
MAX_MULTIPARTS = 64  # nesting ~200 deep takes the parser ~0.4 s; 300 overflows its stack
MAX_PARTS = 1000

_MULTIPART = re.compile(rb"^content-type:\s*\"?multipart/", re.IGNORECASE | re.MULTILINE)
_PART = re.compile(rb"^content-type:", re.IGNORECASE | re.MULTILINE)


class Unreadable(Exception):
    """This message cannot be parsed or classified safely; the text says why."""


def digest_key(data: bytes) -> str:
    """The message's identity when nothing inside it can be trusted: a hash of its bytes."""
    normalised = data.replace(b"\r\n", b"\n").strip()
    return "sha256:" + hashlib.sha256(normalised).hexdigest()


def check_bounds(data: bytes) -> None:
    """Raise Unreadable when the bytes are beyond what the parser should be given."""
    if len(data) > MAX_BYTES:
        raise Unreadable(f"too large ({len(data):,} bytes; the limit is {MAX_BYTES:,})")
    multiparts = len(_MULTIPART.findall(data))
    if multiparts > MAX_MULTIPARTS:
        raise Unreadable(
            f"too deeply nested ({multiparts} multipart parts; at most {MAX_MULTIPARTS})"
        )
    parts = len(_PART.findall(data))
    if parts > MAX_PARTS:
        raise Unreadable(f"too many MIME parts ({parts}; at most {MAX_PARTS})")


def parse_bounded(data: bytes) -> EmailMessage:
    """The parsed message, or Unreadable with the reason."""
    check_bounds(data)
    try:
        message = message_from_bytes(data, policy=policy.default)
    except RecursionError:
        raise Unreadable("too deeply nested for the parser") from None
    except Exception as exc:  # the parser is lenient; anything it raises is the input's fault
        raise Unreadable(f"cannot parse: {type(exc).__name__}: {exc}"[:300]) from None
    if not isinstance(message, EmailMessage):
        raise Unreadable("cannot parse: not an email message")
    return message
