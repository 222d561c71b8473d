"""PlivoClient's list, create and validate, ResilientClient's no-retry rule, and signatures."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from plivo.utils.signature_v3 import validate_v3_signature

from gateway import fixtures
from gateway.errors import UpstreamFailed, UpstreamRejected
from gateway.plivo.client import Credential, PlivoClient, create_http_client
from gateway.plivo.flow import ListFilter, StartParams, ValidationResult
from gateway.plivo.resilience import CircuitBreaker, NoObserver, ResilientClient, RetryPolicy
from gateway.plivo.signature import is_signed, signature_v2, signature_v3
from gateway.plivo.transport import HttpxUpstream
from tests.plivo.test_client import AUTH_ID, TOKEN, UUID, Handler, client_with

LIST_PATH = f"/v1/Account/{AUTH_ID}/Verify/Session/"


async def test_a_list_sends_the_filter_and_page_and_reads_the_meta() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=fixtures.load("list-go-sdk"))

    where = ListFilter(
        status="verified", recipient="919999999999", session_time__gte="2024-01-01 00:00:00"
    )
    page = await client_with(handler).list_sessions(where, limit=5, offset=10)
    assert seen[0].method == "GET"
    assert seen[0].url.path == LIST_PATH
    assert dict(seen[0].url.params) == {
        "status": "verified",
        "recipient": "919999999999",
        "session_time__gte": "2024-01-01 00:00:00",
        "limit": "5",
        "offset": "10",
    }
    body = fixtures.load("list-go-sdk")
    assert isinstance(body, dict)
    assert [s.session_uuid for s in page.sessions] == [s["session_uuid"] for s in body["sessions"]]
    assert page.offset == 10
    assert page.has_next == bool(body["meta"]["next"])


async def test_a_list_that_is_not_a_list_is_unreadable() -> None:
    client = client_with(lambda request: httpx.Response(200, json={"sessions": {"x": 1}}))
    with pytest.raises(UpstreamFailed, match="unreadable"):
        await client.list_sessions(ListFilter(), limit=20, offset=0)


async def test_a_start_posts_the_set_parameters_only_and_reads_the_uuid() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json=fixtures.load("create-go-sdk"))

    params = StartParams(recipient="+919999999999", channel="voice", code_length=6, locale="en")
    started = await client_with(handler).create_session(params)
    assert seen[0].method == "POST"
    assert seen[0].url.path == LIST_PATH
    assert json.loads(seen[0].content) == {
        "recipient": "+919999999999",
        "channel": "voice",
        "code_length": 6,
        "locale": "en",
    }
    created = fixtures.load("create-go-sdk")
    assert isinstance(created, dict)
    assert started.session_uuid == created["session_uuid"]


def test_the_code_of_a_start_never_shows_in_its_repr() -> None:
    assert "424242" not in repr(StartParams(recipient="1234567", otp="424242"))


def answering(status: int, body: object) -> Handler:
    return lambda request: httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            200,
            {"api_id": "a", "message": "session validated successfully."},
            ValidationResult.VERIFIED,
        ),
        (400, {"api_id": "a", "error": "Invalid OTP"}, ValidationResult.WRONG_CODE),
        (400, {"api_id": "a", "error": "session expired"}, ValidationResult.EXPIRED),
        (
            400,
            {"api_id": "a", "error": "maximum validation attempts exceeded"},
            ValidationResult.TOO_MANY_ATTEMPTS,
        ),
        (404, {"api_id": "a", "error": "not found"}, ValidationResult.NOT_FOUND),
    ],
)
async def test_a_validation_outcome_is_data(
    status: int, body: object, expected: ValidationResult
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    validation = await client_with(handler).validate_session(UUID.upper(), "123456")
    assert validation.result is expected
    assert validation.session_uuid == UUID
    assert seen[0].method == "POST"
    assert seen[0].url.path.endswith(f"/Session/{UUID}/")
    assert json.loads(seen[0].content) == {"otp": "123456"}


async def test_a_validation_failure_that_names_no_outcome_stays_an_error() -> None:
    client = client_with(answering(400, {"api_id": "a", "error": "session already validated"}))
    with pytest.raises(UpstreamRejected) as caught:
        await client.validate_session(UUID, "123456")
    assert caught.value.status_code == 400
    failing = client_with(answering(500, {"error": "boom"}))
    with pytest.raises(UpstreamFailed):
        await failing.validate_session(UUID, "123456")


def resilient(handler: Handler) -> ResilientClient:
    http = create_http_client(
        "https://api.plivo.test",
        connect_timeout=1,
        read_timeout=1,
        transport=httpx.MockTransport(handler),
    )
    return ResilientClient(
        PlivoClient(HttpxUpstream(http), Credential(AUTH_ID, TOKEN)),
        policy=RetryPolicy(attempts=3, deadline=5.0, initial_backoff=0.001, max_backoff=0.002),
        breaker=CircuitBreaker("t", 5, 10.0, NoObserver()),
        bulkhead=asyncio.Semaphore(10),
        observer=NoObserver(),
    )


async def test_starts_and_validations_are_sent_once_but_lists_are_retried() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(503, json={"error": "unavailable"})

    client = resilient(handler)
    with pytest.raises(UpstreamFailed):
        await client.create_session(StartParams(recipient="1234567"))
    assert calls == ["POST"]
    with pytest.raises(UpstreamFailed):
        await client.validate_session(UUID, "123456")
    assert calls == ["POST", "POST"]
    with pytest.raises(UpstreamFailed):
        await client.list_sessions(ListFilter(), limit=20, offset=0)
    assert calls == ["POST", "POST", "GET", "GET", "GET"]


def test_v2_matches_plivos_published_vector() -> None:
    assert (
        signature_v2("https://answer.url", "12345", "my_auth_token")
        == "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="
    )


PARAMS = {
    "AttemptSequence": "1",
    "Channel": "sms",
    "SessionUUID": UUID,
    "SessionStatus": "in-progress",
}


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "url", ["https://gw.example/plivo/callbacks", "https://gw.example:8443/plivo/callbacks?b=2&a=1"]
)
@pytest.mark.parametrize("params", [PARAMS, {}])
def test_v3_agrees_with_plivos_own_sdk(method: str, url: str, params: dict[str, str]) -> None:
    ours = signature_v3(
        method, url, "31627761595286130198", TOKEN, {k: [v] for k, v in params.items()}
    )
    assert validate_v3_signature(method, url, "31627761595286130198", TOKEN, ours, dict(params))


def test_a_callback_is_signed_only_with_a_known_token_and_the_given_url() -> None:
    url = "https://gw.example/plivo/callbacks"
    params = {k: [v] for k, v in PARAMS.items()}
    v3 = signature_v3("POST", url, "n1", TOKEN, params)
    headers = {"x-plivo-signature-v3": f"other=,{v3}", "x-plivo-signature-v3-nonce": "n1"}
    assert is_signed("POST", url, headers, params, ["a-token", TOKEN])
    assert not is_signed("POST", url, headers, params, ["a-token"])
    assert not is_signed("POST", "https://evil.example/plivo/callbacks", headers, params, [TOKEN])
    tampered = {**params, "SessionStatus": ["expired"]}
    assert not is_signed("POST", url, headers, tampered, [TOKEN])
    v2 = {
        "x-plivo-signature-ma-v2": signature_v2(url, "n2", TOKEN),
        "x-plivo-signature-v2-nonce": "n2",
    }
    assert is_signed("POST", url, v2, params, [TOKEN])
    assert not is_signed("POST", url, {}, params, [TOKEN])
    assert not is_signed("POST", url, {"x-plivo-signature-v3": v3}, params, [TOKEN])  # no nonce


async def test_a_retry_is_paid_for_when_it_is_sent_after_retry_after() -> None:
    # Paid before the wait, a retry would count in a window Plivo has already left behind.
    sent: list[float] = []
    paid: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        if len(sent) == 1:
            return httpx.Response(429, headers={"Retry-After": "1"}, json={"error": "slow"})
        return httpx.Response(500, json={"error": "boom"})

    async def admit() -> bool:
        paid.append(time.monotonic())
        return len(paid) < 2  # the second retry is refused: the last error stands

    client = resilient(handler)
    client.admit_retry = admit
    with pytest.raises(UpstreamFailed):
        await client.list_sessions(ListFilter(), limit=20, offset=0)
    assert len(sent) == 2  # the first try and one paid retry; the refused one was not sent
    assert paid[0] >= sent[0] + 1  # paid once Retry-After had passed, as it was sent
