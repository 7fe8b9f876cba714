"""Where incoming mail is read from: IMAP, a Maildir, an mbox file, or one message on stdin.

Every source is an `Inbox`: it yields raw messages and is told when one has been processed,
so that IMAP can flag (or move) it and a rerun does not fetch it again, or quarantined (could
not be parsed): Maildir and IMAP move it to a quarantine folder; mbox and stdin leave it be.
The store keeps its own record of processed messages, so re-reading a Maildir or mbox changes
nothing either.
"""

from __future__ import annotations

import imaplib
import mailbox
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from newsletter.errors import InboxError
from newsletter.settings import ImapConfig

# Our own IMAP keyword for "processed"; servers that allow no keywords get \Seen instead.
PROCESSED_KEYWORD = "$NewsletterProcessed"
QUARANTINE_FOLDER = "Quarantine"  # Maildir: `.Quarantine`; IMAP: inbox.imap.quarantine_folder


@dataclass(frozen=True)
class RawMessage:
    data: bytes
    ref: str  # where it came from: "mbox FILE #3", "maildir KEY", "imap UID 42", "stdin"


class Inbox(Protocol):
    def messages(self) -> Iterator[RawMessage]: ...
    def processed(self, message: RawMessage) -> None: ...
    def quarantine(self, message: RawMessage) -> None: ...
    def close(self) -> None: ...


class MboxInbox:
    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise InboxError("no such mbox file", path=path)
        self.path = path
        self._box = mailbox.mbox(path, create=False)

    def messages(self) -> Iterator[RawMessage]:
        try:
            for index, key in enumerate(self._box.iterkeys()):
                yield RawMessage(self._box.get_bytes(key), f"{self.path} #{index + 1}")
        except (OSError, mailbox.Error) as exc:
            raise InboxError(f"cannot read mbox: {exc}", path=self.path) from None

    def processed(self, message: RawMessage) -> None:
        """Nothing to mark: rewriting someone's mbox is not ours to do; the store remembers."""

    def quarantine(self, message: RawMessage) -> None:
        """Left in place: the store has its digest, so later runs skip it unread."""

    def close(self) -> None:
        self._box.close()


class MaildirInbox:
    def __init__(self, path: Path) -> None:
        if not (path / "cur").is_dir() or not (path / "new").is_dir():
            raise InboxError("not a Maildir (expected cur/, new/ and tmp/ inside)", path=path)
        self.path = path
        self._box = mailbox.Maildir(path, factory=None, create=False)

    def messages(self) -> Iterator[RawMessage]:
        for key in sorted(self._box.iterkeys()):
            try:
                data = self._box.get_bytes(key)
            except (OSError, KeyError):
                continue  # taken by another reader meanwhile
            yield RawMessage(data, key)

    def processed(self, message: RawMessage) -> None:
        """Move it from new/ to cur/ and mark it seen, as a mail client would."""
        try:
            msg = self._box.get_message(message.ref)
            msg.set_subdir("cur")
            msg.add_flag("S")
            self._box[message.ref] = msg
        except (OSError, KeyError):
            pass

    def quarantine(self, message: RawMessage) -> None:
        """Move it into the Maildir++ subfolder `.Quarantine` for a human to look at."""
        try:
            folder = self._box.add_folder(QUARANTINE_FOLDER)
            folder.add(message.data)
            self._box.remove(message.ref)
        except (OSError, KeyError, mailbox.Error):
            pass  # the store has its digest: skipped next time wherever it is

    def close(self) -> None:
        self._box.close()


