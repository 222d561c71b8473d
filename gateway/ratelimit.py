"""Rates: a token bucket per API key for `Cache-Control: no-cache` refetches, and fixed-window
throttles for starts and lists (fleet-wide in a shared cache)."""

from __future__ import annotations

import time

from gateway.cache import SessionCache


class RefreshLimiter:
    """Allows `per_minute` refetches per key, in bursts up to that many."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float | None:
        """None when `key` may refetch now; else the seconds until it may."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


class Throttle:
    """Fixed-window counters: in the shared cache for a fleet, else in this process."""

    def __init__(self, cache: SessionCache) -> None:
        self._cache = cache
        self._local: dict[str, int] = {}

    async def take(self, key: str, rate: tuple[int, float]) -> float | None:
        """None when one more fits in the window; else the seconds until the window ends."""
        limit, window = rate
        if self._cache.shared:
            return await self._cache.spend(key, limit, window)
        now = time.time()
        index = int(now // window)
        slot = f"{key}:{index}"
        if len(self._local) > 10_000:
            self._local.clear()  # windows end; a full reset only forgets old counts
        used = self._local.get(slot, 0) + 1
        self._local[slot] = used
        return None if used <= limit else max(0.001, (index + 1) * window - now)
