"""Shared fixtures: the simulator on a real loopback port, and the gateway in-process."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from asgi_lifespan import LifespanManager

from gateway.app import create_app
from gateway.config import Settings
from gateway.fleet import Fleet, open_fleet
from gateway.simulator import SimulatorSettings, create_simulator
from tests.servers import serve_in_thread

AUTH_ID = "MAODZKMDFJMJU3MTEYNG"
AUTH_TOKEN = "sim-token-for-tests"
IN_CI = os.environ.get("CI", "").lower() == "true"
T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], *, within: float = 10.0) -> T:
    """Poll `check` until it returns something truthy, which is returned; fail after `within` s.

    For what happens in the background (a message crossing Redis, a reconnection): the test
    waits as long as a loaded machine needs, and no longer than the thing takes.
    """
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"still {result!r} after {within} s"
        await asyncio.sleep(0.02)


@dataclass
class Simulator:
    """A running simulator and its admin API."""

    url: str

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=5.0)

    def stats(self) -> dict[str, object]:
        with self.admin() as client:
            body: dict[str, object] = client.get("/__simulator/stats").json()
            return body

    def served(self, session_uuid: str | None = None) -> int:
        stats = self.stats()
        if session_uuid is None:
            served = stats["served"]
            assert isinstance(served, int)
            return served
        by_session = stats["by_session"]
        assert isinstance(by_session, dict)
        return int(by_session.get(session_uuid, 0))

    def queue_fault(self, fault: str, *, times: int = 1, **extra: object) -> None:
        with self.admin() as client:
            answer = client.post(
                "/__simulator/faults", json={"fault": fault, "times": times, **extra}
            )
            assert answer.status_code == 201, answer.text

    def configure(self, **knobs: object) -> None:
        with self.admin() as client:
            assert client.put("/__simulator/config", json=knobs).status_code == 200

    def reset(self) -> None:
        with self.admin() as client:
            client.post("/__simulator/stats")
            client.delete("/__simulator/faults")
            client.put("/__simulator/config", json={"latency_ms": 0, "fault": None})


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[Simulator]:
    app = create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN))
    with serve_in_thread(app) as url:
        yield Simulator(url)


@pytest.fixture
def simulator(simulator_server: Simulator) -> Iterator[Simulator]:
    simulator_server.reset()
    yield simulator_server
    simulator_server.reset()


def make_settings(api_url: str, **overrides: object) -> Settings:
    env = {
        "PLIVO_AUTH_ID": AUTH_ID,
        "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
        "PLIVO_API_URL": api_url,
        "PLIVO_READ_TIMEOUT": "2",
        "PLIVO_CONNECT_TIMEOUT": "1",
        "GATEWAY_AUTH": "none",
        # The production default (0.25 s) is for a healthy Redis; a loaded test machine can take
        # longer, and a timeout there would turn the fleet's locks and memos into misses. Tests
        # of the timeout itself set their own.
        "GATEWAY_CACHE_TIMEOUT": "2",
    }
    env.update({key: str(value) for key, value in overrides.items()})
    return Settings.from_env(env)


@pytest.fixture
async def gateway(simulator: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app in-process (lifespan run), in front of the simulator."""
    async with gateway_client(make_settings(simulator.url)) as client:
        yield client


@asynccontextmanager
async def gateway_client(
    settings: Settings, **app_options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to `create_app(settings)` in-process, lifespan included."""
    app = create_app(settings, **app_options)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


async def graphql(
    client: httpx.AsyncClient, query: str, variables: dict[str, object] | None = None
) -> dict[str, object]:
    """POST one operation; returns the JSON body after checking the HTTP status is 200."""
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


@pytest.fixture
def flow_sim() -> Iterator[Simulator]:
    """A simulator that tells each session's code (for the flow's tests)."""
    from gateway.simulator import SimulatorSettings, create_simulator
    from tests.servers import serve_in_thread

    app = create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN, expose_codes=True))
    with serve_in_thread(app) as url:
        yield Simulator(url)


@pytest.fixture
async def shared_redis() -> AsyncIterator[tuple[Fleet, str]]:
    """Fleet state on the real Redis at 127.0.0.1:6379, under a key prefix of the test's own."""
    from tests.redis_server import require_shared_redis, unique_prefix

    prefix = unique_prefix()
    fleet = open_fleet(
        require_shared_redis(), prefix=prefix, max_entries=1000, timeout=1.0, generation_ttl=60.0
    )
    assert await fleet.start()
    yield fleet, prefix
    assert fleet.link is not None
    client = fleet.link.client
    keys = await client.keys(f"{prefix}*")
    if keys:
        await client.delete(*keys)
    await fleet.close()
