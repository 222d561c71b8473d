"""SessionService: what the resolvers call. Cache, single-flight and Plivo, in that order.

One lookup of a session that is not fresh in the cache becomes one upstream call per process
(concurrent lookups share one flight) and, with Redis, one per fleet: the claim takes the
fetch lock and spends from the Plivo budget in the same round trip, and whoever finds the lock
held waits for what its holder lands (it is handed over on the landed channel), claiming again
if the holder lets go, and fetching itself only when the wait outlasts one upstream call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.errors import (
    SessionNotFound,
    UpstreamFailed,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.fleet import Budget, CacheEntry, Claim, Entries, SingleFlight, Waiting
from gateway.plivo.credentials import Credential
from gateway.plivo.models import Session, canonical_session_uuid

logger = logging.getLogger(__name__)
Source = Literal["hit", "miss", "stale"]
STALE_IF_ERROR = (UpstreamFailed, UpstreamTimeout, UpstreamUnavailable)


@dataclass(frozen=True)
class CachePolicy:
    """How long answers stay fresh, and how long stale ones may still be served."""

    terminal_ttl: float = 3600.0
    in_progress_ttl: float = 2.0
    not_found_ttl: float = 5.0
    stale_while_revalidate: float = 10.0
    stale_if_error: float = 300.0
    fetch_lease: float = 15.0
    key_prefix: str = "pvg"
    budget_requests: int = 300
    budget_window: float = 5.0

    def ttl_for(self, session: Session | None) -> float:
        """Terminal sessions long, in-progress (and unknown) short, Plivo's 404 short."""
        if session is None:
            return self.not_found_ttl
        return self.terminal_ttl if session.status.is_terminal else self.in_progress_ttl

    @property
    def keep_for(self) -> float:
        """How long past freshness an entry stays in the backend, for stale serving."""
        return max(self.stale_while_revalidate, self.stale_if_error)


@dataclass(frozen=True)
class Lookup:
    """A session (None for Plivo's 404), where it came from, its age and remaining freshness."""

    session: Session | None
    source: Source
    age: float
    fresh_for: float = 0.0


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
        self._budget = Budget(
            # per credential: a caller with a wrong token cannot spend the account's budget
            f"{policy.key_prefix}:budget:{base_url}:{credential.auth_id}:{credential.digest[:16]}",
            (policy.budget_requests, policy.budget_window),
        )
        self._lookups: SingleFlight[tuple[str, bool], Lookup] = SingleFlight(
            self._observer.coalesced
        )
        self._fetches: SingleFlight[str, Lookup] = SingleFlight(self._observer.coalesced)
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

    async def get(self, session_uuid: str, *, refresh: bool = False) -> Lookup:
        """The session; `refresh` skips the cached copy (still coalesced with other fetches)."""
        uuid = canonical_session_uuid(session_uuid)
        key = self.cache_key(uuid)
        lookup = await self._lookups.run((key, refresh), lambda: self._lookup(key, uuid, refresh))
        self._observer.cache(lookup.source)
        return lookup

    async def _lookup(self, key: str, uuid: str, refresh: bool) -> Lookup:
        fetching = self._fetches.in_flight(key)
        if fetching is not None:  # this process fetches it already: no claim needed
            self._observer.coalesced()
            return await asyncio.shield(fetching)
        waiting = Waiting(time.monotonic() + self._policy.fetch_lease)
        while not waiting.over:
            landing = self._entries.landing(key)  # before the claim: a landing is never missed
            try:
                token = self._tokens()
                claim = await self._entries.claim(
                    key, uuid, token, self._policy.fetch_lease, force=refresh, budget=self._budget
                )
                if claim.state != "held":
                    return await self._act(key, uuid, claim, token, refresh)
                stale = self._servable(claim.entry, refresh)
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
        # The holder outlasted one upstream call's time: fetch without its lock.
        logger.warning("the fetch lock of session %s outlasted its lease; fetching", uuid)
        return await self._fetches.run(key, lambda: self._fetch(key, uuid, Claim(None, "fetch")))

    async def _act(self, key: str, uuid: str, claim: Claim, token: str, refresh: bool) -> Lookup:
        now, entry = time.time(), claim.entry
        if claim.state == "hit" and entry is not None:
            return Lookup(entry.session, "hit", now - entry.stored_at, entry.fresh_until - now)
        if claim.state == "refused":
            self._observer.budget_refused()
            error = UpstreamRateLimited(
                f"the fleet's Plivo request budget is spent for session {uuid}",
                method="GET",
                path="(not sent)",
                retry_after=round(claim.wait, 3),
            )
            return self._stale_instead(uuid, entry, error)
        if self._fetches.in_flight(key) is not None:  # joined a fetch begun meanwhile
            await self._entries.release(key, token)
        task = self._fetches.start(key, lambda: self._fetch(key, uuid, claim, token))
        stale = self._servable(entry, refresh)
        if stale is not None:
            return stale  # the fetch goes on in the background
        try:
            return await asyncio.shield(task)
        except STALE_IF_ERROR as exc:
            return self._stale_instead(uuid, entry, exc)

    def _servable(self, entry: CacheEntry | None, refresh: bool) -> Lookup | None:
        """The copy, when it is recent enough to serve while it is refreshed."""
        now = time.time()
        if (
            entry is None
            or refresh
            or now >= entry.fresh_until + self._policy.stale_while_revalidate
        ):
            return None
        return Lookup(entry.session, "stale", now - entry.stored_at)

    def _stale_instead(self, uuid: str, entry: CacheEntry | None, error: Exception) -> Lookup:
        """An older copy with its age rather than `error`, within `stale_if_error`."""
        now = time.time()
        if entry is None or now - entry.fresh_until > self._policy.stale_if_error:
            raise error
        logger.warning("serving a stale copy of session %s: %s", uuid, type(error).__name__)
        return Lookup(entry.session, "stale", now - entry.stored_at)

    async def _fetch(self, key: str, uuid: str, claim: Claim, token: str | None = None) -> Lookup:
        try:
            session: Session | None = await self._client.get_session(uuid)
        except SessionNotFound:
            session = None
        except Exception:
            if token is not None:
                await self._entries.release(key, token)
            raise
        ttl = self._policy.ttl_for(session)
        now = time.time()
        entry = CacheEntry(session, stored_at=now, fresh_until=now + ttl)
        await self._entries.settle(
            key, uuid, entry, claim, ttl + self._policy.keep_for, token or ""
        )
        return Lookup(session, "miss", 0.0, ttl)
