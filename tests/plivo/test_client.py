"""PlivoClient over httpx.MockTransport: the request it sends and every error mapping."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from gateway import __version__, fixtures
from gateway.errors import (
    InvalidSessionUuid,
    SessionNotFound,
    UpstreamFailed,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.plivo.client import Credential, PlivoClient, create_http_client, retry_after_seconds
from gateway.plivo.transport import HttpxUpstream

AUTH_ID = "MAXXXXXXXXXXXXXXXXXX"
TOKEN = "s3cret-token"
UUID = fixtures.DOCS_EXAMPLE_UUID
Handler = Callable[[httpx.Request], httpx.Response]


def client_with(handler: Handler) -> PlivoClient:
    http = create_http_client(
        "https://api.plivo.test",
        connect_timeout=1,
        read_timeout=1,
        transport=httpx.MockTransport(handler),
    )
    return PlivoClient(HttpxUpstream(http), Credential(AUTH_ID, TOKEN))


def docs_example(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=fixtures.load("get-docs-example"))


async def test_get_session_sends_basic_auth_accept_and_user_agent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return docs_example(request)

    session = await client_with(handler).get_session(UUID.upper())
    request = seen[0]
    assert request.method == "GET"
    assert str(request.url) == f"https://api.plivo.test/v1/Account/{AUTH_ID}/Verify/Session/{UUID}/"
    expected = base64.b64encode(f"{AUTH_ID}:{TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"].startswith(f"plivo-verify-gateway/{__version__} ")
    assert session.session_uuid == UUID


async def test_invalid_uuid_sends_nothing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent")

    with pytest.raises(InvalidSessionUuid):
        await client_with(handler).get_session("60ea68db/../x")


def test_credential_repr_hides_the_token() -> None:
    assert TOKEN not in repr(Credential(AUTH_ID, TOKEN))


def status_handler(status: int, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"api_id": "x", "error": f"plivo says {TOKEN}"}
        return httpx.Response(status, json=body, headers=headers)

    return handler


async def test_404_is_session_not_found() -> None:
    with pytest.raises(SessionNotFound):
        await client_with(status_handler(404)).get_session(UUID)


@pytest.mark.parametrize("status", [400, 401, 403, 405, 409, 422, 418])
async def test_other_4xx_are_rejected_with_their_status(status: int) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        await client_with(status_handler(status)).get_session(UUID)
    assert caught.value.status_code == status
    assert type(caught.value) is UpstreamRejected
    assert "plivo says" not in str(caught.value)
    assert caught.value.method == "GET"
    assert caught.value.path.endswith(f"/{UUID}/")


@pytest.mark.parametrize(
    ("header", "expected"), [("30", 30.0), (None, None), ("soon", None), ("", None)]
)
async def test_429_carries_retry_after(header: str | None, expected: float | None) -> None:
    headers = {"Retry-After": header} if header is not None else None
    with pytest.raises(UpstreamRateLimited) as caught:
        await client_with(status_handler(429, headers)).get_session(UUID)
    assert caught.value.retry_after == expected


def test_retry_after_reads_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:42 GMT", now=now) == 42.0
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
async def test_5xx_is_failed(status: int) -> None:
    with pytest.raises(UpstreamFailed) as caught:
        await client_with(status_handler(status)).get_session(UUID)
    assert caught.value.status_code == status


@pytest.mark.parametrize(
    "content",
    [
        b"<html>oops</html>",
        b"",
        b"[]",
        b'{"session_uuid": "60ea68db-b123-46d9-9eb2-1201d516dbbd"}',
        b"\xff\xfe\x00",
        b"[" * 100_000,
    ],
)
async def test_unreadable_body_is_failed(content: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=content)

    with pytest.raises(UpstreamFailed) as caught:
        await client_with(handler).get_session(UUID)
    assert "oops" not in str(caught.value)


async def test_a_body_for_another_session_is_refused() -> None:
    other = dict(fixtures.session_fixtures()["get-python-sdk"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps(other).encode())

    with pytest.raises(UpstreamFailed, match="another session"):
        await client_with(handler).get_session(UUID)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectTimeout("t"), UpstreamTimeout),
        (httpx.ReadTimeout("t"), UpstreamTimeout),
        (httpx.PoolTimeout("t"), UpstreamTimeout),
        (httpx.ConnectError("refused"), UpstreamUnavailable),
        (httpx.ReadError("reset"), UpstreamUnavailable),
        (httpx.RemoteProtocolError("dropped"), UpstreamUnavailable),
    ],
)
async def test_transport_errors_are_mapped(exc: Exception, expected: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(expected) as caught:
        await client_with(handler).get_session(UUID)
    assert caught.value.__cause__ is exc
