"""A token bucket per client address, for the routes anyone may call without a key (the
public verification page): each address may make ``per_min`` requests in a burst, then one
every 60/per_min seconds. In memory, per API process; behind a reverse proxy every visitor
is the proxy's address, so rate-limit there too (docs/certificates.md)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Addresses remembered at most; past this, those whose bucket has refilled are forgotten
# (a full bucket is what a new address gets anyway).
MAX_CLIENTS = 10_000


class RateLimiter:
    def __init__(self, per_min: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_min)
        self.rate_per_s = per_min / 60.0
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at s)
        self.lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """0 and one request counted when ``client`` may go on; else how many seconds until
        it may (nothing counted)."""
        now = self.clock()
        with self.lock:
            tokens, at = self.buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.rate_per_s)
            if tokens < 1.0:
                self.buckets[client] = (tokens, now)
                return (1.0 - tokens) / self.rate_per_s
            self.buckets[client] = (tokens - 1.0, now)
            if len(self.buckets) > MAX_CLIENTS:
                self._forget_full(now)
            return 0.0

    def _forget_full(self, now: float) -> None:
        full_after_s = self.capacity / self.rate_per_s
        self.buckets = {
            c: (t, at) for c, (t, at) in self.buckets.items() if now - at < full_after_s
        }
