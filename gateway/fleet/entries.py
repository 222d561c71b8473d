"""Entries with freshness: cached sessions (with their fetch locks) and cached pages.

A lookup *claims* its key: it gets the copy when it is fresh, or else the copy it may still
serve stale and one of three answers: `fetch` (this caller holds the fetch lock, and one
request of the Plivo budget is spent), `held` (another instance is fetching: wait for what
lands), or `refused` (the budget is spent). With Redis a claim is one round trip (a Lua
script) and so is settling (store, let go of the lock, tell the waiters): two for a new session.

Every copy carries its session's generation. When a session changes its generation is bumped,
and a copy of an older generation counts as absent: forgetting a session costs the same
whatever the number of credentials that cached it. In memory, an index of the keys each
session is cached under does the same job.

While Redis does not answer, entries live in this process (`MemoryEntries`), and they are
dropped when Redis is back: they may have missed changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiocache import SimpleMemoryCache
from aiocache.serializers import NullSerializer

from gateway.fleet.budget import Budget
from gateway.fleet.counters import SLOTS, Counters, MemoryCounters, RedisCounters
from gateway.fleet.link import RedisLink, Unreachable, milliseconds
from gateway.plivo.models import MalformedSession, Session, dump_session, parse_session

logger = logging.getLogger(__name__)
ClaimState = Literal["hit", "fetch", "held", "refused"]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached answer: a session, or None for Plivo's 404; times are wall-clock seconds."""

    session: Session | None
    stored_at: float
    fresh_until: float


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim found: the copy (fresh or not), what to do, the generation to store under."""

    entry: CacheEntry | None
    state: ClaimState
    generation: str = "0"
    wait: float = 0.0  # refused: seconds until the budget has room


class MemoryEntries:
    """Entries in this process: aiocache's memory backend, bounded, least recently used out.

    Expiry is checked on read rather than by aiocache's per-key timers (one timer per entry cost
    the cold path a measurable share of its time), and calls go to the backend's own `_get`,
    `_set` and `_delete`: the public API wraps each in plugin hooks and a timeout that an
    in-process dict does not need (about 6 % of the cold path, py-spy, S2).
    """

    hears_landings = False

    def __init__(self, max_entries: int, counters: Counters | None = None) -> None:
        self._cache: Any = SimpleMemoryCache(serializer=NullSerializer(), timeout=None)
        self._order: OrderedDict[str, str | None] = OrderedDict()  # key -> session uuid
        self._copies: dict[str, set[str]] = {}  # session uuid -> keys
        self.max_entries = max_entries
        self._counters = counters or MemoryCounters()

    def __len__(self) -> int:
        return len(self._order)

    async def claim(
        self, key: str, uuid: str, token: str, lease: float, *, force: bool, budget: Budget | None
    ) -> Claim:
        entry = await self.get(key)
        if entry is not None and not force and time.time() < entry.fresh_until:
            return Claim(entry, "hit")
        if budget is not None:
            wait = await self._take(budget)
            if wait is not None:
                return Claim(entry, "refused", wait=wait)
        return Claim(entry, "fetch")

    async def _take(self, budget: Budget) -> float | None:
        if isinstance(self._counters, RedisCounters):
            return self._counters.take_alone(budget.key, budget.rate, strict=False)
        return await budget.spend(self._counters)

    async def settle(
        self, key: str, uuid: str, entry: CacheEntry, claim: Claim, ttl: float, token: str
    ) -> None:
        await self.set(key, entry, ttl, uuid)

    async def release(self, key: str, token: str) -> None:
        """Nothing to let go: in one process, single-flight is the lock."""

    def landing(self, key: str) -> asyncio.Future[CacheEntry | None] | None:
        """No other instance lands anything here."""
        return None

    def done_waiting(self, key: str, future: asyncio.Future[CacheEntry | None] | None) -> None:
        """Nothing to unregister."""

    async def put(self, key: str, uuid: str, entry: CacheEntry, ttl: float) -> None:
        await self.set(key, entry, ttl, uuid)

    def forget_here(self, uuid: str) -> None:
        """Every copy of the session held in this process goes."""
        for key in self._copies.pop(uuid, ()):
            self._order.pop(key, None)
            self._cache._cache.pop(key, None)

    def clear(self) -> None:
        """Drop everything (a Redis outage ended: these copies may have missed changes)."""
        self._order.clear()
        self._copies.clear()
        self._cache._cache.clear()

    async def get(self, key: str) -> CacheEntry | None:
        """The entry, or None when absent or expired."""
        item = await self._cache._get(key)
        if item is not None and item[1] > time.monotonic():
            self._order.move_to_end(key, last=True)
            entry: CacheEntry = item[0]
            return entry
        if item is not None:
            self._drop(key)
        return None

    async def set(self, key: str, entry: object, ttl: float, uuid: str | None = None) -> None:
        """Keep `entry` (or a page's text) for `ttl` seconds, indexed under `uuid`."""
        await self._cache._set(key, (entry, time.monotonic() + ttl))
        self._order[key] = uuid
        self._order.move_to_end(key)
        if uuid is not None:
            self._copies.setdefault(uuid, set()).add(key)
        while len(self._order) > self.max_entries:
            self._drop(next(iter(self._order)))

    async def remember(self, key: str, text: str, ttl: float) -> None:
        """Keep a text (a cached page) for `ttl` seconds."""
        await self.set(key, text, ttl)

    async def recall(self, key: str) -> str | None:
        """What `remember` kept, while it lasts."""
        item = await self._cache._get(key)
        if item is None or item[1] <= time.monotonic() or not isinstance(item[0], str):
            return None
        return item[0]

    def _drop(self, key: str) -> None:
        uuid = self._order.pop(key, None)
        self._cache._cache.pop(key, None)
        if uuid is not None:
            keys = self._copies.get(uuid)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._copies[uuid]


class NoEntries(MemoryEntries):
    """No cache at all (GATEWAY_CACHE_URL=none): every claim fetches; budget still counts."""

    def __init__(self, counters: Counters | None = None) -> None:
        super().__init__(1, counters)

    async def set(self, key: str, entry: object, ttl: float, uuid: str | None = None) -> None:
        """Keeps nothing."""


class RedisEntries:
    """Entries in Redis, shared by the fleet; in this process while Redis does not answer."""

    def __init__(
        self,
        link: RedisLink,
        counters: RedisCounters,
        *,
        prefix: str,
        max_local: int,
        generation_ttl: float,
    ) -> None:
        self._link, self._counters, self._prefix = link, counters, prefix
        self.landed_channel = f"{prefix}:landed"
        self._generation_ttl = generation_ttl
        self._local = MemoryEntries(max_local, counters)
        self._waiters: dict[str, list[asyncio.Future[CacheEntry | None]]] = {}
        link.on_recovery(self._local.clear)

    @property
    def hears_landings(self) -> bool:
        """Whether a holder's landing reaches this instance (its subscription is up)."""
        return self._link.listening

    def generation_key(self, uuid: str) -> str:
        """Where a session's generation is kept."""
        return f"{self._prefix}:gen:{uuid}"

    async def claim(
        self, key: str, uuid: str, token: str, lease: float, *, force: bool, budget: Budget | None
    ) -> Claim:
        limit, window = budget.rate if budget is not None else (0, 0.0)
        keys = [key, self.generation_key(uuid), f"{self._prefix}:lock:{key}"]
        keys.append(budget.key if budget is not None else key)
        args = [f"{time.time():.3f}", token, milliseconds(lease), int(force), limit, window, SLOTS]
        try:
            raw, generation, state, wait, *used = await self._link.script("claim", keys, args)
        except Unreachable:
            return await self._local.claim(key, uuid, token, lease, force=force, budget=budget)
        state = state.decode()
        if used and budget is not None:  # what the fleet spent: this instance's share if away
            self._counters.note(budget.key, budget.rate, int(used[0]), taken=state == "fetch")
        entry = decode_entry(raw) if raw is not None else None
        return Claim(entry, state, generation.decode(), float(wait))

    async def settle(
        self, key: str, uuid: str, entry: CacheEntry, claim: Claim, ttl: float, token: str
    ) -> None:
        """Store what was fetched, let go of the lock and hand it to waiters: one round trip."""
        value = encode_entry(entry, claim.generation)
        keys = [key, f"{self._prefix}:lock:{key}"]
        try:
            await self._link.script(
                "settle", keys, [value, milliseconds(ttl), token, self.landed_channel]
            )
        except Unreachable:
            await self._local.set(key, entry, ttl, uuid)

    async def release(self, key: str, token: str) -> None:
        """Let go of the lock after a failed fetch; waiters claim again at once."""
        lock = f"{self._prefix}:lock:{key}"
        with contextlib.suppress(Unreachable):  # if it is not heard, the lease ends it
            await self._link.script("release", [lock], [token, self.landed_channel, key])

    def landing(self, key: str) -> asyncio.Future[CacheEntry | None]:
        """A future for what another instance lands under `key` (register before claiming)."""
        future: asyncio.Future[CacheEntry | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        return future

    def done_waiting(self, key: str, future: asyncio.Future[CacheEntry | None] | None) -> None:
        """Unregister a future from `landing`."""
        waiting = self._waiters.get(key)
        if waiting is not None and future in waiting:
            waiting.remove(future)
            if not waiting:
                del self._waiters[key]

    def landed(self, message: str) -> None:
        """A message on the landed channel: "<key>\\n<entry>" (an empty entry: let go)."""
        key, _, value = message.partition("\n")
        entry = decode_entry(value) if value else None
        for future in self._waiters.pop(key, ()):
            if not future.done():
                future.set_result(entry)

    async def put(self, key: str, uuid: str, entry: CacheEntry, ttl: float) -> None:
        """A copy read elsewhere (a page of the list), under the session's current generation."""
        value = encode_entry(entry, None)
        try:
            await self._link.script(
                "put", [key, self.generation_key(uuid)], [milliseconds(ttl), value]
            )
        except Unreachable:
            await self._local.set(key, entry, ttl, uuid)

    def forget_here(self, uuid: str) -> None:
        """This process's copies of the session go (another instance bumped its generation)."""
        self._local.forget_here(uuid)

    async def remember(self, key: str, text: str, ttl: float) -> None:
        """Keep a text (a cached page) for `ttl` seconds."""
        try:
            await self._link.call("SET", key, text, "PX", milliseconds(ttl))
        except Unreachable:
            await self._local.remember(key, text, ttl)

    async def recall(self, key: str) -> str | None:
        """What `remember` kept, while it lasts."""
        try:
            raw = await self._link.call("GET", key)
        except Unreachable:
            return await self._local.recall(key)
        return raw.decode() if isinstance(raw, bytes) else None


def encode_entry(entry: CacheEntry, generation: str | None) -> str:
    """ "<generation> <fresh until> <json>" (no generation: the script puts the current one)."""
    session = dump_session(entry.session) if entry.session is not None else None
    body = orjson.dumps({"v": 2, "s": entry.stored_at, "b": session}).decode()
    head = f"{entry.fresh_until!r} {body}"
    return head if generation is None else f"{generation} {head}"


def decode_entry(raw: bytes | str) -> CacheEntry | None:
    """The entry, or None (logged) when it cannot be read."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        _, fresh_until, body = text.split(" ", 2)
        record = orjson.loads(body)
        session = record["b"]
        return CacheEntry(
            session=parse_session(session) if session is not None else None,
            stored_at=float(record["s"]),
            fresh_until=float(fresh_until),
        )
    except (ValueError, KeyError, TypeError, MalformedSession, UnicodeDecodeError) as exc:
        logger.warning("unreadable cache entry ignored (%s)", type(exc).__name__)
        return None


Entries = MemoryEntries | RedisEntries
