"""Counters: sliding-window limits (start throttles, list and refetch rates, the Plivo budget).

`MemoryCounters` keeps them in this process, bounded: when full it drops windows that ended,
and refuses new work while every one it holds is still open (forgetting one would hand out its
limit again). `RedisCounters` keeps them fleet-wide; while Redis does not answer, each instance
decides alone, as strictly as it can (see `RedisCounters.take`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import Throttled
from gateway.fleet.link import RedisLink, Unreachable

logger = logging.getLogger(__name__)
SLOTS = 10  # buckets per window: the limit may be refused up to a tenth of a window early
Rate = tuple[int, float]  # (limit, window in seconds)
Clock = Callable[[], float]


class SlidingWindow:
    """At most `limit` in any `window` seconds, counted in `SLOTS` + 1 buckets (as in Redis)."""

    __slots__ = ("_buckets", "limit", "width", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.width = window / SLOTS
        self._buckets: deque[list[int]] = deque()  # [index, count], oldest first

    def used(self, now: float) -> int:
        """How many were taken in the buckets that still count."""
        self._drop(int(now // self.width))
        return sum(count for _, count in self._buckets)

    def take(self, now: float, *, limit: int | None = None) -> float | None:
        """Count one; None when it fits under `limit` (default: the window's), else the wait."""
        current = int(now // self.width)
        if self.used(now) + 1 > (self.limit if limit is None else limit):
            first = self._buckets[0][0] if self._buckets else current
            return max(0.001, (first + SLOTS + 1) * self.width - now)
        if self._buckets and self._buckets[-1][0] == current:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([current, 1])
        return None

    def is_open(self, now: float) -> bool:
        """Whether anything taken still counts."""
        return self.used(now) > 0

    def ends_at(self) -> float:
        """When the last bucket taken stops counting."""
        return (self._buckets[-1][0] + SLOTS + 1) * self.width if self._buckets else 0.0

    def _drop(self, current: int) -> None:
        while self._buckets and self._buckets[0][0] < current - SLOTS:
            self._buckets.popleft()


class Counters(Protocol):
    """Sliding-window counters, by key."""

    async def take(self, key: str, rate: Rate) -> float | None:
        """Count one for `key`: None when it fits in `rate`, else the seconds to wait."""
        ...


class MemoryCounters:
    """Counters in this process, at most `max_keys` of them, never forgetting an open window."""

    def __init__(self, max_keys: int = 100_000, clock: Clock = time.time) -> None:
        self.max_keys, self._clock = max_keys, clock
        self._windows: OrderedDict[str, SlidingWindow] = OrderedDict()
        self._full_until = 0.0  # while full of open windows: none ends before this

    def __len__(self) -> int:
        return len(self._windows)

    async def take(self, key: str, rate: Rate) -> float | None:
        return self.take_now(key, rate)

    def take_now(self, key: str, rate: Rate, *, limit: int | None = None) -> float | None:
        """`take` without awaiting; `limit` lowers the rate's limit (a share of it)."""
        now = self._clock()
        window = self._windows.get(key)
        if window is None:
            window = self._admit(key, rate, now)
        self._windows.move_to_end(key)
        return window.take(now, limit=limit)

    def used(self, key: str) -> int:
        """What `key` has taken in its open window (0 when unknown)."""
        window = self._windows.get(key)
        return 0 if window is None else window.used(self._clock())

    def _admit(self, key: str, rate: Rate, now: float) -> SlidingWindow:
        if len(self._windows) >= self.max_keys:
            if now >= self._full_until:  # one sweep per "full" spell, not one per request
                ended = [name for name, window in self._windows.items() if not window.is_open(now)]
                for name in ended:
                    del self._windows[name]
                if len(self._windows) >= self.max_keys:
                    self._full_until = min(w.ends_at() for w in self._windows.values())
                    logger.warning("counters full: %d windows open; new keys refused", len(self))
            if len(self._windows) >= self.max_keys:
                raise Throttled(
                    "the gateway is tracking too many rates just now; try again later",
                    retry_after=round(max(0.001, self._full_until - now), 3),
                )
        window = self._windows[key] = SlidingWindow(*rate)
        return window


class RedisCounters:
    """Fleet-wide counters in Redis; while it does not answer, each instance decides alone.

    Every take this instance makes is also counted here (`mine`), and each answer from Redis
    leaves what the fleet had used (`seen`). While Redis is unreachable a take fits only when
    what the fleet had used, plus what this instance took since times the number of instances
    (it assumes each took as many), stays within the limit: with one instance that is exactly
    the fleet's limit. A key this instance never counted gets its share (limit / instances).
    Takes made meanwhile are replayed into Redis once it answers again.
    """

    def __init__(self, link: RedisLink, max_keys: int = 100_000, clock: Clock = time.time) -> None:
        self._link, self._clock = link, clock
        self._mine = MemoryCounters(max_keys, clock)
        self._seen: OrderedDict[str, tuple[int, float, int]] = OrderedDict()
        self._max_seen = max_keys
        self._owed: dict[str, tuple[float, int]] = {}  # takes made while Redis was away

    async def take(self, key: str, rate: Rate) -> float | None:
        limit, window = rate
        try:
            used, wait = await self._link.script(
                "take", [key], [limit, window, SLOTS, f"{self._clock():.3f}", 1]
            )
        except Unreachable:
            return self.take_alone(key, rate)
        wait = float(wait)
        self.note(key, rate, int(used), taken=wait <= 0)
        return None if wait <= 0 else max(0.001, wait)

    def note(self, key: str, rate: Rate, used: int, *, taken: bool) -> None:
        """Redis said the fleet has used `used` of `key` (this take included when `taken`)."""
        if taken:
            self._count_here(key, rate)
        self._seen[key] = (used, self._clock(), self._mine.used(key))
        self._seen.move_to_end(key)
        while len(self._seen) > self._max_seen:
            self._seen.popitem(last=False)

    def mirror(self, key: str, rate: Rate) -> None:
        """Redis counted one for `key` in a script of its own (a fetch's budget): count it here."""
        self._count_here(key, rate)

    def _count_here(self, key: str, rate: Rate) -> None:
        """This instance's own count, for decisions while Redis is away (full: not kept)."""
        with contextlib.suppress(Throttled):
            self._mine.take_now(key, rate, limit=2**62)

    def take_alone(self, key: str, rate: Rate) -> float | None:
        """The decision while Redis is unreachable (see the class docstring)."""
        limit, window = rate
        peers = max(1, self._link.peers)
        mine = self._mine.used(key)
        seen = self._seen.get(key)
        if seen is not None and self._clock() < seen[1] + window:
            fleet_used, _, mine_then = seen
            fits = fleet_used + peers * (max(0, mine - mine_then) + 1) <= limit
        else:
            fits = mine + 1 <= limit // peers
        if not fits:
            return round(window / SLOTS, 3)
        self._mine.take_now(key, rate, limit=2**62)
        if key not in self._owed:  # one replay per key, however many takes it owes
            self._link.later(lambda: self._replay(key))
        self._owed[key] = (window, self._owed.get(key, (window, 0))[1] + 1)
        return None

    async def _replay(self, key: str) -> None:
        """Count in Redis what was taken here while it did not answer."""
        window, owed = self._owed.pop(key)
        now = f"{self._clock():.3f}"
        try:
            await self._link.script("take", [key], [2**52, window, SLOTS, now, owed])
        except Unreachable:  # still queued: what is owed waits for the next recovery
            self._owed[key] = (window, owed + self._owed.get(key, (window, 0))[1])
            raise


@dataclass(frozen=True)
class KeyedRate:
    """One rate applied to each key apart (refetches per API key), under a key prefix."""

    counters: Counters
    prefix: str
    rate: Rate

    async def take(self, key: str) -> float | None:
        """Count one for `key` (kept under a digest of it, never the key itself)."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return await self.counters.take(f"{self.prefix}:{digest}", self.rate)
