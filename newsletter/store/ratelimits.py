"""Rate limits counted in the database, so every `serve` process (on every host) sees every
hit: sign-ups per client and per address in a sliding window.

A key (a client's IP, an address) is stored only as a keyed hash, and a hit only for as long
as its window lasts: the table never holds personal data, nor anything older than an hour.
"""

from __future__ import annotations

import hashlib

from newsletter.store.database import Database

_PURGE_EVERY = 500  # hits between sweeps of every key's expired hits


class RateLimits:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._since_purge = 0

    def _key(self, scope: str, key: str) -> str:
        data = f"{scope}\0{key}".encode()
        return hashlib.blake2b(data, key=self._db.hash_key, digest_size=16).hexdigest()

    def hit(self, scope: str, key: str, *, limit: int, window: float, now: float) -> float | None:
        """Count a hit of `key` (in `scope`, e.g. "client") at `now` (seconds since the
        epoch): None if allowed, else the seconds until the next one would be. At most
        `limit` hits in any `window` seconds."""
        hashed = self._key(scope, key)
        with self._db.write() as tx:  # count-then-insert: no other process in between
            tx.execute("DELETE FROM rate_hits WHERE key = ? AND at <= ?", (hashed, now - window))
            count, oldest = tx.execute(
                "SELECT count(*), min(at) FROM rate_hits WHERE key = ?", (hashed,)
            ).fetchone()
            if count >= limit:
                return float(oldest) + window - now
            tx.execute("INSERT INTO rate_hits (key, at) VALUES (?, ?)", (hashed, now))
            self._since_purge += 1
            if self._since_purge >= _PURGE_EVERY:  # keys never hit again expire here
                self._since_purge = 0
                tx.execute("DELETE FROM rate_hits WHERE at <= ?", (now - window,))
        return None
