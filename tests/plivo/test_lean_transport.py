"""LeanUpstream's conformance: framing, encodings, TLS, the keep-alive pool, timeouts, failures.

Most tests run against a raw asyncio server whose answers each test scripts, byte for byte, and
which counts connections, requests and closes; one reads a session through the whole gateway
from the simulator; the TLS tests use certificates from a throwaway CA (trustme).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trustme

from gateway import fixtures
from gateway.errors import UpstreamTimeout, UpstreamUnavailable
from gateway.plivo.client import DEFAULT_HEADERS
from gateway.plivo.lean import LeanUpstream
from gateway.plivo.transport import AiohttpUpstream, AnswerTooLarge, BrokenAnswer, UpstreamHTTP
from tests.conftest import Simulator, eventually, gateway_client, graphql, make_settings

BODY = b'{"api_id": "a1", "ok": true}'
PATH = "/v1/Account/MA0000/Verify/Session/x/"


def answer(body: bytes = BODY, *headers: str, status: str = "200 OK", length: bool = True) -> bytes:
    """An HTTP/1.1 answer with `body`, framed by Content-Length unless `length` is False."""
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join([*lines, "", ""])).encode() + body


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


@dataclass
class Request:
    """One request as the server read it, and the number of the connection it came on."""

    connection: int
    head: bytes
    body: bytes
    hang_up: bool = False  # set by a script: close the connection after writing its bytes

    def header(self, name: str) -> str | None:
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


# What the server does with a request: the bytes to write (None: close without answering).
Script = Callable[[Request], Awaitable[bytes | None]]


async def always(request: Request) -> bytes | None:
    return answer()


@dataclass
class Upstream:
    """A raw HTTP/1.1 server; `script` answers each request, `close_after` hangs up after it."""

    script: Script = always
    close_after: bool = False
    connections: int = 0
    closed: int = 0
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self._writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request = Request(number, head, b"")
                length = request.header("content-length")
                request.body = await reader.readexactly(int(length)) if length else b""
                self.requests.append(request)
                out = await self.script(request)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if self.close_after or request.hang_up:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed += 1
            writer.close()

    def write(self, connection: int, data: bytes) -> None:
        """Write `data` on a connection (numbered from 1) outside any answer."""
        self._writers[connection - 1].write(data)


@asynccontextmanager
async def serving(
    upstream: Upstream, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[Upstream]:
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    upstream.url = f"{'https' if tls else 'http'}://{host}:{port}"
    try:
        yield upstream
    finally:
        server.close()
        for writer in upstream._writers:
            writer.close()
        await server.wait_closed()


def lean(url: str, **options: object) -> LeanUpstream:
    settings: dict[str, object] = {
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
        "max_connections": 4,
        "headers": DEFAULT_HEADERS,
        "max_body": 1 << 20,
    }
    settings.update(options)
    return LeanUpstream(url, **settings)  # type: ignore[arg-type]


@asynccontextmanager
async def client(url: str, **options: object) -> AsyncIterator[LeanUpstream]:
    upstream = lean(url, **options)
    try:
        yield upstream
    finally:
        await upstream.close()


async def get(upstream: UpstreamHTTP, path: str = PATH) -> bytes:
    response = await upstream.send("GET", path, {"Authorization": "Basic eA=="}, "a session")
    assert response.status == 200
    return response.body


async def is_true(value: bool) -> bool:
    return value


# Through the gateway


async def test_a_session_is_read_through_the_gateway_from_the_simulator(
    simulator: Simulator,
) -> None:
    uuid = fixtures.DOCS_EXAMPLE_UUID
    settings = make_settings(simulator.url, PLIVO_HTTP_CLIENT="lean", GATEWAY_CACHE_URL="none")
    async with gateway_client(settings) as gateway:
        query = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"
        bodies = [await graphql(gateway, query, {"uuid": uuid}) for _ in range(3)]
    for body in bodies:
        assert body.get("errors") is None, body
        assert body["data"] == {"session": {"sessionUuid": uuid, "status": "EXPIRED"}}
    assert simulator.served(uuid) == 3


# Framing and encodings


async def test_a_chunked_body_is_read_whole() -> None:
    async def script(request: Request) -> bytes:
        head = answer(b"", "Transfer-Encoding: chunked", length=False)
        return head + chunked(BODY[:5], BODY[5:17], BODY[17:])

    async with serving(Upstream(script)) as server, client(server.url) as upstream:
        assert await get(upstream) == BODY
        assert await get(upstream) == BODY
    assert server.connections == 1  # the connection was kept for the second


async def test_a_body_delimited_by_the_close_is_read_and_the_connection_not_kept() -> None:
    async with (
        serving(Upstream(lambda r: _const(answer(BODY, length=False)), close_after=True)) as server,
        client(server.url) as upstream,
    ):
        assert await get(upstream) == BODY
        assert await get(upstream) == BODY
    assert server.connections == 2


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_body_is_decoded_and_gzip_was_asked_for(encoding: str) -> None:
    packed = gzip.compress(BODY) if encoding == "gzip" else zlib.compress(BODY)
    server = Upstream(lambda r: _const(answer(packed, f"Content-Encoding: {encoding}")))
    async with serving(server), client(server.url) as upstream:
        assert await get(upstream) == BODY
    assert server.requests[0].header("accept-encoding") == "gzip, deflate"


async def test_a_chunked_gzip_bomb_is_inflated_no_further_than_the_limit() -> None:
    bomb = gzip.compress(b" " * (64 << 20), compresslevel=9)
    pieces = [bomb[i : i + 4096] for i in range(0, len(bomb), 4096)]
    head = answer(b"", "Content-Encoding: gzip", "Transfer-Encoding: chunked", length=False)
    server = Upstream(lambda r: _const(head + chunked(*pieces)))
    async with serving(server), client(server.url, max_body=65536) as upstream:
        with pytest.raises(AnswerTooLarge) as raised:
            await get(upstream)
        await eventually(lambda: is_true(server.closed == 1))  # dropped, not pooled
    assert 65536 < raised.value.size <= 65537


async def test_invalid_gzip_is_an_unreadable_answer() -> None:
    server = Upstream(lambda r: _const(answer(b"not gzip at all", "Content-Encoding: gzip")))
    async with serving(server), client(server.url) as upstream:
        with pytest.raises(BrokenAnswer, match="not valid gzip"):
            await get(upstream)


async def test_interim_answers_are_skipped_and_retry_after_is_passed_on() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    final = answer(b'{"error": "slow down"}', "Retry-After: 7", status="429 Too Many Requests")
    server = Upstream(lambda r: _const(interim + final))
    async with serving(server), client(server.url) as upstream:
        response = await upstream.send("GET", PATH, {}, "a session")
    assert (response.status, response.retry_after) == (429, "7")
    assert response.body == b'{"error": "slow down"}'


async def test_what_is_not_http_is_an_unreadable_answer() -> None:
    server = Upstream(lambda r: _const(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"))
    async with serving(server), client(server.url) as upstream:
        with pytest.raises(BrokenAnswer, match="not HTTP"):
            await get(upstream)


async def test_a_protocol_upgrade_is_an_unreadable_answer() -> None:
    upgrade = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    server = Upstream(lambda r: _const(upgrade))
    async with serving(server), client(server.url) as upstream:
        with pytest.raises(BrokenAnswer, match="a protocol upgrade"):
            await get(upstream)


async def test_endless_headers_are_an_unreadable_answer() -> None:
    async def script(request: Request) -> bytes:
        request.hang_up = True
        writer = server._writers[request.connection - 1]
        writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        for _ in range(512):  # 32 MiB of one header's value, unless the client hangs up
            writer.write(b"a" * 65536)
            await writer.drain()
        return b"\r\n\r\n"

    server = Upstream(script)
    async with serving(server), client(server.url) as upstream:
        with pytest.raises(BrokenAnswer, match="headers are too large"):
            await get(upstream)
        await eventually(lambda: is_true(server.closed == 1))


async def test_broken_chunk_framing_is_an_unreadable_answer_and_its_connection_dropped() -> None:
    head = answer(b"", "Transfer-Encoding: chunked", length=False)
    server = Upstream(lambda r: _const(head + b"zz\r\nnot a chunk size\r\n"))
    async with serving(server), client(server.url) as upstream:
        with pytest.raises(BrokenAnswer, match="not HTTP"):
            await get(upstream)
        await eventually(lambda: is_true(server.closed == 1))


async def test_bytes_after_a_whole_answer_keep_the_answer_but_not_the_connection() -> None:
    server = Upstream(lambda r: _const(answer() + b"HTTP/1.1 200 OK\r\n"))
    async with serving(server), client(server.url) as upstream:
        assert await get(upstream) == BODY
        assert await get(upstream) == BODY
    assert server.connections == 2


async def test_bytes_on_an_idle_connection_drop_it() -> None:
    server = Upstream()
    async with serving(server), client(server.url) as upstream:
        assert await get(upstream) == BODY
        assert upstream.idle_connections() == 1
        server.write(1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")  # unasked for
        await eventually(lambda: is_true(upstream.idle_connections() == 0))
        assert await get(upstream) == BODY
    assert [r.connection for r in server.requests] == [1, 2]


async def _mid_body(request: Request) -> bytes:
    request.hang_up = True
    return answer(BODY)[:-5]


async def _mid_chunk(request: Request) -> bytes:
    request.hang_up = True
    return answer(b"", "Transfer-Encoding: chunked", length=False) + b"5\r\nabc"


CHUNKED_HEAD = answer(b"", "Transfer-Encoding: chunked", length=False)
FAILURES: dict[str, tuple[Script, type[Exception]]] = {
    "not HTTP": (lambda r: _const(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), BrokenAnswer),
    "closed before answering": (lambda r: _const(None), UpstreamUnavailable),
    "closed mid-body": (_mid_body, UpstreamUnavailable),
    "closed mid-chunk": (_mid_chunk, UpstreamUnavailable),
    "broken chunk framing": (lambda r: _const(CHUNKED_HEAD + b"zz\r\nx\r\n"), BrokenAnswer),
    "length and chunked": (
        lambda r: _const(answer(b"", "Transfer-Encoding: chunked", "Content-Length: 5")),
        BrokenAnswer,
    ),
    "over the limit": (lambda r: _const(CHUNKED_HEAD + chunked(b" " * 5000)), AnswerTooLarge),
}


@pytest.mark.parametrize("client_kind", ["aiohttp", "lean"])
@pytest.mark.parametrize("failure", list(FAILURES))
async def test_each_failure_maps_to_the_error_aiohttp_maps_it_to(
    failure: str, client_kind: str
) -> None:
    script, expected = FAILURES[failure]
    server = Upstream(script)
    async with serving(server):
        kind = AiohttpUpstream if client_kind == "aiohttp" else LeanUpstream
        upstream = kind(
            server.url,
            connect_timeout=2,
            read_timeout=5,
            max_connections=4,
            headers={},
            max_body=4096,
        )
        try:
            with pytest.raises(expected) as raised:
                await get(upstream)
        finally:
            await upstream.close()
    assert type(raised.value) is expected


# The request


async def test_the_request_carries_host_headers_query_and_json_body() -> None:
    server = Upstream()
    async with serving(server), client(server.url + "/plivo/") as upstream:
        await upstream.send(
            "GET",
            PATH,
            {"Authorization": "Basic eA==", "Accept": "text/plain"},
            "a list",
            params={"recipient": "+1 415", "limit": "5"},
        )
        await upstream.send("POST", PATH, {}, "a start", json={"recipient": "+14155550100"})
    listed, posted = server.requests
    assert listed.head.startswith(
        f"GET /plivo{PATH}?recipient=%2B1%20415&limit=5 HTTP/1.1".encode()
    )
    assert listed.header("host") == server.url.removeprefix("http://")
    assert listed.header("authorization") == "Basic eA=="
    assert listed.header("accept") == "text/plain"  # the caller's over the default, once
    assert listed.head.lower().count(b"accept:") == 1
    assert listed.header("user-agent") == DEFAULT_HEADERS["User-Agent"]
    assert listed.header("content-length") is None
    assert posted.head.startswith(f"POST /plivo{PATH} HTTP/1.1".encode())
    assert posted.header("content-type") == "application/json"
    assert json.loads(posted.body) == {"recipient": "+14155550100"}


async def test_a_header_with_a_line_break_is_refused_without_naming_its_value() -> None:
    server = Upstream()
    async with serving(server), client(server.url) as upstream:
        with pytest.raises(ValueError, match="forbidden character") as raised:
            await upstream.send("GET", PATH, {"X-Token": "secret\r\nX-Evil: 1"}, "a session")
    assert "secret" not in str(raised.value)
    assert server.requests == []


# The keep-alive pool


async def test_an_idle_connection_the_server_closed_is_dropped_before_it_is_used() -> None:
    server = Upstream(close_after=True)  # keep-alive promised, then the server hangs up
    async with serving(server), client(server.url) as upstream:
        assert await get(upstream) == BODY
        await eventually(lambda: is_true(upstream.idle_connections() == 0))
        # a POST is never sent twice: it succeeds only if the closed connection was dropped
        posted = await upstream.send("POST", PATH, {}, "a start", json={})
    assert posted.status == 200
    assert [r.connection for r in server.requests] == [1, 2]


async def test_a_get_on_a_connection_closed_as_it_was_reused_is_sent_again_on_a_new_one() -> None:
    async def script(request: Request) -> bytes | None:
        first = next(r for r in server.requests if r.connection == request.connection)
        return answer() if first is request else None  # one answer per connection, then close

    server = Upstream(script)
    async with serving(server), client(server.url) as upstream:
        assert await get(upstream) == BODY
        assert await get(upstream) == BODY  # no error reaches the caller
    assert [r.connection for r in server.requests] == [1, 1, 2]


async def test_a_post_on_a_connection_closed_as_it_was_reused_is_not_sent_again() -> None:
    async def script(request: Request) -> bytes | None:
        return answer() if len(server.requests) == 1 else None

    server = Upstream(script)
    async with serving(server), client(server.url) as upstream:
        await upstream.send("POST", PATH, {}, "a start", json={})
        with pytest.raises(UpstreamUnavailable):
            await upstream.send("POST", PATH, {}, "a start", json={})
    assert len(server.requests) == 2
    assert server.connections == 1


async def test_a_server_closing_mid_body_is_unavailable_and_its_connection_dropped() -> None:
    async def script(request: Request) -> bytes:
        if len(server.requests) == 1:
            request.hang_up = True
            return answer(BODY)[:-5]  # five bytes short, then the server hangs up
        return answer()

    server = Upstream(script)
    async with serving(server), client(server.url) as upstream:
        with pytest.raises(UpstreamUnavailable):
            await get(upstream)
        assert upstream.idle_connections() == 0
        assert await get(upstream) == BODY
    assert [r.connection for r in server.requests] == [1, 2]  # not retried after bytes came


async def test_connections_are_reused_last_in_first_out() -> None:
    both = asyncio.Event()

    async def script(request: Request) -> bytes:
        if len(server.requests) == 2:
            both.set()
        await both.wait()  # the first two are in flight together: two connections
        if len(server.requests) <= 2 and request.connection == 2:
            await eventually(lambda: is_true(len(done) == 1))  # connection 2 answers last
        return answer(b'{"connection": %d}' % request.connection)

    server = Upstream(script)
    done: list[bytes] = []

    async def one(upstream: LeanUpstream) -> None:
        done.append(await get(upstream))

    async with serving(server), client(server.url) as upstream:
        await asyncio.gather(one(upstream), one(upstream))
        assert await get(upstream) == b'{"connection": 2}'  # the last one put back


async def test_a_full_pool_makes_a_request_wait_for_a_connection() -> None:
    release = asyncio.Event()

    async def script(request: Request) -> bytes:
        if len(server.requests) == 1:
            await release.wait()
        return answer()

    server = Upstream(script)
    async with serving(server), client(server.url, max_connections=1) as upstream:
        first = asyncio.create_task(get(upstream))
        await eventually(lambda: is_true(len(server.requests) == 1))
        second = asyncio.create_task(get(upstream))
        await eventually(lambda: is_true(upstream.waiting() == 1))
        release.set()
        assert await first == BODY
        assert await second == BODY
    assert server.connections == 1  # handed over, never a second connection


async def test_a_slot_freed_by_a_dropped_connection_goes_to_the_waiting_request() -> None:
    release = asyncio.Event()

    async def script(request: Request) -> bytes:
        if len(server.requests) == 1:
            await release.wait()
            return answer(BODY, "Connection: close")  # this connection is not kept
        return answer()

    server = Upstream(script)
    async with serving(server), client(server.url, max_connections=1) as upstream:
        first = asyncio.create_task(get(upstream))
        await eventually(lambda: is_true(len(server.requests) == 1))
        second = asyncio.create_task(get(upstream))
        await eventually(lambda: is_true(upstream.waiting() == 1))
        release.set()
        assert await first == BODY
        assert await second == BODY  # on a connection of its own, opened in the freed slot
    assert [r.connection for r in server.requests] == [1, 2]


async def test_a_full_pool_times_out_as_a_connect_timeout() -> None:
    release = asyncio.Event()

    async def script(request: Request) -> bytes:
        await release.wait()
        return answer()

    server = Upstream(script)
    async with (
        serving(server),
        client(server.url, max_connections=1, connect_timeout=0.2) as upstream,
    ):
        first = asyncio.create_task(get(upstream))
        await eventually(lambda: is_true(len(server.requests) == 1))
        with pytest.raises(UpstreamTimeout):
            await get(upstream)
        release.set()
        assert await first == BODY
        assert await get(upstream) == BODY  # the timed-out wait left the pool whole
    assert server.connections == 1


async def test_a_cancelled_request_closes_its_connection() -> None:
    release = asyncio.Event()

    async def script(request: Request) -> bytes:
        if len(server.requests) == 1:
            await release.wait()
            return answer(b'{"late": true}')
        return answer()

    server = Upstream(script)
    async with serving(server), client(server.url) as upstream:
        first = asyncio.create_task(get(upstream))
        await eventually(lambda: is_true(len(server.requests) == 1))
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        second = asyncio.create_task(get(upstream))
        await eventually(lambda: is_true(len(server.requests) == 2 or second.done()))
        release.set()  # on the first connection, the late answer to the cancelled request
        assert await second == BODY  # never read as the next request's answer
        await eventually(lambda: is_true(server.closed == 1))
    assert [r.connection for r in server.requests] == [1, 2]


async def test_close_closes_every_connection() -> None:
    server = Upstream()
    async with serving(server):
        upstream = lean(server.url)
        await asyncio.gather(*(get(upstream) for _ in range(3)))
        opened = server.connections
        await upstream.close()
        await eventually(lambda: is_true(server.closed == opened))
        with pytest.raises(UpstreamUnavailable):
            await get(upstream)


# Timeouts and failures


async def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    never = asyncio.Event()

    async def script(request: Request) -> bytes:
        await never.wait()
        return b""

    server = Upstream(script)
    async with serving(server), client(server.url, read_timeout=0.2) as upstream:
        with pytest.raises(UpstreamTimeout):
            await get(upstream)
        never.set()  # the server reads on, and sees the connection closed: dropped, not pooled
        await eventually(lambda: is_true(server.closed == 1))


async def test_a_refused_connection_is_unavailable() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with client(f"http://127.0.0.1:{port}") as upstream:
        with pytest.raises(UpstreamUnavailable, match="ConnectionRefusedError"):
            await get(upstream)


# TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_tls_with_a_trusted_certificate_for_the_host_is_read(ca: trustme.CA) -> None:
    seen: list[str | None] = []

    def named(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        seen.append(name)

    tls = server_context(ca, "localhost")
    tls.sni_callback = named
    server = Upstream()
    async with (
        serving(server, tls, host="localhost"),
        client(server.url, ssl_context=trusting(ca)) as upstream,
    ):
        assert await get(upstream) == BODY
        assert await get(upstream) == BODY
    assert seen == ["localhost"]  # SNI named the host; one handshake, then kept alive
    assert server.connections == 1


async def test_tls_with_a_certificate_for_another_host_is_refused(ca: trustme.CA) -> None:
    server = Upstream()
    async with (
        serving(server, server_context(ca, "api.plivo.test"), host="localhost"),
        client(server.url, ssl_context=trusting(ca)) as upstream,
    ):
        with pytest.raises(UpstreamUnavailable, match="SSLCertVerificationError"):
            await get(upstream)
    assert server.requests == []


async def test_tls_from_an_untrusted_authority_is_refused_by_default(ca: trustme.CA) -> None:
    server = Upstream()
    async with (
        serving(server, server_context(ca, "localhost"), host="localhost"),
        client(server.url) as upstream,  # the system's roots: the test CA is not among them
    ):
        with pytest.raises(UpstreamUnavailable, match="SSLCertVerificationError"):
            await get(upstream)
    assert server.requests == []


async def _const(value: bytes | None) -> bytes | None:
    return value
