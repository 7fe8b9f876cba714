"""Telling the editor: a short notice mailed once per problem (no issue ready, too late,
a conflict), remembered in the store or a state file so a restart does not repeat it."""

from __future__ import annotations

import email.policy
import email.utils
import json
import logging
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from newsletter.cadence import describe
from newsletter.config import Config
from newsletter.errors import DeliveryError
from newsletter.fsutil import write_atomic
from newsletter.mail.oneoff import OneOffSender, outgoing
from newsletter.mail.transport import TransportFailure
from newsletter.schedule.due import Due, I
from newsletter.schedule.locking import ScheduleError

log = logging.getLogger("newsletter.schedule.notices")

Notifier = Callable[[EmailMessage], None]


class NoticeLog(Protocol):
    """Durable "the editor was told" facts, so a notice goes out once, not every run."""

    def already_told(self, key: str) -> bool: ...
    def record_told(self, key: str, detail: str) -> None: ...


class StateFileNotices:
    """Told-once facts in a small JSON file, replaced atomically (never half-written)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ScheduleError(f"cannot read the schedule state: {exc}", path=self.path) from None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def already_told(self, key: str) -> bool:
        return key in self._read()

    def record_told(self, key: str, detail: str) -> None:
        data = self._read()
        data[key] = detail
        write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n", durable=True)


def state_file(config: Config) -> Path:
    return config.subscribers_dir / "schedule-state.json"


def editor_notice(config: Config, due: Due[I]) -> EmailMessage:
    """A short message to `reply_to` (RFC 3834: auto-generated, so nobody auto-replies)."""
    when = describe(due.slot) if due.slot else describe(due.now)
    headline = {
        "no_issue_ready": f"No issue ready for {when}",
        "too_late": f"Not sent: {due.issue.slug if due.issue else ''} missed its catch-up window",
        "conflict": f"Not sent: two issues are ready for {when}",
    }.get(due.kind, due.kind)
    msg = EmailMessage()
    msg["Subject"] = _one_line(f"[{config.name}] {headline}")
    msg["From"] = config.sender
    msg["To"] = config.reply_to
    msg["Date"] = email.utils.format_datetime(due.now)
    msg["Message-ID"] = email.utils.make_msgid("schedule", _domain(config.reply_to))
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"{due.message}\n\nThe scheduler says this once; nothing was sent to readers.\n"
        f"Check with `newsletter schedule --list`.\n"
    )
    return msg


def _one_line(text: str) -> str:
    return " ".join(text.split())  # no CR/LF from editor-controlled names reaches a header


def _domain(address: str) -> str:
    return email.utils.parseaddr(address)[1].rpartition("@")[2] or "localhost"


def tell_editor_once(
    config: Config, due: Due[I], notices: NoticeLog, notify: Notifier, logger: logging.Logger = log
) -> bool:
    """Log the problem and mail the editor, once per key; True if told now.

    The fact is recorded only after the message went out, so a transport failure is retried
    on the next run instead of being forgotten.
    """
    key = due.notice_key
    if key is None:
        return False
    logger.warning("%s", due.message)
    if notices.already_told(key):
        logger.info("the editor was already told (%s)", key)
        return False
    notify(editor_notice(config, due))
    notices.record_told(key, f"{due.now.isoformat()} {due.message}")
    logger.warning("told the editor at %s", config.reply_to)
    return True


def transport_notifier(config: Config) -> Notifier:
    """Editor notices through the configured transport (an .eml in outbox/ by default)."""

    def notify(message: EmailMessage) -> None:
        mail = outgoing(
            config,
            sender=email.utils.parseaddr(config.sender)[1],
            recipient=email.utils.parseaddr(config.reply_to)[1],
            message_id=str(message["Message-ID"]),
            data=message.as_bytes(policy=email.policy.SMTP),
        )
        with OneOffSender(config, slug="schedule-notices") as mailer:
            try:
                mailer.send(mail)
            except TransportFailure as exc:
                raise DeliveryError(f"cannot tell the editor at {mail.recipient}: {exc}") from None

    return notify
