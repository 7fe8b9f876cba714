"""Where messages go: `.eml` files in the outbox (the default) or an SMTP server.

A `Transport` is one connection's worth of sending: the runner opens one per thread. It
reports how a message failed precisely enough for the runner's failure policy (RFC 5321):
`Rejected` carries the stage and the server's reply; `Disconnected` says whether the line
dropped before the end of DATA (safe to retry) or after the final "." (the server may have
the message: its fate is unknown). The SMTP transport is newsletter/mail/smtp.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal, Protocol

from newsletter.errors import DeliveryError
from newsletter.settings import Config

Stage = Literal["connect", "auth", "mail", "rcpt", "data", "dot"]
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]+")


class TransportFailure(Exception):
    """One message did not go through; the runner decides what that means."""

    def __init__(self, stage: Stage, reply: str, code: int | None = None) -> None:
        super().__init__(f"{stage}: {reply}")
        self.stage = stage
        self.reply = reply
        self.code = code


class Rejected(TransportFailure):
    """The server answered with a 4xx/5xx code at `stage`."""

    code: int


class Disconnected(TransportFailure):
    """The connection failed; `stage == "dot"` means after the final "." (fate unknown)."""

    @property
    def after_dot(self) -> bool:
        return self.stage == "dot"


class Transport(Protocol):
    def begin(self, sender: str, recipient: str) -> None:
        """Optionally start the next message's envelope early (see smtp.SmtpTransport.begin)."""
        ...

    def abort(self) -> None:
        """Forget a begun envelope: that message will not be sent."""
        ...

    def send(self, sender: str, recipient: str, data: bytes, *, message_id: str) -> str:
        """Deliver one message; return the server's acceptance reply, raise TransportFailure."""
        ...

    def close(self) -> None: ...


class FileTransport:
    """One `.eml` per message in `directory`, named after its Message-ID (a re-send overwrites).

    Each file is complete and fsynced before `send` returns, so before its row says sent."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._made = False

    def send(self, sender: str, recipient: str, data: bytes, *, message_id: str) -> str:
        name = _UNSAFE_NAME.sub("_", message_id.strip("<>")) + ".eml"
        try:
            if not self._made:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._made = True
            _write_message(self.directory / name, data)
        except OSError as exc:
            # A full disk is not one reader's problem: the send must stop.
            raise DeliveryError(f"cannot write: {exc.strerror}", path=self.directory) from None
        return f"250 written {name}"

    def begin(self, sender: str, recipient: str) -> None:
        pass

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def _write_message(path: Path, data: bytes) -> None:
    """`path` whole or not at all, on disk when this returns: a temp file, fsynced, renamed.
    The temp name is derived, not mkstemp's: under the send lock no one else writes this
    message, and a temp file a crash left behind is simply overwritten by the re-send."""
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)  # a full disk leaves no half-written temp file behind
        raise


def open_transport(config: Config, *, slug: str) -> Transport:
    """One transport (one connection) for sending issue `slug` as `delivery.transport` says."""
    delivery = config.delivery
    if delivery.transport == "file":
        return FileTransport(config.outbox_dir / slug)
    password = None
    if delivery.smtp.username:
        password = os.environ.get(delivery.smtp.password_env)
        if password is None:
            raise DeliveryError(
                f"the SMTP password is read from ${delivery.smtp.password_env}, which is not set",
                field="delivery.smtp.password_env",
            )
    # smtplib and ssl (~15 ms of imports) only for SMTP: the file transport never loads them.
    from newsletter.mail.smtp import SmtpTransport

    return SmtpTransport(delivery.smtp, password)
