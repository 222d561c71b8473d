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
from typing import NoReturn, Protocol

from gateway.errors import Throttled
from gateway.fleet.link import RedisLink, Unreachable

logger = logging.getLogger(__name__)
SLOTS = 10  # buckets per window: the limit may be refused up to a tenth of a window early
RETRY_AFTER = 5.0  # seconds a strict take refused for want of Redis is told to wait
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
        wait = self.wait(now, limit)
        if wait is None:
            self.add(now)
        return wait

    def wait(self, now: float, limit: int | None = None) -> float | None:
        """None when one more fits under `limit`, else the seconds until it does (counts none)."""
        if self.used(now) + 1 <= (self.limit if limit is None else limit):
            return None
        first = self._buckets[0][0] if self._buckets else int(now // self.width)
        return max(0.001, (first + SLOTS + 1) * self.width - now)

    def add(self, now: float) -> None:
        """Count one, whatever the limit."""
        current = int(now // self.width)
        if self._buckets and self._buckets[-1][0] == current:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([current, 1])

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

    async def take(self, key: str, rate: Rate, *, strict: bool = True) -> float | None:
        """Count one for `key`: None when it fits in `rate`, else the seconds to wait.

        `strict` (throttles that protect money and people): while the shared counts cannot be
        read, refuse rather than guess; otherwise (rates that protect Plivo) take a share.
        """
        ...

    async def take_pair(
        self, key: str, limit: int, share: str, share_limit: int, window: float
    ) -> float | None:
        """Count one for `key` and for `share` when both fit their limits, else neither.

        The Plivo budget and a caller's share of it: None when taken, else the seconds to wait.
        """
        ...


class MemoryCounters:
    """Counters in this process, at most `max_keys` of them, never forgetting an open window."""

    def __init__(self, max_keys: int = 100_000, clock: Clock = time.time) -> None:
        self.max_keys, self._clock = max_keys, clock
        self._windows: OrderedDict[str, SlidingWindow] = OrderedDict()
        self._full_until = 0.0  # while full of open windows: none ends before this

    def __len__(self) -> int:
        return len(self._windows)

    async def take(self, key: str, rate: Rate, *, strict: bool = True) -> float | None:
        return self.take_now(key, rate)

    async def take_pair(
        self, key: str, limit: int, share: str, share_limit: int, window: float
    ) -> float | None:
        return self.take_pair_now(key, limit, share, share_limit, window)

    def take_now(self, key: str, rate: Rate, *, limit: int | None = None) -> float | None:
        """`take` without awaiting; `limit` lowers the rate's limit (a share of it)."""
        now = self._clock()
        return self._window(key, rate, now).take(now, limit=limit)

    def take_pair_now(
        self, key: str, limit: int, share: str, share_limit: int, window: float
    ) -> float | None:
        """`take_pair` without awaiting."""
        now = self._clock()
        first = self._window(key, (limit, window), now)
        second = self._window(share, (share_limit, window), now)
        waits = [w for w in (first.wait(now, limit), second.wait(now, share_limit)) if w]
        if waits:
            return max(waits)
        first.add(now)
        second.add(now)
        return None

    def _window(self, key: str, rate: Rate, now: float) -> SlidingWindow:
        window = self._windows.get(key)
        if window is None:
            window = self._admit(key, rate, now)
        self._windows.move_to_end(key)
        return window

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
    leaves what the fleet had used (`seen`). While Redis is unreachable:

    - a strict take (the start throttles) fits only when this instance knows it is alone
      (the last count of instances listening said 1): then what the fleet had used plus what
      it took since must stay within the limit, and a key it never counted fits only if it has
      run for a whole window. With several instances, or none counted yet, it is refused;
    - any other take (the Plivo budget, the list and refetch rates) fits within this
      instance's share: what the fleet had used, plus what it took since times the number of
      instances, or the limit over the instances for a key it never counted.

    Takes made meanwhile are written to Redis once it answers, before anything else is decided.
    A strict take refused because the fleet's counts cannot be read (not because the limit was
    reached) raises Throttled saying so, with a short `retry_after`: the key or the recipient
    is not to blame, and the outage may end in seconds.
    """

    def __init__(self, link: RedisLink, max_keys: int = 100_000, clock: Clock = time.time) -> None:
        self._link, self._clock = link, clock
        self._mine = MemoryCounters(max_keys, clock)
        self._seen: OrderedDict[str, tuple[int, float, int]] = OrderedDict()
        self._max_seen = max_keys
        self._owed: dict[str, tuple[float, int]] = {}  # takes made while Redis was away
        self._started = clock()
        link.owes(self._flush)

    async def take(self, key: str, rate: Rate, *, strict: bool = True) -> float | None:
        limit, window = rate
        try:
            used, wait = await self._link.script(
                "take", [key], [limit, window, SLOTS, f"{self._clock():.3f}", 1]
            )
        except Unreachable:
            return self.take_alone(key, rate, strict=strict)
        wait = float(wait)
        self.note(key, rate, int(used), taken=wait <= 0)
        return None if wait <= 0 else max(0.001, wait)

    async def take_pair(
        self, key: str, limit: int, share: str, share_limit: int, window: float
    ) -> float | None:
        now = f"{self._clock():.3f}"
        try:
            used, shared, wait = await self._link.script(
                "take_pair", [key, share], [limit, share_limit, window, SLOTS, now]
            )
        except Unreachable:
            return self.take_pair_alone(key, limit, share, share_limit, window)
        wait = float(wait)
        self.note_pair(key, limit, share, share_limit, window, (int(used), int(shared)), wait)
        return None if wait <= 0 else max(0.001, wait)

    def note_pair(
        self,
        key: str,
        limit: int,
        share: str,
        share_limit: int,
        window: float,
        used: tuple[int, int],
        wait: float,
    ) -> None:
        """What Redis said of a budget and a caller's share (both taken when `wait` is 0)."""
        self.note(key, (limit, window), used[0], taken=wait <= 0)
        self.note(share, (share_limit, window), used[1], taken=wait <= 0)

    def take_pair_alone(
        self, key: str, limit: int, share: str, share_limit: int, window: float
    ) -> float | None:
        """`take_pair` while Redis is unreachable: both within this instance's share, or none."""
        for name, most in ((key, limit), (share, share_limit)):
            if not self._fits_alone(name, (most, window), strict=False):
                return round(window / SLOTS, 3)
        for name, most in ((key, limit), (share, share_limit)):
            self._record_alone(name, (most, window))
        return None

    def note(self, key: str, rate: Rate, used: int, *, taken: bool) -> None:
        """Redis said the fleet has used `used` of `key` (this take included when `taken`)."""
        if taken:
            self._count_here(key, rate)
        self._seen[key] = (used, self._clock(), self._mine.used(key))
        self._seen.move_to_end(key)
        while len(self._seen) > self._max_seen:
            self._seen.popitem(last=False)

    def _count_here(self, key: str, rate: Rate) -> None:
        """This instance's own count, for decisions while Redis is away (full: not kept)."""
        with contextlib.suppress(Throttled):
            self._mine.take_now(key, rate, limit=2**62)

    def take_alone(self, key: str, rate: Rate, *, strict: bool = True) -> float | None:
        """The decision while Redis is unreachable (see the class docstring).

        Raises Throttled when a strict take cannot be decided without Redis.
        """
        if not self._fits_alone(key, rate, strict=strict):
            return round(rate[1] / SLOTS, 3)
        self._record_alone(key, rate)
        return None

    def _fits_alone(self, key: str, rate: Rate, *, strict: bool) -> bool:
        limit, window = rate
        now, mine = self._clock(), self._mine.used(key)
        alone = self._link.peers_known and self._link.peers == 1
        seen = self._seen.get(key)
        if strict and not alone:
            unknowable()  # what the other instances took since is unknown: refuse, not guess
        if seen is not None and now < seen[1] + window:
            fleet_used, _, mine_then = seen
            peers = max(1, self._link.peers)
            fits = fleet_used + peers * (max(0, mine - mine_then) + 1) <= limit
        elif strict:  # alone, and it never counted this key: only if it saw the whole window
            if now - self._started < window:
                unknowable()
            fits = mine + 1 <= limit
        else:
            fits = mine + 1 <= limit // max(1, self._link.peers)
        return fits

    def _record_alone(self, key: str, rate: Rate) -> None:
        self._count_here(key, rate)
        self._owed[key] = (rate[1], self._owed.get(key, (rate[1], 0))[1] + 1)

    async def _flush(self) -> None:
        """Count in Redis what was taken here while it did not answer (one call per key)."""
        for key in list(self._owed):
            window, owed = self._owed.pop(key)
            now = f"{self._clock():.3f}"
            try:
                await self._link.script("take", [key], [2**52, window, SLOTS, now, owed])
            except Unreachable:  # kept for the next recovery
                self._owed[key] = (window, owed + self._owed.get(key, (window, 0))[1])
                raise


def unknowable() -> NoReturn:
    """A strict take that cannot be decided while Redis does not answer: refused, saying so."""
    raise Throttled(
        "the fleet's throttle counters cannot be reached: try again shortly",
        retry_after=RETRY_AFTER,
    )


@dataclass(frozen=True)
class KeyedRate:
    """One rate applied to each key apart (refetches per API key), under a key prefix."""

    counters: Counters
    prefix: str
    rate: Rate

    async def take(self, key: str) -> float | None:
        """Count one for `key` (kept under a digest of it, never the key itself)."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return await self.counters.take(f"{self.prefix}:{digest}", self.rate, strict=False)
