"""What one connection carries: the next reader's prepared message, signed ahead or not, and
the pace of the send (`delivery.max_per_second`). `newsletter.delivery.engine` runs the
connections."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.delivery.policy import Result
from newsletter.mail.dkim import Pending
from newsletter.mail.transport import Transport
from newsletter.settings import Config
from newsletter.store.records import DeliveryRow

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor


class RateLimit:
    """`delivery.max_per_second`, evenly spaced across the connections."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next)
            self.next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


@dataclass(frozen=True)
class Prepared:
    """One reader's bytes and envelope, built before the row is claimed (its DKIM signature
    maybe still being computed: `data.result()`)."""

    row: DeliveryRow
    sender: str
    recipient: str
    data: Pending
    msgid: str


@dataclass
class Link:
    """One connection's own state: its transport and, when messages are DKIM-signed, the
    next reader, reserved and being signed on `signer`'s thread while the current reader's
    message goes out (the RSA operation releases the GIL; its ~1 ms overlaps the wait for
    the server and the commit). The row is only reserved in memory, never claimed: a crash
    leaves it pending."""

    transport: Transport
    signer: ThreadPoolExecutor | None = None
    ahead: tuple[DeliveryRow, Prepared | Result] | None = None


def signs_ahead(config: Config, connections: int) -> bool:
    """Whether each connection signs its next message on a thread of its own while the current
    one goes out: only when messages are signed and the connections leave a core idle. With
    every core busy (more connections than cores) signing ahead gains nothing and the extra
    threads cost their hand-offs."""
    if config.dkim is None:
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return connections < cores
