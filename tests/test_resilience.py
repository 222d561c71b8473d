"""Retries, the circuit breaker, the bulkhead and the fleet budget, against the simulator."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway import fixtures
from gateway.operations.principals import key_digest
from gateway.plivo.resilience import CircuitBreaker, CircuitOpen, NoObserver
from tests.conftest import Simulator, gateway_client, graphql, make_settings
from tests.redis_server import require_shared_redis, unique_prefix

UUID = fixtures.DOCS_EXAMPLE_UUID
OTHER = "5c533d15-1975-4f20-80be-40174142ea37"
QUERY = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"


def code(body: dict[str, object]) -> object:
    errors = body.get("errors")
    if not errors:
        return None
    assert isinstance(errors, list)
    return errors[0]["extensions"]["code"]


async def test_the_breaker_opens_fails_fast_then_probes_and_closes(simulator: Simulator) -> None:
    settings = make_settings(
        simulator.url,
        PLIVO_RETRY_ATTEMPTS=1,
        PLIVO_BREAKER_THRESHOLD=3,
        PLIVO_BREAKER_COOLDOWN=0.5,
        GATEWAY_CACHE_URL="none",
    )
    simulator.configure(fault="503")
    async with gateway_client(settings) as client:
        for _ in range(3):
            assert code(await graphql(client, QUERY, {"uuid": UUID})) == "UPSTREAM_ERROR"
        assert simulator.served() == 3
        opened = await graphql(client, QUERY, {"uuid": UUID})
        assert code(opened) == "UPSTREAM_UNAVAILABLE"
        assert simulator.served() == 3  # failed fast: nothing sent
        metrics = (await client.get("/metrics")).text
        assert 'gateway_breaker_state{breaker="default"} 2.0' in metrics
        simulator.configure(fault=None)
        await asyncio.sleep(0.6)
        probe = await graphql(client, QUERY, {"uuid": UUID})
        assert code(probe) is None
        assert 'gateway_breaker_state{breaker="default"} 0.0' in (await client.get("/metrics")).text


async def test_an_open_breaker_serves_stale_where_the_cache_has_it(simulator: Simulator) -> None:
    settings = make_settings(
        simulator.url,
        PLIVO_RETRY_ATTEMPTS=1,
        PLIVO_BREAKER_THRESHOLD=1,
        PLIVO_BREAKER_COOLDOWN=60,
        GATEWAY_CACHE_TTL_TERMINAL=0.05,
        GATEWAY_CACHE_STALE_WHILE_REVALIDATE=0,
    )
    async with gateway_client(settings) as client:
        await graphql(client, QUERY, {"uuid": UUID})
        simulator.configure(fault="503")
        await asyncio.sleep(0.1)
        assert code(await graphql(client, QUERY, {"uuid": OTHER})) == "UPSTREAM_ERROR"  # opens
        served = simulator.served()
        stale = await graphql(client, QUERY, {"uuid": UUID})
        assert code(stale) is None
        assert stale["extensions"]["cache"][UUID]["status"] == "stale"  # type: ignore[index]
        assert simulator.served() == served


def test_breaker_counts_failures_in_a_row_only() -> None:
    breaker = CircuitBreaker("b", threshold=2, cooldown=60, observer=NoObserver())
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    assert breaker.state == "closed"
    breaker.failed()
    assert str(breaker.state) == "open"
    with pytest.raises(CircuitOpen):
        breaker.admit("GET", "/p")


@pytest.mark.parametrize(("limit", "peak"), [(2, 2), (10, 3)])
async def test_the_bulkhead_caps_requests_in_flight(
    simulator: Simulator, limit: int, peak: int
) -> None:
    # The simulator records the most session requests it served at once, so the check does not
    # depend on when the test looks; the limit of 10 shows the three requests do overlap.
    settings = make_settings(
        simulator.url,
        PLIVO_MAX_CONCURRENCY=limit,
        PLIVO_CREDENTIAL_SHARE=1,  # one credential here: the whole bulkhead
        GATEWAY_CACHE_URL="none",
    )
    simulator.configure(latency_ms=600)
    uuids = [UUID, OTHER, "4124e518-a8c9-4feb-8cff-d86636ba9234"]
    async with gateway_client(settings) as client:
        bodies = await asyncio.gather(*(graphql(client, QUERY, {"uuid": u}) for u in uuids))
    assert all(code(body) is None for body in bodies)
    stats = simulator.stats()
    assert stats["peak_in_flight"] == peak
    assert stats["in_flight"] == 0
    assert stats["served"] == 3


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_the_budget_refuses_past_its_limit_in_memory_and_in_redis(
    simulator: Simulator, backend: str
) -> None:
    # In memory it holds per process (it used not to be enforced at all without Redis).
    shared: dict[str, object] = {}
    if backend == "redis":
        shared = {
            "GATEWAY_CACHE_URL": require_shared_redis(),
            "GATEWAY_CACHE_PREFIX": unique_prefix(),
        }
    settings = make_settings(
        simulator.url,
        PLIVO_BUDGET_REQUESTS=2,
        PLIVO_BUDGET_WINDOW=30,
        GATEWAY_KEY_BUDGET_SHARE=1,  # one caller may spend it all (shares: test_freshness.py)
        **shared,
    )
    uuids = [UUID, OTHER, "4124e518-a8c9-4feb-8cff-d86636ba9234"]
    async with gateway_client(settings) as client:
        bodies = [await graphql(client, QUERY, {"uuid": u}) for u in uuids]
        metrics = (await client.get("/metrics")).text
    assert [code(body) for body in bodies] == [None, None, "RATE_LIMITED"]
    errors = bodies[2]["errors"]
    assert isinstance(errors, list)
    assert 0 < errors[0]["extensions"]["retryAfter"] <= 33  # a sliding window: 30 s and a tenth
    assert simulator.served() == 2
    assert "gateway_budget_refusals_total 1.0" in metrics


async def test_no_cache_refetches_are_rate_limited_per_key(simulator: Simulator) -> None:
    settings = make_settings(simulator.url, GATEWAY_REFRESH_PER_MINUTE=2)
    headers = {"Cache-Control": "no-cache"}
    body = {"query": QUERY, "variables": {"uuid": UUID}}
    async with gateway_client(settings) as client:
        statuses = [
            (await client.post("/graphql", json=body, headers=headers)).status_code
            for _ in range(3)
        ]
        refused = await client.post("/graphql", json=body, headers=headers)
        plain = await client.post("/graphql", json=body)
    assert statuses == [200, 200, 429]
    assert refused.headers["retry-after"].isdigit()
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert plain.status_code == 200


async def test_retries_are_counted_in_metrics(simulator: Simulator) -> None:
    simulator.queue_fault("503")
    async with gateway_client(make_settings(simulator.url)) as client:
        assert code(await graphql(client, QUERY, {"uuid": UUID})) is None
        metrics = (await client.get("/metrics")).text
    assert 'gateway_upstream_retries_total{reason="503"} 1.0' in metrics
    assert 'gateway_upstream_requests_total{status="503"} 1.0' in metrics
    assert 'gateway_upstream_requests_total{status="200"} 1.0' in metrics


async def test_no_request_is_served_another_credentials_data(simulator: Simulator) -> None:
    """Concurrent lookups with two credentials under faults: each gets its own answer."""
    keys = f"broker:{key_digest('broker')}:read+passthrough"
    settings = make_settings(simulator.url, GATEWAY_AUTH="keys", GATEWAY_API_KEYS=keys)
    good = {"Authorization": "Bearer broker"}
    bad = good | {"X-Plivo-Auth-Id": "MAZZZZZZZZZZZZZZZZZZ", "X-Plivo-Auth-Token": "other"}
    simulator.queue_fault("503", times=3)
    body = {"query": QUERY, "variables": {"uuid": UUID}}
    async with gateway_client(settings) as client:
        responses = await asyncio.gather(
            *(client.post("/graphql", json=body, headers=h) for h in [good, bad] * 20)
        )
    for index, response in enumerate(responses):
        result = response.json()
        if index % 2:
            assert code(result) == "UPSTREAM_UNAUTHENTICATED"
            assert result["data"] == {"session": None}
        else:
            assert result["data"]["session"]["sessionUuid"] == UUID


async def test_httpx_is_never_asked_to_follow_redirects() -> None:
    """A 3xx from upstream is not followed (the credential never goes to another host)."""

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://evil.example/steal"})

    settings = make_settings("http://upstream.test")
    async with gateway_client(settings, transport=httpx.MockTransport(handler)) as client:
        body = await graphql(client, QUERY, {"uuid": UUID})
    assert code(body) == "UPSTREAM_REJECTED"
