"""Whole-response cache: answers as execution gives them, keyed by caller, short-lived."""

from __future__ import annotations

import asyncio
import json

import httpx

from gateway import fixtures
from gateway.operations.principals import key_digest
from gateway.operations.response_cache import ResponseCache
from tests.conftest import AUTH_ID, AUTH_TOKEN, Simulator, gateway_client, make_settings

DOCS = fixtures.DOCS_EXAMPLE_UUID
IN_PROGRESS_QUERY = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status count } }"
BODY = {"query": IN_PROGRESS_QUERY, "variables": {"uuid": DOCS}}


async def test_a_cached_response_equals_execution_and_ages(simulator: Simulator) -> None:
    settings = make_settings(simulator.url)
    async with gateway_client(settings) as client:
        first = (await client.post("/graphql", json=BODY)).json()
        await asyncio.sleep(0.05)
        second = (await client.post("/graphql", json=BODY)).json()
    async with gateway_client(
        make_settings(simulator.url, GATEWAY_RESPONSE_CACHE_ENTRIES=0)
    ) as plain:
        await plain.post("/graphql", json=BODY)
        executed = (await plain.post("/graphql", json=BODY)).json()
    assert first["data"] == second["data"] == executed["data"]
    assert first["extensions"]["cache"][DOCS] == {"status": "miss", "age": 0.0}
    assert second["extensions"]["cache"][DOCS]["status"] == "hit"
    assert second["extensions"]["cache"][DOCS]["age"] >= 0.05
    assert executed["extensions"]["cache"][DOCS]["status"] == "hit"


async def test_identical_requests_are_answered_without_executing(simulator: Simulator) -> None:
    async with gateway_client(make_settings(simulator.url)) as client:
        for _ in range(3):
            await client.post("/graphql", json=BODY)
        metrics = (await client.get("/metrics")).text
    assert "gateway_response_cache_hits_total 2.0" in metrics
    assert 'gateway_cache_lookups_total{result="miss"} 1.0' in metrics
    assert 'gateway_cache_lookups_total{result="hit"}' not in metrics  # never looked up again


async def test_entries_live_as_long_as_their_shortest_lived_session(simulator: Simulator) -> None:
    settings = make_settings(
        simulator.url,
        GATEWAY_CACHE_TTL_TERMINAL=0.1,
        GATEWAY_CACHE_STALE_WHILE_REVALIDATE=0,
        GATEWAY_CACHE_MAX_STALE=0,
    )
    async with gateway_client(settings) as client:
        await client.post("/graphql", json=BODY)
        await client.post("/graphql", json=BODY)
        assert simulator.served() == 1
        await asyncio.sleep(0.15)
        again = (await client.post("/graphql", json=BODY)).json()
    assert again["extensions"]["cache"][DOCS]["status"] == "miss"
    assert simulator.served() == 2


async def test_no_cache_requests_never_read_it(simulator: Simulator) -> None:
    async with gateway_client(make_settings(simulator.url)) as client:
        await client.post("/graphql", json=BODY)
        refetched = await client.post("/graphql", json=BODY, headers={"Cache-Control": "no-cache"})
    assert refetched.json()["extensions"]["cache"][DOCS]["status"] == "miss"
    assert simulator.served() == 2


async def test_errors_are_not_kept(simulator: Simulator) -> None:
    simulator.queue_fault("500")
    async with gateway_client(make_settings(simulator.url)) as client:
        failed = (await client.post("/graphql", json=BODY)).json()
        answered = (await client.post("/graphql", json=BODY)).json()
    assert failed["errors"][0]["extensions"]["code"] == "UPSTREAM_ERROR"
    assert answered["data"]["session"]["sessionUuid"] == DOCS


