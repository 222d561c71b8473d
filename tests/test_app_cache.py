"""The cache as a client sees it: extensions.cache, Cache-Control: no-cache, Redis outages."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from gateway import fixtures
from tests.conftest import Simulator, eventually, gateway_client, graphql, make_settings
from tests.redis_server import own_redis

UUID = fixtures.DOCS_EXAMPLE_UUID
QUERY = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"


def cache_report(body: dict[str, object]) -> dict[str, object]:
    extensions = body["extensions"]
    assert isinstance(extensions, dict)
    report: dict[str, object] = extensions["cache"][UUID]
    return report


async def test_extensions_say_miss_then_hit_with_age(
    gateway: httpx.AsyncClient, simulator: Simulator
) -> None:
    first = cache_report(await graphql(gateway, QUERY, {"uuid": UUID}))
    second = cache_report(await graphql(gateway, QUERY, {"uuid": UUID}))
    assert first == {"status": "miss", "age": 0.0}
    assert second["status"] == "hit"
    assert isinstance(second["age"], float)
    assert second["age"] >= 0
    assert simulator.served(UUID) == 1


async def test_no_cache_header_refetches(gateway: httpx.AsyncClient, simulator: Simulator) -> None:
    await graphql(gateway, QUERY, {"uuid": UUID})
    response = await gateway.post(
        "/graphql",
        json={"query": QUERY, "variables": {"uuid": UUID}},
        headers={"Cache-Control": "max-age=0, no-cache"},
    )
    assert cache_report(response.json())["status"] == "miss"
    assert simulator.served(UUID) == 2


async def test_caches_off_reach_plivo_every_time(simulator: Simulator) -> None:
    async with gateway_client(make_settings(simulator.url, GATEWAY_CACHE_URL="none")) as client:
        for _ in range(3):
            assert cache_report(await graphql(client, QUERY, {"uuid": UUID}))["status"] == "miss"
    assert simulator.served(UUID) == 3


async def test_redis_down_slow_or_flushed_still_answers_from_this_process(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    cache_timeout, read_timeout = 0.3, 2.0
    with own_redis() as redis:
        settings = make_settings(
            simulator.url,
            GATEWAY_CACHE_URL=redis.url,
            GATEWAY_CACHE_TIMEOUT=cache_timeout,
            PLIVO_READ_TIMEOUT=read_timeout,
            GATEWAY_RESPONSE_CACHE_ENTRIES=0,  # this is about the session cache's backend
        )
        async with gateway_client(settings) as client:

            async def lookup() -> tuple[str, float]:
                started = time.monotonic()
                body = await graphql(client, QUERY, {"uuid": UUID})
                assert body["data"] == {"session": {"sessionUuid": UUID, "status": "EXPIRED"}}
                return str(cache_report(body)["status"]), time.monotonic() - started

            assert (await lookup())[0] == "miss"
            assert (await lookup())[0] == "hit"
            with caplog.at_level(logging.WARNING, logger="gateway.fleet.link"):
                redis.pause()  # slow: connected, answers nothing
                sources = []
                for _ in range(3):
                    source, elapsed = await lookup()
                    sources.append(source)
                    assert elapsed < cache_timeout + read_timeout
                assert sources == ["miss", "hit", "hit"]  # a cache of this process meanwhile
                redis.resume()
                redis.stop()  # down
                for _ in range(3):
                    source, elapsed = await lookup()
                    assert source == "hit"
                    assert elapsed < cache_timeout + read_timeout
            assert caplog.text.count("unavailable") == 1
            redis.start()  # back, and empty: as if flushed

            async def from_redis_again() -> bool:  # this process's copies go once it is back
                return (await lookup())[0] == "miss"

            await eventually(from_redis_again)
            assert (await lookup())[0] == "hit"
            assert "is back" in caplog.text
            redis.flush()  # flushed mid-run
            assert (await lookup())[0] == "miss"
