"""Fleet state: memory entries (bounded LRU), Redis entries and locks, windows, the feed."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway import fixtures
from gateway.fleet import (
    CacheEntry,
    Demand,
    Fleet,
    MemoryCounters,
    MemoryEntries,
    NoEntries,
    RedisCounters,
    RedisEntries,
    open_fleet,
)
from gateway.fleet.changes import RedisFeed
from gateway.fleet.entries import decode_entry, encode_entry
from gateway.fleet.link import RedisLink
from gateway.plivo.models import parse_session
from tests.conftest import eventually
from tests.redis_server import own_redis


def entry(*, found: bool = True, fresh_for: float = 60) -> CacheEntry:
    session = parse_session(fixtures.load("get-docs-example")) if found else None
    now = time.time()
    return CacheEntry(session, stored_at=now, fresh_until=now + fresh_for)


class Clock:
    """Wall-clock seconds the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_memory_entries_keep_at_most_max_entries_least_recently_used_out() -> None:
    cache = MemoryEntries(max_entries=3)
    for name in "abc":
        await cache.set(name, entry(), ttl=60, uuid=name)
    assert await cache.get("a") is not None  # a is now the most recently used
    await cache.set("d", entry(), ttl=60, uuid="d")
    assert len(cache) == 3
    assert await cache.get("b") is None
    for name in "acd":
        assert await cache.get(name) is not None


async def test_memory_entries_stay_bounded_under_a_stream_of_distinct_keys() -> None:
    cache = MemoryEntries(max_entries=100)
    for index in range(5_000):
        await cache.set(f"session-{index}", entry(), ttl=60, uuid=f"u{index}")
    assert len(cache) == 100
    assert len(cache._copies) == 100  # the index of copies is bounded with them


async def test_memory_entries_expire_with_their_ttl() -> None:
    cache = MemoryEntries(max_entries=10)
    await cache.set("k", entry(), ttl=0.05, uuid="u")
    await asyncio.sleep(0.1)
    assert await cache.get("k") is None
    assert len(cache) == 0


async def test_forgetting_a_session_in_memory_drops_every_copy_of_it_only() -> None:
    cache = MemoryEntries(max_entries=10)
    for credential in ("a", "b", "c"):
        await cache.set(f"{credential}:u1", entry(), ttl=60, uuid="u1")
    await cache.set("a:u2", entry(), ttl=60, uuid="u2")
    cache.forget_here("u1")
    assert [await cache.get(f"{c}:u1") for c in "abc"] == [None, None, None]
    assert await cache.get("a:u2") is not None


def test_entries_survive_encoding() -> None:
    for original in (entry(), entry(found=False)):
        assert decode_entry(encode_entry(original, "7")) == original


@pytest.mark.parametrize("raw", [b"nope", b"1 2 {}", b'0 2 {"v":2,"s":1,"b":{"a":1}}', b"\xff"])
def test_unreadable_entries_are_ignored(raw: bytes, caplog: pytest.LogCaptureFixture) -> None:
    assert decode_entry(raw) is None
    assert "unreadable cache entry" in caplog.text


def test_open_fleet_picks_the_backend() -> None:
    def opened(url: str | None) -> Fleet:
        return open_fleet(url, prefix="p", max_entries=5, timeout=0.1, generation_ttl=1.0)

    assert isinstance(opened(None).entries, MemoryEntries)
    assert isinstance(opened("none").entries, NoEntries)
    assert isinstance(opened(None).counters, MemoryCounters)
    redis = opened("rediss://:pw@example.invalid:6380/2")
    assert isinstance(redis.entries, RedisEntries)
    assert isinstance(redis.counters, RedisCounters)
    assert redis.shared
    assert not opened(None).shared


async def test_a_claim_is_a_hit_a_fetch_or_held_and_the_lock_is_its_holders(
    shared_redis: tuple[Fleet, str],
) -> None:
    fleet, prefix = shared_redis
    entries = fleet.entries
    key = f"{prefix}:session:k"
    first = await entries.claim(key, "u", "holder-1", 0.3, force=False, demand=Demand(None))
    second = await entries.claim(key, "u", "holder-2", 0.3, force=False, demand=Demand(None))
    assert (first.state, second.state) == ("fetch", "held")
    await entries.release(key, "holder-2")  # not the holder: nothing happens
    assert (
        await entries.claim(key, "u", "t", 0.3, force=False, demand=Demand(None))
    ).state == "held"

    async def lease_ended() -> bool:  # the holder "died": its lease ends the lock
        claim = await entries.claim(key, "u", "holder-3", 5, force=False, demand=Demand(None))
        return claim.state == "fetch"

    await eventually(lease_ended, within=5)
    stored = entry()
    await entries.settle(key, "u", stored, first, 30, "holder-3", demand=Demand(None))
    hit = await entries.claim(key, "u", "t", 5, force=False, demand=Demand(None))
    assert (hit.state, hit.entry) == ("hit", stored)
    forced = await entries.claim(key, "u", "holder-4", 5, force=True, demand=Demand(None))
    assert (forced.state, forced.entry) == ("fetch", stored)  # a refresh, the copy still served


