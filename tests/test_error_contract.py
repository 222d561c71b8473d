"""Each row of the error table, driven through the app against the simulator's faults."""

from __future__ import annotations

import logging

import httpx
import pytest

from gateway import fixtures
from tests.conftest import AUTH_TOKEN, Simulator, gateway_client, graphql, make_settings
from tests.servers import free_port

UUID = fixtures.DOCS_EXAMPLE_UUID
QUERY = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"


def only_error(body: dict[str, object]) -> dict[str, object]:
    assert body["data"] == {"session": None}
    errors = body["errors"]
    assert isinstance(errors, list)
    assert len(errors) == 1
    error: dict[str, object] = errors[0]
    assert error["path"] == ["session"]
    return error


def assert_clean(error: dict[str, object]) -> None:
    """No credential and none of Plivo's error body in what the client sees."""
    text = str(error)
    assert AUTH_TOKEN not in text
    assert "simulated failure" not in text
    assert "api_id" not in text


async def test_404_becomes_null_without_error(
    gateway: httpx.AsyncClient, simulator: Simulator
) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    body = await graphql(gateway, QUERY, {"uuid": missing})
    assert body == {
        "data": {"session": None},
        "extensions": {"cache": {missing: {"status": "miss", "age": 0.0}}},
    }
    assert simulator.served(missing) == 1


@pytest.mark.parametrize(
    "uuid",
    [
        "not-a-uuid",
        "60ea68db-b123-46d9-9eb2-1201d516dbb",  # one digit short
        "60ea68dbb12346d99eb21201d516dbbd",  # no hyphens
        "{60ea68db-b123-46d9-9eb2-1201d516dbbd}",
        "../../../Call/60ea68db-b123-46d9-9eb2-1201d516dbbd",
        "60ea68db-b123-46d9-9eb2-1201d516dbbd/?x=1",
        "60ea68db-b123-46d9-9eb2-1201d516dbbd\n",
        "６０ea68db-b123-46d9-9eb2-1201d516dbbd",  # full-width digits
        "",
    ],
)
async def test_non_canonical_uuid_is_bad_user_input_without_upstream_call(
    gateway: httpx.AsyncClient, simulator: Simulator, uuid: str
) -> None:
    body = await graphql(gateway, QUERY, {"uuid": uuid})
    error = only_error(body)
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    if uuid:
        assert uuid not in str(error["message"])
    assert simulator.served() == 0


@pytest.mark.parametrize("status", [400, 405, 409, 422])
async def test_other_4xx_is_upstream_rejected_with_status_and_not_retried(
    gateway: httpx.AsyncClient, simulator: Simulator, status: int
) -> None:
    simulator.queue_fault(str(status))
    error = only_error(await graphql(gateway, QUERY, {"uuid": UUID}))
    assert error["extensions"] == {"code": "UPSTREAM_REJECTED", "upstreamStatus": status}
    assert UUID in str(error["message"])
    assert_clean(error)
    assert simulator.served(UUID) == 1


@pytest.mark.parametrize(
    ("status", "code"), [(401, "UPSTREAM_UNAUTHENTICATED"), (403, "UPSTREAM_FORBIDDEN")]
)
async def test_401_and_403_name_the_refused_credential(
    gateway: httpx.AsyncClient, simulator: Simulator, status: int, code: str
) -> None:
    simulator.queue_fault(str(status))
    error = only_error(await graphql(gateway, QUERY, {"uuid": UUID}))
    assert error["extensions"] == {"code": code, "upstreamStatus": status}
    assert_clean(error)
    assert simulator.served(UUID) == 1


async def test_a_wrong_token_is_upstream_unauthenticated(simulator: Simulator) -> None:
    settings = make_settings(simulator.url, PLIVO_AUTH_TOKEN="wrong-token-value")
    async with gateway_client(settings) as client:
        error = only_error(await graphql(client, QUERY, {"uuid": UUID}))
    assert error["extensions"] == {"code": "UPSTREAM_UNAUTHENTICATED", "upstreamStatus": 401}
    assert "wrong-token-value" not in str(error)


async def test_429_past_the_deadline_is_rate_limited_without_retry(
    gateway: httpx.AsyncClient, simulator: Simulator
) -> None:
    simulator.queue_fault("429", retry_after="30")
    error = only_error(await graphql(gateway, QUERY, {"uuid": UUID}))
    assert error["extensions"] == {"code": "RATE_LIMITED", "retryAfter": 30.0}
    assert_clean(error)
    assert simulator.served(UUID) == 1


