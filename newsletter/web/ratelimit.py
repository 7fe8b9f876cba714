"""Rate limits for the sign-up form: a sliding window per client and per address.

In memory (`RateLimiter`) for the one waitress process `newsletter serve` runs on an SQLite
store; in the database (`SharedRateLimiter`, store.ratelimits) when the store is on a server,
so several `serve` processes behind a load balancer allow the limit once between them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

from newsletter.store.ratelimits import RateLimits


class Limiter(Protocol):
    def hit(self, key: str) -> float | None:
        """Count a hit; None if allowed, else the seconds until the next one would be."""
        ...


class RateLimiter:
    """At most `limit` hits per key in a sliding `window` (seconds), in memory."""

    def __init__(self, limit: int, window: float, *, max_keys: int = 100_000) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float | None:
        """Count a hit; None if allowed, else the seconds until the next one would be."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.pop(key, None) or deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            self._hits[key] = hits  # most recently used last
            if len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
            if len(hits) >= self.limit:
                return hits[0] + self.window - now
            hits.append(now)
            return None


class SharedRateLimiter:
    """At most `limit` hits per key in a sliding `window` (seconds), counted in the store by
    every process that shares it; `clock`: seconds since the epoch (the same on every host)."""

    def __init__(
        self,
        rate_limits: RateLimits,
        scope: str,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rate_limits, self.scope, self.limit, self.window = rate_limits, scope, limit, window
        self.clock = clock

    def hit(self, key: str) -> float | None:
        return self.rate_limits.hit(
            self.scope, key, limit=self.limit, window=self.window, now=self.clock()
        )
