"""One-off mails: every message outside an issue's send goes out this one way.

Editor notices, unsubscribe confirmations, sign-up and welcome mails and test copies all need
the same three things: `delivery.redirect_to` honoured (a development set-up must never mail a
real reader), a DKIM signature (Gmail and Yahoo expect one on all mail from a bulk sender), and
a transport opened once for however many mails there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from newsletter.mail import dkim
from newsletter.mail.transport import Transport, open_transport
from newsletter.settings import Config


@dataclass(frozen=True)
class OutgoingMail:
    sender: str  # the envelope sender; "" is the null return path (RFC 3834 auto-responses)
    recipient: str  # the envelope recipient, after delivery.redirect_to
    message_id: str
    data: bytes  # the complete message as it goes out, signed when dkim: is configured


def recipient_for(config: Config, address: str) -> str:
    """Where a mail for `address` really goes: `delivery.redirect_to` wins when set."""
    return config.delivery.redirect_to or address


def outgoing(
    config: Config, *, sender: str, recipient: str, message_id: str, data: bytes
) -> OutgoingMail:
    """An unsigned message made ready to send: redirected and DKIM-signed as configured."""
    signed = dkim.sign(config, data)
    return OutgoingMail(sender, recipient_for(config, recipient), message_id, signed)


class OneOffSender:
    """One transport for a few mails, opened at the first one and closed on leaving the block.

    `send` raises TransportFailure; what a failure means (the unsubscribe stands, the notice is
    retried next run) is the caller's to decide.
    """

    def __init__(self, config: Config, *, slug: str) -> None:
        self.config = config
        self.slug = slug  # the outbox folder of the file transport
        self._transport: Transport | None = None

    def send(self, mail: OutgoingMail) -> str:
        if self._transport is None:
            self._transport = open_transport(self.config, slug=self.slug)
        return self._transport.send(
            mail.sender, mail.recipient, mail.data, message_id=mail.message_id
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def __enter__(self) -> OneOffSender:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
