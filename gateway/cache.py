"""The session cache: in memory (bounded, least recently used out) or in Redis for a fleet.

The only module that imports aiocache. Besides entries it holds the fleet's fetch locks (a
Redis key with a lease, so a holder that dies releases by expiry). Redis is an optimisation:
every operation is bounded by a timeout, a failure counts as a miss, and an outage is logged
once, then probed again at most once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from aiocache import RedisCache, SimpleMemoryCache
from aiocache.serializers import BaseSerializer, NullSerializer
from redis.exceptions import RedisError

from gateway.plivo.models import MalformedSession, Session, dump_session, parse_session

logger = logging.getLogger(__name__)
T = TypeVar("T")
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
PROBE_INTERVAL = 1.0
PING_EVERY = 5.0  # seconds of silence on the change channel before its connection is pinged


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached answer: a session, or None for Plivo's 404; times are wall-clock seconds."""

    session: Session | None
    stored_at: float
    fresh_until: float
    flight: str


class SessionCache:
    """Entries and fetch locks; this base keeps nothing (a cache that is always empty)."""

    shared = False

    async def get(self, key: str) -> CacheEntry | None:
        """The entry, or None when absent, expired or unreadable."""
        return None

    async def set(self, key: str, entry: CacheEntry, ttl: float) -> None:
        """Keep `entry` for `ttl` seconds."""

    async def delete(self, key: str) -> None:
        """Forget `key`."""

    async def try_lock(self, key: str, token: str, lease: float) -> bool:
        """Take the fetch lock for `key`; True when this caller should fetch."""
        return True

    async def lock_holder(self, key: str) -> str | None:
        """The token of whoever holds the fetch lock for `key`, if anyone."""
        return None

    async def unlock(self, key: str, token: str) -> None:
        """Release the lock if `token` still holds it."""

    async def spend(self, budget_key: str, limit: int, window: float) -> float | None:
        """Count one request against a fleet-wide budget of `limit` per `window` seconds.

        None when it fits; otherwise the seconds until the window ends. Only a shared
        backend keeps a fleet-wide budget; this one lets everything through.
        """
        return None

    async def remember(self, key: str, value: str, ttl: float) -> None:
        """Keep a small text value (an idempotent start's result) for `ttl` seconds."""

    async def recall(self, key: str) -> str | None:
        """What `remember` kept, while it lasts."""
        return None

    async def publish(self, channel: str, message: str) -> None:
        """Tell the other instances of the fleet; a cache of one process has none."""

    async def messages(self, channel: str, listening: Callable[[bool], None]) -> AsyncIterator[str]:
        """What other instances publish to `channel`; nothing, for a cache of one process.

        `listening(True)` is called once subscribed (what was published before is not heard),
        `listening(False)` when the subscription is lost.
        """
        listening(True)
        await asyncio.Event().wait()
        yield ""  # pragma: no cover  (never reached: makes this an async generator)

    async def is_healthy(self) -> bool:
        """Whether the backend answers."""
        return True

    async def close(self) -> None:
        """Release connections."""


