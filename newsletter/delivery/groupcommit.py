"""One transaction for the results of several connections (the send's group commit).

On PostgreSQL every message costs one commit (record its result, claim the next row) before
its final "." goes out: that is the crash guarantee (on SQLite, a line of the claim journal:
newsletter.delivery.journal). With several connections on threads, the commits of those
waiting while one runs are batched into the next one, so the database sees fewer, larger
transactions. Each caller still returns only once its own result is committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from newsletter.errors import DeliveryError
from newsletter.store.records import DeliveryState

# (delivery id, new state, server reply, next attempt, (next row id, its Message-ID) to claim)
Item = tuple[int, DeliveryState, str | None, datetime | None, tuple[int, str] | None]


@dataclass
class _Request:
    item: Item
    finished: bool = False
    claimed: bool = False
    error: Exception | None = None

    def outcome(self) -> bool:
        if self.error is not None:
            raise self.error
        return self.claimed


class GroupCommit:
    """`commit(item)`: record one result (and claim the next row) in a shared transaction;
    True when the claim succeeded. `record_many` is the store's record_and_claim_many."""

    def __init__(self, record_many: Callable[[Sequence[Item]], Sequence[bool]]) -> None:
        self.record_many = record_many
        self.cond = threading.Condition()
        self.queue: list[_Request] = []
        self.busy = False

    def __call__(self, item: Item) -> bool:
        request = _Request(item)
        with self.cond:
            self.queue.append(request)
            while self.busy and not request.finished:
                self.cond.wait()
            if request.finished:
                return request.outcome()
            self.busy = True
            batch, self.queue = self.queue, []
        error: Exception | None = None
        claimed: list[bool] = []
        try:
            claimed = [bool(c) for c in self.record_many([r.item for r in batch])]
        except Exception as exc:
            error = exc
        finally:
            # Always wake the others, even on Ctrl-C here, or they would wait for ever.
            if error is None and len(claimed) != len(batch):
                error = DeliveryError("interrupted before the results were recorded")
            with self.cond:
                for n, done in enumerate(batch):
                    done.finished, done.error = True, error
                    done.claimed = claimed[n] if n < len(claimed) else False
                self.busy = False
                self.cond.notify_all()
        return request.outcome()
