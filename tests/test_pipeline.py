"""One pipeline for every transport: HTTP, batches and websockets obey the same limits."""

from __future__ import annotations

import asyncio
import logging
import uuid as uuids
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest

from gateway import fixtures
from gateway.app import create_app
from gateway.simulator import SimulatorSettings, create_simulator
from tests.conftest import AUTH_ID, AUTH_TOKEN, Simulator
from tests.servers import serve_in_thread
from tests.test_subscriptions import (
    READER,
    START,
    VALIDATE,
    messages,
    mutate,
    slow_watch_settings,
    socket,
)

DOCS = fixtures.DOCS_EXAMPLE_UUID
AUTH = {"Authorization": f"Bearer {READER}"}
READ = "query R($u: ID!) { session(uuid: $u) { status } }"


def aliased(count: int) -> str:
    """`count` aliased `session` fields, each for a uuid of its own (each a Plivo request)."""
    fields = " ".join(f'a{i}: session(uuid: "{uuids.uuid4()}") {{ status }}' for i in range(count))
    return "{ " + fields + " }"


@pytest.fixture
def stack(request: pytest.FixtureRequest) -> Iterator[tuple[str, Simulator]]:
    """The gateway (settings from the test's `settings` marker) in front of a simulator."""
    marker = request.node.get_closest_marker("settings")
    extra = marker.kwargs if marker else {}
    sim_app = create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN, expose_codes=True))
    with serve_in_thread(sim_app) as sim_url:
        settings = slow_watch_settings(sim_url, **extra)
        with serve_in_thread(create_app(settings), lifespan=True) as url:
            yield url, Simulator(sim_url)


def post(url: str, body: object, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/graphql", json=body, headers=AUTH | headers, timeout=10)


async def ws_run(url: str, query: str, variables: dict[str, Any] | None = None) -> list[Any]:
    """One operation over a fresh websocket: every message until complete, error or close."""
    async with socket(url, AUTH) as ws:
        await messages(ws, "connection_ack")
        payload: dict[str, Any] = {"query": query, "variables": variables or {}}
        await ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
        return await messages(ws)


def first_error(seen: list[dict[str, Any]]) -> dict[str, Any]:
    message = next(m for m in seen if m["type"] in ("error", "next"))
    payload = message["payload"]
    error: dict[str, Any] = payload[0] if isinstance(payload, list) else payload["errors"][0]
    return error


@pytest.mark.settings(GATEWAY_MAX_TOKENS=10_000)
async def test_a_200_alias_websocket_query_never_reaches_plivo_200_times(
    stack: tuple[str, Simulator],
) -> None:
    url, sim = stack
    seen = await ws_run(url, aliased(200))
    error = first_error(seen)
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX", "limit": "aliases", "maximum": 20}
    assert sim.served() <= 20
    assert sim.served() == 0  # refused before execution


@pytest.mark.settings(GATEWAY_MAX_ALIASES=1000, GATEWAY_MAX_TOKENS=10_000)
async def test_a_websocket_operation_is_refused_by_its_cost(
    stack: tuple[str, Simulator],
) -> None:
    url, sim = stack
    error = first_error(await ws_run(url, aliased(200)))
    assert error["extensions"] == {
        "code": "QUERY_TOO_COMPLEX",
        "limit": "cost",
        "maximum": 20,
        "cost": 200,
    }
    assert "200 Plivo requests" in error["message"]
    assert "limit is 20" in error["message"]
    assert sim.served() == 0
    within = await ws_run(url, aliased(20))
    assert [m["type"] for m in within] == ["next", "complete"]
    assert len(within[0]["payload"]["data"]) == 20
    assert sim.served() == 20


async def test_a_batch_of_10_documents_of_20_aliases_is_refused_by_its_total_cost(
    stack: tuple[str, Simulator],
) -> None:
    url, sim = stack
    response = post(url, [{"query": aliased(20)} for _ in range(10)])  # 19 kB: within 64 kB
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"] == {
        "code": "QUERY_TOO_COMPLEX",
        "limit": "cost",
        "maximum": 20,
        "cost": 200,
    }
    assert sim.served() == 0
    within = post(url, [{"query": aliased(5)} for _ in range(4)])
    assert within.status_code == 200
    assert all("errors" not in item for item in within.json())
    assert sim.served() == 20


async def test_a_websocket_message_over_the_body_limit_closes_the_socket_unread(
    stack: tuple[str, Simulator],
) -> None:
    url, _ = stack
    huge = "{ " + "__typename " * 400_000 + "}"  # about 4.4 MB
    async with socket(url, AUTH) as ws:
        await messages(ws, "connection_ack")
        await ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": huge}})
        seen = await messages(ws)
    assert seen == [{"type": "closed", "code": 1009}]
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_a_long_document_within_the_body_limit_stops_at_the_token_limit(
    stack: tuple[str, Simulator],
) -> None:
    url, _ = stack
    long = "{ " + "__typename " * 5_000 + "}"  # 55 kB, 5,000 tokens
    error = first_error(await ws_run(url, long))
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX", "limit": "tokens", "maximum": 2000}
    over_http = post(url, {"query": long})
    assert over_http.status_code == 400
    assert over_http.json()["errors"][0]["extensions"]["limit"] == "tokens"


