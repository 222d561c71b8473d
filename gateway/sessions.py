"""SessionService: what the resolvers call. Cache, single-flight and Plivo, in that order.

One lookup of a session that is not fresh in the cache becomes one upstream call per
process (concurrent lookups share an in-flight task) and, with a shared cache, one per
fleet (the fetch lock in the cache; waiters poll the cache for the holder's result and
fetch themselves only when the holder vanished or the wait ran out).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from gateway.cache import CacheEntry, SessionCache
from gateway.errors import (
    SessionNotFound,
    UpstreamFailed,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.plivo.client import Credential
from gateway.plivo.models import Session, canonical_session_uuid

logger = logging.getLogger(__name__)
Source = Literal["hit", "miss", "stale"]
T = TypeVar("T")
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
        cache: SessionCache,
        policy: CachePolicy,
        *,
        base_url: str,
        observer: LookupObserver | None = None,
    ) -> None:
        self._client = client
        self._cache = cache
        self._policy = policy
        self._observer = observer or _Unobserved()
        credential = client.credential
        self.credential = credential
        self.namespace = f"{base_url}:{credential.auth_id}:{credential.digest[:32]}"
        self._budget_key = f"{policy.key_prefix}:budget:{base_url}:{credential.auth_id}"
        self._flights: dict[str, asyncio.Task[Lookup]] = {}
        self._reads: dict[str, asyncio.Task[CacheEntry | None]] = {}
        # Flight tokens: unique across a fleet (a random prefix per service) and cheap to make.
        self._tokens = map(f"{secrets.token_hex(6)}-{{}}".format, itertools.count())

    def cache_key(self, session_uuid: str) -> str:
        """Names the upstream, the account, a digest of the credential and the uuid."""
        return f"{self._policy.key_prefix}:session:{self.namespace}:{session_uuid}"

    async def forget(self, session_uuid: str) -> None:
        """Drop the cached copy (after a start or a validation changed the session)."""
        await self._cache.delete(self.cache_key(canonical_session_uuid(session_uuid)))

    async def store(self, session: Session) -> None:
        """Fill the cache with a copy read elsewhere (a page of the list)."""
        uuid = canonical_session_uuid(session.session_uuid)
        ttl = self._policy.ttl_for(session)
        now = time.time()
        entry = CacheEntry(session, stored_at=now, fresh_until=now + ttl, flight=next(self._tokens))
        await self._cache.set(self.cache_key(uuid), entry, ttl + self._policy.keep_for)

    async def get(self, session_uuid: str, *, refresh: bool = False) -> Lookup:
        """The session; `refresh` skips the cached copy (still coalesced with other fetches)."""
        lookup = await self._lookup(canonical_session_uuid(session_uuid), refresh)
        self._observer.cache(lookup.source)
        return lookup

    async def _lookup(self, uuid: str, refresh: bool) -> Lookup:
        key = self.cache_key(uuid)
        entry = None if refresh else await self._read(key)
        now = time.time()
        if entry is not None:
            if now < entry.fresh_until:
                return Lookup(entry.session, "hit", now - entry.stored_at, entry.fresh_until - now)
            if now < entry.fresh_until + self._policy.stale_while_revalidate:
                self._flight(key, uuid)  # one background refresh, shared with lookups
                return Lookup(entry.session, "stale", now - entry.stored_at)
        try:
            return await asyncio.shield(self._flight(key, uuid))
        except STALE_IF_ERROR:
            fallback = entry or await self._read(key)
            if fallback is None or now - fallback.fresh_until > self._policy.stale_if_error:
                raise
            logger.warning("serving a stale copy of session %s: Plivo failed", uuid)
            return Lookup(fallback.session, "stale", now - fallback.stored_at)

    async def _read(self, key: str) -> CacheEntry | None:
        """A cache read; concurrent reads of one key share one round trip to a shared cache."""
        if not self._cache.shared:
            return await self._cache.get(key)
        task = self._reads.get(key)
        if task is None:
            task = asyncio.create_task(self._cache.get(key))
            self._reads[key] = task
            task.add_done_callback(lambda done: self._forget(self._reads, key, done))
        return await asyncio.shield(task)

    @staticmethod
    def _forget(tasks: dict[str, asyncio.Task[T]], key: str, task: asyncio.Task[T]) -> None:
        if tasks.get(key) is task:
            del tasks[key]

    def _flight(self, key: str, uuid: str) -> asyncio.Task[Lookup]:
        task = self._flights.get(key)
        if task is not None:
            self._observer.coalesced()
        else:
            task = asyncio.create_task(self._fetch_once_in_fleet(key, uuid))
            self._flights[key] = task
            task.add_done_callback(lambda done: self._landed(key, done))
        return task

    def _landed(self, key: str, task: asyncio.Task[Lookup]) -> None:
        self._forget(self._flights, key, task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("fetch of %s failed: %r", key, task.exception())

    async def _fetch_once_in_fleet(self, key: str, uuid: str) -> Lookup:
        lock_key = f"{self._policy.key_prefix}:lock:{key}"
        token = next(self._tokens)
        started, deadline = time.time(), time.monotonic() + self._policy.fetch_lease
        while True:
            if await self._cache.try_lock(lock_key, token, self._policy.fetch_lease):
                try:
                    # Another instance may have stored and let go between our read and our lock.
                    landed = await self._landed_since(key, started) if self._cache.shared else None
                    return landed or await self._fetch_and_store(key, uuid, token)
                finally:
                    await self._cache.unlock(lock_key, token)
            landed = await self._await_holder(key, lock_key, started, deadline)
            if landed is not None:
                return landed
            if time.monotonic() > deadline:  # never wait past one upstream call's time
                return await self._fetch_and_store(key, uuid, token)

    async def _await_holder(
        self, key: str, lock_key: str, started: float, deadline: float
    ) -> Lookup | None:
        """Another instance is fetching: its result, or None once it let go without one."""
        awaited: set[str] = set()
        pause = 0.005
        while time.monotonic() <= deadline:
            landed = await self._landed_since(key, started, awaited)
            if landed is not None:
                return landed
            holder = await self._cache.lock_holder(lock_key)
            if holder is None:
                return None
            awaited.add(holder)
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.05)
        return None

    async def _landed_since(
        self, key: str, started: float, awaited: set[str] | None = None
    ) -> Lookup | None:
        """What another instance fetched since `started` (or under a lock we waited on)."""
        entry = await self._cache.get(key)
        if entry is None or not (entry.stored_at >= started or entry.flight in (awaited or ())):
            return None
        self._observer.coalesced()
        now = time.time()
        return Lookup(
            entry.session, "hit", max(0.0, now - entry.stored_at), entry.fresh_until - now
        )

    async def _fetch_and_store(self, key: str, uuid: str, token: str) -> Lookup:
        policy = self._policy
        wait = await self._cache.spend(
            self._budget_key, policy.budget_requests, policy.budget_window
        )
        if wait is not None:
            self._observer.budget_refused()
            raise UpstreamRateLimited(
                f"the fleet's Plivo request budget is spent for session {uuid}",
                method="GET",
                path="(not sent)",
                retry_after=round(wait, 3),
            )
        try:
            session: Session | None = await self._client.get_session(uuid)
        except SessionNotFound:
            session = None
        ttl = self._policy.ttl_for(session)
        now = time.time()
        entry = CacheEntry(session, stored_at=now, fresh_until=now + ttl, flight=token)
        await self._cache.set(key, entry, ttl + self._policy.keep_for)
        return Lookup(session, "miss", 0.0, ttl)
