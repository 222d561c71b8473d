"""A hostile or broken upstream cannot make the gateway hold a huge answer (every HTTP client).

The fake upstream here is a raw asyncio server: it writes what a well-behaved server never
would (200 MB bodies, a Content-Length that lies, a gzip bomb) and counts what it managed to
send before the gateway closed the connection.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from gateway import fixtures
from gateway.plivo.client import DEFAULT_HEADERS, create_http_client
from gateway.plivo.lean import LeanUpstream
from gateway.plivo.transport import (
    AiohttpUpstream,
    AnswerTooLarge,
    BrokenAnswer,
    HttpxUpstream,
    UpstreamHTTP,
)
from tests.conftest import eventually, gateway_client, graphql, make_settings

UUID = fixtures.DOCS_EXAMPLE_UUID
QUERY = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"
MIB = 1 << 20
HUGE = 200 * MIB
FEW_MIB = 32 * MIB  # what loopback socket buffers can swallow before the writer notices
CHUNK = b" " * 65536
CLIENTS = ["aiohttp", "httpx", "lean"]


@dataclass
class Hostile:
    """Answers every request with `head` and then `body` bytes from `chunks()`, counting them."""

    head: bytes
    chunks: Callable[[], list[bytes] | None] = lambda: None
    chunked: bool = False
    total: int = HUGE
    requests: int = 0
    sent: int = 0
    closed: int = 0
    url: str = ""
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                writer.write(self.head)
                await self._body(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed += 1
            writer.close()

    async def _body(self, writer: asyncio.StreamWriter) -> None:
        given = self.chunks()
        if given is not None:  # a finite body, then the next request
            for piece in given:
                writer.write(piece)
            await writer.drain()
            return
        written = 0
        while written < self.total:
            piece = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if self.chunked else CHUNK
            writer.write(piece)
            await writer.drain()  # raises once the gateway has closed the connection
            written += len(CHUNK)
            self.sent = written
        raise ConnectionResetError("sent everything: the gateway never hung up")


@asynccontextmanager
async def hostile(server: Hostile) -> AsyncIterator[Hostile]:
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    try:
        yield server
    finally:
        listening.close()
        for writer in server._writers:
            writer.close()
        await listening.wait_closed()


def status_line(*headers: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: application/json", *headers, "", ""]
    return "\r\n".join(lines).encode()


def session_body(size: int) -> bytes:
    """The docs example for UUID, padded with spaces to exactly `size` bytes."""
    body = json.dumps(fixtures.load("get-docs-example")).encode()
    return body + b" " * (size - len(body))


def error_code(body: dict[str, object]) -> object:
    errors = body.get("errors")
    assert isinstance(errors, list), body
    return errors[0]["extensions"]["code"]


HOSTILE_ANSWERS = {
    "chunked": lambda: Hostile(status_line("Transfer-Encoding: chunked"), chunked=True),
    "until-close": lambda: Hostile(status_line("Connection: close")),
    "declared-huge": lambda: Hostile(status_line(f"Content-Length: {HUGE}")),
    "content-length-lies": lambda: Hostile(status_line("Content-Length: 100")),
}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("answer", list(HOSTILE_ANSWERS))
async def test_a_200_mb_answer_is_an_upstream_error_and_its_connection_is_dropped(
    client: str, answer: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.plivo.transport")
    async with hostile(HOSTILE_ANSWERS[answer]()) as server:
        settings = make_settings(server.url, PLIVO_HTTP_CLIENT=client, GATEWAY_CACHE_URL="none")
        async with gateway_client(settings) as gateway:
            body = await graphql(gateway, QUERY, {"uuid": UUID})
            assert error_code(body) == "UPSTREAM_ERROR"
            assert body["data"] == {"session": None}
            # the server saw the connection closed, and had sent at most a few MiB by then
            await eventually(lambda: _true(server.closed >= 1))
        assert server.sent < FEW_MIB
        assert server.requests == 1  # not retried: the same answer would come back
    if answer != "content-length-lies":  # that one is too short to be read, not too long
        assert f"over the {MIB}-byte limit" in caplog.text
        assert "declared" in caplog.text if answer == "declared-huge" else "read" in caplog.text


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_an_answer_of_exactly_the_limit_is_read_and_one_byte_more_is_not(
    client: str, framing: str
) -> None:
    limit = 256 * 1024

    def answer(size: int) -> Hostile:
        body = session_body(size)
        if framing == "chunked":
            head = status_line("Transfer-Encoding: chunked")
            half = len(body) // 2
            pieces = [b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:])]
            return Hostile(head, lambda: [*pieces, b"0\r\n\r\n"])
        return Hostile(status_line(f"Content-Length: {len(body)}"), lambda: [body])

    for size, expected in ((limit, None), (limit + 1, "UPSTREAM_ERROR")):
        async with hostile(answer(size)) as server:
            settings = make_settings(
                server.url,
                PLIVO_HTTP_CLIENT=client,
                PLIVO_MAX_RESPONSE_BYTES=limit,
                GATEWAY_CACHE_URL="none",
            )
            async with gateway_client(settings) as gateway:
                body = await graphql(gateway, QUERY, {"uuid": UUID})
            if expected is None:
                assert body.get("errors") is None, body
                assert body["data"] == {"session": {"sessionUuid": UUID, "status": "EXPIRED"}}
            else:
                assert error_code(body) == expected


@pytest.mark.parametrize("client", CLIENTS)
async def test_oversized_answers_open_the_breaker_like_5xx(client: str) -> None:
    body = session_body(8192)
    answer = Hostile(status_line(f"Content-Length: {len(body)}"), lambda: [body])
    async with hostile(answer) as server:
        settings = make_settings(
            server.url,
            PLIVO_HTTP_CLIENT=client,
            PLIVO_MAX_RESPONSE_BYTES=4096,
            PLIVO_BREAKER_THRESHOLD=2,
            PLIVO_BREAKER_COOLDOWN=60,
            GATEWAY_CACHE_URL="none",
        )
        async with gateway_client(settings) as gateway:
            codes = [error_code(await graphql(gateway, QUERY, {"uuid": UUID})) for _ in range(3)]
            metrics = (await gateway.get("/metrics")).text
    assert codes == ["UPSTREAM_ERROR", "UPSTREAM_ERROR", "UPSTREAM_UNAVAILABLE"]
    assert server.requests == 2  # the third was refused by the open breaker
    assert 'status="too_large"' in metrics


def upstream(client: str, url: str, limit: int) -> UpstreamHTTP:
    if client == "aiohttp":
        return AiohttpUpstream(
            url,
            connect_timeout=2,
            read_timeout=5,
            max_connections=4,
            headers=DEFAULT_HEADERS,
            max_body=limit,
        )
    if client == "lean":
        return LeanUpstream(
            url,
            connect_timeout=2,
            read_timeout=5,
            max_connections=4,
            headers=DEFAULT_HEADERS,
            max_body=limit,
        )
    http = create_http_client(url, connect_timeout=2, read_timeout=5)
    return HttpxUpstream(http, max_body=limit)


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    return gzip.compress(b" " * HUGE, compresslevel=9)  # 200 MB of spaces in about 200 KB


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_gzip_bomb_is_inflated_no_further_than_the_limit(
    client: str, gzip_bomb: bytes
) -> None:
    head = status_line("Content-Encoding: gzip", f"Content-Length: {len(gzip_bomb)}")
    async with hostile(Hostile(head, lambda: [gzip_bomb])) as server:
        http = upstream(client, server.url, MIB)
        tracemalloc.start()
        try:
            with pytest.raises(AnswerTooLarge) as raised:
                await http.send("GET", "/bomb/", {}, "a bomb")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            await http.close()
    assert raised.value.size > MIB
    assert raised.value.size < 2 * MIB  # stopped soon after the limit
    assert peak < 24 * MIB  # the whole would be 200 MB; one unbounded 64 KB piece, 64 MB


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_compressed_answer_under_the_limit_is_decoded(client: str) -> None:
    body = session_body(300_000)
    packed = gzip.compress(body)
    head = status_line("Content-Encoding: gzip", f"Content-Length: {len(packed)}")
    async with hostile(Hostile(head, lambda: [packed])) as server:
        http = upstream(client, server.url, MIB)
        try:
            response = await http.send("GET", "/fine/", {}, "a session")
        finally:
            await http.close()
    assert response.body == body


@pytest.mark.parametrize("client", ["httpx", "lean"])
async def test_an_encoding_that_was_not_asked_for_is_unreadable(client: str) -> None:
    head = status_line("Content-Encoding: br", "Content-Length: 4")
    async with hostile(Hostile(head, lambda: [b"\x00\x01\x02\x03"])) as server:
        http = upstream(client, server.url, MIB)
        try:
            with pytest.raises(BrokenAnswer, match="content encoding 'br' was not asked for"):
                await http.send("GET", "/br/", {}, "a session")
        finally:
            await http.close()


async def test_httpx_mock_answers_are_capped_too() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=session_body(5000))

    http = create_http_client(
        "https://api.plivo.test",
        connect_timeout=1,
        read_timeout=1,
        transport=httpx.MockTransport(handler),
    )
    capped = HttpxUpstream(http, max_body=4096)
    try:
        with pytest.raises(AnswerTooLarge):
            await capped.send("GET", "/x/", {}, "a session")
    finally:
        await capped.close()


async def _true(value: bool) -> bool:
    return value
