"""`sessionUpdated` over graphql-transport-ws, against the gateway on a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import pytest

from gateway.app import create_app
from gateway.operations.principals import key_digest
from gateway.simulator import SimulatorSettings, create_simulator
from tests.conftest import AUTH_ID, AUTH_TOKEN, Simulator, make_settings
from tests.servers import serve_in_thread

READER, WRITER = "reader-key-1111", "writer-key-0000"
KEYS = f"dash:{key_digest(READER)}:read,app:{key_digest(WRITER)}:read+write"
WATCH = "subscription W($uuid: ID!) { sessionUpdated(uuid: $uuid) { sessionUuid status count } }"
START = "mutation S($r: String!) { startVerification(input: {recipient: $r}) { sessionUuid } }"
VALIDATE = "mutation V($u: ID!, $o: String!) { validateSession(uuid: $u, otp: $o) { result } }"


def slow_watch_settings(sim_url: str, **extra: object) -> Any:
    """Pollers that read every 60 s: only a change the gateway hears of makes them read sooner."""
    return make_settings(
        sim_url,
        GATEWAY_AUTH="keys",
        GATEWAY_API_KEYS=KEYS,
        GATEWAY_WATCH_INTERVAL="60",
        GATEWAY_WATCH_MAX_INTERVAL="60",
        **extra,
    )


@pytest.fixture
def stack() -> Iterator[tuple[str, Simulator]]:
    sim_app = create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN, expose_codes=True))
    with serve_in_thread(sim_app) as sim_url:
        settings = slow_watch_settings(sim_url)
        with serve_in_thread(create_app(settings), lifespan=True) as url:
            yield url, Simulator(sim_url)


def mutate(url: str, query: str, variables: dict[str, object]) -> dict[str, Any]:
    answer = httpx.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {WRITER}"},
    )
    body: dict[str, Any] = answer.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


@asynccontextmanager
async def socket(
    url: str, payload: Mapping[str, object]
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            url.replace("http", "ws") + "/graphql", protocols=["graphql-transport-ws"]
        ) as ws,
    ):
        await ws.send_json({"type": "connection_init", "payload": dict(payload)})
        yield ws


async def messages(
    ws: aiohttp.ClientWebSocketResponse, until: str = "complete"
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while True:
        message = await asyncio.wait_for(ws.receive(), 10)
        if message.type != aiohttp.WSMsgType.TEXT:
            seen.append({"type": "closed", "code": ws.close_code})
            return seen
        data = json.loads(message.data)
        seen.append(data)
        if data["type"] in (until, "error"):
            return seen


async def test_two_subscribers_share_one_poller_and_see_the_terminal_status(
    stack: tuple[str, Simulator],
) -> None:
    url, sim = stack
    uuid = mutate(url, START, {"r": "919999000901"})["startVerification"]["sessionUuid"]
    auth = {"Authorization": f"Bearer {READER}"}
    async with socket(url, auth) as one, socket(url, auth) as two:
        for ws in (one, two):
            assert (await messages(ws, "connection_ack"))[-1]["type"] == "connection_ack"
            await ws.send_json(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": WATCH, "variables": {"uuid": uuid}},
                }
            )
        firsts = [(await messages(ws, "next"))[-1] for ws in (one, two)]
        assert [f["payload"]["data"]["sessionUpdated"]["status"] for f in firsts] == [
            "IN_PROGRESS"
        ] * 2
        async with httpx.AsyncClient(base_url=url) as gateway:
            scraped = (await gateway.get("/metrics")).text
        assert "gateway_watched_sessions 1.0" in scraped  # two subscribers, one poller
        sim.reset()
        with sim.admin() as admin:
            code = admin.get(f"/__simulator/codes/{uuid}").json()["code"]
        assert (
            mutate(url, VALIDATE, {"u": uuid, "o": code})["validateSession"]["result"] == "VERIFIED"
        )
        rests = [await messages(ws) for ws in (one, two)]
    for rest in rests:
        assert [m["type"] for m in rest] == ["next", "complete"]
        assert rest[0]["payload"]["data"]["sessionUpdated"]["status"] == "VERIFIED"
    # The validation's own read, then the one poller's: never one read per subscriber.
    assert sim.served(uuid) <= 2


async def test_a_socket_without_a_known_key_is_closed_4403(stack: tuple[str, Simulator]) -> None:
    url, _ = stack
    for payload in ({}, {"Authorization": "Bearer nope"}):
        async with socket(url, payload) as ws:
            seen = await messages(ws, "connection_ack")
            assert seen == [{"type": "closed", "code": 4403}]


async def test_a_subscription_to_no_session_yields_null_and_completes(
    stack: tuple[str, Simulator],
) -> None:
    url, _ = stack
    async with socket(url, {"Authorization": f"Bearer {READER}"}) as ws:
        await messages(ws, "connection_ack")
        variables = {"uuid": "00000000-0000-4000-8000-000000000000"}
        await ws.send_json(
            {"id": "1", "type": "subscribe", "payload": {"query": WATCH, "variables": variables}}
        )
        seen = await messages(ws)
    assert [m["type"] for m in seen] == ["next", "complete"]
    assert seen[0]["payload"]["data"]["sessionUpdated"] is None


async def test_a_bad_uuid_is_an_error_of_the_subscription(stack: tuple[str, Simulator]) -> None:
    url, _ = stack
    async with socket(url, {"Authorization": f"Bearer {READER}"}) as ws:
        await messages(ws, "connection_ack")
        await ws.send_json(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": WATCH, "variables": {"uuid": "nope"}},
            }
        )
        seen = await messages(ws)
    errors = [m for m in seen if m["type"] in ("next", "error")]
    payload = errors[0]["payload"]
    first = payload[0] if isinstance(payload, list) else payload["errors"][0]
    assert first["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_callback_on_one_instance_reaches_a_subscriber_on_another() -> None:
    from tests.redis_server import require_shared_redis, unique_prefix
    from tests.test_flow import PUBLIC, signed_callback

    sim_app = create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN, expose_codes=True))
    with serve_in_thread(sim_app) as sim_url:
        settings = slow_watch_settings(
            sim_url,
            GATEWAY_PUBLIC_URL=PUBLIC,  # not loopback: the simulator sends nothing itself
            GATEWAY_CACHE_URL=require_shared_redis(),
            GATEWAY_CACHE_PREFIX=unique_prefix(),
        )
        with (
            serve_in_thread(create_app(settings), lifespan=True) as one,
            serve_in_thread(create_app(settings), lifespan=True) as two,
        ):
            uuid = mutate(one, START, {"r": "919999001001"})["startVerification"]["sessionUuid"]
            async with socket(two, {"Authorization": f"Bearer {READER}"}) as ws:
                await messages(ws, "connection_ack")
                await ws.send_json(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": WATCH, "variables": {"uuid": uuid}},
                    }
                )
                first = (await messages(ws, "next"))[-1]
                assert first["payload"]["data"]["sessionUpdated"]["status"] == "IN_PROGRESS"
                async with httpx.AsyncClient(base_url=sim_url, auth=(AUTH_ID, AUTH_TOKEN)) as sim:
                    code = (await sim.get(f"/__simulator/codes/{uuid}")).json()["code"]
                    path = f"/v1/Account/{AUTH_ID}/Verify/Session/{uuid}/"
                    assert (await sim.post(path, json={"otp": code})).status_code == 200
                form, headers = signed_callback(uuid, "verified")
                async with httpx.AsyncClient(base_url=one) as gateway_one:
                    answer = await gateway_one.post("/plivo/callbacks", data=form, headers=headers)
                assert answer.status_code == 200
                rest = await messages(ws)
    assert [m["type"] for m in rest] == ["next", "complete"]
    assert rest[0]["payload"]["data"]["sessionUpdated"]["status"] == "VERIFIED"


async def test_pages_on_other_origins_open_sockets_only_when_cors_allows_them() -> None:
    sim_app = create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN))
    with serve_in_thread(sim_app) as sim_url:
        settings = slow_watch_settings(sim_url, GATEWAY_CORS_ORIGINS="https://app.example.com")
        with serve_in_thread(create_app(settings), lifespan=True) as url:
            ws_url = url.replace("http", "ws") + "/graphql"
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(
                    ws_url,
                    protocols=["graphql-transport-ws"],
                    origin="https://app.example.com",
                ) as ws:
                    await ws.send_json(
                        {
                            "type": "connection_init",
                            "payload": {"Authorization": f"Bearer {READER}"},
                        }
                    )
                    assert (await messages(ws, "connection_ack"))[-1]["type"] == "connection_ack"
                with pytest.raises(aiohttp.WSServerHandshakeError):
                    async with http.ws_connect(
                        ws_url, protocols=["graphql-transport-ws"], origin="https://evil.example"
                    ):
                        pass