async def test_a_waiting_instance_is_handed_what_the_holder_lands(
    shared_redis: tuple[Fleet, str],
) -> None:
    fleet, prefix = shared_redis
    assert isinstance(fleet.entries, RedisEntries)
    assert isinstance(fleet.feed, RedisFeed)
    heard: list[bool] = []

    async def listen() -> None:
        async for _ in fleet.feed.messages(heard.append):
            pass

    listener = asyncio.create_task(listen())
    try:
        await eventually(lambda: asyncio.sleep(0, bool(heard)))
        key = f"{prefix}:session:k"
        holder = await fleet.entries.claim(key, "u", "holder", 5, force=False, demand=Demand(None))
        landing = fleet.entries.landing(key)
        waiter = await fleet.entries.claim(key, "u", "waiter", 5, force=False, demand=Demand(None))
        assert (holder.state, waiter.state) == ("fetch", "held")
        stored = entry()
        await fleet.entries.settle(key, "u", stored, holder, 30, "holder", demand=Demand(None))
        assert await asyncio.wait_for(landing, 5) == stored
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)


async def test_a_bumped_generation_forgets_every_credentials_copy(
    shared_redis: tuple[Fleet, str],
) -> None:
    fleet, prefix = shared_redis
    keys = [f"{prefix}:session:{credential}:u" for credential in "abc"]
    for key in keys:
        claim = await fleet.entries.claim(key, "u", "t", 5, force=False, demand=Demand(None))
        await fleet.entries.settle(key, "u", entry(), claim, 30, "t", demand=Demand(None))
    await fleet.feed.announce("u", "{}")
    for key in keys:
        claim = await fleet.entries.claim(key, "u", "t2", 5, force=False, demand=Demand(None))
        assert (claim.state, claim.entry) == ("fetch", None)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_rate_holds_over_any_window_not_only_aligned_ones(
    backend: str, shared_redis: tuple[Fleet, str]
) -> None:
    # A fixed window lets twice the limit through at a boundary: 10 at 9.9 s, 10 more at 10.1 s.
    fleet, prefix = shared_redis
    clock = Clock(1_000_009.9)
    counters: MemoryCounters | RedisCounters = MemoryCounters(clock=clock)
    if backend == "redis":
        assert isinstance(fleet.link, RedisLink)
        counters = RedisCounters(fleet.link, clock=clock)
    rate, key = (10, 10.0), f"{prefix}:budget"
    assert [await counters.take(key, rate) for _ in range(10)] == [None] * 10
    clock.now += 0.2  # past the aligned boundary
    assert await counters.take(key, rate) is not None
    taken = 0
    for _ in range(400):  # 40 s, a take every 0.1 s: never more than 10 in any 10 s
        clock.now += 0.1
        taken += await counters.take(key, rate) is None
    assert taken <= 40
    assert taken >= 30  # and the limit is refused at most a tenth of a window early


async def test_a_subscription_that_stops_answering_is_left_and_joined_again() -> None:
    # A paused server keeps the connection open and answers nothing: without the ping the
    # listener would take the silence for a quiet channel and never hear the fleet again.
    states: list[bool] = []
    heard: list[str] = []
    with own_redis() as server:
        link = RedisLink(server.url, timeout=0.2)
        feed = RedisFeed(link, prefix="pvg", landed=lambda _: None, generation_ttl=60)
        feed._ping_every = 0.2
        publisher = RedisLink(server.url, timeout=2)

        async def listen() -> None:
            async for message in feed.messages(states.append):
                heard.append(message)

        async def now(state: bool) -> bool:  # eventually() waits between its polls
            return bool(states) and states[-1] is state

        listener = asyncio.create_task(listen())
        try:
            await eventually(lambda: now(True))
            await asyncio.sleep(0.6)  # quiet, yet answering its pings: still listening
            assert states == [True]
            server.pause()
            await eventually(lambda: now(False))
            server.resume()
            await eventually(lambda: now(True))
            assert states[:2] == [True, False]  # a retry during the pause may add a False

            async def delivered() -> bool:
                await publisher.client.publish("pvg:changes", "after the pause")
                await asyncio.sleep(0.05)
                return "after the pause" in heard

            await eventually(delivered)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await link.close()
            await publisher.close()
