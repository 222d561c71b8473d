"""The front door: /graphql straight to its transport, with a request id; the rest to the app."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from gateway import fixtures
from gateway.operations.principals import key_digest
from tests.conftest import Simulator, gateway_client, make_settings

DOCS = fixtures.DOCS_EXAMPLE_UUID
QUERY = "query S($uuid: ID!) { session(uuid: $uuid) { status } }"
BODY = {"query": QUERY, "variables": {"uuid": DOCS}}
KEYS = f"reader:{key_digest('reader')}:read"


async def hits(client: httpx.AsyncClient) -> str:
    text = (await client.get("/metrics")).text
    name = "gateway_response_cache_hits_total"
    return next(line for line in text.splitlines() if line.startswith(name))


async def test_a_hit_carries_a_request_id_and_the_cache_report(simulator: Simulator) -> None:
    settings = make_settings(simulator.url, GATEWAY_AUTH="keys", GATEWAY_API_KEYS=KEYS)
    headers = {"Authorization": "Bearer reader"}
    async with gateway_client(settings) as client:
        await client.post("/graphql", json=BODY, headers=headers)
        hit = await client.post("/graphql", json=BODY, headers=headers | {"X-Request-ID": "r-1"})
        assert await hits(client) == "gateway_response_cache_hits_total 1.0"
    assert hit.headers["x-request-id"] == "r-1"
    assert hit.headers["content-type"] == "application/json"
    assert hit.json()["data"] == {"session": {"status": "EXPIRED"}}
    assert hit.json()["extensions"]["cache"][DOCS]["status"] == "hit"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no key: the app answers 401
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer reader", "Cache-Control": "no-cache"},
        {"Authorization": "Bearer reader", "Content-Type": "text/plain"},
    ],
)
async def test_what_the_lane_cannot_serve_goes_to_the_app(
    simulator: Simulator, headers: dict[str, str]
) -> None:
    settings = make_settings(simulator.url, GATEWAY_AUTH="keys", GATEWAY_API_KEYS=KEYS)
    async with gateway_client(settings) as client:
        await client.post("/graphql", json=BODY, headers={"Authorization": "Bearer reader"})
        response = await client.post(
            "/graphql",
            content=orjson.dumps(BODY),
            headers={"Content-Type": "application/json", **headers},
        )
        assert await hits(client) == "gateway_response_cache_hits_total 0.0"
    assert response.status_code in (200, 401, 415)


async def test_large_bodies_are_passed_on_whole(simulator: Simulator) -> None:
    padded = {**BODY, "extensions": {"pad": "x" * 40_000}}
    async with gateway_client(make_settings(simulator.url)) as client:
        response = await client.post("/graphql", json=padded)
    assert response.status_code == 200
    assert response.json()["data"] == {"session": {"status": "EXPIRED"}}


async def test_cross_origin_hits_still_get_cors_headers(simulator: Simulator) -> None:
    origin = "https://app.example.com"
    settings = make_settings(simulator.url, GATEWAY_CORS_ORIGINS=origin)
    async with gateway_client(settings) as client:
        await client.post("/graphql", json=BODY, headers={"Origin": origin})
        again = await client.post("/graphql", json=BODY, headers={"Origin": origin})
    assert again.headers["access-control-allow-origin"] == origin
    assert again.json()["extensions"]["cache"][DOCS]["status"] == "hit"


async def test_a_bug_in_the_direct_path_is_a_masked_500_with_a_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from starlette.applications import Starlette
    from starlette.types import Receive, Scope

    from gateway.observability import AccessLog, RequestIds
    from gateway.web import FrontDoor

    class Broken:
        async def reply(self, scope: Scope, receive: Receive) -> Any:
            raise RuntimeError("secret detail")

    door = FrontDoor(Starlette(), Broken(), access_log=AccessLog("json"), request_ids=RequestIds())
    transport = httpx.ASGITransport(app=door)
    async with httpx.AsyncClient(transport=transport, base_url="http://g") as client:
        response = await client.post("/graphql", json=BODY)
    assert response.status_code == 500
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret detail" not in response.text
    assert response.headers["x-request-id"]
    assert "RuntimeError: secret detail" in caplog.text


async def test_a_miss_is_negotiated_authenticated_and_looked_up_once(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One pass per request: the caller, the media type and the cache read run once each."""
    from gateway.operations import Authenticator, Pipeline
    from gateway.web import graphql_http

    counts = {"principal": 0, "negotiate": 0, "cached": 0}
    principal, negotiate, cached = Authenticator.principal, graphql_http.negotiate, Pipeline.cached

    def counted(name: str, real: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            counts[name] += 1
            return real(*args)

        return wrapper

    monkeypatch.setattr(Authenticator, "principal", counted("principal", principal))
    monkeypatch.setattr(graphql_http, "negotiate", counted("negotiate", negotiate))
    monkeypatch.setattr(Pipeline, "cached", counted("cached", cached))
    settings = make_settings(simulator.url, GATEWAY_AUTH="keys", GATEWAY_API_KEYS=KEYS)
    async with gateway_client(settings) as client:
        response = await client.post(
            "/graphql", json=BODY, headers={"Authorization": "Bearer reader"}
        )
    assert response.json()["extensions"]["cache"][DOCS]["status"] == "miss"
    assert counts == {"principal": 1, "negotiate": 1, "cached": 1}
