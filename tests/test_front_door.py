"""The front door on a real socket: the key before the body, bodies in time, connections bounded."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from starlette.types import Message

from gateway.app import create_app
from gateway.operations.principals import key_digest
from gateway.web import ClientConnections, FrontDoor
from gateway.web.deadlines import BodyDeadline
from tests.conftest import eventually, make_settings
from tests.servers import serve_in_thread

READER = "reader-key-2222"
KEYS = f"reader:{key_digest(READER)}:read"
NOWHERE = "http://127.0.0.1:9"  # no test here reaches Plivo
TYPENAME = orjson.dumps({"query": "{ __typename }"})
DEADLINE = 10.0  # seconds: what a loaded machine may need; the behaviours take far less


@contextmanager
def gateway(**overrides: object) -> Iterator[tuple[str, FrontDoor]]:
    """The gateway on a loopback port (API keys required); its URL and its front door."""
    settings = make_settings(NOWHERE, GATEWAY_AUTH="keys", GATEWAY_API_KEYS=KEYS, **overrides)
    app = create_app(settings)
    assert isinstance(app, FrontDoor)
    with serve_in_thread(app, lifespan=True) as url:
        yield url, app


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@asynccontextmanager
async def partial_post(
    url: str, path: str = "/graphql", *, key: str | None = READER, declared: int = 60_000
) -> AsyncIterator[Stream]:
    """A POST whose headers promise `declared` bytes of body, of which 10 are sent."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    auth = f"Authorization: Bearer {key}\r\n" if key is not None else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {declared}\r\n\r\n"
    )
    writer.write(head.encode() + b'{"query":"')
    await writer.drain()
    try:
        yield reader, writer
    finally:
        writer.close()
        with suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    """The next HTTP response: its status, headers (lowercased) and JSON body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
    status_line, *lines = head.decode("latin-1").strip().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), DEADLINE)
    return int(status_line.split()[1]), headers, orjson.loads(body)


async def closed_while_trickling(stream: Stream) -> bool:
    """Whether the server closes the connection while the client keeps sending its body."""
    reader, writer = stream
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            writer.write(b" ")  # a byte at a time: this alone kept the connection open
            await writer.drain()
            if await asyncio.wait_for(reader.read(1024), 0.2) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionError, OSError):
            return True
    return False


def code_of(body: dict[str, Any]) -> str:
    code: str = body["errors"][0]["extensions"]["code"]
    return code


# 1. The key before the body.


@pytest.mark.parametrize("key", [None, "not-a-key"])
async def test_a_missing_or_unknown_key_gets_401_before_the_body_and_the_connection_closes(
    key: str | None,
) -> None:
    with gateway(GATEWAY_BODY_TIMEOUT="60") as (url, _):
        async with partial_post(url, key=key) as stream:
            status, headers, body = await response(stream[0])  # 59,990 bytes still to come
            assert (status, code_of(body)) == (401, "UNAUTHENTICATED")
            assert headers["connection"] == "close"
            assert await closed_while_trickling(stream)


# 2. A body in time, or 408.


@pytest.mark.parametrize("path", ["/graphql", "/plivo/callbacks"])
async def test_a_body_not_whole_in_time_gets_408_and_the_connection_closes(path: str) -> None:
    with gateway(GATEWAY_BODY_TIMEOUT="0.5", GATEWAY_PUBLIC_URL="https://gw.example") as (url, _):
        async with partial_post(url, path) as stream:
            status, headers, body = await response(stream[0])
            assert status == 408
            assert headers["connection"] == "close"
            assert body["errors"][0]["extensions"] == {
                "code": "REQUEST_TIMEOUT",
                "limit": "body_timeout",
                "maximum": 0.5,
            }
            assert "0.5 s" in body["errors"][0]["message"]
            assert await closed_while_trickling(stream)


async def test_a_body_sent_in_pieces_in_time_is_served() -> None:
    with gateway(GATEWAY_BODY_TIMEOUT="5") as (url, _):
        async with partial_post(url, declared=len(TYPENAME)) as (reader, writer):
            writer.write(TYPENAME.removeprefix(b'{"query":"'))
            status, headers, body = await response(reader)
    assert (status, body) == (200, {"data": {"__typename": "Query"}})
    assert "connection" not in headers  # a body read whole: the connection may stay


async def test_a_client_that_leaves_mid_body_is_no_error(caplog: pytest.LogCaptureFixture) -> None:
    with gateway(GATEWAY_BODY_TIMEOUT="60") as (url, app):
        assert app.connections is not None
        async with partial_post(url):
            await eventually(lambda: _held(app, 1))
        await eventually(lambda: _held(app, 0))
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def _held(app: FrontDoor, count: int) -> bool:
    assert app.connections is not None
    return app.connections.held("127.0.0.1") == count


async def test_a_read_cancelled_from_outside_stays_cancelled() -> None:
    """Only the deadline's own cancellation becomes a disconnect (a shutdown's goes through)."""
    entered, never = asyncio.Event(), asyncio.Event()

    async def receive() -> Message:
        entered.set()
        await never.wait()
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    deadline = BodyDeadline(receive, send, 60.0)
    read = asyncio.create_task(deadline.receive())
    await entered.wait()
    read.cancel()
    with pytest.raises(asyncio.CancelledError):
        await read
    assert not deadline.expired
    deadline.close()


class BareFuture:
    """What granian's `receive` returns: an awaitable whose iterator has no send, throw or close."""

    def __init__(self, future: asyncio.Future[Message]) -> None:
        self.future = future

    def __await__(self) -> BareFuture:
        return self

    def __iter__(self) -> BareFuture:
        return self

    def __next__(self) -> asyncio.Future[Message]:
        if self.future.done():
            raise StopIteration(self.future.result())
        self.future._asyncio_future_blocking = True  # what the event loop waits on
        return self.future


