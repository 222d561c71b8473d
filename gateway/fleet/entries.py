"""Entries with freshness: cached sessions (with their fetch locks) and cached pages.

A lookup *claims* its key: it gets the copy when it is fresh, or else the copy it may still
serve stale and one of three answers: `fetch` (this caller holds the fetch lock, and one
request of the Plivo budget is spent), `held` (another instance is fetching: wait for what
lands), or `refused` (the budget, or the caller's share of it, is spent). With Redis a claim is
one round trip (a Lua script) and so is settling (store, let go of the lock, tell the waiters):
two for a new session.

The claim also keeps the *live set* of a budget: the in-progress sessions polled without
callbacks, each with when it was last read, and the same for each caller. Their sizes (those
read within the horizon: `LIVE_HORIZON`, or twice the planned refresh interval when longer) set
how long copies stay fresh; whether a session was read recently sets the priority of its
refresh. Sessions whose status callbacks arrive are *covered*: they leave the live sets.

Every copy carries its session's generation. When a session changes its generation is bumped,
and a copy of an older generation counts as absent: forgetting a session costs the same
whatever the number of credentials that cached it. In memory, an index of the keys each
session is cached under does the same job.

While Redis does not answer, entries live in this process (`MemoryEntries`), and they are
dropped when Redis is back: they may have missed changes.

A claim whose reply never came may still have taken the fetch lock: a paused Redis runs it
when it goes on, for a holder that is no longer waiting for it. Its token is kept, and the
lock let go by compare and delete (the token must match) when Redis answers again; a claim
that finds a lock held by such a token lets it go and claims again. The same goes for a settle
or a release that was not heard. Nobody waits for a lease that nobody serves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson
from aiocache import SimpleMemoryCache
from aiocache.serializers import NullSerializer

from gateway.fleet.budget import Budget, Priority, caller_digest
from gateway.fleet.counters import SLOTS, Counters, MemoryCounters, RedisCounters
from gateway.fleet.link import RedisLink, Unreachable, milliseconds
from gateway.plivo.models import MalformedSession, Session, dump_session, parse_session

logger = logging.getLogger(__name__)
ClaimState = Literal["hit", "fetch", "held", "refused"]
LIVE_HORIZON = 30.0  # a session read within this many seconds is being polled now (at least)
LIVE_TTL = 3600.0  # a live set nothing joined for this long goes (its members left long ago)
Live = Literal["add", "drop", ""]


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
    live: int = 0  # fetch or refused: sessions in the budget's live set
    covered: bool = False  # fetch or refused: the session's status callbacks arrive
    mine: int = 0  # fetch or refused: sessions of the live set the caller polls


@dataclass(frozen=True, slots=True)
class Demand:
    """Who asks for a session: the budget to spend from, the caller, and whether it watches."""

    budget: Budget | None
    caller: str = "anonymous"
    watched: bool = False  # a subscription's poller
    overdue_after: float = float("inf")  # a copy older than this is refreshed one step sooner

    @property
    def horizon(self) -> float:
        """Seconds within which a read means the session is polled now.

        `LIVE_HORIZON`, or longer when copies are planned to stay fresh longer: a poll answered
        from the whole-response cache reads no copy, and must not drop out of the live set.
        """
        return max(LIVE_HORIZON, min(self.overdue_after, 86_400.0))

    @property
    def live_key(self) -> str | None:
        """The budget's live set."""
        return None if self.budget is None else f"{self.budget.key}:live"

    @property
    def my_live_key(self) -> str | None:
        """The sessions of the budget's live set that the caller polls."""
        if self.budget is None:
            return None
        return f"{self.budget.key}:live:{caller_digest(self.caller)}"

    def priority(self, entry: CacheEntry | None, read_before: float | None, now: float) -> Priority:
        """Urgent without a copy; watched when watched or read within the horizon; else rest.

        A copy older than `overdue_after` goes one step up (see `budget`).
        """
        if entry is None:
            return "urgent"
        overdue = now - entry.stored_at > self.overdue_after
        if self.watched or (read_before is not None and now - read_before <= self.horizon):
            return "overdue" if overdue else "watched"
        return "watched" if overdue else "rest"


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
        self._counters = counters if counters is not None else MemoryCounters()
        self._live: dict[str, OrderedDict[str, float]] = {}  # live set -> uuid -> last read
        self._covered: OrderedDict[str, float] = OrderedDict()  # uuid -> covered until

    def __len__(self) -> int:
        return len(self._order)

    async def claim(
        self, key: str, uuid: str, token: str, lease: float, *, force: bool, demand: Demand
    ) -> Claim:
        now = time.time()
        live = mine = None
        if self._live:  # none while no in-progress session is polled
            live = self._live.get(demand.live_key or "")
            mine = self._live.get(demand.my_live_key or "")
        before = live.get(uuid) if live is not None else None
        for sessions in (live, mine):
            if sessions is not None and uuid in sessions:
                sessions[uuid] = now
                sessions.move_to_end(uuid)
        entry = await self.get(key)
        if entry is not None and not force and now < entry.fresh_until:
            return Claim(entry, "hit")
        count = _trim(live, now - demand.horizon) if live is not None else 0
        my_count = _trim(mine, now - demand.horizon) if mine is not None else 0
        covered = self.covers(uuid, now)
        budget = demand.budget
        if budget is not None:
            wait = await self.spend(budget, demand.caller, demand.priority(entry, before, now))
            if wait is not None:
                refused = Claim(entry, "refused", wait=wait, live=count, covered=covered)
                return replace(refused, mine=my_count)
        return Claim(entry, "fetch", live=count, covered=covered, mine=my_count)

    async def spend(self, budget: Budget, caller: str, priority: Priority) -> float | None:
        """One request from `budget` and `caller`'s share: None when it fits, else the wait."""
        if isinstance(self._counters, RedisCounters):
            return self._counters.take_pair_alone(
                budget.key,
                budget.limit(priority),
                budget.share_key(caller),
                budget.share_limit(priority),
                budget.rate[1],
            )
        return await budget.spend(self._counters, caller, priority)

    async def settle(
        self,
        key: str,
        uuid: str,
        entry: CacheEntry,
        claim: Claim,
        ttl: float,
        token: str,
        *,
        demand: Demand,
        live: Live = "",
    ) -> None:
        await self.set(key, entry, ttl, uuid)
        if live == "add" or self._live:
            now = time.time()
            self.track(demand.live_key, uuid, live, now)
            self.track(demand.my_live_key, uuid, live, now)

    def track(self, live_key: str | None, uuid: str, live: Live, now: float) -> None:
        """Add `uuid` to the live set `live_key` (read now), or drop it from it."""
        if live_key is None or not live:
            return
        sessions = self._live.get(live_key)
        if live == "drop":
            if sessions is not None:
                sessions.pop(uuid, None)
            return
        if sessions is None:
            sessions = self._live[live_key] = OrderedDict()
            while len(self._live) > self.max_entries:
                self._live.pop(next(iter(self._live)))
        sessions[uuid] = now
        sessions.move_to_end(uuid)
        while len(sessions) > self.max_entries:
            sessions.popitem(last=False)

    def cover_here(self, uuid: str, ttl: float) -> None:
        """The session's status callbacks arrive: its copies need no polling for `ttl` s."""
        self._covered[uuid] = time.time() + ttl
        self._covered.move_to_end(uuid)
        while len(self._covered) > self.max_entries:
            self._covered.popitem(last=False)

    async def cover(self, uuid: str, ttl: float) -> None:
        """`cover_here` (in one process, here is everywhere)."""
        self.cover_here(uuid, ttl)

    def covers(self, uuid: str, now: float) -> bool:
        """Whether the session's status callbacks arrive."""
        until = self._covered.get(uuid)
        if until is not None and until <= now:
            del self._covered[uuid]
            return False
        return until is not None

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
        self._live.clear()

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
        # Tokens of locks this instance may hold without serving them: token -> (lock, key,
        # lease, until). `until` is None while the release is owed; once let go, the token is
        # kept for a lease more, should a claim that was sent before have run after it.
        self._abandoned: OrderedDict[str, tuple[str, str, float, float | None]] = OrderedDict()
        self._max_abandoned = max(1, max_local)
        link.on_recovery(self._local.clear)
        link.owes(self._let_go)

    @property
    def hears_landings(self) -> bool:
        """Whether a holder's landing reaches this instance (its subscription is up)."""
        return self._link.listening

    def generation_key(self, uuid: str) -> str:
        """Where a session's generation is kept."""
        return f"{self._prefix}:gen:{uuid}"

    def covered_key(self, uuid: str) -> str:
        """Where the mark that a session's callbacks arrive is kept."""
        return f"{self._prefix}:covered:{uuid}"

    async def claim(
        self, key: str, uuid: str, token: str, lease: float, *, force: bool, demand: Demand
    ) -> Claim:
        budget = demand.budget
        lock = f"{self._prefix}:lock:{key}"
        live = demand.live_key or f"{self._prefix}:live"
        mine = demand.my_live_key or live
        if budget is None:
            keys = [key, self.generation_key(uuid), lock, key, key, live, self.covered_key(uuid)]
            limits: list[object] = [0, 0.0, SLOTS, 0, 0, 0]
        else:
            share = budget.share_key(demand.caller)
            keys = [key, self.generation_key(uuid), lock, budget.key, share, live]
            keys.append(self.covered_key(uuid))
            limits = [budget.limit("urgent"), budget.rate[1], SLOTS, budget.limit("watched")]
            limits += [budget.limit("rest"), budget.share_limit("urgent")]
        keys.append(mine)
        args = [f"{time.time():.3f}", token, milliseconds(lease), int(force), *limits]
        args += [int(demand.watched), uuid, f"{demand.horizon:.3f}"]
        args.append(f"{min(demand.overdue_after, 1e9):.3f}")
        if budget is None:
            args += [0, 0, 0, 0]
        else:
            args.append(budget.limit("overdue"))
            args += [budget.share_limit(p) for p in ("overdue", "watched", "rest")]
        try:
            raw, generation, state, wait, *counts = await self._link.script("claim", keys, args)
        except Unreachable as exc:
            if exc.sent:  # it may run late and take the lock for nobody: let it go later
                self._abandon(token, lock, key, lease)
            return await self._local.claim(key, uuid, token, lease, force=force, demand=demand)
        state = state.decode()
        entry = decode_entry(raw) if raw is not None else None
        if state == "held":
            if self._abandoned and counts and await self._let_go_of(counts[0].decode()):
                return await self.claim(key, uuid, token, lease, force=force, demand=demand)
            return Claim(entry, state, generation.decode(), float(wait))
        if not counts:
            return Claim(entry, state, generation.decode(), float(wait))
        used, shared, live_count, covered, my_count = (int(count) for count in counts)
        if budget is not None:  # what the fleet spent: this instance's share if Redis goes
            priority = demand.priority(entry, None, 0.0)
            self._counters.note_pair(
                budget.key,
                budget.limit(priority),
                budget.share_key(demand.caller),
                budget.share_limit(priority),
                budget.rate[1],
                (used, shared),
                float(wait),
            )
        return Claim(
            entry, state, generation.decode(), float(wait), live_count, covered == 1, my_count
        )

    async def settle(
        self,
        key: str,
        uuid: str,
        entry: CacheEntry,
        claim: Claim,
        ttl: float,
        token: str,
        *,
        demand: Demand,
        live: Live = "",
    ) -> None:
        """Store what was fetched, let go of the lock and hand it to waiters: one round trip."""
        value = encode_entry(entry, claim.generation)
        live_key = demand.live_key or f"{self._prefix}:live"
        keys = [key, f"{self._prefix}:lock:{key}", live_key, demand.my_live_key or live_key]
        args = [value, milliseconds(ttl), token, self.landed_channel, live, uuid]
        args += [f"{time.time():.3f}", milliseconds(LIVE_TTL)]
        try:
            await self._link.script("settle", keys, args)
        except Unreachable:
            if token:  # the lock, if this token holds it, is let go when Redis is back
                self._abandon(token, keys[1], key, 0.0)
            await self._local.settle(key, uuid, entry, claim, ttl, token, demand=demand, live=live)

    async def spend(self, budget: Budget, caller: str, priority: Priority) -> float | None:
        """One request from `budget` and `caller`'s share: None when it fits, else the wait."""
        return await budget.spend(self._counters, caller, priority)

    async def cover(self, uuid: str, ttl: float) -> None:
        """The session's status callbacks arrive: every instance stops polling it for `ttl`."""
        try:
            await self._link.call("SET", self.covered_key(uuid), "1", "PX", milliseconds(ttl))
        except Unreachable:
            self._local.cover_here(uuid, ttl)

    async def release(self, key: str, token: str) -> None:
        """Let go of the lock after a failed fetch; waiters claim again at once."""
        lock = f"{self._prefix}:lock:{key}"
        try:
            await self._link.script("release", [lock], [token, self.landed_channel, key])
        except Unreachable:  # not heard: it is owed, and made once Redis answers again
            self._abandon(token, lock, key, 0.0)

    def _abandon(self, token: str, lock: str, key: str, lease: float) -> None:
        """Owe the release of `token`'s lock (at most `max_local` owed: the oldest ends by its
        lease)."""
        self._abandoned[token] = (lock, key, lease, None)
        self._abandoned.move_to_end(token)
        now = time.monotonic()
        while self._abandoned:
            oldest = next(iter(self._abandoned.values()))
            if len(self._abandoned) <= self._max_abandoned and (oldest[3] or now) >= now:
                break
            self._abandoned.popitem(last=False)

    async def _let_go_of(self, holder: str) -> bool:
        """Whether `holder` was a token of ours that nobody serves, now let go (waiters told)."""
        abandoned = self._abandoned.get(holder)
        if abandoned is None:
            return False
        lock, key = abandoned[0], abandoned[1]
        try:
            await self._link.script("release", [lock], [holder, self.landed_channel, key])
        except Unreachable:
            return False  # still owed; the caller waits, and its next claim is local
        self._abandoned.pop(holder, None)
        logger.info("let go of a fetch lock whose claim was never answered")
        return True

    async def _let_go(self) -> None:
        """Redis answers again: let go of the locks owed, by compare and delete, together."""
        owed = [(token, item) for token, item in self._abandoned.items() if item[3] is None]
        if not owed:
            return
        answers = await asyncio.gather(
            *(
                self._link.script("release", [lock], [token, self.landed_channel, key])
                for token, (lock, key, _, _) in owed
            ),
            return_exceptions=True,
        )
        now, failed = time.monotonic(), None
        for (token, (lock, key, lease, _)), answer in zip(owed, answers, strict=True):
            if isinstance(answer, BaseException):
                failed = answer
            elif lease > 0:  # a claim sent before may yet run: its token is known a lease more
                self._abandoned[token] = (lock, key, lease, now + lease)
            else:
                self._abandoned.pop(token, None)
        if failed is not None:
            raise failed  # Unreachable: what is left is owed at the next recovery

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


def _trim(live: OrderedDict[str, float], since: float) -> int:
    """Drop the sessions not read since `since` (the oldest reads are first); count the rest."""
    while live and next(iter(live.values())) < since:
        live.popitem(last=False)
    return len(live)


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