async def test_429_within_the_deadline_is_retried_after_retry_after(
    gateway: httpx.AsyncClient, simulator: Simulator
) -> None:
    simulator.queue_fault("429", retry_after="0")
    body = await graphql(gateway, QUERY, {"uuid": UUID})
    assert "errors" not in body
    assert simulator.served(UUID) == 2


async def test_500_is_upstream_error_and_not_retried(
    gateway: httpx.AsyncClient, simulator: Simulator
) -> None:
    simulator.queue_fault("500")
    error = only_error(await graphql(gateway, QUERY, {"uuid": UUID}))
    assert error["extensions"] == {"code": "UPSTREAM_ERROR", "upstreamStatus": 500}
    assert_clean(error)
    assert simulator.served(UUID) == 1


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_502_503_504_are_retried_then_upstream_error(
    gateway: httpx.AsyncClient, simulator: Simulator, status: int
) -> None:
    simulator.configure(fault=str(status))
    error = only_error(await graphql(gateway, QUERY, {"uuid": UUID}))
    assert error["extensions"] == {"code": "UPSTREAM_ERROR", "upstreamStatus": status}
    assert_clean(error)
    assert simulator.served(UUID) == 3  # PLIVO_RETRY_ATTEMPTS


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_a_passing_5xx_is_absorbed_by_a_retry(
    gateway: httpx.AsyncClient, simulator: Simulator, status: int
) -> None:
    simulator.queue_fault(str(status))
    body = await graphql(gateway, QUERY, {"uuid": UUID})
    assert "errors" not in body
    assert simulator.served(UUID) == 2


async def test_unreadable_body_is_upstream_error(
    gateway: httpx.AsyncClient, simulator: Simulator
) -> None:
    simulator.queue_fault("garbage")
    error = only_error(await graphql(gateway, QUERY, {"uuid": UUID}))
    assert error["extensions"] == {"code": "UPSTREAM_ERROR"}
    assert "html" not in str(error).lower()
    assert simulator.served(UUID) == 1


async def test_slow_answer_is_retried_then_upstream_timeout(simulator: Simulator) -> None:
    simulator.configure(fault="slow")
    settings = make_settings(simulator.url, PLIVO_READ_TIMEOUT="0.2")
    async with gateway_client(settings) as client:
        error = only_error(await graphql(client, QUERY, {"uuid": UUID}))
    assert error["extensions"] == {"code": "UPSTREAM_TIMEOUT"}
    assert simulator.served(UUID) == 3  # each attempt timed out
    simulator.configure(fault=None)


async def test_the_deadline_bounds_the_whole_call(simulator: Simulator) -> None:
    simulator.configure(latency_ms=3000)
    settings = make_settings(simulator.url, PLIVO_READ_TIMEOUT="10", PLIVO_DEADLINE="0.5")
    async with gateway_client(settings) as client:
        error = only_error(await graphql(client, QUERY, {"uuid": UUID}))
    assert error["extensions"] == {"code": "UPSTREAM_TIMEOUT"}
    assert "0.5 s deadline" in str(error["message"])


async def test_reset_connection_is_retried_then_upstream_unavailable(
    gateway: httpx.AsyncClient, simulator: Simulator
) -> None:
    simulator.configure(fault="reset")
    error = only_error(await graphql(gateway, QUERY, {"uuid": UUID}))
    assert error["extensions"] == {"code": "UPSTREAM_UNAVAILABLE"}


async def test_refused_connection_is_upstream_unavailable() -> None:
    settings = make_settings(f"http://127.0.0.1:{free_port()}")
    async with gateway_client(settings) as client:
        error = only_error(await graphql(client, QUERY, {"uuid": UUID}))
    assert error["extensions"] == {"code": "UPSTREAM_UNAVAILABLE"}


async def test_upstream_errors_are_logged_without_the_token(
    gateway: httpx.AsyncClient, simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.queue_fault("500")
    with caplog.at_level(logging.DEBUG):
        await graphql(gateway, QUERY, {"uuid": UUID})
    assert "UpstreamFailed" in caplog.text
    assert AUTH_TOKEN not in caplog.text
