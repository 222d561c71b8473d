"""The cache backends: memory (bounded LRU) and the real Redis at 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from gateway import fixtures
from gateway.cache import (
    CacheEntry,
    MemorySessionCache,
    RedisSessionCache,
    create_cache,
    decode_entry,
    encode_entry,
)
from gateway.plivo.models import parse_session
from tests.conftest import eventually
from tests.redis_server import own_redis


def entry(flight: str = "f1", *, found: bool = True) -> CacheEntry:
    session = parse_session(fixtures.load("get-docs-example")) if found else None
    now = time.time()
    return CacheEntry(session, stored_at=now, fresh_until=now + 60, flight=flight)


async def test_memory_cache_keeps_at_most_max_entries_least_recently_used_out() -> None:
    cache = MemorySessionCache(max_entries=3)
    for name in "abc":
        await cache.set(name, entry(name), ttl=60)
    assert await cache.get("a") is not None  # a is now the most recently used
    await cache.set("d", entry("d"), ttl=60)
    assert len(cache) == 3
    assert await cache.get("b") is None
    for name in "acd":
        assert await cache.get(name) is not None


async def test_memory_cache_stays_bounded_under_a_stream_of_distinct_keys() -> None:
    cache = MemorySessionCache(max_entries=100)
    for index in range(5_000):
        await cache.set(f"session-{index}", entry(), ttl=60)
    assert len(cache) == 100


async def test_memory_cache_entries_expire_with_their_ttl() -> None:
    cache = MemorySessionCache(max_entries=10)
    await cache.set("k", entry(), ttl=0.05)
    await asyncio.sleep(0.1)
    assert await cache.get("k") is None
    assert len(cache) == 0


def test_entries_survive_encoding() -> None:
    for original in (entry(), entry(found=False)):
        assert decode_entry(encode_entry(original)) == original


@pytest.mark.parametrize("raw", [b"nope", b"{}", b'{"v":1,"s":1,"f":2,"t":"x","b":{"a":1}}'])
def test_unreadable_entries_are_ignored(raw: bytes, caplog: pytest.LogCaptureFixture) -> None:
    assert decode_entry(raw) is None
    assert "unreadable cache entry" in caplog.text


def test_create_cache_picks_the_backend() -> None:
    assert isinstance(create_cache(None, max_entries=5, timeout=0.1), MemorySessionCache)
    assert isinstance(create_cache("memory", max_entries=5, timeout=0.1), MemorySessionCache)
    redis = create_cache("rediss://:pw@example.invalid:6380/2", max_entries=5, timeout=0.1)
    assert isinstance(redis, RedisSessionCache)


async def test_redis_entries_round_trip_and_expire(
    shared_redis: tuple[RedisSessionCache, str],
) -> None:
    cache, prefix = shared_redis
    stored = entry()
    await cache.set(f"{prefix}:k", stored, ttl=0.3)
    assert await cache.get(f"{prefix}:k") == stored
    await asyncio.sleep(0.5)
    assert await cache.get(f"{prefix}:k") is None
    await cache.set(f"{prefix}:gone", stored, ttl=30)
    await cache.delete(f"{prefix}:gone")
    assert await cache.get(f"{prefix}:gone") is None


async def test_redis_lock_is_exclusive_released_by_its_holder_only_and_leased(
    shared_redis: tuple[RedisSessionCache, str],
) -> None:
    cache, prefix = shared_redis
    key = f"{prefix}:lock"
    assert await cache.try_lock(key, "holder-1", lease=0.3)
    assert not await cache.try_lock(key, "holder-2", lease=0.3)
    assert await cache.lock_holder(key) == "holder-1"
    await cache.unlock(key, "holder-2")  # not the holder: nothing happens
    assert await cache.lock_holder(key) == "holder-1"
    await asyncio.sleep(0.5)  # the holder "died": the lease expires
    assert await cache.try_lock(key, "holder-2", lease=5)
    await cache.unlock(key, "holder-2")
    assert await cache.lock_holder(key) is None
    assert await cache.is_healthy()


async def test_redis_down_counts_as_a_miss_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with own_redis() as server:
        cache = RedisSessionCache(server.url, timeout=0.2)
        await cache.set("k", entry(), ttl=30)
        server.stop()
        with caplog.at_level(logging.WARNING, logger="gateway.cache"):
            for _ in range(5):
                assert await cache.get("k") is None
                await cache.set("k", entry(), ttl=30)
                assert await cache.try_lock("lock", "t", lease=1)  # fetch without the fleet
        assert not await cache.is_healthy()
        assert caplog.text.count("unavailable") == 1
        await cache.close()


async def test_a_change_channel_that_stops_answering_is_left_and_joined_again() -> None:
    # A paused server keeps the connection open and answers nothing: without the ping the
    # listener would take the silence for a quiet channel and never hear the fleet again.
    states: list[bool] = []
    heard: list[str] = []
    with own_redis() as server:
        cache = RedisSessionCache(server.url, timeout=0.2, ping_every=0.2)
        publisher = RedisSessionCache(server.url, timeout=2)

        async def listen() -> None:
            async for message in cache.messages("pvg:changes", states.append):
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
                await publisher.publish("pvg:changes", "after the pause")
                await asyncio.sleep(0.05)
                return "after the pause" in heard

            await eventually(delivered)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await cache.close()
            await publisher.close()
