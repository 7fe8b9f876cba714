"""What an incoming message is: unsubscribe, bounce, complaint, auto-reply or feedback.

A pure function of the message (and our own addresses by job, `OwnAddresses`), in this order:
1. bounce: RFC 3464 DSNs and the common free-text forms (see `newsletter.inbox.dsn`);
2. complaint: ARF feedback reports (RFC 5965) and Amazon SES complaint notifications;
   both carry their proof (`Classification.proof`): arrival at the reader's bounce address
   or our Message-ID / +token address quoted from our message; without it they change nobody;
3. auto-reply (RFC 3834, Mailman's replybot rules, challenge-response and ticket systems):
   never answered, changes nothing; so is anything else at the bounce address;
4. Apple Mail's `X-Apple-Unsubscribe: true` button at the reader's unsubscribe address;
5. unsubscribe asked in the Subject (what a mailto button puts there) or in the reader's own
   text (never in quoted text): at the `+token` unsubscribe address that names the reader;
6. feedback: everything else, kept for the editor.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from typing import Literal

from newsletter.inbox.arf import parse_complaint
from newsletter.inbox.dsn import is_system_sender, parse_bounce, ses_notification_type
from newsletter.inbox.replytext import own_text
from newsletter.links import token_from_address

Kind = Literal["unsubscribe", "bounce", "complaint", "auto_reply", "feedback"]


@dataclass(frozen=True)
class Classification:
    kind: Kind
    hard: bool | None = None  # bounces only: permanent failure
    recipient: str | None = None  # the reader as the message names them (lowercased)
    token: str | None = None  # the reader's token from one of our +token addresses
    status: str | None = None  # RFC 3463 status code of a bounce, when known
    reason: str = ""  # one line saying why, for the events table and the log
    own_text: str = ""  # what the reader wrote (unsubscribe, feedback)
    # Bounces and complaints: how the message proves it is about `token`'s reader; None: it
    # does not, and it changes nobody (kept for review).
    proof: str | None = None
    review: bool = False  # machine mail we could not read: listed by `inbox --review`


# Headers that carry the address a message was delivered to (ours, possibly with +token).
_RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")

_UNSUBSCRIBE = re.compile(
    r"""\b(unsubscribe|unsubcribe|unsuscribe|opt[\s-]?out|remove\s+me|take\s+me\s+off|
        stop\s+(sending|emailing|mailing)|no\s+more\s+(emails|mails|newsletters?)|
        désabonner|desabonner|désinscri\w*|desinscri\w*|désabonnement|
        abmelden|abbestellen|austragen|dar(me|se)?\s+de\s+baja|dadme\s+de\s+baja|
        cancelar\s+(la\s+)?suscripci[oó]n|annulla\s+(l'\s*)?iscrizione|disiscri\w+|cancellami|
        afmelden|uitschrijven|descadastr\w+|cancelar\s+(a\s+)?inscri\w+|
        avregistrera|avsluta\s+prenumeration|afmeld|wypisz|отписаться)\b
      |配信停止|購読停止|登録解除|退订|取消订阅|수신\s*거부""",
    re.IGNORECASE | re.VERBOSE,
)
# Single words that only ask to leave when they are the whole message or subject.
_ALONE = re.compile(
    r"^\W*(stop|remove|unsubscribe|unsub|cancel|quit|end|désabonner|abmelden|baja|stopp|"
    r"afmelden|opt\s*out)\W*$",
    re.IGNORECASE,
)
_NEGATION = re.compile(
    r"\b(don'?t|do\s+not|never|not|won'?t|nicht|pas|ne|no|non|niet)\b[^.!?\n]{0,25}$",
    re.IGNORECASE,
)
# Lines of a newsletter footer pasted without quote marks: they mention unsubscribing but
# are not the reader asking.
_FOOTER_LINE = re.compile(
    r"https?://|mailto:|to\s+unsubscribe|unsubscribe\s+(here|at\s+any\s+time|link)|"
    r"click\s+(here\s+)?to|you\s+(are\s+)?receiv|you\s+received|why\s+did\s+I\s+get",
    re.IGNORECASE,
)
_REPLY_PREFIX = re.compile(
    r"^\s*((re|aw|sv|vs|antw|antwort|ref|rif|r|fw|fwd|wg|tr|enc|res|odp|回复|答复|返信)\s*"
    r"(\[\d+\])?\s*[:：]\s*)+",
    re.IGNORECASE,
)
_AUTO_SUBJECT = re.compile(
    r"""^(auto(matic|matische|matisch)?[\s-]*(reply|response|antwort|antwoord)|autoreply|
        out\s+of\s+(the\s+)?office|abwesenheit|réponse\s+automatique|absence|absent|
        respuesta\s+autom[aá]tica|fuera\s+de\s+la\s+oficina|risposta\s+automatica|fuori\s+sede|
        resposta\s+autom[aá]tica|aus[eê]ncia|afwezig|frånvaro|vacation|on\s+vacation|
        away\s+from|自動応答|自動返信|不在|자동\s*응답)""",
    re.IGNORECASE | re.VERBOSE,
)
# Challenge-response filters and helpdesk acknowledgements: machines that often quote our
# Subject ("unsubscribe") back to the unsubscribe address, with no RFC 3834 header.
_ACK_SUBJECT = re.compile(
    r"""\[?\s*(ticket|case|request|incident|support|issue)\s*(\#|no\.?|number|id)?\s*:?\s*\d{3,}|
        \[\#?\d{4,}\]|\#\d{5,}\b|
        (we|we've|we\s+have)\s+(have\s+)?receiv\w*\s+your|your\s+(request|message|e-?mail|ticket)
        \s+(has\s+been|was|is)\s+(received|logged|created|opened)|thank(s|\s+you)\s+for
        \s+(contacting|your\s+(e-?mail|message|request|inquiry|enquiry))|(request|ticket)\s+
        (received|created|acknowledg\w*)|(automatic|auto)\s+acknowledg\w*|
        (please\s+)?(confirm|verify)\s+(that\s+)?(your|you|the)\s+(are\s+)?(message|e-?mail|
        address|sender|human|identity|not\s+a\s+robot)|sender\s+verification|
        challenge[\s-]+(response|e-?mail|message)|spam\s+(filter|protection|check)|awaiting\s+(your\s+)?(confirmation|
        verification)|anti-?spam""",
    re.IGNORECASE | re.VERBOSE,
)
# Headers that ticket systems and challenge-response filters put on their own mail.
_MACHINE_HEADERS = (
    "X-Autogenerated", "X-AutoGenerated", "X-Auto-Generated", "RT-Ticket", "X-RT-Loop-Prevention",
    "X-OTRS-Loop", "X-Zendesk-From-Account-Id", "X-Freshdesk-API-Version", "X-HelpScout-Thread-ID",
    "X-Challenge", "X-TMDA-Fingerprint", "X-Boxbe-Challenge", "X-Spam-Challenge",
)  # fmt: skip
_OWN_TEXT_LIMIT = 60  # words: past this, a request must come in the first sentences


@dataclass(frozen=True)
class OwnAddresses:
    """Our addresses by job: a `+token` found in one proves different things.

    `unsubscribe`: the List-Unsubscribe mailto bases (reply_to, and the From that older
    issues used as envelope sender): a person may ask to leave there. `bounce`: the envelope
    sender base (VERP): bounces and auto-replies, never an unsubscribe. In a publication with
    no `bounce_address` the From address is in both. `domain`: of our Message-IDs.
    """

    unsubscribe: tuple[str, ...]
    bounce: tuple[str, ...]
    domain: str = ""
    titles: tuple[str, ...] = ()  # our issue titles and name, lowercase (echoed subjects)

    @classmethod
    def of(cls, bases: OwnAddresses | Iterable[str]) -> OwnAddresses:
        """Plain bases (tests, older callers) do both jobs, as before the split."""
        if isinstance(bases, OwnAddresses):
            return bases
        both = tuple(bases)
        domain = parseaddr(both[0])[1].rpartition("@")[2].lower() if both else ""
        return cls(both, both, domain)

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.unsubscribe + self.bounce))


def classify(
    message: Message,
    own_addresses: OwnAddresses | Iterable[str] = (),
    delivered_to: str | None = None,
) -> Classification:
    """Classify one message. `delivered_to`: the envelope recipient when the MTA passes it
    (`inbox - --recipient ADDR`); it then replaces the recipient headers."""
    ours = OwnAddresses.of(own_addresses)
    arrived: tuple[str, ...] = (delivered_to,) if delivered_to else _arrival(message)
    at_bounce = _token_of(arrived, ours.bounce)
    at_unsubscribe = _token_of(arrived, ours.unsubscribe)
    subject = header_text(message, "Subject")

    ignore = _addresses(message, ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To"))
    ignore |= {parseaddr(b)[1].lower() for b in ours.all}
    bounce = parse_bounce(message, frozenset(ignore))
    if bounce is not None:
        token, proof = _proof(message, at_bounce, ours)
        return Classification(
            "bounce",
            hard=bounce.hard,
            recipient=bounce.recipient,
            token=token,
            status=bounce.status,
            reason=("hard" if bounce.hard else "soft") + " bounce: " + bounce.reason[:180],
            proof=proof,
        )
    complaint = parse_complaint(message)
    if complaint is not None:
        recipient, reason = complaint
        token, proof = _proof(message, at_bounce, ours)
        return Classification(
            "complaint", recipient=recipient, token=token, reason=reason, proof=proof
        )
    sender = parseaddr(str(message.get("From", "")))[1].lower() or None
    auto = auto_submitted_reason(message)
    # Apple Mail's unsubscribe button marks its own mail Auto-Submitted: a person pressed it.
    if str(message.get("X-Apple-Unsubscribe", "")).strip().lower() == "true":
        return Classification(
            "unsubscribe", recipient=sender, token=at_unsubscribe, reason="Apple Mail unsubscribe"
        )
    if auto is not None:
        return Classification("auto_reply", recipient=sender, token=at_unsubscribe, reason=auto)
    if at_bounce is not None and at_unsubscribe is None:
        # Not a bounce we can read, at an address only machines are given: the editor looks.
        return Classification(
            "auto_reply",
            recipient=sender,
            token=at_bounce,
            reason="unreadable mail at the bounce address",
            review=True,
        )
    if is_system_sender(sender or ""):
        return Classification(
            "auto_reply",
            recipient=sender,
            reason=f"mail from the mail system ({sender}) that is no readable bounce",
            review=True,
        )
    words = own_text(message)
    why = unsubscribe_request(subject, words, ours.titles)
    if why is not None:
        if at_unsubscribe is not None:
            why = f"at the reader's unsubscribe address, {why}"
        return Classification(
            "unsubscribe", recipient=sender, token=at_unsubscribe, reason=why, own_text=words
        )
    return Classification(
        "feedback", recipient=sender, token=at_unsubscribe, reason="reply", own_text=words
    )


def _arrival(message: Message) -> tuple[str, ...]:
    values = [str(v) for name in _RECIPIENT_HEADERS for v in message.get_all(name, [])]
    return tuple(address for _, address in getaddresses(values) if address)


def _token_of(addresses: Iterable[str], bases: tuple[str, ...]) -> str | None:
    for address in addresses:
        for base in bases:
            token = token_from_address(address, base)
            if token:
                return token
    return None


def _proof(
    message: Message, at_bounce: str | None, ours: OwnAddresses
) -> tuple[str | None, str | None]:
    """(token, how it is proven) for a bounce or complaint, or (None, None).

    Tokens are random and only ever in mail we sent that reader, so a report proves it is
    about that reader when it arrived at their bounce address or quotes our copy to them:
    our Message-ID, or one of our +token addresses, in its body (the returned headers of a
    DSN, the original of an ARF report). Its own headers prove nothing: anyone can write them.
    """
    if at_bounce is not None:
        return at_bounce, "arrived at the reader's bounce address"
    text = message.as_string(policy=compat32)
    body = re.split(r"\r?\n\r?\n", text, maxsplit=1)[-1]
    if ours.domain:
        domain = re.escape(ours.domain)
        msgid = re.compile(rf"^message-id:\s*<[^<>\s@]+\.([A-Za-z0-9_-]+)@{domain}>", re.I | re.M)
        match = msgid.search(body)
        if match:
            return match.group(1).lower(), "quotes our Message-ID for the reader"
    for base in ours.all:
        local, _, domain = parseaddr(base)[1].lower().rpartition("@")
        pattern = rf"(?<![\w.+-]){re.escape(local)}\+([A-Za-z0-9_-]+)@{re.escape(domain)}\b"
        match = re.search(pattern, body, re.I)
        if match:
            return match.group(1).lower(), "quotes our address for the reader"
    return None, None


def unsubscribe_request(subject: str, text: str, ours: Iterable[str] = ()) -> str | None:
    """Why the Subject or the reader's own text asks to unsubscribe, or None.

    The text rule is deliberately narrow: the phrase must not be negated ("don't unsubscribe
    me"), must not sit in a pasted footer line, and in a long letter must come early.
    `ours`: our issue titles and publication name (lowercase): in a Subject they are our
    words, not the reader's ("Why readers unsubscribe" echoed by a vacation responder).
    """
    bare = _strip_prefix(subject)
    # "Re: <our issue title>" repeats our words, not the reader's: an issue titled "Why
    # customers unsubscribe" must not unsubscribe everyone who replies to it, nor a vacation
    # responder that echoes the title without "Re:".
    replying = bare != subject.strip()
    own_words = " ".join(bare.lower().split())
    for title in ours:  # what is left once our titles are taken out must still ask
        own_words = own_words.replace(title, " ") if title else own_words
    if _ALONE.match(bare) or (not replying and _asks(own_words)):
        return f"subject asks to unsubscribe: {bare[:80]!r}"
    lines = [ln for ln in text.splitlines() if ln.strip() and not _FOOTER_LINE.search(ln)]
    if len(lines) <= 3 and any(_ALONE.match(ln) for ln in lines):
        return "reply says: " + next(ln.strip() for ln in lines if _ALONE.match(ln))[:80]
    body = " ".join(" ".join(lines).split())
    early = body if len(body.split()) <= _OWN_TEXT_LIMIT else " ".join(_sentences(body)[:2])
    if _asks(early):
        return "reply asks to unsubscribe: " + early[:80]
    return None


def _asks(text: str) -> bool:
    for match in _UNSUBSCRIBE.finditer(text):
        before = text[: match.start()]
        clause = re.split(r"[.!?;,\n]|\bbut\b|\baber\b|\bmais\b|\bpero\b|\bma\b", before)[-1]
        if not _NEGATION.search(clause):
            return True
    return False


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


def _strip_prefix(subject: str) -> str:
    return _REPLY_PREFIX.sub("", subject).strip()


def _is_reply(message: Message, subject: str) -> bool:
    return bool(message.get("In-Reply-To") or message.get("References")) or bool(
        re.match(r"^\s*(re|aw|sv|antw)\s*:", subject, re.IGNORECASE)
    )


def auto_submitted_reason(message: Message) -> str | None:
    """Why this message was sent by a machine (RFC 3834 and Mailman's replybot), or None."""
    auto = str(message.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", *_MACHINE_HEADERS):
        if message.get(name):
            return f"{name} header"
    precedence = str(message.get("Precedence", "")).strip().lower()
    if precedence in ("auto_reply", "bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    for name in message:
        if name.lower().startswith("list-"):
            return f"{name} header (mailing list)"
    if message.get("Return-Path") is not None and str(message["Return-Path"]).strip() in ("<>", ""):
        return "empty Return-Path"
    if message.get("X-Apple-Action", "").upper() == "VACATION":
        return "X-Apple-Action: VACATION"
    subject = _strip_prefix(header_text(message, "Subject"))
    if _AUTO_SUBJECT.match(subject):
        return f"auto-reply subject: {subject[:60]!r}"
    if _ACK_SUBJECT.search(subject):
        return f"acknowledgement or challenge subject: {subject[:60]!r}"
    if ses_notification_type(message) is not None:
        return "Amazon SES notification"
    return None


def _token_in(message: Message, headers: tuple[str, ...], bases: tuple[str, ...]) -> str | None:
    for name in headers:
        for _, address in getaddresses([str(v) for v in message.get_all(name, [])]):
            for base in bases:
                token = token_from_address(address, base)
                if token:
                    return token
    return None


def _addresses(message: Message, headers: tuple[str, ...]) -> set[str]:
    values = [str(v) for name in headers for v in message.get_all(name, [])]
    return {addr.lower() for _, addr in getaddresses(values) if addr}


def sender_unverified(message: Message) -> bool:
    """True when an Authentication-Results header says the From domain failed DMARC (or SPF
    with no DKIM pass): then the From address must not be trusted to name a reader.

    Only failures are believed: a forger can add a header claiming "pass", never gain by
    adding one claiming "fail".
    """
    for value in message.get_all("Authentication-Results", []):
        text = " ".join(str(value).lower().split())
        if re.search(r"\bdmarc=fail\b", text):
            return True
        if re.search(r"\bspf=fail\b", text) and not re.search(r"\bdkim=pass\b", text):
            return True
    return False


def header_text(message: Message, name: str) -> str:
    """A header as text whatever its RFC 2047 encoding (tolerates malformed words)."""
    raw = message.get(name)
    if raw is None:
        return ""
    text = str(raw)
    if "=?" in text:
        with contextlib.suppress(UnicodeDecodeError, LookupError, ValueError):
            text = str(make_header(decode_header(text)))
    return " ".join(text.split())
