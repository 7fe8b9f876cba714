"""Telling a sick relay from a reader's own trouble, before anyone is charged for it.

A 4xx for one reader while others are accepted is that reader's (a full mailbox): it uses up
one of their attempts. The same 4xx for many readers in a row, whatever their domains, is the
relay's (`452 4.3.1 Insufficient system storage`, a provider's quota): charging each reader an
attempt would, over a few issues, soft-bounce the whole list. Likewise one 5xx after the final
"." is that reader's server refusing the message, while several in a row is the content being
refused. So each such failure is *held* (its row waits, uncharged) until a later acceptance
shows it was the reader's, or a streak shows it was not: then the send pauses and the held
readers are charged nothing. Mailman and listmonk pause on error runs in the same spirit.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Literal

from newsletter.store.records import DeliveryRow

Kind = Literal["deferred", "refused"]


@dataclass(frozen=True)
class Held:
    row: DeliveryRow
    kind: Kind
    reply: str


def reply_key(kind: Kind, reply: str) -> str:
    """What makes two failures "the same": the reply code and enhanced status for a 4xx
    (`452 4.3.1`), not the text, which often names the recipient; any 5xx after "."."""
    if kind == "refused":
        return "refused"
    match = re.match(r"\s*(\d{3})(?:[\s-]+(\d\.\d{1,3}\.\d{1,3}))?", reply)
    return " ".join(filter(None, match.groups())) if match else reply[:40]


class RelayWatch:
    """The streak of held failures of one send run (shared by its connections)."""

    def __init__(self, deferred_limit: int, refused_limit: int) -> None:
        self.limits: dict[Kind, int] = {"deferred": deferred_limit, "refused": refused_limit}
        self.lock = threading.Lock()
        self.streak: list[Held] = []
        self.key: str | None = None

    def held_ids(self) -> set[int]:
        with self.lock:
            return {h.row.id for h in self.streak}

    def failed(self, held: Held) -> tuple[str | None, list[Held]]:
        """Hold one failure. Returns (why the send must pause, or None; failures now known to
        be the readers' own, which the caller charges)."""
        key = reply_key(held.kind, held.reply)
        with self.lock:
            settled: list[Held] = []
            if self.key != key:
                # A different failure breaks the streak: the earlier ones were not the same
                # trouble, so they count as the readers' own.
                settled, self.streak, self.key = self.streak, [], key
            self.streak = [h for h in self.streak if h.row.id != held.row.id] + [held]
            if len(self.streak) < self.limits[held.kind]:
                return None, settled
            return describe(self.streak), settled

    def accepted(self) -> list[Held]:
        """A message went through: every failure held so far was that reader's own."""
        with self.lock:
            settled, self.streak, self.key = self.streak, [], None
            return settled

    def take(self) -> list[Held]:
        """Everything still held (the run is over): the caller decides what they mean."""
        return self.accepted()


def describe(held: list[Held]) -> str:
    """The pause message: what happened, the server's reply, and every reader affected."""
    if not held:
        return ""
    readers = ", ".join(h.row.email for h in held)
    last = held[-1]
    if last.kind == "refused":
        what = f"content refused: refused after the final '.' for {len(held)} readers in a row"
    else:
        what = f"relay trouble: the same temporary failure for {len(held)} readers in a row"
    return (
        f"{what} ({readers}): {last.reply}; no attempt was counted against them and the "
        "next run resumes"
    )
