"""The two mails the web endpoints send: the sign-up confirmation and the welcome.

Templates `templates/confirm.txt` and `templates/welcome.txt`: a `Subject: ...` first line, a
blank line, the text body (Jinja2, no HTML). Headers are written with message.py's helpers, so
a subscriber's or editor's text cannot inject a header; the bytes are DKIM-signed when
configured.

A `MailQueue` hands them to one background thread: a request never waits for the SMTP server,
and every sign-up answer takes the same time whether or not a mail went out (no enumeration
by timing). The queue lives in memory: a mail queued when the process dies is lost, and the
reader simply signs up again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from datetime import datetime
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

import jinja2

from newsletter.content.render import load_template, render_template, template_environment
from newsletter.errors import NewsletterError, TemplateError
from newsletter.mail.bodies import quoted_printable
from newsletter.mail.message import encode_text, format_mailbox
from newsletter.mail.oneoff import OneOffSender, OutgoingMail, outgoing, recipient_for
from newsletter.mail.transport import TransportFailure
from newsletter.settings import Config

log = logging.getLogger("newsletter.web.app")
CONFIRM_TEMPLATE = "confirm.txt"
WELCOME_TEMPLATE = "welcome.txt"
MAIL_TEMPLATES = (CONFIRM_TEMPLATE, WELCOME_TEMPLATE)


def mail_environment(config: Config) -> jinja2.Environment:
    return template_environment(config, autoescape=False)


def check_templates(env: jinja2.Environment, names: Iterable[str]) -> None:
    """Load (and compile) each template; TemplateError naming the first that cannot be."""
    for name in names:
        load_template(env, name)


def compose(
    config: Config,
    env: jinja2.Environment,
    template: str,
    *,
    to: str,
    now: datetime,
    context: dict[str, Any],
    unsubscribe: tuple[str, str | None] | None = None,
) -> OutgoingMail:
    """One text/plain mail from `template`; `unsubscribe`: (mailto, https URL or None)."""
    rendered = render_template(env, template, {"config": config, **context})
    head, sep, body = rendered.partition("\n\n")
    if not sep or not head.startswith("Subject:") or "\n" in head.strip():
        raise TemplateError(
            "expected a 'Subject: ...' first line, then a blank line, then the body",
            path=f"templates/{template}",
            line=1,
        )
    sender_name, sender = parseaddr(config.sender)
    recipient = recipient_for(config, to)  # the To header says where it really goes
    message_id = make_msgid(domain=sender.rpartition("@")[2] or "newsletter.invalid")
    lines = [
        format_mailbox("From", sender_name, sender),
        format_mailbox("To", None, recipient),
        encode_text("Subject", head.removeprefix("Subject:")),
        f"Date: {format_datetime(now)}\r\n",
        f"Message-ID: {message_id}\r\n",
        format_mailbox("Reply-To", None, parseaddr(config.reply_to)[1]),
        "Auto-Submitted: auto-generated\r\n",  # RFC 3834: no auto-replies to this
    ]
    if unsubscribe is not None:
        mailto, web = unsubscribe
        lines.append(f"List-Unsubscribe: <{mailto}>" + (f",\r\n <{web}>\r\n" if web else "\r\n"))
        if web:
            lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    lines += [
        "MIME-Version: 1.0\r\n",
        'Content-Type: text/plain; charset="utf-8"\r\n',
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "\r\n",
    ]
    data = "".join(lines).encode("ascii") + quoted_printable(body)
    return outgoing(config, sender=sender, recipient=recipient, message_id=message_id, data=data)


class MailQueue:
    """One sender thread; `submit` returns at once. `join()` waits until the queue is empty."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[OutgoingMail | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="newsletter-web-mail", daemon=True)
        self._thread.start()

    def submit(self, mail: OutgoingMail) -> None:
        self._queue.put(mail)

    def join(self) -> None:
        self._queue.join()

    def stop(self) -> None:
        """Send what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        mailer = OneOffSender(self.config, slug="web")
        while True:
            mail = self._queue.get()
            try:
                if mail is None:
                    return
                mailer.send(mail)
                self.sent += 1
            except (TransportFailure, NewsletterError, OSError) as exc:
                self.failed += 1
                log.warning("could not send %s: %s", mail.message_id if mail else "-", exc)
                mailer.close()  # a broken connection is opened afresh for the next mail
            finally:
                if self._queue.empty():
                    mailer.close()  # idle: do not hold an SMTP connection open
                self._queue.task_done()