class MemorySessionCache(SessionCache):
    """aiocache's memory backend with a bound: past `max_entries`, least recently used goes.

    Expiry is checked on read rather than by aiocache's per-key timers: one timer per entry
    cost the cold path a measurable share of its time, and the bound keeps memory flat anyway.
    Calls go to the backend's own `_get`/`_set`/`_delete` (the methods aiocache's backends
    implement): its public API wraps each call in plugin hooks, a timeout and an environment
    lookup, none of which an in-process dict with no plugins and no serializer needs, and which
    cost the cold path about 6 % of its time (py-spy, S2).
    """

    def __init__(self, max_entries: int) -> None:
        self._cache: Any = SimpleMemoryCache(serializer=NullSerializer(), timeout=None)
        self._order: OrderedDict[str, None] = OrderedDict()
        self.max_entries = max_entries

    async def get(self, key: str) -> CacheEntry | None:
        item = await self._cache._get(key)
        if item is not None and item[1] > time.monotonic():
            self._order.move_to_end(key, last=True)
            entry: CacheEntry = item[0]
            return entry
        if item is not None:
            await self._cache._delete(key)
        self._order.pop(key, None)
        return None

    async def set(self, key: str, entry: CacheEntry, ttl: float) -> None:
        await self._cache._set(key, (entry, time.monotonic() + ttl))
        self._order[key] = None
        self._order.move_to_end(key)
        while len(self._order) > self.max_entries:
            oldest, _ = self._order.popitem(last=False)
            await self._cache._delete(oldest)

    async def delete(self, key: str) -> None:
        self._order.pop(key, None)
        await self._cache._delete(key)

    async def remember(self, key: str, value: str, ttl: float) -> None:
        await self._cache._set(key, (value, time.monotonic() + ttl))
        self._order[key] = None
        self._order.move_to_end(key)

    async def recall(self, key: str) -> str | None:
        item = await self._cache._get(key)
        if item is None or item[1] <= time.monotonic() or not isinstance(item[0], str):
            return None
        return item[0]

    def __len__(self) -> int:
        return len(self._order)


class RedisSessionCache(SessionCache):
    """aiocache's Redis backend, shared by every instance of a fleet."""

    shared = True

    def __init__(self, url: str, *, timeout: float, ping_every: float = PING_EVERY) -> None:
        self._ping_every = ping_every
        self._handshake = max(timeout, 1.0)  # connecting and subscribing, not a cache call
        parts = urlsplit(url)
        db = parts.path.strip("/") or "0"
        self._cache: Any = RedisCache(
            serializer=EntrySerializer(),
            endpoint=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(db),
            password=unquote(parts.password) if parts.password else None,
            ssl=parts.scheme == "rediss",
            create_connection_timeout=timeout,
            timeout=timeout,
        )
        self._guard = _OutageGuard(timeout, f"{parts.hostname}:{parts.port or 6379}")

    async def get(self, key: str) -> CacheEntry | None:
        entry = await self._guard.run(lambda: self._cache.get(key), None)
        return entry if isinstance(entry, CacheEntry) else None

    async def set(self, key: str, entry: CacheEntry, ttl: float) -> None:
        await self._guard.run(lambda: self._cache.set(key, entry, ttl=float(ttl)), None)

    async def delete(self, key: str) -> None:
        await self._guard.run(lambda: self._cache.delete(key), None)

    async def try_lock(self, key: str, token: str, lease: float) -> bool:
        client = self._cache.client
        taken = await self._guard.run(
            lambda: client.set(key, token, nx=True, px=max(1, int(lease * 1000))), True
        )
        return bool(taken)

    async def lock_holder(self, key: str) -> str | None:
        raw = await self._guard.run(lambda: self._cache.client.get(key), None)
        return raw.decode() if isinstance(raw, bytes) else None

    async def unlock(self, key: str, token: str) -> None:
        await self._guard.run(lambda: self._cache.client.eval(_RELEASE, 1, key, token), None)

    async def spend(self, budget_key: str, limit: int, window: float) -> float | None:
        now = time.time()
        index = int(now // window)
        key = f"{budget_key}:{index}"
        client = self._cache.client

        async def count() -> int:
            async with client.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.pexpire(key, int(window * 2000))
                used, _ = await pipe.execute()
            return int(used)

        used = await self._guard.run(count, 0)
        if used <= limit:
            return None
        return max(0.001, (index + 1) * window - now)

    async def remember(self, key: str, value: str, ttl: float) -> None:
        client = self._cache.client
        await self._guard.run(lambda: client.set(key, value, px=max(1, int(ttl * 1000))), None)

    async def recall(self, key: str) -> str | None:
        raw = await self._guard.run(lambda: self._cache.client.get(key), None)
        return raw.decode() if isinstance(raw, bytes) else None

    async def publish(self, channel: str, message: str) -> None:
        await self._guard.run(lambda: self._cache.client.publish(channel, message), 0)

    async def messages(self, channel: str, listening: Callable[[bool], None]) -> AsyncIterator[str]:
        """Redis pub/sub, subscribing again after an outage (what was sent meanwhile is lost).

        After `ping_every` seconds of silence the subscription is pinged, and a ping unanswered
        for as long counts as an outage: a connection whose server stopped answering without
        closing it would otherwise look like a quiet channel forever.
        """
        while True:
            pubsub = self._cache.client.pubsub()
            try:
                await asyncio.wait_for(pubsub.subscribe(channel), self._handshake)
                listening(True)
                async for data in self._listen(pubsub):
                    yield data
            except (OSError, RedisError, TimeoutError) as exc:
                listening(False)
                logger.warning("listening to %s failed (%r); again in 1 s", channel, exc)
                await asyncio.sleep(PROBE_INTERVAL)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), self._handshake)

    async def _listen(self, pubsub: Any) -> AsyncIterator[str]:
        pinged = False
        while True:
            item = await pubsub.get_message(timeout=self._ping_every)
            if item is None:
                if pinged:
                    raise TimeoutError(f"no answer to a ping in {self._ping_every} s")
                await asyncio.wait_for(pubsub.ping(), self._handshake)
                pinged = True
                continue
            pinged = False  # anything heard shows the connection is alive
            if item.get("type") == "message":
                data = item["data"]
                yield data.decode() if isinstance(data, bytes) else str(data)

    async def is_healthy(self) -> bool:
        try:
            await asyncio.wait_for(self._cache.client.ping(), self._guard.timeout)
        except Exception:
            return False
        return True

    async def close(self) -> None:
        await self._cache.client.aclose()


