"""Applying classified incoming mail to the subscriber store, once per message.

Who a message is about: the `+token` in one of our addresses first (the recipient address,
our Message-ID in a bounce or report), then the address the message names (the From of a
reply, the failed recipient of a bounce). An unknown reader changes nothing and is logged.
Each message is recorded as an `inbox` event keyed by its Message-ID (or a hash of its bytes),
so processing it again changes nothing and sends no second confirmation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from newsletter.classify import (
    Classification,
    auto_submitted_reason,
    classify,
    header_text,
    sender_unverified,
)
from newsletter.config import Config
from newsletter.mailboxes import Inbox, RawMessage
from newsletter.store import Store, Subscriber

log = logging.getLogger("newsletter.inbox")

# Sends one message (recipient, bytes, Message-ID): `newsletter.transport` in production.
SendConfirmation = Callable[[str, bytes, str], None]


@dataclass(frozen=True)
class Outcome:
    key: str
    classification: Classification
    reader: str | None  # the subscriber's address when one was found
    action: str  # what changed: "unsubscribed", "bounced", "soft bounce", "nothing: ..."
    confirmed: bool = False
    repeat: bool = False  # this message was processed before


@dataclass
class Summary:
    kinds: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if outcome.repeat:
            self.actions["already processed"] += 1
            return
        self.kinds[outcome.classification.kind] += 1
        self.actions[outcome.action.split(":")[0]] += 1


def message_key(raw: bytes, message: EmailMessage) -> str:
    """The idempotency key: the Message-ID when there is one, else a hash of the bytes."""
    msgid = " ".join(str(message.get("Message-ID", "")).split())
    if re.fullmatch(r"<[^<>\s]+@[^<>\s]+>", msgid):
        return "mid:" + msgid
    normalised = raw.replace(b"\r\n", b"\n").strip()
    return "sha256:" + hashlib.sha256(normalised).hexdigest()


class Processor:
    def __init__(
        self, config: Config, store: Store, confirm: SendConfirmation | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.confirm = confirm
        self.bases = (config.reply_to, parseaddr(config.sender)[1])

    def run(self, inbox: Inbox) -> Summary:
        summary = Summary()
        for raw in inbox.messages():
            summary.add(self.process(raw))
            inbox.processed(raw)
        return summary

    def process(self, raw: RawMessage | bytes) -> Outcome:
        data = raw.data if isinstance(raw, RawMessage) else raw
        message = message_from_bytes(data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        key = message_key(data, message)
        result = classify(message, self.bases)
        if self.store.has_event("inbox", key):
            return Outcome(key, result, None, "nothing: already processed", repeat=True)
        reader = self._reader(message, result)
        action = self._apply(message, result, reader)
        confirmed = False
        if action == "unsubscribed" and reader is not None:
            confirmed = self._confirm(message, key, reader)
        detail = {
            "kind": result.kind,
            "action": action,
            "from": header_text(message, "From"),
            "date": str(message.get("Date", "")),
            "subject": header_text(message, "Subject"),
            "reason": result.reason,
            "text": result.own_text[:4000] if result.kind in ("feedback", "unsubscribe") else "",
        }
        # The issue it answers, when it quotes our Message-ID: `newsletter report` counts
        # feedback, unsubscribes and complaints per issue from this.
        slug = _issue_slug(message, reader.token) if reader else None
        self.store.record_event(
            reader,
            "inbox",
            json.dumps(detail, ensure_ascii=False),
            key=key,
            source="inbox",
            issue_slug=slug,
        )
        who = reader.email if reader else (result.recipient or "nobody")
        # An unknown reader asking for something is worth a look; the rest is routine.
        level = logging.WARNING if action == "nothing: unknown reader" else logging.INFO
        log.log(level, "%s from %s: %s (%s)", result.kind, who, action, result.reason[:120])
        return Outcome(key, result, reader.email if reader else None, action, confirmed)

    def _reader(self, message: EmailMessage, result: Classification) -> Subscriber | None:
        if result.kind == "auto_reply":
            return None  # never acted on, so never looked up
        token = result.token
        if token is None and result.kind in ("bounce", "complaint"):
            token = self._token_in_message_ids(message)
        if token is not None:
            found = self.store.get_by_token(token)
            if found is not None:
                return found
        if result.recipient is None:
            return None
        if result.kind in ("unsubscribe", "feedback") and sender_unverified(message):
            log.warning("not trusting From %s: authentication failed", result.recipient)
            return None
        return self.store.get_by_email(result.recipient)

    def _token_in_message_ids(self, message: EmailMessage) -> str | None:
        """A token from our own Message-ID (`<slug.TOKEN@domain>`) quoted by a report."""
        domain = parseaddr(self.config.sender)[1].rpartition("@")[2].lower()
        if not domain:
            return None
        pattern = re.compile(rf"<[^<>\s@]+\.([a-z2-7]{{16,64}})@{re.escape(domain)}>", re.I)
        for match in pattern.finditer(message.as_string(policy=policy.compat32)):
            return match.group(1).lower()
        return None

    def _apply(
        self, message: EmailMessage, result: Classification, reader: Subscriber | None
    ) -> str:
        if result.kind == "auto_reply":
            return "nothing: auto-reply"
        if result.kind == "feedback":
            return "kept for the editor" if reader else "kept for the editor (unknown sender)"
        if reader is None:
            return "nothing: unknown reader"
        if result.kind == "unsubscribe":
            source = "reply" if result.reason.startswith(("reply", "subject")) else "mailto"
            changed = self.store.unsubscribe(reader, source=source, detail=result.reason)
            return "unsubscribed" if changed else f"nothing: already {reader.status}"
        if result.kind == "complaint":
            changed = self.store.mark_complained(reader, detail=result.reason)
            return "complained" if changed else f"nothing: already {reader.status}"
        slug = _issue_slug(message, reader.token)
        bounced = self.store.record_bounce(
            reader,
            hard=bool(result.hard),
            issue_slug=slug,
            detail=result.reason,
            soft_limit=self.config.inbox.soft_bounce_limit,
        )
        if bounced:
            return "bounced"
        return "soft bounce" if not result.hard else f"nothing: already {reader.status}"

    def _confirm(self, message: EmailMessage, key: str, reader: Subscriber) -> bool:
        """One short confirmation, never to a machine, never twice for one message."""
        if self.confirm is None or auto_submitted_reason(message) is not None:
            return False
        if not self.store.record_event(reader, "unsubscribe_confirmation", None, key=key):
            return False
        note = confirmation(self.config, reader.email, message)
        self.confirm(reader.email, note.as_bytes(), str(note["Message-ID"]))
        return True


def _issue_slug(message: EmailMessage, token: str) -> str | None:
    """The issue a bounce is about, from our Message-ID `<slug.token@domain>` inside it."""
    text = message.as_string(policy=policy.compat32)
    match = re.search(rf"<([^<>\s@]+)\.{re.escape(token)}@", text, re.IGNORECASE)
    return match.group(1) if match else None


def confirmation(config: Config, to: str, original: EmailMessage) -> EmailMessage:
    """The short "you are unsubscribed" note (RFC 3834: Auto-Submitted: auto-replied)."""
    reply = EmailMessage()
    reply["From"] = config.sender
    reply["To"] = to
    reply["Subject"] = f"You are unsubscribed from {config.name}"
    reply["Date"] = formatdate(localtime=False)
    domain = parseaddr(config.sender)[1].rpartition("@")[2] or None
    reply["Message-ID"] = make_msgid("unsubscribed", domain=domain)
    reply["Auto-Submitted"] = "auto-replied"
    reply["Precedence"] = "auto_reply"
    original_id = " ".join(str(original.get("Message-ID", "")).split())
    if re.fullmatch(r"<[^<>\s]+>", original_id):
        reply["In-Reply-To"] = original_id
        reply["References"] = original_id
    reply.set_content(
        f"You will get no more issues of {config.name} at {to}.\n\n"
        f"If this was a mistake, just reply to this message.\n\n-- \n{config.name}\n"
    )
    return reply


def process_all(
    config: Config, store: Store, inbox: Inbox, confirm: SendConfirmation | None
) -> Summary:
    return Processor(config, store, confirm).run(inbox)


def feedback_entries(details: Iterable[str]) -> list[dict[str, str]]:
    """The reader feedback among recorded `inbox` events (their JSON details)."""
    entries = []
    for detail in details:
        try:
            data = json.loads(detail)
        except (TypeError, ValueError):
            continue
        if isinstance(data, dict) and data.get("kind") == "feedback":
            entries.append({k: str(v) for k, v in data.items()})
    return entries
