"""Each response written to the socket once: `JoinedWrites` and the protocol `serve` runs."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from gateway.web.protocol import JoinedWrites, JoinedWritesProtocol
from tests.servers import serve_in_thread


class Recorded:
    """A transport that records what reaches it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.buffered = 0
        self.extra = {"peername": ("127.0.0.1", 1)}

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def write_eof(self) -> None:
        self.writes.append(b"<eof>")

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


async def next_turn() -> None:
    """Let the loop run what was scheduled with call_soon."""
    await asyncio.sleep(0)


async def test_the_writes_of_one_loop_turn_reach_the_transport_as_one() -> None:
    recorded = Recorded()
    joined = JoinedWrites(recorded, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    joined.write(b"")  # nothing to keep
    joined.write(bytearray(b"{}"))
    assert recorded.writes == []
    assert joined.get_write_buffer_size() == 40
    await next_turn()
    assert recorded.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    joined.writelines([b"a", b"b"])  # a later turn: its own write
    await next_turn()
    assert recorded.writes[1:] == [b"ab"]
    assert joined.get_write_buffer_size() == 0


async def test_close_and_eof_write_what_is_kept_first() -> None:
    recorded = Recorded()
    joined = JoinedWrites(recorded, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.write(b"head")
    joined.write(b"body")
    joined.close()
    assert recorded.writes == [b"headbody"]
    assert recorded.closed
    await next_turn()  # the flush scheduled for the turn finds nothing more
    assert recorded.writes == [b"headbody"]

    recorded = Recorded()
    joined = JoinedWrites(recorded, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.write(b"last")
    joined.write_eof()
    assert recorded.writes == [b"last", b"<eof>"]


async def test_nothing_is_written_to_a_closing_transport() -> None:
    recorded = Recorded()
    joined = JoinedWrites(recorded, asyncio.get_running_loop())  # type: ignore[arg-type]
    joined.write(b"late")
    recorded.closed = True  # the peer went away, say
    await next_turn()
    assert recorded.writes == []


async def test_every_other_call_is_the_transports() -> None:
    recorded = Recorded()
    joined = JoinedWrites(recorded, asyncio.get_running_loop())  # type: ignore[arg-type]
    assert joined.get_extra_info("peername") == ("127.0.0.1", 1)
    recorded.buffered = 7
    joined.write(b"abc")
    assert joined.get_write_buffer_size() == 10
    assert not joined.is_closing()


def test_serve_and_the_demo_run_the_joined_writes_protocol() -> None:
    from gateway import cli
    from gateway.config import Settings

    settings = Settings(plivo_auth_id="MAODZKMDFJMJU3MTEYNG", plivo_auth_token="tok")
    options = cli._uvicorn_options(settings, "127.0.0.1", 1)
    assert options["http"] is JoinedWritesProtocol
    assert options["server_header"] is False  # nothing to fingerprint the server by
    demo = cli._demo_server(lambda *args: None, settings).config  # type: ignore[arg-type]
    assert demo.http is JoinedWritesProtocol
    assert demo.server_header is False


async def streamed(scope: Scope, receive: Receive, send: Send) -> None:
    """An app answering in parts: the start, then `parts` bodies, over several loop turns."""
    if scope["type"] != "http":
        return
    parts = int(scope["query_string"] or b"3")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for index in range(parts):
        await asyncio.sleep(0)
        more = index < parts - 1
        await send({"type": "http.response.body", "body": b"x" * 70_000, "more_body": more})


def exchange(port: int, request: bytes, *, until_close: bool = False) -> bytes:
    """Send `request` on a new connection; read a whole response (or until the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while True:
            chunk = sock.recv(65_536)
            if not chunk:
                return received
            received += chunk
            if not until_close and received.endswith(b"0\r\n\r\n"):
                return received


@pytest.mark.parametrize("parts", [1, 3, 40])
def test_a_streamed_chunked_response_arrives_whole_in_order(parts: int) -> None:
    """Bodies over several turns and past the transport's buffer limits (flow control)."""
    with serve_in_thread(streamed) as url:
        port = int(url.rsplit(":", 1)[1])
        request = f"GET /?{parts} HTTP/1.1\r\nhost: x\r\n\r\n".encode()
        response = exchange(port, request)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head
    chunks = body.split(b"\r\n")
    assert chunks.count(b"x" * 70_000) == parts
    assert body.endswith(b"0\r\n\r\n")


def test_connection_close_sends_the_whole_response_before_closing() -> None:
    with serve_in_thread(streamed) as url:
        port = int(url.rsplit(":", 1)[1])
        request = b"GET /?2 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        response = exchange(port, request, until_close=True)
    assert response.count(b"x" * 70_000) == 2
    assert response.endswith(b"0\r\n\r\n")


async def at_once(scope: Scope, receive: Receive, send: Send) -> None:
    """An app answering whole at once, as a response-cache hit does."""
    if scope["type"] != "http":
        return
    body = b'{"ok":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_a_client_that_half_closes_after_its_request_gets_the_answer() -> None:
    """`shutdown(SHUT_WR)` after the request (socat does it): the transport closes once the
    loop reads the end of stream, so the answer must not wait for the end of the loop turn."""
    answered = 0
    with serve_in_thread(at_once) as url:
        port = int(url.rsplit(":", 1)[1])
        for _ in range(30):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                sock.shutdown(socket.SHUT_WR)
                received = b""
                while chunk := sock.recv(65_536):
                    received += chunk
            answered += received.startswith(b"HTTP/1.1 200") and received.endswith(b'{"ok":true}')
    assert answered == 30


def test_pipelined_requests_are_answered_whole_and_in_order() -> None:
    """Requests sent back to back on one connection: each answer framed, none joined wrongly."""
    paths = [f"/{index}" for index in range(20)]

    async def echo_path(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = scope["path"].encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    with serve_in_thread(echo_path) as url:
        port = int(url.rsplit(":", 1)[1])
        requests = b"".join(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode() for path in paths)
        last = b"GET /last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        received = exchange(port, requests + last, until_close=True)
    bodies = []
    rest = received
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        bodies.append(rest[:length].decode())
        rest = rest[length:]
    assert bodies == [*paths, "/last"]
