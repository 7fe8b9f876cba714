"""Every setting of newsletter.yaml: frozen dataclasses, their types, defaults and meaning.

config.py reads the file and the environment into these; the rest of the pipeline takes a
`Config` and never looks at YAML. A new setting is a field here (config.py converts and checks
it by its type; `_validate` there holds checks beyond the type).
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _key(name: str) -> dict[str, str]:
    """Field metadata for a YAML key that is not a valid Python name (`from`)."""
    return {"key": name}


@dataclass(frozen=True)
class ScheduleConfig:
    weekday: str = "tuesday"
    nth: int = 1
    time: str = "09:00"
    catch_up_days: int = 3
    # An RFC 5545 RRULE ("FREQ=MONTHLY;BYDAY=-1TH") replacing weekday/nth for other cadences.
    rrule: str | None = None


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 25
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password_env: str = "NEWSLETTER_SMTP_PASSWORD"
    connections: int = 4
    max_per_second: float = 0
    timeout: float = 60


@dataclass(frozen=True)
class DeliveryConfig:
    transport: Literal["file", "smtp"] = "file"
    outbox: str = "outbox"
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    # Dev-mode redirect: when set, every message goes to this address instead of the reader's.
    redirect_to: str | None = None
    # Envelope sender with +token (VERP) so bounces name the reader; null: the From address.
    verp: bool = True
    # A 4xx for a recipient defers it: retried after retry_delay seconds (doubling each time)
    # until max_attempts, then failed. A run waits up to retry_window seconds for deferred
    # recipients before it exits; the next `send` retries the rest.
    retry_delay: float = 300
    max_attempts: int = 5
    retry_window: float = 900
    # After a 421 or a lost connection: pause `backoff` seconds (doubling, at most 300) and
    # reconnect; after max_reconnects failed attempts in a row the send pauses.
    backoff: float = 5
    max_reconnects: int = 5
    # The same 4xx for this many readers in a row (whatever their domains) is the relay's
    # trouble: the send pauses, charging them nothing. A 5xx after "." fails one reader;
    # this many in a row means the content is refused: the send pauses.
    relay_pause_after: int = 10
    refusals_pause_after: int = 3


@dataclass(frozen=True)
class ImapConfig:
    host: str = "localhost"
    port: int = 993
    security: Literal["none", "starttls", "ssl"] = "ssl"
    username: str | None = None
    password_env: str = "NEWSLETTER_IMAP_PASSWORD"
    folder: str = "INBOX"
    processed_folder: str | None = None
    # Messages that cannot be parsed are moved here (created when missing).
    quarantine_folder: str = "Quarantine"


@dataclass(frozen=True)
class InboxConfig:
    imap: ImapConfig = field(default_factory=ImapConfig)
    # Soft bounces on this many consecutive issues mark the reader bounced.
    soft_bounce_limit: int = 3


@dataclass(frozen=True)
class WebConfig:
    # Public https URL of `newsletter serve`; when set, unsubscribe links point there.
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8025
    # The environment variable holding the key that signs confirm/undo links (serve refuses
    # to start without it).
    secret_env: str = "NEWSLETTER_WEB_SECRET"
    confirm_hours: int = 48  # how long a sign-up confirmation link works
    subscribe_per_client_hour: int = 10  # sign-up form posts accepted per client IP
    subscribe_per_address_hour: int = 3  # confirmation mails per address
    undo_minutes: int = 15  # "undo" on the unsubscribe page works this long
    # Linked from the welcome mail (templates/welcome.txt), e.g. a free guide.
    welcome_resource_url: str | None = None
    # Address of a reverse proxy whose X-Forwarded-For names the client (rate limits).
    trusted_proxy: str | None = None


@dataclass(frozen=True)
class Ed25519Config:
    selector: str = ""
    # The environment variable holding the PATH of the Ed25519 private key (PEM, or the base64
    # key dkimpy's dknewkey writes), never the key.
    private_key_env: str = "NEWSLETTER_DKIM_ED25519_KEY"


@dataclass(frozen=True)
class DkimConfig:
    selector: str = ""
    domain: str = ""
    # The environment variable holding the PATH of the PEM private key, never the key.
    private_key_env: str = "NEWSLETTER_DKIM_KEY"
    # c= (RFC 6376 3.4), header/body: relaxed survives relays that refold headers or change
    # blanks at line ends; simple breaks on any change.
    canonicalization: Literal[
        "relaxed/relaxed", "relaxed/simple", "simple/relaxed", "simple/simple"
    ] = "relaxed/relaxed"
    # A second signature, Ed25519 (RFC 8463), beside the RSA one, in the same domain; null:
    # RSA only. RSA stays: receivers that do not know Ed25519 verify the RSA signature.
    ed25519: Ed25519Config | None = None


@dataclass(frozen=True)
class ArchiveConfig:
    # When set, `send` first builds the archive (with the issue being sent) here, relative to
    # the publication, then runs publish_command (a command line, no shell): the mail's "read
    # it on the web" link works when it arrives.
    out: str | None = None
    publish_command: str | None = None
    # Where the archive's subscribe form posts (email, first_name, honeypot `website`);
    # null: `web.public_url` + "/subscribe" when that is set, else the page offers a mailto.
    subscribe_action: str | None = None


@dataclass(frozen=True)
class Config:
    root: Path
    name: str = "Newsletter"
    tagline: str = ""
    publisher: str = ""
    postal_address: str = ""
    sender: str = field(default="Newsletter <news@example.com>", metadata=_key("from"))
    reply_to: str = "news@example.com"
    # The envelope sender, VERP'd as `<local>+TOKEN@domain`: bounces and auto-replies land there
    # and never unsubscribe anyone. null: the From address (one address doing both jobs).
    bounce_address: str | None = None
    base_url: str = "https://example.com/newsletter/"
    language: str = "en"
    # Said to readers whose first name is unknown: "Hi there,".
    greeting_fallback: str = "there"
    timezone: str = "Europe/London"
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    inbox: InboxConfig = field(default_factory=InboxConfig)
    web: WebConfig = field(default_factory=WebConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    # When set, every message is DKIM-signed (newsletter/dkim.py).
    dkim: DkimConfig | None = None
    # `newsletter send ISSUE --test` mails a [TEST] copy to each of these (the editors).
    test_recipients: tuple[str, ...] = ()
    # An issue file larger than this is refused before Markdown runs on it.
    max_issue_bytes: int = 1_000_000
    # Where subscribers and the send log live: null or `sqlite` (subscribers/subscribers.db),
    # `sqlite:PATH`, or `postgresql://user@host[:port]/db` (password: $NEWSLETTER_STORE_PASSWORD).
    store: str | None = None

    @property
    def content_dir(self) -> Path:
        return self.root / "content"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def subscribers_dir(self) -> Path:
        return self.root / "subscribers"

    @property
    def outbox_dir(self) -> Path:
        return self.root / self.delivery.outbox

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def archive_url(self, path: str = "") -> str:
        return self.base_url + path.lstrip("/")
