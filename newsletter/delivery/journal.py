"""Recording each message before its final ".": the claim journal (SQLite), or a commit.

The crash guarantee (newsletter.delivery.engine): a connection records the last message's
result and claims the next reader before that reader's final "." goes out, so after a kill at
most one message per connection is unaccounted for. On SQLite that used to be one transaction
a message, ~300 us of CPU in a 4-connection send: a third of all a message cost
(docs/performance.md). `Journal` makes it one line appended to this process's file
(`subscribers/.send-SLUG.journal/PID`) instead, written before the "." as the commit was: a
killed process loses nothing it had handed to the kernel. Every FOLD_AFTER operations the lines
go into the send log in one transaction, and the file is emptied.

Whoever starts a run, or a new round of worker processes, first `replay`s the files left by
processes that died: the send log then says what they said, and a row still in_flight is the
one message a dead connection had on the wire, as before. A file emptied only after its fold
was stored may be replayed again: each operation applies only to the row as it was before it
(state and attempts), so a second time changes nothing (SendLog.apply_journal).

A reader who left is still never claimed: their status is read before each claim. On
PostgreSQL (`Direct`) every message keeps its one statement: several hosts share that send log.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Protocol

from newsletter.delivery.policy import Result
from newsletter.errors import DeliveryError
from newsletter.settings import Config
from newsletter.store.database import now_stamp, stamp
from newsletter.store.records import DeliveryRow
from newsletter.store.sends import JournalOp, SendLog

# Operations a process holds before storing them: ~25 messages; a fold costs about one
# commit, so this is ~1/25 of a commit a message, and the send log is at most this far behind.
FOLD_AFTER = 50

Done = tuple[DeliveryRow, Result]  # a row and the result to record for it
Claim = tuple[DeliveryRow, str]  # a row to claim and the Message-ID it goes out with


class Claims(Protocol):
    def commit(self, done: Done | None, claim: Claim | None) -> bool:
        """Record `done` and claim `claim` (True if claimed: its reader is still active),
        stored before the caller sends the claimed message's final "."."""

    def fold(self) -> None:
        """Everything recorded so far into the send log (before reading or writing it)."""

    def close(self) -> None:
        """Fold, and let go of what holds the records."""


def folder(config: Config, slug: str) -> Path:
    return config.subscribers_dir / f".send-{slug}.journal"


def claims_for(log: SendLog, config: Config, slug: str) -> Claims:
    return Direct(log) if log.server else Journal(log, folder(config, slug))


class Direct:
    """One transaction a message (threads of one process share it: GroupCommit)."""

    def __init__(self, log: SendLog) -> None:
        from newsletter.delivery.groupcommit import GroupCommit  # a server's: not SQLite's start

        self.log = log
        self.group = GroupCommit(log.record_and_claim_many)

    def commit(self, done: Done | None, claim: Claim | None) -> bool:
        ids = (claim[0].id, claim[1]) if claim is not None else None
        if done is None:
            return ids is not None and self.log.mark_in_flight(*ids)
        row, result = done
        return self.group((row.id, result.state, result.reply, result.due, ids))

    def fold(self) -> None:
        pass

    def close(self) -> None:
        pass


class Journal:
    """This process's journal file for one send; the threads of one process share it."""

    def __init__(self, log: SendLog, where: Path) -> None:
        self.log = log
        where.mkdir(exist_ok=True)
        self.path = where / str(os.getpid())
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.size = os.fstat(self.fd).st_size  # what the file holds of whole lines
        self.unfolded: list[JournalOp] = []
        self.lock = threading.Lock()

    def commit(self, done: Done | None, claim: Claim | None) -> bool:
        at = now_stamp()
        ops: list[JournalOp] = []
        if done is not None:
            row, result = done
            due = stamp(result.due) if result.due else None
            ops.append(("record", row.id, row.attempts, result.state, result.reply, due, at))
        claimed = False
        if claim is not None:
            row, message_id = claim
            status = self.log.reader_status(row.id)
            if status == "active":
                ops.append(("claim", row.id, row.attempts, message_id, at))
                claimed = True
            else:
                why = f"reader {status or 'forgotten'} before delivery"
                ops.append(("skip", row.id, row.attempts, why, at))
        if not ops:  # nothing done, nobody left to claim
            return False
        line = (json.dumps(ops) + "\n").encode("ascii")  # \u escapes: any reply fits
        with self.lock:
            if len(self.unfolded) >= FOLD_AFTER:
                self._fold()  # first: if the store fails, this message is not claimed either
            # Held before the line is written: a second Ctrl-C between the two can then only
            # store a claim whose message never left (unknown), never lose one that did.
            self.unfolded += ops
            try:
                _write_all(self.fd, line)
            except OSError as exc:  # e.g. the disk is full: nothing more may go out
                del self.unfolded[-len(ops) :]
                with contextlib.suppress(OSError):  # no half line for later lines to follow
                    os.ftruncate(self.fd, self.size)
                raise DeliveryError(f"cannot write the send's journal {self.path}: {exc}") from exc
            self.size += len(line)
        return claimed

    def fold(self) -> None:
        with self.lock:
            self._fold()

    def _fold(self) -> None:
        if not self.unfolded:
            return
        operations, self.unfolded = self.unfolded, []
        try:
            self.log.apply_journal(operations)
        except BaseException:
            self.unfolded = operations + self.unfolded  # not stored: kept for the next fold
            raise
        os.ftruncate(self.fd, 0)  # a kill before this: the replay skips what is stored
        self.size = 0

    def close(self) -> None:
        """Never raises: a fold that fails here leaves the file for the next run's replay (the
        run has paused already, at its end_round's fold)."""
        with self.lock:
            try:
                self._fold()
            except Exception:
                return
            finally:
                os.close(self.fd)
            self.path.unlink(missing_ok=True)


_FIELDS = {"record": 7, "claim": 5, "skip": 5}  # see store.sends.JournalOp


def _whole(op: object) -> bool:
    """An operation as `Journal.commit` writes it (kind, row id, attempts, ..., moment)."""
    return (
        isinstance(op, list)
        and len(op) == _FIELDS.get(str(op[0]) if op else "", -1)
        and all(isinstance(n, int) for n in op[1:3])
        and isinstance(op[-1], str)
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def replay(log: SendLog, where: Path) -> int:
    """Store what the journal files of dead processes hold, then remove them; how many
    operations they held. Only when no process of the send is alive (the send lock, or a
    parent between rounds of its workers). A last line cut short by a kill is left out: its
    message never got its final "."."""
    if not where.is_dir():
        return 0
    count = 0
    for path in sorted(where.iterdir()):
        ops: list[JournalOp] = []
        lines = path.read_bytes().split(b"\n")
        for number, line in enumerate(lines[:-1], 1):  # lines[-1]: after the last newline
            try:
                parsed = json.loads(line)
                if not isinstance(parsed, list) or not all(map(_whole, parsed)):
                    raise ValueError(line)
                ops += [tuple(op) for op in parsed]
            except ValueError:
                raise DeliveryError(
                    f"{path}: line {number}: not a journal line; the send cannot tell what it"
                    " sent: move the file away to start over from the send log"
                ) from None
        if ops:
            log.apply_journal(ops, replay=True)
        count += len(ops)
        path.unlink()
    return count