async def test_a_body_awaited_through_a_bare_future_is_read_and_given_its_deadline() -> None:
    loop = asyncio.get_running_loop()
    arrivals: list[asyncio.Future[Message]] = []

    def receive() -> Any:
        arrivals.append(loop.create_future())
        return BareFuture(arrivals[-1])

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    deadline = BodyDeadline(receive, send, 60.0)
    read = asyncio.create_task(deadline.receive())
    await eventually(lambda: _has(arrivals, 1))
    arrivals[0].set_result({"type": "http.request", "body": b"{}", "more_body": False})
    assert (await read)["body"] == b"{}"
    assert deadline.complete
    late = BodyDeadline(receive, send, 0.05)
    async with asyncio.timeout(DEADLINE):
        assert await late.receive() == {"type": "http.disconnect"}  # nothing came in time
    assert late.expired


async def _has(items: list[Any], count: int) -> bool:
    return len(items) == count


# 3. A websocket authenticates in time, or is closed.


@pytest.mark.parametrize("pings", [False, True])
async def test_a_websocket_without_connection_init_is_closed_4408_in_time(pings: bool) -> None:
    with gateway(GATEWAY_AUTH_TIMEOUT="0.5") as (url, _):
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                url.replace("http", "ws") + "/graphql", protocols=["graphql-transport-ws"]
            ) as ws,
        ):
            pongs = await _until_closed(ws, pings)
    assert ws.close_code == 4408
    assert pongs > 0 if pings else pongs == 0


async def _until_closed(ws: aiohttp.ClientWebSocketResponse, pings: bool) -> int:
    """Pings (when asked) until the server closes the socket; the pongs it answered."""
    pongs = 0
    async with asyncio.timeout(6):  # 12 times GATEWAY_AUTH_TIMEOUT, yet short of the old 10 s
        while True:
            if pings:
                await ws.send_json({"type": "ping"})
            message = await ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                return pongs
            assert message.json() == {"type": "pong"}
            pongs += 1


# 4. Connections per client.


async def test_a_client_over_its_connection_limit_is_refused_and_probes_get_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with gateway(
        GATEWAY_MAX_CONNECTIONS_PER_CLIENT="3", GATEWAY_BODY_TIMEOUT="60", GATEWAY_AUTH_TIMEOUT="60"
    ) as (url, app):
        ws_url = url.replace("http", "ws") + "/graphql"
        async with (
            partial_post(url) as held,
            partial_post(url),
            aiohttp.ClientSession() as http,
            http.ws_connect(ws_url, protocols=["graphql-transport-ws"]),
        ):
            await eventually(lambda: _held(app, 3))
            async with httpx.AsyncClient(base_url=url) as client:
                refused = [await _typename(client) for _ in range(3)]
                for probe in ("/healthz", "/readyz", "/metrics"):
                    assert (await client.get(probe)).status_code == 200
            with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
                async with http.ws_connect(ws_url, protocols=["graphql-transport-ws"]):
                    pass
            held[1].close()  # one request gives its connection back
            await eventually(lambda: _held(app, 2))
            async with httpx.AsyncClient(base_url=url) as client:
                served = await _typename(client)
    assert handshake.value.status == 429
    for answer in refused:
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["errors"][0]["extensions"] == {
            "code": "RATE_LIMITED",
            "retryAfter": 1,
            "limit": "connections_per_client",
            "maximum": 3,
        }
    assert served.json() == {"data": {"__typename": "Query"}}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "GATEWAY_MAX_CONNECTIONS_PER_CLIENT" in w]) == 1
    assert "127.0.0.1" in next(w for w in warnings if "MAX_CONNECTIONS" in w)


async def _typename(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(
        "/graphql",
        content=TYPENAME,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {READER}"},
    )


def test_the_limit_warns_once_a_minute_per_address(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    connections = ClientConnections(1, clock=lambda: now[0])
    assert connections.enter("10.0.0.1")
    assert connections.enter("10.0.0.2")
    for _ in range(50):
        assert not connections.enter("10.0.0.1")
    now[0] = 59.0
    assert not connections.enter("10.0.0.1")
    assert not connections.enter("10.0.0.2")
    now[0] = 61.0
    assert not connections.enter("10.0.0.1")
    connections.leave("10.0.0.1")
    assert connections.enter("10.0.0.1")
    named = [r.getMessage().split()[1] for r in caplog.records if r.levelno == logging.WARNING]
    assert named == ["'10.0.0.1'", "'10.0.0.2'", "'10.0.0.1'"]


async def test_no_limit_when_it_is_zero() -> None:
    with gateway(GATEWAY_MAX_CONNECTIONS_PER_CLIENT="0") as (url, app):
        assert app.connections is None
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await _typename(client)).status_code == 200
