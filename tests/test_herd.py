"""Real processes: 200 concurrent identical lookups cost one upstream call, alone and as a fleet."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from gateway import fixtures
from tests.conftest import AUTH_ID, AUTH_TOKEN, Simulator
from tests.redis_server import require_shared_redis, unique_prefix
from tests.servers import free_port, process, wait_for_http

pytestmark = pytest.mark.e2e
UUID = fixtures.DOCS_EXAMPLE_UUID
QUERY = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"


async def herd(urls: list[str], count: int) -> list[dict[str, object]]:
    """`count` identical lookups at once, spread over `urls`."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        responses = await asyncio.gather(
            *(
                client.post(urls[i % len(urls)], json={"query": QUERY, "variables": {"uuid": UUID}})
                for i in range(count)
            )
        )
    return [response.json() for response in responses]


def start_gateways(
    stack: ExitStack, simulator: Simulator, tmp_path: Path, count: int, env: dict[str, str]
) -> list[str]:
    urls = []
    for index in range(count):
        port = free_port()
        settings = {
            "PLIVO_AUTH_ID": AUTH_ID,
            "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
            "PLIVO_API_URL": simulator.url,
            "GATEWAY_AUTH": "none",
            **env,
        }
        log = tmp_path / f"gateway-{index}.log"
        stack.enter_context(process("serve", "--port", str(port), env=settings, log=log))
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        wait_for_http(f"{url}/healthz")
    return [f"{url}/graphql" for url in urls]


def assert_all_answered(bodies: list[dict[str, object]]) -> None:
    for body in bodies:
        assert "errors" not in body
        assert body["data"] == {"session": {"sessionUuid": UUID, "status": "EXPIRED"}}


def test_one_process_makes_one_upstream_call_for_200_concurrent_lookups(
    simulator: Simulator, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        urls = start_gateways(stack, simulator, tmp_path, 1, {})
        simulator.configure(latency_ms=200)
        bodies = asyncio.run(herd(urls, 200))
    assert_all_answered(bodies)
    assert simulator.served(UUID) == 1


def test_two_processes_sharing_redis_make_one_upstream_call(
    simulator: Simulator, tmp_path: Path
) -> None:
    env = {"GATEWAY_CACHE_URL": require_shared_redis(), "GATEWAY_CACHE_PREFIX": unique_prefix()}
    with ExitStack() as stack:
        urls = start_gateways(stack, simulator, tmp_path, 2, env)
        simulator.configure(latency_ms=200)
        bodies = asyncio.run(herd(urls, 200))
        again = asyncio.run(herd(urls, 200))
    assert_all_answered(bodies + again)
    assert simulator.served(UUID) == 1
    assert {cache_status(body) for body in again} == {"hit"}


def cache_status(body: dict[str, object]) -> object:
    extensions = body["extensions"]
    assert isinstance(extensions, dict)
    return extensions["cache"][UUID]["status"]
