"""What instances share: entries, locks, the Plivo budget, counters, memos, callback nonces and
the change feed.

Each kind has a memory implementation (one process) and a Redis one (a fleet). Callers name
what they need; only this package knows Redis exists. What each kind does while Redis does not
answer is in the degradation table (docs/caching-and-fleet.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.fleet.budget import WATCHED, Budget, Priority
from gateway.fleet.changes import Changes, Feed, MemoryFeed, RedisFeed
from gateway.fleet.counters import (
    Counters,
    KeyedRate,
    MemoryCounters,
    Rate,
    RedisCounters,
    SlidingWindow,
)
from gateway.fleet.entries import (
    LIVE_HORIZON,
    CacheEntry,
    Claim,
    Demand,
    Entries,
    Live,
    MemoryEntries,
    NoEntries,
    RedisEntries,
)
from gateway.fleet.link import RedisLink, Unreachable
from gateway.fleet.locks import SingleFlight, Waiting
from gateway.fleet.memos import MemoClaim, MemoryMemos, Memos, RedisMemos
from gateway.fleet.nonces import MemoryNonces, Nonces, RedisNonces

__all__ = [
    "LIVE_HORIZON",
    "WATCHED",
    "Budget",
    "CacheEntry",
    "Changes",
    "Claim",
    "Counters",
    "Demand",
    "Entries",
    "Feed",
    "Fleet",
    "KeyedRate",
    "Live",
    "MemoClaim",
    "MemoryCounters",
    "MemoryEntries",
    "MemoryMemos",
    "MemoryNonces",
    "Memos",
    "NoEntries",
    "Nonces",
    "Priority",
    "Rate",
    "RedisCounters",
    "RedisEntries",
    "RedisMemos",
    "RedisNonces",
    "SingleFlight",
    "SlidingWindow",
    "Unreachable",
    "Waiting",
    "is_redis_url",
    "open_fleet",
]


@dataclass(frozen=True)
class Fleet:
    """The shared state of one instance: each kind, in memory or in Redis."""

    entries: Entries
    counters: Counters
    memos: Memos
    feed: Feed
    link: RedisLink | None = None
    nonces: Nonces = field(default_factory=MemoryNonces)  # of accepted status callbacks

    @property
    def shared(self) -> bool:
        """Whether the state is shared with other instances (Redis)."""
        return self.link is not None

    async def start(self) -> bool:
        """Check Redis: ConfigError when it refuses us; False when it does not answer yet."""
        return True if self.link is None else await self.link.verify()

    async def is_ready(self) -> bool:
        """Whether the state that protects money (records, throttles, budget) is reachable."""
        return True if self.link is None else await self.link.writable()

    async def close(self) -> None:
        if self.link is not None:
            await self.link.close()


def is_redis_url(url: str | None) -> bool:
    """Whether `url` names a Redis server (redis:// or rediss://)."""
    return bool(url) and urlsplit(url or "").scheme in ("redis", "rediss")


def open_fleet(
    url: str | None,
    *,
    prefix: str,
    max_entries: int,
    timeout: float,
    generation_ttl: float,
) -> Fleet:
    """Redis when `url` is redis:// or rediss://; else this process ("none": no session cache)."""
    if is_redis_url(url):
        assert url is not None
        link = RedisLink(url, timeout=timeout, prefix=prefix)
        counters = RedisCounters(link)
        entries = RedisEntries(
            link, counters, prefix=prefix, max_local=max_entries, generation_ttl=generation_ttl
        )
        feed = RedisFeed(link, prefix=prefix, landed=entries.landed, generation_ttl=generation_ttl)
        nonces = RedisNonces(link, prefix=prefix)
        return Fleet(entries, counters, RedisMemos(link), feed, link, nonces)
    memory = MemoryCounters()
    cached: Entries = NoEntries(memory) if url == "none" else MemoryEntries(max_entries, memory)
    return Fleet(cached, memory, MemoryMemos(), MemoryFeed(), nonces=MemoryNonces(prefix))