async def test_callers_never_share_an_entry(simulator: Simulator) -> None:
    keys = ",".join(
        [
            f"reader:{key_digest('reader')}:read",
            f"writer:{key_digest('writer')}:write",
            f"broker:{key_digest('broker')}:read+passthrough",
        ]
    )
    settings = make_settings(simulator.url, GATEWAY_AUTH="keys", GATEWAY_API_KEYS=keys)
    wrong = {"X-Plivo-Auth-Id": AUTH_ID, "X-Plivo-Auth-Token": "not-" + AUTH_TOKEN}
    async with gateway_client(settings) as client:

        async def ask(key: str, extra: dict[str, str] | None = None) -> dict[str, object]:
            headers = {"Authorization": f"Bearer {key}", **(extra or {})}
            body: dict[str, object] = (
                await client.post("/graphql", json=BODY, headers=headers)
            ).json()
            return body

        assert (await ask("reader"))["data"] is not None
        assert (await ask("reader"))["extensions"]["cache"][DOCS]["status"] == "hit"  # type: ignore[index]
        forbidden = await ask("writer")
        assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # type: ignore[index]
        refused = await ask("broker", wrong)
        assert refused["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAUTHENTICATED"  # type: ignore[index]
        # the same body, answered from the reader's cached response, would have been data:
        # the refusal shows the broker's request was run with its own credential.
        own = await ask("broker", {"X-Plivo-Auth-Id": AUTH_ID, "X-Plivo-Auth-Token": AUTH_TOKEN})
        assert own["data"]["session"]["sessionUuid"] == DOCS  # type: ignore[index]


def test_the_cache_is_bounded() -> None:
    cache = ResponseCache(max_entries=2)
    fresh = {DOCS: (0.0, 1e12)}
    for key in (b"a", b"b", b"c"):
        cache.put(key, {"session": None}, fresh, "op")
    assert len(cache) == 2
    assert cache.get(b"a") is None
    assert cache.get(b"c") is not None


def test_the_hits_of_one_millisecond_share_a_body_and_the_next_one_ages() -> None:
    cache = ResponseCache(max_entries=2)
    cache.put(b"a", {"session": None}, {DOCS: (1000.0, 1e12)}, "op")
    entry = cache.get(b"a")
    assert entry is not None
    first = entry.body(1001.2341)
    assert entry.body(1001.2344) is first  # the same millisecond: made once
    assert json.loads(first)["extensions"]["cache"][DOCS] == {"status": "hit", "age": 1.234}
    later = json.loads(entry.body(1001.2356))
    assert later == {
        "data": {"session": None},
        "extensions": {"cache": {DOCS: later["extensions"]["cache"][DOCS]}},
    }
    assert later["extensions"]["cache"][DOCS] == {"status": "hit", "age": 1.236}


def test_nothing_without_sessions_or_with_the_cache_off_is_kept() -> None:
    cache = ResponseCache(max_entries=2)
    cache.put(b"a", {"__typename": "Query"}, {}, "op")
    assert cache.get(b"a") is None
    off = ResponseCache(max_entries=0)
    off.put(b"a", {"session": None}, {DOCS: (0.0, 1e12)}, "op")
    assert off.get(b"a") is None


async def test_a_cached_answer_is_served_from_a_batch_only_by_execution(
    simulator: Simulator,
) -> None:
    async with gateway_client(make_settings(simulator.url)) as client:
        batch = (await client.post("/graphql", json=[BODY, BODY])).json()
    assert [item["data"]["session"]["sessionUuid"] for item in batch] == [DOCS, DOCS]
    assert simulator.served() == 1


async def test_get_requests_are_cached_by_their_query_string(
    gateway: httpx.AsyncClient, simulator: Simulator
) -> None:
    params = {"query": f'{{ session(uuid: "{DOCS}") {{ status }} }}'}
    first = (await gateway.get("/graphql", params=params)).json()
    second = (await gateway.get("/graphql", params=params)).json()
    assert first["data"] == second["data"] == {"session": {"status": "EXPIRED"}}
    assert second["extensions"]["cache"][DOCS]["status"] == "hit"
    assert simulator.served() == 1
