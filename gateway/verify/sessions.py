"""SessionService: what the resolvers call. Cache, single-flight and Plivo, in that order.

One lookup of a session that is not fresh in the cache becomes one upstream call per process
(concurrent lookups share one flight) and, with Redis, one per fleet: the claim takes the
fetch lock and spends from the Plivo budget in the same round trip, and whoever finds the lock
held waits for what its holder lands (it is handed over on the landed channel), claiming again
if the holder lets go, and fetching itself only when the wait outlasts one upstream call.

Freshness within the budget. How long an in-progress copy stays fresh follows how many such
sessions are polled now (the budget's live set): their refreshes fit in the part of the budget
refreshes may use (`WATCHED`), whatever their number, and each is refreshed in turn, the least
recently refreshed first. A session whose status callbacks arrive stays fresh until a callback
or a mutation changes it, or `callback_ttl` passes. When the budget cannot afford a refresh,
or Plivo fails, the last copy is served (`stale`, with its age) up to `max_stale` old; only a
session with no copy at all is refused.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.errors import (
    NOT_SENT_PATH,
    SessionNotFound,
    UpstreamFailed,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.fleet import (
    WATCHED,
    Budget,
    CacheEntry,
    Claim,
    Demand,
    Entries,
    Live,
    SingleFlight,
    Waiting,
)
from gateway.plivo.credentials import Credential
from gateway.plivo.models import Session, canonical_session_uuid

logger = logging.getLogger(__name__)
Source = Literal["hit", "miss", "stale"]
STALE_IF_ERROR = (UpstreamFailed, UpstreamTimeout, UpstreamUnavailable)
SLACK = 1.2  # refreshes are planned for this much less than the budget allows
COVERED_FOR = 600.0  # a session named by a callback is covered this long: a Verify session's life
# Who pays for the request being sent (set where a fetch begins; read when it is retried).
payer: ContextVar[str] = ContextVar("payer", default="anonymous")


@dataclass(frozen=True)
class CachePolicy:
    """How long answers stay fresh, and how long stale ones may still be served."""

    terminal_ttl: float = 3600.0
    in_progress_ttl: float = 2.0
    not_found_ttl: float = 5.0
    stale_while_revalidate: float = 10.0
    max_stale: float = 600.0
    callback_ttl: float = 60.0
    fetch_lease: float = 15.0
    key_prefix: str = "pvg"
    budget_requests: int = 300
    budget_window: float = 5.0
    key_share: float = 0.5

    def ttl_for(
        self,
        session: Session | None,
        *,
        live: int = 0,
        covered: bool = False,
        mine: int | None = None,
    ) -> float:
        """Terminal long, Plivo's 404 short; in-progress by callbacks or by the live set's size.

        An in-progress session whose callbacks arrive: `callback_ttl`. Otherwise long enough
        that the `live` sessions polled now are all refreshed within `WATCHED` of the budget,
        or, when shorter, that the `mine` of them the caller polls are within its share of it:
        a key polling many sessions does not stretch the freshness of another's few.
        """
        if session is None:
            return self.not_found_ttl
        if session.status.is_terminal:
            return self.terminal_ttl
        return self.in_progress_for(live=live, covered=covered, mine=mine)

    def in_progress_for(
        self, *, live: int = 0, covered: bool = False, mine: int | None = None
    ) -> float:
        """How long an in-progress copy stays fresh (see `ttl_for`)."""
        if covered:
            return max(self.in_progress_ttl, self.callback_ttl)
        planned = self.refresh_interval(live)
        if mine is not None:
            planned = min(planned, self.refresh_interval(mine) / self.key_share)
        planned = min(planned, self.max_stale)  # no older copy is a hit
        return max(self.in_progress_ttl, planned)

    def refresh_interval(self, live: int) -> float:
        """Seconds between refreshes of each of `live` sessions, so that they fit the budget."""
        per_second = self.budget_requests * WATCHED / self.budget_window
        return live / per_second * SLACK

    @property
    def keep_for(self) -> float:
        """How long past freshness an entry stays in the backend, for stale serving."""
        return max(self.stale_while_revalidate, self.max_stale)


@dataclass(frozen=True)
class Lookup:
    """A session (None for Plivo's 404), where it came from, its age and remaining freshness."""

    session: Session | None
    source: Source
    age: float
    fresh_for: float = 0.0
    retry_in: float = 0.0  # stale because the budget was spent: when it has room again


class SessionFetcher(Protocol):
    """Fetches one session from Plivo (PlivoClient, or one wrapped in retries)."""

    @property
    def credential(self) -> Credential: ...

    async def get_session(self, session_uuid: str) -> Session: ...


class LookupObserver(Protocol):
    """Hears how lookups were answered (metrics implement it)."""

    def cache(self, result: str) -> None: ...

    def coalesced(self) -> None: ...

    def budget_refused(self) -> None: ...


class _Unobserved:
    def cache(self, result: str) -> None:
        pass

    def coalesced(self) -> None:
        pass

    def budget_refused(self) -> None:
        pass


class SessionService:
    """Reads sessions for one credential through the cache, coalescing identical lookups."""

    def __init__(
        self,
        client: SessionFetcher,
        entries: Entries,
        policy: CachePolicy,
        *,
        base_url: str,
        observer: LookupObserver | None = None,
    ) -> None:
        self._client = client
        self._entries = entries
        self._policy = policy
        self._observer = observer or _Unobserved()
        credential = client.credential
        self.credential = credential
        self.namespace = f"{base_url}:{credential.auth_id}:{credential.digest[:32]}"
        self.budget = Budget(
            # per credential: a caller with a wrong token cannot spend the account's budget;
            # shares per account id: a wrong token spends from the caller's share
            f"{policy.key_prefix}:budget:{base_url}:{credential.auth_id}:{credential.digest[:32]}",
            (policy.budget_requests, policy.budget_window),
            share=policy.key_share,
            shares=f"{policy.key_prefix}:budget:{base_url}:{credential.auth_id}",
        )
        self._lookups: SingleFlight[tuple[str, bool, bool, str], Lookup] = SingleFlight(
            self._observer.coalesced
        )
        self._fetches: SingleFlight[str, Lookup] = SingleFlight(self._observer.coalesced)
        self._live = 0  # the size of the live set, as the last claim that fetched saw it
        # Lock tokens: unique across a fleet (a random prefix per service) and cheap to make.
        self._tokens: Callable[[], str] = map(
            f"{secrets.token_hex(6)}-{{}}".format, itertools.count()
        ).__next__

    def cache_key(self, session_uuid: str) -> str:
        """Names the upstream, the account, a digest of the credential and the uuid."""
        return f"{self._policy.key_prefix}:session:{self.namespace}:{session_uuid}"

    async def store(self, session: Session) -> None:
        """Fill the cache with a copy read elsewhere (a page of the list)."""
        uuid = canonical_session_uuid(session.session_uuid)
        ttl = self._policy.ttl_for(session)
        now = time.time()
        entry = CacheEntry(session, stored_at=now, fresh_until=now + ttl)
        await self._entries.put(self.cache_key(uuid), uuid, entry, ttl + self._policy.keep_for)

    async def get(
        self,
        session_uuid: str,
        *,
        refresh: bool = False,
        caller: str = "anonymous",
        watched: bool = False,
    ) -> Lookup:
        """The session; `refresh` skips the cached copy (still coalesced with other fetches).

        `caller` (the API key's name) pays for a fetch from its share of the budget; `watched`
        (a subscription's poller) waits for a fresh copy rather than taking a stale one while
        it is refreshed.
        """
        uuid = canonical_session_uuid(session_uuid)
        key = self.cache_key(uuid)
        demand = Demand(self.budget, caller, watched, self._overdue_after())
        lookup = await self._lookups.run(
            (key, refresh, watched, caller), lambda: self._lookup(key, uuid, refresh, demand)
        )
        self._observer.cache(lookup.source)
        return lookup

    async def _lookup(self, key: str, uuid: str, refresh: bool, demand: Demand) -> Lookup:
        fetching = self._fetches.in_flight(key)
        if fetching is not None:  # this process fetches it already: no claim needed
            self._observer.coalesced()
            return await asyncio.shield(fetching)
        waiting = Waiting(time.monotonic() + self._policy.fetch_lease)
        fresh_only = refresh or demand.watched
        held: CacheEntry | None = None  # the copy the last claim saw
        while not waiting.over:
            landing = self._entries.landing(key)  # before the claim: a landing is never missed
            try:
                token = self._tokens()
                claim = await self._entries.claim(
                    key, uuid, token, self._policy.fetch_lease, force=refresh, demand=demand
                )
                if claim.state != "held":
                    return await self._act(key, uuid, claim, token, fresh_only, demand)
                held = claim.entry
                stale = self._servable(held, fresh_only)
                if stale is not None:
                    return stale  # another instance refreshes it
                landed = await waiting.pause(landing, patient=self._entries.hears_landings)
            finally:
                self._entries.done_waiting(key, landing)
            if isinstance(landed, CacheEntry):
                self._observer.coalesced()
                now = time.time()
                age = max(0.0, now - landed.stored_at)
                return Lookup(landed.session, "hit", age, landed.fresh_until - now)
        # The holder outlasted one upstream call's time: fetch without its lock (and pay for it).
        logger.warning("the fetch lock of session %s outlasted its lease; fetching", uuid)
        if demand.budget is not None:
            wait = await self._entries.spend(demand.budget, demand.caller, "urgent")
            if wait is not None:
                refused = Claim(held, "refused", wait=wait, live=self._live)
                return await self._act(key, uuid, refused, "", fresh_only, demand)
        return await self._fetches.run(
            key, lambda: self._fetch(key, uuid, Claim(None, "fetch"), demand)
        )

    async def _act(
        self, key: str, uuid: str, claim: Claim, token: str, fresh_only: bool, demand: Demand
    ) -> Lookup:
        now, entry = time.time(), claim.entry
        if claim.state in ("fetch", "refused"):
            self._live = claim.live
        if claim.state == "hit" and entry is not None:
            return Lookup(entry.session, "hit", now - entry.stored_at, entry.fresh_until - now)
        if claim.state == "refused":
            self._observer.budget_refused()
            error = UpstreamRateLimited(
                f"the fleet's Plivo request budget is spent for session {uuid}",
                method="GET",
                path=NOT_SENT_PATH,
                retry_after=round(claim.wait, 3),
            )
            return self._stale_instead(uuid, entry, error, retry_in=claim.wait)

        def fetch() -> Awaitable[Lookup]:
            return self._fetch(key, uuid, claim, demand, token)

        flight = self._fetches.in_flight(key)
        if flight is not None:  # a fetch begun meanwhile: join it
            await self._entries.release(key, token)
            flight = self._fetches.start(key, fetch)
        stale = self._servable(entry, fresh_only)
        if stale is not None:
            if flight is None:
                self._fetches.start(key, fetch)  # the fetch goes on in the background
            return stale
        try:
            if flight is not None:
                return await asyncio.shield(flight)
            # This runs in the lookup's own task, which runs on whatever its callers do
            # (SingleFlight): the fetch needs no task of its own.
            return await self._fetches.run_here(key, fetch)
        except STALE_IF_ERROR as exc:
            return self._stale_instead(uuid, entry, exc)

    @property
    def live(self) -> int:
        """In-progress sessions polled without callbacks, as the last claim that fetched saw."""
        return self._live

    @property
    def refresh_interval(self) -> float:
        """How long an in-progress copy fetched now stays fresh (without callbacks)."""
        return self._policy.in_progress_for(live=self._live)

    def _overdue_after(self) -> float:
        """A copy older than twice the planned refresh interval is refreshed one step sooner."""
        return 2 * self.refresh_interval

    def _servable(self, entry: CacheEntry | None, refresh: bool) -> Lookup | None:
        """The copy, when it is recent enough to serve while it is refreshed."""
        now = time.time()
        if (
            entry is None
            or refresh
            or now >= entry.fresh_until + self._policy.stale_while_revalidate
            or now - entry.stored_at > self._policy.max_stale
        ):
            return None
        return Lookup(entry.session, "stale", now - entry.stored_at)

    def _stale_instead(
        self, uuid: str, entry: CacheEntry | None, error: Exception, *, retry_in: float = 0.0
    ) -> Lookup:
        """The last copy with its age rather than `error`, up to `max_stale` old."""
        now = time.time()
        if entry is None or now - entry.stored_at > self._policy.max_stale:
            raise error
        if retry_in <= 0:  # a refused refresh is routine under load; a failure is not
            logger.warning("serving a stale copy of session %s: %s", uuid, type(error).__name__)
        return Lookup(entry.session, "stale", now - entry.stored_at, retry_in=retry_in)

    async def _fetch(
        self, key: str, uuid: str, claim: Claim, demand: Demand, token: str | None = None
    ) -> Lookup:
        payer.set(demand.caller)  # this task's own context: a retry is charged to the caller
        try:
            session: Session | None = await self._client.get_session(uuid)
        except SessionNotFound:
            session = None
        except Exception:
            if token is not None:
                await self._entries.release(key, token)
            raise
        ttl = self._policy.ttl_for(session, live=claim.live, covered=claim.covered, mine=claim.mine)
        live: Live = "drop"
        if session is not None and not session.status.is_terminal and not claim.covered:
            live = "add"  # polled without callbacks: it counts in how often each is refreshed
        now = time.time()
        entry = CacheEntry(session, stored_at=now, fresh_until=now + ttl)
        await self._entries.settle(
            key,
            uuid,
            entry,
            claim,
            ttl + self._policy.keep_for,
            token or "",
            demand=demand,
            live=live,
        )
        return Lookup(session, "miss", 0.0, ttl)

    async def admit_retry(self) -> bool:
        """Whether the budget can afford a retry (a refresh's priority), paid by `payer`."""
        wait = await self._entries.spend(self.budget, payer.get(), "rest")
        if wait is not None:
            self._observer.budget_refused()
            return False
        return True

    async def cover(self, session_uuid: str) -> None:
        """Its callbacks arrive (or will): for `COVERED_FOR`, copies stay fresh `callback_ttl`."""
        await self._entries.cover(canonical_session_uuid(session_uuid), COVERED_FOR)
