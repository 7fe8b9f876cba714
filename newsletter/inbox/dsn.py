"""Reading bounces: RFC 3464 delivery status notifications and the common free-text forms.

Used by `classify`: finds the failed recipient, the RFC 3463 status and whether the failure is
permanent. The stdlib `email` package parses the MIME; the free-text forms (qmail, Exim,
Exchange 2003, Domino, Gmail, Yahoo...) and broken MIME are read from the notification text,
never from the returned copy of our own message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Any

from newsletter.inbox.replytext import part_text

# Status codes RFC 3463 calls permanent that are in practice temporary: mailbox full,
# mail system full, delivery time expired. They never mark a reader bounced at once.
SOFT_PERMANENT = frozenset({"5.2.2", "5.3.1", "5.4.7"})

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_REPLY_CODE = re.compile(r"(?<![\d.#-])([45][0-5]\d)(?=[\s-])")
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)

# Where the notification ends and the returned copy of the message begins.
_COPY_STARTS = re.compile(
    r"""^\s*(-+\s*(this\s+is\s+a\s+copy\s+of|below\s+this\s+line|original\s+message|
        undelivered\s+message|the\s+original\s+message|start\s+of\s+returned)|
        bounced\s+e-?mail:|original\s+message\s+follows|-+\s*original\s+message\s*-+|
        return-path:|received:\s)""",
    re.IGNORECASE | re.VERBOSE | re.MULTILINE,
)
_DELAY_WORDS = re.compile(
    r"""warning\s+message\s+only|delivery\s+(to\s+the\s+following\s+recipients?\s+)?has\s+been
        \s+delayed|has\s+not\s+yet\s+been\s+delivered|will\s+(be\s+)?retr(y|ied)|still\s+being
        \s+retried|delivery\s+delayed|delay\s+reason|\(delay\)|mail\s+delivery\s+delayed""",
    re.IGNORECASE | re.VERBOSE,
)
_HARD_WORDS = re.compile(
    r"""user\s+unknown|unknown\s+(user|recipient)|no\s+such\s+(user|mailbox|recipient|address)|
        recipient\s+name\s+is\s+not\s+recognized|not\s+listed\s+in|does\s+not\s+exist|
        may\s+not\s+exist|account\s+(has\s+been\s+)?(disabled|closed|removed)|
        invalid\s+(address|recipient|mailbox)|mailbox\s+unavailable|host\s+not\s+found|
        couldn't\s+find\s+any\s+host|domain\s+not\s+found|address\s+rejected""",
    re.IGNORECASE | re.VERBOSE,
)
_SOFT_WORDS = re.compile(
    r"mailbox\s+(is\s+)?full|over\s+quota|quota\s+exceeded|insufficient\s+(disk\s+)?space|"
    r"out\s+of\s+storage|try\s+again\s+later|temporar",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"""undeliver|delivery\s+(status\s+)?notification|failure\s+notice|returned\s+mail|
        mail\s+delivery\s+(failed|failure|system)|delivery\s+failure|could\s+not\s+be\s+delivered|
        ^warning:\s+message\s+\S+\s+delayed|delayed\s+mail|bounce\s+notification|
        delivery\s+has\s+failed|nondeliverable|non-delivery|mail\s+system\s+error""",
    re.IGNORECASE | re.VERBOSE,
)
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mdaemon)\b", re.IGNORECASE)


def is_system_sender(address: str) -> bool:
    """MAILER-DAEMON, postmaster and friends: the mail system, not a person."""
    return bool(_DAEMON.match(address))


@dataclass(frozen=True)
class Bounce:
    recipient: str | None
    status: str | None
    hard: bool
    reason: str


def looks_like_bounce(message: Message) -> bool:
    """A free-text bounce: sent by the mail system about a failed delivery."""
    if message.get("X-Failed-Recipients"):
        return True
    _, sender = parseaddr(str(message.get("From", "")))
    return_path = str(message.get("Return-Path", "")).strip()
    from_system = bool(_DAEMON.match(sender)) or return_path in ("<>", "<MAILER-DAEMON>")
    return from_system and bool(_BOUNCE_SUBJECT.search(str(message.get("Subject", ""))))


def parse_bounce(message: Message, ignore: frozenset[str]) -> Bounce | None:
    """The failed recipient and the failure's kind, or None when this is no failure report.

    `ignore` holds addresses that are never the failed recipient (ours, the bounce's own).
    """
    ses = _parse_ses(message)
    if ses is not None:
        return ses
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            parsed = _from_status_fields(_status_blocks(part))
            if parsed is not None:
                return parsed
    text = _notification_text(message)
    if re.search(r"^\s*(final|original)-recipient\s*:", text, re.IGNORECASE | re.MULTILINE):
        # Broken MIME (no boundary) or a DSN pasted as text: read its fields from the text.
        parsed = _from_status_fields(_blocks_from_text(text))
        if parsed is not None:
            return parsed
    if not looks_like_bounce(message):
        return None
    return _from_free_text(message, text, ignore)


def _status_blocks(part: Message) -> list[dict[str, str]]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [
            {k.lower(): str(v) for k, v in block.items()}
            for block in payload
            if isinstance(block, Message)
        ]
    return _blocks_from_text(part_text(part))


