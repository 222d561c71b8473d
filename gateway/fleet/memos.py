"""Memos: what an idempotent start returned, kept for the idempotency window.

A start claims its key first: it finds the record of an earlier start (replay it), a pending
marker of a start still in flight (wait, or refuse), or nothing, and then its own marker is set
in the same step, so no two starts ever both find nothing. The marker lives as long as the
record would: a start whose instance died mid-flight keeps its key unusable, since nobody can
know whether Plivo sent that code. A start that sent nothing releases its marker.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import StateUnavailable, Throttled
from gateway.fleet.link import RedisLink, Unreachable, milliseconds

logger = logging.getLogger(__name__)
PENDING = "pending:"
RETRY_AFTER = 2.0  # seconds a caller is told to wait while the records cannot be reached


@dataclass(frozen=True, slots=True)
class MemoClaim:
    """The outcome of a claim: an earlier record, or the key is ours, or it is busy."""

    record: str | None = None
    mine: bool = False

    @property
    def busy(self) -> bool:
        """Another start with this key is in flight."""
        return self.record is None and not self.mine


class Memos(Protocol):
    """Idempotency records, by key."""

    async def claim(self, key: str, marker: str, ttl: float) -> MemoClaim: ...

    async def settle(self, key: str, marker: str, record: str, ttl: float) -> None: ...

    async def release(self, key: str, marker: str) -> None: ...


class MemoryMemos:
    """Records in this process: at most `max_entries`, never dropping one that still counts."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._full_until = 0.0  # while full of live records: none expires before this

    def __len__(self) -> int:
        return len(self._items)

    async def claim(self, key: str, marker: str, ttl: float) -> MemoClaim:
        held = self.get(key)
        if held is not None:
            return MemoClaim() if held.startswith(PENDING) else MemoClaim(record=held)
        self.put(key, PENDING + marker, ttl)
        return MemoClaim(mine=True)

    async def settle(self, key: str, marker: str, record: str, ttl: float) -> None:
        held = self.get(key)
        if held is None or held == PENDING + marker:
            self.put(key, record, ttl)

    async def release(self, key: str, marker: str) -> None:
        if self.get(key) == PENDING + marker:
            del self._items[key]

    def get(self, key: str) -> str | None:
        """The value kept under `key`, while it lasts."""
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] <= time.monotonic():
            del self._items[key]
            return None
        return item[0]

    def put(self, key: str, value: str, ttl: float) -> None:
        """Keep `value`; refused (Throttled) when every slot holds a record that still counts."""
        if key not in self._items and len(self._items) >= self.max_entries:
            now = time.monotonic()
            if now >= self._full_until:  # one sweep per "full" spell, not one per request
                self._expire()
                if len(self._items) >= self.max_entries:
                    self._full_until = min(until for _, until in self._items.values())
            if len(self._items) >= self.max_entries:
                raise Throttled(
                    "the gateway holds too many idempotency records just now; try again later",
                    retry_after=round(max(0.001, self._full_until - now), 3),
                )
        self._items[key] = (value, time.monotonic() + ttl)
        self._items.move_to_end(key)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [key for key, (_, until) in self._items.items() if until <= now]:
            del self._items[key]


class RedisMemos:
    """Records in Redis, fleet-wide, with a copy of each this instance wrote or read.

    While Redis does not answer, a claim replays this instance's copy, or is refused with
    `StateUnavailable` (retryable): never sent without knowing. A record that could not be
    written, and a marker that a timed-out claim may have left, are written or released once
    Redis answers again, before anything else is decided. When Redis lost its data (restarted
    without persistence, or flushed), each instance writes its copies back, and for a few
    seconds a claim this instance holds no copy for is refused rather than trusted.
    """

    def __init__(self, link: RedisLink, max_entries: int = 50_000) -> None:
        self._link = link
        self._local = _Copies(max_entries)
        self._settles: dict[str, tuple[str, str, float]] = {}  # key: marker, record, ttl
        self._releases: dict[str, str] = {}  # key: marker
        self._epoch = link.epoch
        link.owes(self._flush)

    async def claim(self, key: str, marker: str, ttl: float) -> MemoClaim:
        copy = self._local.get(key)
        try:
            held = await self._link.script(
                "memo_claim", [key], [PENDING + marker, milliseconds(ttl)]
            )
        except Unreachable as exc:
            if exc.sent:  # it may run late, leaving our marker: take it back once Redis answers
                self._releases[key] = marker
            if copy is not None:
                return MemoClaim(record=copy)
            raise StateUnavailable(
                "idempotency records cannot be reached just now", retry_after=RETRY_AFTER
            ) from None
        if held is None:
            if copy is not None:  # Redis lost it (a restart or a flush): our copy is the record
                await self.settle(key, marker, copy, ttl)
                return MemoClaim(record=copy)
            if self._link.lost_recently:  # the instance that holds it may not have written back
                await self.release(key, marker)
                raise StateUnavailable(
                    "idempotency records are being restored just now", retry_after=RETRY_AFTER
                )
            return MemoClaim(mine=True)
        text = held.decode() if isinstance(held, bytes) else str(held)
        if text.startswith(PENDING):
            return MemoClaim()
        self._local.put(key, text, ttl)
        return MemoClaim(record=text)

    async def settle(self, key: str, marker: str, record: str, ttl: float) -> None:
        self._local.put(key, record, ttl)
        try:
            await self._link.script(
                "memo_settle", [key], [PENDING + marker, record, milliseconds(ttl)]
            )
        except Unreachable:
            logger.warning("an idempotency record is kept here until Redis answers again")
            self._settles[key] = (marker, record, ttl)

    async def release(self, key: str, marker: str) -> None:
        try:
            await self._link.script("memo_release", [key], [PENDING + marker])
        except Unreachable:
            self._releases[key] = marker

    async def _flush(self) -> None:
        """What Redis missed: records, released markers, and every copy if it lost its data."""
        if self._link.epoch != self._epoch:
            for key, (record, ttl) in self._local.live().items():
                self._settles.setdefault(key, ("restored", record, ttl))
            self._epoch = self._link.epoch
        for key in list(self._settles):
            marker, record, ttl = self._settles[key]
            await self._link.script(
                "memo_settle", [key], [PENDING + marker, record, milliseconds(ttl)]
            )
            del self._settles[key]
        for key in list(self._releases):
            await self._link.script("memo_release", [key], [PENDING + self._releases[key]])
            del self._releases[key]


class _Copies:
    """This instance's copies of records (bounded, oldest out: a copy only saves a refusal)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def put(self, key: str, value: str, ttl: float) -> None:
        self._items[key] = (value, time.monotonic() + ttl)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def get(self, key: str) -> str | None:
        item = self._items.get(key)
        return item[0] if item is not None and item[1] > time.monotonic() else None

    def live(self) -> dict[str, tuple[str, float]]:
        """Every copy still counting: its record and the seconds it has left."""
        now = time.monotonic()
        return {
            key: (value, until - now) for key, (value, until) in self._items.items() if until > now
        }