async def test_each_websocket_operation_reads_afresh(stack: tuple[str, Simulator]) -> None:
    url, _ = stack
    started = mutate(url, START, {"r": "919999002001"})["startVerification"]["sessionUuid"]
    async with socket(url, AUTH) as ws:
        await messages(ws, "connection_ack")

        async def read(op_id: str) -> dict[str, Any]:
            payload = {"query": READ, "variables": {"u": started}}
            await ws.send_json({"id": op_id, "type": "subscribe", "payload": payload})
            answer: dict[str, Any] = (await messages(ws))[0]["payload"]
            return answer

        before = await read("1")
        assert before["data"]["session"]["status"] == "IN_PROGRESS"
        async with httpx.AsyncClient(base_url=stack[1].url) as sim:
            code = (await sim.get(f"/__simulator/codes/{started}")).json()["code"]
        checked = mutate(url, VALIDATE, {"u": started, "o": code})
        assert checked["validateSession"]["result"] == "VERIFIED"
        after = await read("2")
    assert after["data"]["session"]["status"] == "VERIFIED"
    assert after["extensions"]["cache"][started]["status"] == "miss"


async def test_each_batch_item_has_its_own_context_and_cache_report(
    stack: tuple[str, Simulator],
) -> None:
    url, _ = stack
    other = "00000000-0000-4000-8000-000000000000"
    response = post(
        url, [{"query": READ, "variables": {"u": DOCS}}, {"query": READ, "variables": {"u": other}}]
    )
    first, second = response.json()
    assert set(first["extensions"]["cache"]) == {DOCS}
    assert set(second["extensions"]["cache"]) == {other}


TWO = 'query A { __typename } query B { session(uuid: "' + DOCS + '") { status } }'


async def test_several_operations_and_no_name_is_an_error_on_every_transport(
    stack: tuple[str, Simulator],
) -> None:
    url, sim = stack
    as_json = post(url, {"query": TWO})
    assert as_json.status_code == 200  # GraphQL over HTTP: application/json is 200
    assert "data" not in as_json.json()
    error = as_json.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "operationName" in error["message"]
    strict = post(url, {"query": TWO}, Accept="application/graphql-response+json")
    assert strict.status_code == 400
    batch = post(url, [{"query": TWO}, {"query": TWO, "operationName": "A"}]).json()
    assert batch[0]["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert batch[1] == {"data": {"__typename": "Query"}}
    assert first_error(await ws_run(url, TWO))["extensions"]["code"] == "BAD_REQUEST"
    named = post(url, {"query": TWO, "operationName": "B"}).json()
    assert named["data"] == {"session": {"status": "EXPIRED"}}
    assert sim.served() == 1


async def test_an_operation_name_not_in_the_document_is_an_error_not_the_first(
    stack: tuple[str, Simulator],
) -> None:
    url, _ = stack
    answer = post(url, {"query": "{ __typename }", "operationName": "Session"})
    assert answer.status_code == 200
    assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "data" not in answer.json()


SUGGESTIVE: dict[str, tuple[str, dict[str, Any]]] = {
    "field": ("query Q($u: ID!) { session(uuid: $u) { statu } }", {"u": DOCS}),
    "argument": ('{ session(uid: "x") { status } }', {}),
    "type": ("query Q($u: Strin!) { session(uuid: $u) { status } }", {"u": DOCS}),
    "enum value": ("{ sessions(filter: {status: VERIFIE}) { nodes { status } } }", {}),
    "input field": ("{ sessions(filter: {statu: VERIFIED}) { nodes { status } } }", {}),
    "enum value in a variable": (
        "query Q($s: SessionStatus) { sessions(filter: {status: $s}) { nodes { status } } }",
        {"s": "VERIFIE"},
    ),
    "input field in a variable": (
        "query Q($f: SessionFilter) { sessions(filter: $f) { nodes { status } } }",
        {"f": {"statu": "VERIFIED"}},
    ),
}


@pytest.mark.parametrize("kind", sorted(SUGGESTIVE))
@pytest.mark.parametrize("production", [True, False])
async def test_production_suggests_no_name_of_the_schema(
    simulator: Simulator, kind: str, production: bool
) -> None:
    from gateway.operations import key_digest
    from tests.conftest import gateway_client, make_settings

    query, variables = SUGGESTIVE[kind]
    settings = make_settings(
        simulator.url,
        GATEWAY_ENV="production" if production else "development",
        GATEWAY_AUTH="keys",
        GATEWAY_API_KEYS=f"dash:{key_digest(READER)}:read",
    )
    async with gateway_client(settings) as client:
        body = {"query": query, "variables": variables}
        http = (await client.post("/graphql", json=body, headers=AUTH)).json()
        batch = (await client.post("/graphql", json=[body], headers=AUTH)).json()[0]
    messages = [e["message"] for answer in (http, batch) for e in answer["errors"]]
    assert messages
    if production:
        assert not any("Did you mean" in message for message in messages), messages
    else:  # the same request does draw a suggestion where they are on
        assert any("Did you mean" in message for message in messages), messages
    assert simulator.served() == 0


@pytest.mark.parametrize("production", [True, False])
async def test_production_websocket_errors_suggest_nothing(production: bool) -> None:
    sim_app = create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN))
    with serve_in_thread(sim_app) as sim_url:
        env = "production" if production else "development"
        settings = slow_watch_settings(sim_url, GATEWAY_ENV=env)
        with serve_in_thread(create_app(settings), lifespan=True) as url:
            errors = [
                first_error(await ws_run(url, query, variables))["message"]
                for query, variables in SUGGESTIVE.values()
            ]
    suggested = [message for message in errors if "Did you mean" in message]
    assert suggested == [] if production else len(suggested) == len(errors), errors