def _blocks_from_text(text: str) -> list[dict[str, str]]:
    text = re.sub(r"=\r?\n", "", text)  # quoted-printable soft breaks left in a text DSN
    blocks: list[dict[str, str]] = [{}]
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if blocks[-1]:
                blocks.append({})
            last = None
            continue
        if line[:1] in " \t" and last:
            blocks[-1][last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", name.strip()):
            last = name.strip().lower()
            blocks[-1][last] = value.strip()
    return [b for b in blocks if b]


def _from_status_fields(blocks: list[dict[str, str]]) -> Bounce | None:
    for block in blocks:
        action = block.get("action", "").strip().lower()
        recipient_field = block.get("final-recipient") or block.get("original-recipient")
        if not recipient_field or not action:
            continue
        if action not in ("failed", "delayed"):
            return None  # delivered / relayed / expanded: a success report, not a bounce
        recipient = _address_in(recipient_field.partition(";")[2] or recipient_field)
        diagnostic = block.get("diagnostic-code", "")
        status = _status_code(block.get("status", "")) or _status_code(diagnostic)
        if action == "delayed":
            return Bounce(recipient, status, False, f"delayed {status or ''}".strip())
        hard = _is_hard(status, diagnostic)
        return Bounce(recipient, status, hard, f"failed {status or ''} {diagnostic}".strip())
    return None


def _status_code(text: str) -> str | None:
    match = _ENHANCED.search(text)
    return ".".join(match.groups()) if match else None


def _is_hard(status: str | None, text: str) -> bool:
    if status is not None:
        return status.startswith("5.") and status not in SOFT_PERMANENT
    code = _REPLY_CODE.search(text)
    if code is not None:
        return code.group(1).startswith("5") and not _SOFT_WORDS.search(text)
    return bool(_HARD_WORDS.search(text)) and not _SOFT_WORDS.search(text)


def _from_free_text(message: Message, text: str, ignore: frozenset[str]) -> Bounce:
    failed = [addr for _, addr in getaddresses(message.get_all("X-Failed-Recipients", []))]
    candidates = failed + _ADDRESS.findall(text)
    recipient = next((a.lower() for a in candidates if not _ours(a.lower(), ignore)), None)
    subject = str(message.get("Subject", ""))
    delayed = bool(_DELAY_WORDS.search(text) or _DELAY_WORDS.search(subject))
    status = _status_code(text)
    summary = " ".join(text.split())[:200]
    if delayed:
        return Bounce(recipient, status, False, f"delayed {summary}")
    return Bounce(recipient, status, _is_hard(status, text), summary)


def _ours(address: str, ignore: frozenset[str]) -> bool:
    """The bounce's own or our addresses, including our `+token` (VERP) variants."""
    local, _, domain = address.rpartition("@")
    base = f"{local.split('+', 1)[0]}@{domain}"
    return address in ignore or base in ignore or bool(_DAEMON.match(address))


def _notification_text(message: Message) -> str:
    """The human-readable report, without the returned copy of the original message."""
    texts: list[str] = []
    for part in _top_parts(message):
        broken = part.get_content_maintype() == "multipart" and not part.is_multipart()
        if broken or (
            part.get_content_maintype() == "text"
            and part.get_content_type() != "text/rfc822-headers"
        ):
            texts.append(part_text(part))
    text = "\n".join(texts)
    if not message.is_multipart() and message.get_content_maintype() != "multipart":
        # Free-text bounces append the original after a marker line (or straight after).
        match = _COPY_STARTS.search(text)
        if match and match.start() > 0:
            text = text[: match.start()]
    return text


def _top_parts(message: Message) -> list[Message]:
    if not message.is_multipart():
        return [message]
    out: list[Message] = []
    payload = message.get_payload()
    if isinstance(payload, str):
        return [message]  # multipart without a usable boundary: the stdlib keeps it as text
    for sub in payload:
        if not isinstance(sub, Message) or sub.get_content_maintype() == "message":
            continue
        out.extend(_top_parts(sub))
    return out


def _address_in(text: str) -> str | None:
    match = _ADDRESS.search(text)
    return match.group(0).lower() if match else None


def _parse_ses(message: Message) -> Bounce | None:
    """Amazon SES notifications relayed by SNS as JSON in a plain-text body."""
    found = ses_notification_type(message)
    if found is None or found[0] != "Bounce":
        return None
    bounce = found[1].get("bounce")
    bounce = bounce if isinstance(bounce, dict) else {}
    recipients = bounce.get("bouncedRecipients") or [{}]
    first = (
        recipients[0] if isinstance(recipients, list) and isinstance(recipients[0], dict) else {}
    )
    status = _status_code(str(first.get("status", "")))
    hard = bounce.get("bounceType") == "Permanent"
    address = first.get("emailAddress")
    return Bounce(str(address).lower() if address else None, status, hard, "Amazon SES bounce")


def ses_notification_type(message: Message) -> tuple[str, dict[str, Any]] | None:
    """('Complaint' | 'Delivery' | 'Bounce', data) for an SES notification, else None."""
    if message.is_multipart():
        return None
    body = part_text(message).lstrip()
    if '"notificationType"' not in body[:200] or "{" not in body:
        return None
    # SNS wraps the one-line JSON at a fixed width; JSON never needs the line breaks.
    joined = re.sub(r"\r?\n", "", body[body.index("{") :])
    try:
        data, _ = json.JSONDecoder().raw_decode(joined)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return str(data.get("notificationType")), data
