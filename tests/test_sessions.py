"""SessionService: TTLs by status, single-flight, stale serving, refresh, credential isolation."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from gateway import fixtures
from gateway.errors import UpstreamFailed, UpstreamRateLimited, UpstreamRejected
from gateway.fleet import CacheEntry, Entries, Fleet, MemoryEntries, SingleFlight
from gateway.plivo.client import Credential, PlivoClient, create_http_client
from gateway.plivo.transport import HttpxUpstream
from gateway.verify.sessions import CachePolicy, SessionService
from tests.conftest import eventually

AUTH_ID = "MAXXXXXXXXXXXXXXXXXX"
UUID = fixtures.DOCS_EXAMPLE_UUID
BASE_URL = "https://api.plivo.test"


@dataclass
class FakePlivo:
    """A Plivo behind MockTransport: counts calls, can be slow, fail, or change a status."""

    latency: float = 0.0
    status_code: int = 200
    session_status: str = "expired"
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.url.path, request.headers["authorization"]))
        await asyncio.sleep(self.latency)
        if self.status_code != 200:
            return httpx.Response(self.status_code, json={"api_id": "x", "error": "boom"})
        uuid = request.url.path.rstrip("/").rsplit("/", 1)[1]
        if uuid.startswith("00000000"):
            return httpx.Response(404, json={"api_id": "x", "error": "not found"})
        body = copy.deepcopy(fixtures.load("get-docs-example"))
        assert isinstance(body, dict)
        body.update(session_uuid=uuid, status=self.session_status)
        return httpx.Response(200, json=body)


def service(
    plivo: FakePlivo,
    cache: Entries,
    policy: CachePolicy | None = None,
    token: str = "token-a",
) -> SessionService:
    http = create_http_client(
        BASE_URL, connect_timeout=1, read_timeout=5, transport=httpx.MockTransport(plivo.handle)
    )
    client = PlivoClient(HttpxUpstream(http), Credential(AUTH_ID, token))
    return SessionService(client, cache, policy or CachePolicy(), base_url=BASE_URL)


def fresh_cache() -> MemoryEntries:
    return MemoryEntries(max_entries=1000)


async def test_terminal_sessions_are_cached_long() -> None:
    plivo = FakePlivo(session_status="verified")
    sessions = service(plivo, fresh_cache(), CachePolicy(terminal_ttl=60, in_progress_ttl=0.01))
    first = await sessions.get(UUID)
    await asyncio.sleep(0.05)
    second = await sessions.get(UUID)
    assert (first.source, second.source) == ("miss", "hit")
    assert second.age >= 0.05
    assert len(plivo.calls) == 1


async def test_in_progress_sessions_are_cached_briefly() -> None:
    plivo = FakePlivo(session_status="in-progress")
    policy = CachePolicy(in_progress_ttl=0.05, stale_while_revalidate=0, max_stale=0)
    sessions = service(plivo, fresh_cache(), policy)
    assert (await sessions.get(UUID)).source == "miss"
    assert (await sessions.get(UUID)).source == "hit"
    await asyncio.sleep(0.1)
    assert (await sessions.get(UUID)).source == "miss"
    assert len(plivo.calls) == 2


async def test_not_found_is_cached_briefly() -> None:
    plivo = FakePlivo()
    policy = CachePolicy(not_found_ttl=0.05, stale_while_revalidate=0, max_stale=0)
    sessions = service(plivo, fresh_cache(), policy)
    missing = "00000000-0000-4000-8000-000000000000"
    assert (await sessions.get(missing)).session is None
    assert (await sessions.get(missing)).source == "hit"
    await asyncio.sleep(0.1)
    assert (await sessions.get(missing)).source == "miss"
    assert len(plivo.calls) == 2


@pytest.mark.parametrize(
    ("status", "raised"),
    [
        (401, UpstreamRejected),
        (429, UpstreamRateLimited),
        (500, UpstreamFailed),
        (503, UpstreamFailed),
    ],
)
async def test_errors_are_never_cached(status: int, raised: type[Exception]) -> None:
    plivo = FakePlivo(status_code=status)
    sessions = service(plivo, fresh_cache())
    for _ in range(2):
        with pytest.raises(raised) as caught:
            await sessions.get(UUID)
        assert type(caught.value) is raised
    assert len(plivo.calls) == 2


async def test_concurrent_lookups_make_one_upstream_call() -> None:
    plivo = FakePlivo(latency=0.1)
    sessions = service(plivo, fresh_cache())
    lookups = await asyncio.gather(*(sessions.get(UUID) for _ in range(200)))
    assert len(plivo.calls) == 1
    assert {lookup.session.session_uuid for lookup in lookups if lookup.session} == {UUID}


async def test_concurrent_lookups_share_a_failure_without_caching_it() -> None:
    plivo = FakePlivo(latency=0.05, status_code=503)
    sessions = service(plivo, fresh_cache())
    results = await asyncio.gather(*(sessions.get(UUID) for _ in range(20)), return_exceptions=True)
    assert all(isinstance(result, UpstreamFailed) for result in results)
    assert len(plivo.calls) == 1


async def test_a_cancelled_lookup_does_not_cancel_the_others() -> None:
    plivo = FakePlivo(latency=0.1)
    sessions = service(plivo, fresh_cache())
    first = asyncio.create_task(sessions.get(UUID))
    second = asyncio.create_task(sessions.get(UUID))
    await asyncio.sleep(0.02)
    first.cancel()
    assert (await second).session is not None
    assert len(plivo.calls) == 1


async def test_stale_while_revalidate_serves_at_once_and_refreshes_once() -> None:
    plivo = FakePlivo(session_status="in-progress")
    policy = CachePolicy(in_progress_ttl=0.05, stale_while_revalidate=5)
    cache = fresh_cache()
    sessions = service(plivo, cache, policy)
    await sessions.get(UUID)
    first = await cache.get(sessions.cache_key(UUID))
    assert first is not None
    await asyncio.sleep(0.08)
    plivo.latency = 0.1
    stale = await asyncio.gather(*(sessions.get(UUID) for _ in range(10)))
    assert {lookup.source for lookup in stale} == {"stale"}

    async def refreshed() -> CacheEntry | None:
        entry = await cache.get(sessions.cache_key(UUID))
        return entry if entry is not None and entry.stored_at > first.stored_at else None

    assert (await eventually(refreshed)).session is not None
    assert len(plivo.calls) == 2  # one background refresh for all ten


async def test_stale_if_error_serves_the_last_good_value_up_to_the_limit() -> None:
    plivo = FakePlivo(session_status="in-progress")
    policy = CachePolicy(in_progress_ttl=0.02, stale_while_revalidate=0, max_stale=0.3)
    sessions = service(plivo, fresh_cache(), policy)
    await sessions.get(UUID)
    await asyncio.sleep(0.05)
    plivo.status_code = 503
    served = await sessions.get(UUID)
    assert served.source == "stale"
    assert served.session is not None
    await asyncio.sleep(0.35)
    with pytest.raises(UpstreamFailed):
        await sessions.get(UUID)


async def test_stale_if_error_does_not_hide_a_rejection() -> None:
    plivo = FakePlivo(session_status="in-progress")
    policy = CachePolicy(in_progress_ttl=0.02, stale_while_revalidate=0, max_stale=60)
    sessions = service(plivo, fresh_cache(), policy)
    await sessions.get(UUID)
    await asyncio.sleep(0.05)
    plivo.status_code = 401
    with pytest.raises(UpstreamRejected):
        await sessions.get(UUID)


async def test_refresh_skips_the_cache_and_is_coalesced() -> None:
    plivo = FakePlivo(latency=0.05)
    sessions = service(plivo, fresh_cache())
    await sessions.get(UUID)
    refreshed = await asyncio.gather(*(sessions.get(UUID, refresh=True) for _ in range(50)))
    assert {lookup.source for lookup in refreshed} == {"miss"}
    assert len(plivo.calls) == 2


async def test_keys_name_upstream_account_and_credential_digest_never_the_token() -> None:
    sessions = service(FakePlivo(), fresh_cache(), token="very-secret-token")
    key = sessions.cache_key(UUID)
    assert BASE_URL in key
    assert AUTH_ID in key
    assert key.endswith(UUID)
    assert "very-secret-token" not in key
    other = service(FakePlivo(), fresh_cache(), token="another-token").cache_key(UUID)
    assert other != key


async def check_isolation(cache: Entries, policy: CachePolicy) -> None:
    plivo = FakePlivo(latency=0.05)
    alice = service(plivo, cache, policy, token="alice-token")
    mallory = service(plivo, cache, policy, token="mallory-token")
    await asyncio.gather(
        *(alice.get(UUID) for _ in range(5)), *(mallory.get(UUID) for _ in range(5))
    )
    assert len(plivo.calls) == 2  # one per credential: no shared flight
    tokens = {auth for _, auth in plivo.calls}
    assert len(tokens) == 2
    assert (await alice.get(UUID)).source == "hit"
    assert (await mallory.get(UUID)).source == "hit"
    assert len(plivo.calls) == 2


async def test_two_credentials_never_share_an_entry_or_a_flight_in_memory() -> None:
    await check_isolation(fresh_cache(), CachePolicy())


async def test_two_credentials_never_share_an_entry_or_a_flight_in_redis(
    shared_redis: tuple[Fleet, str],
) -> None:
    fleet, prefix = shared_redis
    await check_isolation(fleet.entries, CachePolicy(key_prefix=prefix))


async def test_two_services_sharing_redis_make_one_upstream_call(
    shared_redis: tuple[Fleet, str],
) -> None:
    fleet, prefix = shared_redis
    plivo = FakePlivo(latency=0.2)
    policy = CachePolicy(key_prefix=prefix)
    # Two instances of the gateway, each with its own in-process flights, one Redis.
    first, second = service(plivo, fleet.entries, policy), service(plivo, fleet.entries, policy)
    lookups = await asyncio.gather(*(s.get(UUID) for s in (first, second) for _ in range(50)))
    assert len(plivo.calls) == 1
    assert {lookup.source for lookup in lookups} == {"miss", "hit"}


async def test_a_waiter_fetches_itself_when_the_holder_never_stores(
    shared_redis: tuple[Fleet, str],
) -> None:
    fleet, prefix = shared_redis
    assert fleet.link is not None
    policy = CachePolicy(key_prefix=prefix, fetch_lease=0.3)
    plivo = FakePlivo()
    sessions = service(plivo, fleet.entries, policy)
    lock_key = f"{prefix}:lock:{sessions.cache_key(UUID)}"
    await fleet.link.client.hset(lock_key, "t", "a-holder-that-died")
    await fleet.link.client.pexpire(lock_key, 300)
    lookup = await asyncio.wait_for(sessions.get(UUID), timeout=5)
    assert lookup.session is not None
    assert len(plivo.calls) == 1


async def test_logs_never_carry_the_token(caplog: pytest.LogCaptureFixture) -> None:
    plivo = FakePlivo(status_code=503)
    sessions = service(plivo, fresh_cache(), token="leaky-token-value")
    with caplog.at_level(logging.DEBUG), pytest.raises(UpstreamFailed):
        await sessions.get(UUID)
    assert "leaky-token-value" not in caplog.text


async def test_a_new_session_is_fetched_within_its_lookup_task() -> None:
    """One task per new session (its lookup, which callers leaving does not cancel), not two."""
    sessions = service(FakePlivo(), fresh_cache())
    loop = asyncio.get_running_loop()
    created: list[str] = []
    default = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        created.append(coro.__qualname__)
        if default is not None:
            return default(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)
    try:
        assert (await sessions.get(UUID)).source == "miss"
    finally:
        loop.set_task_factory(default)
    assert created == ["SessionService._lookup"]


async def test_callers_with_their_own_lookups_join_one_fetch() -> None:
    """Lookups are per caller; the fetch run within the first is joined by the others."""
    plivo = FakePlivo(latency=0.05)
    sessions = service(plivo, fresh_cache())
    lookups = await asyncio.gather(
        *(sessions.get(UUID, caller=f"key-{index}") for index in range(5))
    )
    assert len(plivo.calls) == 1
    assert {lookup.source for lookup in lookups} == {"miss"}
    assert {lookup.session.session_uuid for lookup in lookups if lookup.session} == {UUID}


async def test_a_fetch_run_within_a_lookup_shares_its_failure_and_its_cancellation() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()

    async def failing() -> int:
        await release.wait()
        raise UpstreamFailed("boom", method="GET", path="/x")

    first = asyncio.create_task(flights.run_here("k", failing))
    await eventually_true(lambda: flights.in_flight("k") is not None)
    joined = flights.in_flight("k")
    assert joined is not None
    release.set()
    with pytest.raises(UpstreamFailed):
        await first
    with pytest.raises(UpstreamFailed):
        await joined
    assert flights.in_flight("k") is None

    async def slow() -> int:
        await asyncio.sleep(60)
        return 1

    second = asyncio.create_task(flights.run_here("k", slow))
    await eventually_true(lambda: flights.in_flight("k") is not None)
    joined = flights.in_flight("k")
    assert joined is not None
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert joined.cancelled()
    assert flights.in_flight("k") is None


async def eventually_true(condition: Callable[[], bool]) -> None:
    """Wait until `condition` holds (or fail after 10 s)."""

    async def check() -> bool:
        return condition()

    await eventually(check)