class StreamInbox:
    """One message on standard input: what an MTA pipe (`| newsletter inbox -`) delivers."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def messages(self) -> Iterator[RawMessage]:
        data = self.stream.read()
        if data.strip():
            yield RawMessage(data, "stdin")

    def processed(self, message: RawMessage) -> None:
        """The MTA considers the message delivered once we exit 0."""

    def quarantine(self, message: RawMessage) -> None:
        """Recorded by digest in the store; the MTA keeps or returns it by our exit code."""

    def close(self) -> None:
        """stdin belongs to the caller."""


class ImapInbox:
    """Unprocessed messages of one IMAP folder, fetched with BODY.PEEK[] (not marked read)."""

    def __init__(self, settings: ImapConfig, password: str | None, timeout: float = 60) -> None:
        self.settings = settings
        if not settings.username:
            raise InboxError("expected an IMAP user name", field="inbox.imap.username")
        if password is None:
            raise InboxError(
                f"the IMAP password is read from ${settings.password_env}, which is not set",
                field="inbox.imap.password_env",
            )
        try:
            self.conn = self._connect(timeout)
            self.conn.login(settings.username, password)
            typ, _ = self.conn.select(_quote(settings.folder))
            if typ != "OK":
                raise InboxError(f"no IMAP folder {settings.folder!r}", field="inbox.imap.folder")
        except (OSError, imaplib.IMAP4.error) as exc:
            where = f"{settings.host}:{settings.port}"
            raise InboxError(f"IMAP {where}: {exc}", field="inbox.imap") from None
        permanent = " ".join(str(r) for r in self.conn.untagged_responses.get("PERMANENTFLAGS", []))
        self.use_keyword = "\\*" in permanent
        self.can_move = "MOVE" in self.conn.capabilities

    def _connect(self, timeout: float) -> imaplib.IMAP4:
        s = self.settings
        if s.security == "ssl":
            return imaplib.IMAP4_SSL(
                s.host, s.port, ssl_context=ssl.create_default_context(), timeout=timeout
            )
        conn = imaplib.IMAP4(s.host, s.port, timeout=timeout)
        if s.security == "starttls":
            conn.starttls(ssl.create_default_context())
        return conn

    def messages(self) -> Iterator[RawMessage]:
        criterion = f"UNKEYWORD {PROCESSED_KEYWORD}" if self.use_keyword else "UNSEEN"
        typ, data = self.conn.uid("SEARCH", criterion)
        if typ != "OK":
            raise InboxError(f"IMAP SEARCH failed: {data!r}", field="inbox.imap")
        for uid in (data[0] or b"").split():
            typ, parts = self.conn.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
            body = (
                next((p[1] for p in parts if isinstance(p, tuple)), None) if typ == "OK" else None
            )
            if isinstance(body, bytes):
                yield RawMessage(body, uid.decode())

    def processed(self, message: RawMessage) -> None:
        flags = f"({PROCESSED_KEYWORD} \\Seen)" if self.use_keyword else "(\\Seen)"
        self.conn.uid("STORE", message.ref, "+FLAGS", flags)
        target = self.settings.processed_folder
        if not target:
            return
        if self.can_move:
            self.conn.uid("MOVE", message.ref, _quote(target))
        else:
            typ, _ = self.conn.uid("COPY", message.ref, _quote(target))
            if typ == "OK":
                self.conn.uid("STORE", message.ref, "+FLAGS", "(\\Deleted)")
                self.conn.expunge()

    def quarantine(self, message: RawMessage) -> None:
        """Flag it processed (never fetched again) and move it to the quarantine folder."""
        flags = f"({PROCESSED_KEYWORD} \\Seen)" if self.use_keyword else "(\\Seen)"
        self.conn.uid("STORE", message.ref, "+FLAGS", flags)
        target = _quote(self.settings.quarantine_folder)
        self.conn.create(target)  # NO when it exists: fine
        if self.can_move:
            self.conn.uid("MOVE", message.ref, target)
            return
        typ, _ = self.conn.uid("COPY", message.ref, target)
        if typ == "OK":
            self.conn.uid("STORE", message.ref, "+FLAGS", "(\\Deleted)")
            self.conn.expunge()

    def close(self) -> None:
        try:
            self.conn.close()
            self.conn.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def _quote(folder: str) -> str:
    return '"' + re.sub(r'(["\\])', r"\\\1", folder) + '"'


def open_imap(settings: ImapConfig) -> ImapInbox:
    return ImapInbox(settings, os.environ.get(settings.password_env))
