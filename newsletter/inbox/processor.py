"""Applying classified incoming mail to the subscriber store, once per message.

Who a message is about: the `+token` in one of our addresses first (the unsubscribe address
it was sent to; for a bounce or report its proof: the reader's bounce address or our
Message-ID quoted), then, for a person's reply only, its From. A bounce or complaint without
proof changes nobody: it is kept for review (`inbox --review`), as is machine mail we cannot
read. A message that cannot be parsed at all is quarantined (`newsletter.inbox.quarantine`).
Each message is recorded as an `inbox` event keyed by its Message-ID (or a hash of its bytes),
so processing it again changes nothing and sends no second confirmation.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from newsletter.inbox.classify import (
    Classification,
    OwnAddresses,
    auto_submitted_reason,
    classify,
    header_text,
    sender_unverified,
)
from newsletter.inbox.mailboxes import Inbox, RawMessage
from newsletter.inbox.quarantine import Unreadable, digest_key, parse_bounded
from newsletter.links import bounce_base
from newsletter.mail.oneoff import OneOffSender, outgoing
from newsletter.mail.transport import TransportFailure
from newsletter.settings import Config
from newsletter.store.records import Subscriber
from newsletter.store.store import Store

log = logging.getLogger("newsletter.inbox.processor")

# Sends one message (recipient, bytes, Message-ID): `transport_confirmations` in production.
SendConfirmation = Callable[[str, bytes, str], None]


def transport_confirmations(config: Config, mailer: OneOffSender) -> SendConfirmation:
    """Unsubscribe confirmations through `mailer` (signed and redirected as every one-off
    mail is). A failed one is logged: the unsubscribe stands, only the courtesy note failed."""

    def send(recipient: str, data: bytes, message_id: str) -> None:
        # RFC 3834 3.3: automatic responses go out with a null return path, so a
        # failure to deliver one can never start a loop of replies.
        mail = outgoing(config, sender="", recipient=recipient, message_id=message_id, data=data)
        try:
            mailer.send(mail)
        except TransportFailure as exc:
            log.warning("confirmation to %s: %s", recipient, exc)

    return send


@dataclass(frozen=True)
class Outcome:
    key: str
    classification: Classification
    reader: str | None  # the subscriber's address when one was found
    action: str  # what changed: "unsubscribed", "bounced", "soft bounce", "nothing: ..."
    confirmed: bool = False
    repeat: bool = False  # this message was processed before
    quarantined: bool = False  # could not be parsed: recorded and set aside


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
        if outcome.quarantined:
            self.kinds["unreadable"] += 1
            self.actions["quarantined"] += 1
            return
        self.kinds[outcome.classification.kind] += 1
        self.actions[outcome.action.split(":")[0]] += 1


def message_key(raw: bytes, message: EmailMessage) -> str:
    """The idempotency key: the Message-ID when there is one, else a hash of the bytes."""
    msgid = " ".join(str(message.get("Message-ID", "")).split())
    if re.fullmatch(r"<[^<>\s]+@[^<>\s]+>", msgid):
        return "mid:" + msgid
    return digest_key(raw)


class Processor:
    def __init__(
        self,
        config: Config,
        store: Store,
        confirm: SendConfirmation | None = None,
        titles: Iterable[str] = (),
    ) -> None:
        """`titles`: our issue titles, so a Subject echoing one is not read as a request."""
        self.config = config
        self.store = store
        self.confirm = confirm
        self.ours = own_addresses(config, titles)

    def run(self, inbox: Inbox, recipient: str | None = None) -> Summary:
        summary = Summary()
        for raw in inbox.messages():
            outcome = self.process(raw, recipient)
            summary.add(outcome)
            if outcome.quarantined:
                inbox.quarantine(raw)
            else:
                inbox.processed(raw)
        return summary

    def process(self, raw: RawMessage | bytes, recipient: str | None = None) -> Outcome:
        """One message. `recipient`: the envelope recipient the MTA delivered it to."""
        data = raw.data if isinstance(raw, RawMessage) else raw
        try:
            message = parse_bounded(data)
            key = message_key(data, message)
            result = classify(message, self.ours, recipient)
        except Unreadable as exc:
            return self._quarantine(data, str(exc))
        except RecursionError:
            return self._quarantine(data, "too deeply nested to classify")
        except Exception as exc:
            # Parsing and classifying touch no store: whatever a hostile message makes them
            # raise is that message's problem, recorded and set aside, not the inbox's.
            return self._quarantine(data, f"cannot classify: {type(exc).__name__}: {exc}"[:300])
        if self.store.events.has_event("inbox", key):
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
            "proof": result.proof or "",
            "named": result.recipient or "",
            "text": result.own_text[:4000] if result.kind in ("feedback", "unsubscribe") else "",
        }
        # The issue it answers, when it quotes our Message-ID: `newsletter report` counts
        # feedback, unsubscribes and complaints per issue from this.
        slug = _issue_slug(message, reader.token) if reader else None
        self.store.events.record_event(
            reader,
            "inbox",
            json.dumps(detail, ensure_ascii=False),
            key=key,
            source="inbox",
            issue_slug=slug,
        )
        who = reader.email if reader else (result.recipient or "nobody")
        # An unknown reader asking for something is worth a look; the rest is routine.
        worth_a_look = action == "nothing: unknown reader" or action.startswith("kept for review")
        level = logging.WARNING if worth_a_look else logging.INFO
        log.log(level, "%s from %s: %s (%s)", result.kind, who, action, result.reason[:120])
        return Outcome(key, result, reader.email if reader else None, action, confirmed)

    def _quarantine(self, data: bytes, reason: str) -> Outcome:
        """Record an unparseable message by its digest, so no later run stumbles on it."""
        key = digest_key(data)
        result = Classification("feedback", reason=reason)
        if self.store.events.has_event("inbox", key):
            return Outcome(key, result, None, "nothing: already processed", repeat=True)
        detail = {
            "kind": "quarantined",
            "action": f"quarantined: {reason}",
            "reason": reason,
            "size": str(len(data)),
            "start": data[:200].decode("ascii", "replace"),
        }
        self.store.events.record_event(None, "inbox", json.dumps(detail), key=key, source="inbox")
        log.warning("quarantined %s: %s", key[:23], reason)
        return Outcome(key, result, None, f"quarantined: {reason}", quarantined=True)

    def _reader(self, message: EmailMessage, result: Classification) -> Subscriber | None:
        if result.kind == "auto_reply":
            return None  # never acted on, so never looked up
        if result.kind in ("bounce", "complaint"):
            # Only a proven token names the reader: a report's free text can name anyone.
            return self.store.subscribers.get_by_token(result.token) if result.token else None
        if result.token is not None:
            found = self.store.subscribers.get_by_token(result.token)
            if found is not None:
                return found
        if result.recipient is None:
            return None
        if result.kind in ("unsubscribe", "feedback") and sender_unverified(message):
            log.warning("not trusting From %s: authentication failed", result.recipient)
            return None
        return self.store.subscribers.get_by_email(result.recipient)

    def _apply(
        self, message: EmailMessage, result: Classification, reader: Subscriber | None
    ) -> str:
        if result.review:
            return f"kept for review: {result.reason}"
        if result.kind == "auto_reply":
            return "nothing: auto-reply"
        if result.kind in ("bounce", "complaint") and result.proof is None:
            named = result.recipient or "nobody"
            return f"kept for review: no proof it is our mail (names {named})"
        if result.kind == "feedback":
            return "kept for the editor" if reader else "kept for the editor (unknown sender)"
        if reader is None and result.kind in ("bounce", "complaint"):
            return f"kept for review: {result.proof}, but no reader has that token"
        if reader is None:
            return "nothing: unknown reader"
        if result.kind == "unsubscribe":
            source = "reply" if result.reason.startswith(("reply", "subject")) else "mailto"
            changed = self.store.subscribers.unsubscribe(
                reader, source=source, detail=result.reason
            )
            return "unsubscribed" if changed else f"nothing: already {reader.status}"
        if result.kind == "complaint":
            changed = self.store.subscribers.mark_complained(reader, detail=result.reason)
            return "complained" if changed else f"nothing: already {reader.status}"
        slug = _issue_slug(message, reader.token)
        bounced = self.store.subscribers.record_bounce(
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
        if not self.store.events.record_event(reader, "unsubscribe_confirmation", None, key=key):
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


def own_addresses(config: Config, titles: Iterable[str] = ()) -> OwnAddresses:
    """Our addresses by job. Old `+token` addresses (reply_to, and the From that was the
    envelope sender before `bounce_address`) keep working as unsubscribe addresses."""
    sender = parseaddr(config.sender)[1]
    echoed = (config.name, *titles)
    return OwnAddresses(
        unsubscribe=tuple(dict.fromkeys((config.reply_to, sender))),
        bounce=(bounce_base(config),),
        domain=sender.rpartition("@")[2].lower(),
        titles=tuple(dict.fromkeys(" ".join(t.lower().split()) for t in echoed if t.strip())),
    )


def review_entries(details: Iterable[str]) -> list[dict[str, str]]:
    """Recorded `inbox` events that changed nobody and need the editor's eye."""
    entries = []
    for detail in details:
        try:
            data = json.loads(detail)
        except (TypeError, ValueError):
            continue
        action = str(data.get("action", "")) if isinstance(data, dict) else ""
        if action.startswith(("kept for review", "quarantined")):
            entries.append({k: str(v) for k, v in data.items()})
    return entries
