"""A fault-injecting SMTP server on 127.0.0.1 for tests (aiosmtpd), after Mailman's testing/mta.

    with FaultyMTA(Faults(rcpt_replies={"b@x.test": "550 5.1.1 no such user"})) as mta:
        ... send to 127.0.0.1:mta.port ...
        mta.messages  # every message the server accepted (or received before a drop)

It advertises PIPELINING (RFC 2920) unless `pipelining=False`.
Faults: drop each connection after it carried K messages, chosen replies per recipient (one
reply for every attempt, or a list used up one per attempt), a reply to MAIL FROM or to the
final "." (for every message, or per recipient), a drop after the final "." (the message was
received, no reply sent), a drop at
QUIT, and a delay before each reply to RCPT and DATA (a slow server).
"""

from __future__ import annotations

import asyncio
import email
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Faults:
    drop_after: int | None = None
    rcpt_replies: dict[str, str | list[str]] = field(default_factory=dict)
    mail_reply: str | None = None
    data_reply: str | None = None
    dot_replies: dict[str, str] = field(default_factory=dict)  # reply after "." per recipient
    drop_after_dot: set[str] = field(default_factory=set)
    drop_at_quit: bool = False
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    connection: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    def parse(self) -> EmailMessage:
        message = email.message_from_bytes(self.data, policy=default)
        assert isinstance(message, EmailMessage)
        return message

    @property
    def message_id(self) -> str:
        return str(self.parse()["Message-ID"])


class _Handler:
    def __init__(self, mta: FaultyMTA) -> None:
        self.mta = mta

    def _connection(self, session: Any) -> int:
        number = getattr(session, "newsletter_connection", None)
        if number is None:
            with self.mta.lock:
                self.mta.connections += 1
                number = self.mta.connections
            session.newsletter_connection = number
            session.newsletter_count = 0
        return int(number)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.mta.pipelining:  # aiosmtpd reads commands line by line, so it copes
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self._connection(session)
        faults = self.mta.faults
        if faults.drop_after is not None and session.newsletter_count >= faults.drop_after:
            server.transport.abort()
            return "421 4.4.2 dropped"  # never reaches the client
        if faults.mail_reply:
            return faults.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.mta.faults.delay:
            await asyncio.sleep(self.mta.faults.delay)
        reply = self._planned_reply(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def _planned_reply(self, address: str) -> str | None:
        with self.mta.lock:
            plan = self.mta.faults.rcpt_replies.get(address)
            if isinstance(plan, list):
                return plan.pop(0) if plan else None
            return plan

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        faults = self.mta.faults
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if faults.data_reply:
            return faults.data_reply
        for rcpt in envelope.rcpt_tos:
            if rcpt in faults.dot_replies:
                return faults.dot_replies[rcpt]
        received = Received(
            self._connection(session),
            envelope.mail_from,
            tuple(envelope.rcpt_tos),
            bytes(envelope.original_content),
        )
        with self.mta.lock:
            self.mta.messages.append(received)
            session.newsletter_count += 1
            drop = bool(faults.drop_after_dot & set(received.rcpt_tos))
            faults.drop_after_dot -= set(received.rcpt_tos)
        if drop:
            server.transport.abort()
        return f"250 2.0.0 queued as {len(self.mta.messages)}"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        if self.mta.faults.drop_at_quit:
            server.transport.abort()
        return "221 Bye"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FaultyMTA:
    """Start with `with FaultyMTA(faults) as mta:`; it stops on leaving the block."""

    def __init__(
        self,
        faults: Faults | None = None,
        *,
        login: tuple[str, str] | None = None,
        pipelining: bool = True,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
    ) -> None:
        """`tls`: a server context; with it STARTTLS is offered and required, or with
        `implicit_tls` the whole connection is TLS (port 465 style)."""
        self.pipelining = pipelining
        self.faults = faults or Faults()
        self.messages: list[Received] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.login = login
        kwargs: dict[str, Any] = {}
        if login is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        if tls is not None and implicit_tls:
            kwargs.update(ssl_context=tls)
        elif tls is not None:
            kwargs.update(tls_context=tls, require_starttls=True)
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and self.login == (
            auth_data.login.decode(),
            auth_data.password.decode(),
        )
        return AuthResult(success=ok, handled=False)  # handled=True would send no reply

    def start(self) -> FaultyMTA:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> FaultyMTA:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def recipients(self) -> list[str]:
        with self.lock:
            return [rcpt for message in self.messages for rcpt in message.rcpt_tos]
