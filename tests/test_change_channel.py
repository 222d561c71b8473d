"""The fleet's change channel across Redis outages: noticed soon, logged once each way."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
import redis.asyncio

from gateway.fleet.changes import Changes, RedisFeed
from tests.conftest import Simulator, eventually, gateway_client, make_settings
from tests.redis_server import own_redis

CACHE_TIMEOUT = 0.25
NOTICED_WITHIN = CACHE_TIMEOUT + 4.0  # docs/operations.md: the cache timeout plus a few seconds


async def changes(client: httpx.AsyncClient) -> str:
    body: dict[str, str] = (await client.get("/readyz")).json()
    return body["changes"]


async def test_a_paused_redis_shows_as_not_listening_within_the_cache_timeout_and_seconds(
    simulator: Simulator,
) -> None:
    # SIGSTOP: the connection stays open and the channel is only quiet. Before, a quiet
    # channel was pinged after 5 s and the ping waited 5 s more: about 10 s of deafness.
    with own_redis() as server:
        settings = make_settings(
            simulator.url, GATEWAY_CACHE_URL=server.url, GATEWAY_CACHE_TIMEOUT=CACHE_TIMEOUT
        )
        async with gateway_client(settings) as client:
            assert await changes(client) == "listening"
            server.pause()

            async def deaf() -> bool:
                return await changes(client) == "not listening"

            await eventually(deaf, within=NOTICED_WITHIN)
            server.resume()

            async def hearing() -> bool:
                return await changes(client) == "listening"

            await eventually(hearing, within=30)


async def test_an_outage_of_the_change_channel_is_logged_once_when_it_starts_and_once_at_its_end(
    simulator: Simulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscriptions = 0
    pubsub = redis.asyncio.Redis.pubsub

    def counting(self: Any, **kwargs: Any) -> Any:
        nonlocal subscriptions
        subscriptions += 1
        return pubsub(self, **kwargs)

    monkeypatch.setattr(redis.asyncio.Redis, "pubsub", counting)
    with own_redis() as server:
        settings = make_settings(
            simulator.url, GATEWAY_CACHE_URL=server.url, GATEWAY_CACHE_TIMEOUT=CACHE_TIMEOUT
        )
        async with gateway_client(settings) as client:
            with caplog.at_level(logging.WARNING, logger="gateway.fleet.changes"):
                server.stop()
                before = subscriptions

                async def tried_three_times() -> bool:
                    return subscriptions >= before + 3

                await eventually(tried_three_times, within=30)
                server.start()

                async def hearing() -> bool:
                    return await changes(client) == "listening"

                await eventually(hearing, within=30)
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.fleet.changes"]
    assert [line.split(" (")[0].split(",")[0] for line in lines] == [
        "not listening to pvg:changes",
        "listening to pvg:changes again",
    ], lines


class SwallowingPubSub:
    """A subscription whose library turns a cancellation into a timeout (seen on Python 3.11
    when a cancel lands as a wait completes): a retry loop must still end when cancelled."""

    def __init__(self, link: FakeLink) -> None:
        self.calls, self.link = link.calls, link

    async def subscribe(self, *channels: str) -> None:
        self.calls.append("subscribe")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if not self.link.swallowing:
                raise
            raise TimeoutError("the library's own timeout") from None

    async def aclose(self) -> None:
        self.calls.append("close")


class FakeLink:
    handshake = 3600.0  # only a cancellation ends the subscribe
    listening = False
    swallowing = True

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.client = self

    def pubsub(self) -> SwallowingPubSub:
        return SwallowingPubSub(self)

    def owes(self, flush: object) -> None:
        pass


async def test_the_change_listener_ends_when_cancelled_even_if_a_library_swallows_the_cancel() -> (
    None
):
    link = FakeLink()
    feed = RedisFeed(link, prefix="t", landed=lambda _: None, generation_ttl=60)  # type: ignore[arg-type]

    async def apply(_: str) -> None:
        pass

    listener = Changes(feed, apply, lambda: None)
    task = listener.start()

    async def subscribing() -> bool:
        return link.calls == ["subscribe"]

    await eventually(subscribing)
    try:
        await listener.stop(within=5)
        assert task.done()
        assert link.calls == ["subscribe", "close"]  # no second subscription after the cancel
    finally:  # a listener that outlived its cancel would hang the test loop's teardown
        link.swallowing = False
        task.cancel()
        await asyncio.wait({task}, timeout=5)