# aiocache ships no type information, so its base class is Any to mypy.
class EntrySerializer(BaseSerializer):  # type: ignore[misc]
    """aiocache serializer for entries: JSON bytes, the session in Plivo's wire format."""

    DEFAULT_ENCODING = None

    def dumps(self, value: CacheEntry) -> bytes:
        return encode_entry(value)

    def loads(self, value: bytes | None) -> CacheEntry | None:
        return decode_entry(value) if value is not None else None


class _OutageGuard:
    """Bounds each call, turns failures into defaults, logs an outage once and its end once."""

    def __init__(self, timeout: float, name: str) -> None:
        self.timeout = timeout
        self.name = name
        self.degraded = False
        self._retry_at = 0.0

    async def run(self, call: Callable[[], Awaitable[T]], default: T) -> T:
        if self.degraded and time.monotonic() < self._retry_at:
            return default
        try:
            result = await asyncio.wait_for(call(), self.timeout)
        except Exception as exc:
            if not self.degraded:
                logger.warning(
                    "cache backend %s unavailable (%s); answering from Plivo until it is back",
                    self.name,
                    type(exc).__name__,
                )
            self.degraded = True
            self._retry_at = time.monotonic() + PROBE_INTERVAL
            return default
        if self.degraded:
            logger.warning("cache backend %s is back", self.name)
            self.degraded = False
        return result


def encode_entry(entry: CacheEntry) -> bytes:
    """The entry as JSON, the session in Plivo's wire format."""
    session = dump_session(entry.session) if entry.session is not None else None
    record = {"v": 1, "s": entry.stored_at, "f": entry.fresh_until, "t": entry.flight, "b": session}
    return json.dumps(record, separators=(",", ":")).encode()


def decode_entry(raw: bytes | str) -> CacheEntry | None:
    """The entry, or None (logged) when it cannot be read."""
    try:
        record = json.loads(raw)
        body = record["b"]
        return CacheEntry(
            session=parse_session(body) if body is not None else None,
            stored_at=float(record["s"]),
            fresh_until=float(record["f"]),
            flight=str(record["t"]),
        )
    except (ValueError, KeyError, TypeError, MalformedSession) as exc:
        logger.warning("unreadable cache entry ignored (%s)", type(exc).__name__)
        return None


def create_cache(url: str | None, *, max_entries: int, timeout: float) -> SessionCache:
    """Memory unless `url` is redis:// or rediss://."""
    if url and urlsplit(url).scheme in ("redis", "rediss"):
        return RedisSessionCache(url, timeout=timeout)
    return MemorySessionCache(max_entries)
