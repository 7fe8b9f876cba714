"""The SMTP transport: one reused connection to a server, pipelined where it offers PIPELINING.

Imported by `open_transport` when `delivery.transport` is smtp (smtplib and ssl are start-up
time the file transport need not pay); the failures it raises are newsletter.mail.transport's.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
from collections.abc import Callable

from newsletter.links import ascii_address
from newsletter.mail.transport import Disconnected, Rejected, Stage, TransportFailure
from newsletter.settings import SmtpConfig

_LEADING_DOT = re.compile(rb"(?m)^\.")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


class SmtpTransport:
    """One reused SMTP connection, opened on first use and re-opened after a drop."""

    def __init__(self, settings: SmtpConfig, password: str | None = None) -> None:
        self.settings = settings
        self.password = password
        self._conn: smtplib.SMTP | None = None
        self._begun: tuple[str, str] | None = None

    def _connect(self) -> smtplib.SMTP:
        if self._conn is not None:
            return self._conn
        s = self.settings
        try:
            conn: smtplib.SMTP
            if s.security == "ssl":
                conn = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=ssl.create_default_context()
                )
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            conn.ehlo()
            if s.security == "starttls":
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
        except smtplib.SMTPResponseException as exc:
            raise _rejected("connect", exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise Disconnected("connect", f"{s.host}:{s.port}: {exc}") from None
        if s.username:
            try:
                conn.login(s.username, self.password or "")
            except smtplib.SMTPResponseException as exc:
                _quietly_close(conn)
                raise _rejected("auth", exc.smtp_code, exc.smtp_error) from None
            except (OSError, smtplib.SMTPException) as exc:
                _quietly_close(conn)
                raise Disconnected("auth", str(exc)) from None
        self._conn = conn
        return conn

    def begin(self, sender: str, recipient: str) -> None:
        """Write the next message's envelope now (PIPELINING servers), so the server's round
        trip overlaps the caller's work; `send` with the same addresses reads the replies.
        Otherwise, or on any error, this does nothing and `send` starts from scratch."""
        self._begun = None
        try:
            sender, recipient = _envelope(sender, recipient)
            conn = self._connect()
        except (TransportFailure, ValueError):
            return
        if not conn.has_extn("pipelining"):
            return
        try:
            conn.send(f"MAIL FROM:{_path(sender)}\r\nRCPT TO:{_path(recipient)}\r\nDATA\r\n")
        except (OSError, smtplib.SMTPException):
            self._drop()
            return
        self._begun = (sender, recipient)

    def abort(self) -> None:
        """Give up a begun envelope. Closing the line makes the server forget it (ending
        DATA with "." instead would deliver an empty message)."""
        if self._begun is not None:
            self._begun = None
            self._drop()

    def send(self, sender: str, recipient: str, data: bytes, *, message_id: str) -> str:
        try:
            sender, recipient = _envelope(sender, recipient)
        except ValueError as exc:  # we cannot even say it: as if the server refused it (553)
            self.abort()
            raise _rejected("rcpt", 553, f"5.1.3 {exc}") from None
        begun, self._begun = self._begun, None
        if begun is not None and begun != (sender, recipient):
            self._drop()  # an envelope for someone else: start over on a fresh line
            begun = None
        conn = self._connect()
        if begun is not None:
            self._envelope_replies(conn)
        elif conn.has_extn("pipelining"):
            try:
                conn.send(f"MAIL FROM:{_path(sender)}\r\nRCPT TO:{_path(recipient)}\r\nDATA\r\n")
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                raise Disconnected("mail", str(exc)) from None
            self._envelope_replies(conn)
        else:
            self._command(conn, "mail", lambda: conn.mail(sender), (250,))
            self._command(conn, "rcpt", lambda: conn.rcpt(recipient), (250, 251))
            self._command(conn, "data", lambda: conn.docmd("data"), (354,))
        payload = data
        if data.startswith(b".") or b"\n." in data:  # IssueMessage bodies never need it
            payload = _LEADING_DOT.sub(b"..", data)
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        try:
            conn.send(payload + b".\r\n")
        except (OSError, smtplib.SMTPException) as exc:
            # sendall() failed, so the final "." never left this machine: safe to retry.
            self._drop()
            raise Disconnected("data", str(exc)) from None
        return self._command(conn, "dot", conn.getreply, (250,))

    def _envelope_replies(self, conn: smtplib.SMTP) -> None:
        """The replies to a pipelined MAIL, RCPT and DATA (RFC 2920): one round trip."""
        expected: dict[Stage, tuple[int, ...]] = {
            "mail": (250,),
            "rcpt": (250, 251),
            "data": (354,),
        }
        failure: tuple[Stage, int, bytes] | None = None
        data_open = False
        for stage, ok in expected.items():
            try:
                code, raw = conn.getreply()
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                if failure is None:  # else: report the reply that came first (a 421)
                    raise Disconnected(stage, str(exc) or type(exc).__name__) from None
                raise _rejected(*failure) from None
            data_open = stage == "data" and code == 354
            if code not in ok and failure is None:
                failure = (stage, code, raw)
        if failure is None:
            return
        if data_open:
            # DATA accepted although MAIL or RCPT failed: close it empty (RFC 2920 3.1).
            try:
                conn.send(".\r\n")
                conn.getreply()
            except (OSError, smtplib.SMTPException):
                self._drop()
        if failure[1] in (421, -1):
            self._drop()
        elif self._conn is not None:
            self._reset(conn)
        raise _rejected(*failure)

    def _command(
        self,
        conn: smtplib.SMTP,
        stage: Stage,
        call: Callable[[], tuple[int, bytes]],
        ok: tuple[int, ...],
    ) -> str:
        try:
            code, raw = call()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise Disconnected(stage, str(exc) or type(exc).__name__) from None
        reply = f"{code} {_text(raw)}"
        if code in ok:
            return reply
        if code == 421 or code == -1:
            self._drop()
        elif stage != "dot":
            self._reset(conn)
        raise _rejected(stage, code, raw)

    def _reset(self, conn: smtplib.SMTP) -> None:
        """End a refused transaction so the connection can carry the next one."""
        try:
            code, _ = conn.rset()
        except (OSError, smtplib.SMTPException):
            code = -1
        if code != 250:
            self._drop()

    def _drop(self) -> None:
        self._begun = None
        if self._conn is not None:
            _quietly_close(self._conn)
            self._conn = None

    def close(self) -> None:
        """QUIT; a failure here changes nothing (the server already said 250)."""
        self.abort()  # a begun envelope must not be ended by "QUIT" read as message text
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            _quietly_close(conn)


def _path(address: str) -> str:
    """`<address>` for MAIL/RCPT; smtplib.quoteaddr's parseaddr only for unusual input."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())


def _envelope(sender: str, recipient: str) -> tuple[str, str]:
    """SMTP without SMTPUTF8 needs ASCII paths: internationalised domains in their xn-- form."""
    return ascii_address(sender), ascii_address(recipient)


def _rejected(stage: Stage, code: int, raw: bytes | str) -> Rejected:
    exc = Rejected(stage, f"{code} {_text(raw)}", code)
    exc.code = code
    return exc


def _quietly_close(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        conn.close()