async def test_a_client_that_completes_a_subscription_ends_its_watch(
    stack: tuple[str, Simulator],
) -> None:
    from tests.conftest import eventually
    from tests.test_subscriptions import WATCH

    url, _ = stack
    started = mutate(url, START, {"r": "919999002101"})["startVerification"]["sessionUuid"]

    async def watched() -> str:
        async with httpx.AsyncClient(base_url=url) as client:
            text = (await client.get("/metrics")).text
        return next(line for line in text.splitlines() if line.startswith("gateway_watched_"))

    async with socket(url, AUTH) as ws:
        await messages(ws, "connection_ack")
        payload = {"query": WATCH, "variables": {"uuid": started}}
        await ws.send_json({"id": "1", "type": "subscribe", "payload": payload})
        first = (await messages(ws, "next"))[-1]
        assert first["payload"]["data"]["sessionUpdated"]["status"] == "IN_PROGRESS"
        assert await watched() == "gateway_watched_sessions 1.0"
        await ws.send_json({"id": "1", "type": "complete"})

        async def released() -> bool:
            return await watched() == "gateway_watched_sessions 0.0"

        assert await eventually(released)  # the socket is still open


MALFORMED_FRAMES = [
    "[1]",
    "1",
    '"text"',
    "null",
    '{"type": 1}',
    "{}",
    "not json",
    b"\x00binary",
    '{"type": "\\ud800"}',  # a lone surrogate, once the close reason echoed it
    '{"type": "' + "z" * 300 + '"}',  # a reason longer than a close frame may carry
    '{"type": "' + "\u00e9" * 70 + '"}',
    '{"type": "connection_init", "payload": "x"}',
]
MALFORMED_AFTER_INIT = [
    '{"type": "subscribe", "id": "1", "payload": "x"}',
    '{"type": "subscribe", "id": "1", "payload": null}',
    '{"type": "subscribe", "id": "1", "payload": {"query": 1}}',
    '{"type": "subscribe", "id": "1", "payload": {"query": "{ __typename }", "variables": []}}',
    '{"type": "subscribe", "id": 1, "payload": {"query": "{ __typename }"}}',
    '{"type": "subscribe", "payload": {"query": "{ __typename }"}}',
    '{"type": "complete", "id": ["1"]}',
    '{"type": "ping", "payload": 5}',
]


async def closed_as_malformed(
    ws: aiohttp.ClientWebSocketResponse, frame: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    else:
        await ws.send_str(frame)
    while True:
        message = await asyncio.wait_for(ws.receive(), 10)
        if message.type != aiohttp.WSMsgType.TEXT:  # the ack (after init) comes first
            break
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 4400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("not a protocol message" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("frame", MALFORMED_FRAMES)
async def test_a_malformed_websocket_frame_closes_the_socket_without_a_traceback(
    stack: tuple[str, Simulator], frame: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = stack
    caplog.set_level(logging.INFO)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            url.replace("http", "ws") + "/graphql", protocols=["graphql-transport-ws"]
        ) as ws,
    ):
        await closed_as_malformed(ws, frame, caplog)  # unauthenticated: before connection_init


@pytest.mark.parametrize("frame", MALFORMED_AFTER_INIT)
async def test_a_malformed_frame_after_connection_init_closes_the_socket_too(
    stack: tuple[str, Simulator], frame: str, caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = stack
    caplog.set_level(logging.INFO)
    async with socket(url, AUTH) as ws:
        await messages(ws, "connection_ack")
        await closed_as_malformed(ws, frame, caplog)
