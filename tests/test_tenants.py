"""Accounts kept apart upstream: a slow account holds its share of the bulkhead, no more."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import fixtures
from gateway.plivo.bulkhead import Bulkhead, CredentialSlots
from tests.conftest import eventually, gateway_client, graphql, make_settings
from tests.servers import serve_in_thread

QUERY = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"
SLOW_ID, SLOW_TOKEN = "MASLOWACCOUNT0000001", "slow-account-token"
UUID = fixtures.DOCS_EXAMPLE_UUID


class FakePlivo:
    """Answers every session GET with the docs example; holds one account's until released.

    Counts the requests in flight per account, and the most at once.
    """

    def __init__(self, slow: str) -> None:
        self.slow = slow
        self.released = False
        self._gate: asyncio.Event | None = None  # of the server's loop, in its thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        template = fixtures.load("get-docs-example")
        assert isinstance(template, dict)
        self.template = template

    async def _held(self) -> None:
        if self._gate is None:
            self._gate, self._loop = asyncio.Event(), asyncio.get_running_loop()
        if not self.released:
            await self._gate.wait()

    def release(self) -> None:
        """Let the slow account's requests be answered (from the test's thread)."""
        self.released = True
        if self._loop is not None and self._gate is not None:
            self._loop.call_soon_threadsafe(self._gate.set)

    def app(self) -> Starlette:
        path = "/v1/Account/{auth_id}/Verify/Session/{session_uuid}/"
        return Starlette(routes=[Route(path, self.get_session)])

    async def get_session(self, request: Request) -> Response:
        account = request.path_params["auth_id"]
        self.in_flight[account] += 1
        self.peak[account] = max(self.peak[account], self.in_flight[account])
        try:
            if account == self.slow:
                await self._held()
            body = {**self.template, "session_uuid": request.path_params["session_uuid"]}
            return JSONResponse(body)
        finally:
            self.in_flight[account] -= 1
            self.served[account] += 1


async def lookup(
    gateway: httpx.AsyncClient, uuid: str, headers: dict[str, str] | None = None
) -> dict[str, object]:
    payload = {"query": QUERY, "variables": {"uuid": uuid}}
    response = await gateway.post("/graphql", json=payload, headers=headers or {})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def uuid_of(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


async def test_a_slow_account_fills_its_share_and_another_accounts_lookup_goes_through() -> None:
    upstream = FakePlivo(slow=SLOW_ID)
    with serve_in_thread(upstream.app()) as url:
        settings = make_settings(
            url,
            PLIVO_MAX_CONCURRENCY=4,
            PLIVO_CREDENTIAL_SHARE=0.5,  # 2 slots for any one credential
            PLIVO_READ_TIMEOUT=60,
            PLIVO_DEADLINE=60,
            PLIVO_RETRY_ATTEMPTS=1,
            GATEWAY_CACHE_URL="none",
        )
        slow_caller = {"X-Plivo-Auth-Id": SLOW_ID, "X-Plivo-Auth-Token": SLOW_TOKEN}
        async with gateway_client(settings) as gateway:
            held = [asyncio.create_task(lookup(gateway, uuid_of(n), slow_caller)) for n in range(5)]
            try:
                await eventually(lambda: _true(upstream.in_flight[SLOW_ID] >= 2))
                # The slow account's other three lookups wait in the gateway for its share,
                # holding no slot: the configured account's cold lookup goes straight through.
                other = await asyncio.wait_for(graphql(gateway, QUERY, {"uuid": UUID}), 20)
                assert other.get("errors") is None, other
                assert other["data"] == {"session": {"sessionUuid": UUID, "status": "EXPIRED"}}
                assert upstream.in_flight[SLOW_ID] == 2  # still held, still its whole share
                assert upstream.served[SLOW_ID] == 0
            finally:
                upstream.release()
            bodies = await asyncio.gather(*held)
    assert all(body.get("errors") is None for body in bodies), bodies
    assert upstream.peak[SLOW_ID] == 2
    assert upstream.served[SLOW_ID] == 5


async def test_a_caller_alternating_tokens_of_one_account_holds_only_its_share() -> None:
    # Each token is a credential of its own (its own cache, breaker), but the slots go by the
    # account: Plivo answers an account at its pace, whatever token asks.
    upstream = FakePlivo(slow=SLOW_ID)
    with serve_in_thread(upstream.app()) as url:
        settings = make_settings(
            url,
            PLIVO_MAX_CONCURRENCY=4,
            PLIVO_CREDENTIAL_SHARE=0.5,
            PLIVO_READ_TIMEOUT=60,
            PLIVO_DEADLINE=60,
            PLIVO_RETRY_ATTEMPTS=1,
            GATEWAY_CACHE_URL="none",
        )
        tokens = [f"{SLOW_TOKEN}-{n}" for n in range(2)]
        async with gateway_client(settings) as gateway:
            held = [
                asyncio.create_task(
                    lookup(
                        gateway,
                        uuid_of(n),
                        {"X-Plivo-Auth-Id": SLOW_ID, "X-Plivo-Auth-Token": tokens[n % 2]},
                    )
                )
                for n in range(6)
            ]
            try:
                await eventually(lambda: _true(upstream.in_flight[SLOW_ID] >= 2))
                other = await asyncio.wait_for(graphql(gateway, QUERY, {"uuid": UUID}), 20)
                assert other["data"] == {"session": {"sessionUuid": UUID, "status": "EXPIRED"}}
                assert upstream.in_flight[SLOW_ID] == 2  # two tokens, one account: one share
            finally:
                upstream.release()
            await asyncio.gather(*held)
    assert upstream.peak[SLOW_ID] == 2


@pytest.mark.parametrize(
    ("total", "share", "each"),
    [(128, 0.5, 64), (10, 0.3, 3), (3, 0.5, 2), (4, 0.1, 1), (4, 1.0, 4), (7, 0.999, 7)],
)
def test_a_credentials_share_is_rounded_up_and_at_least_one(
    total: int, share: float, each: int
) -> None:
    assert Bulkhead(total, share).per_credential == each


async def _enter(slots: CredentialSlots) -> None:
    await slots.__aenter__()


async def _exit(slots: CredentialSlots) -> None:
    await slots.__aexit__(None, None, None)


async def is_waiting(task: asyncio.Task[None]) -> bool:
    """Still blocked after the loop ran everything that was ready (no clock involved)."""
    for _ in range(5):
        await asyncio.sleep(0)
    return not task.done()


async def test_one_credential_never_holds_more_than_its_share() -> None:
    bulkhead = Bulkhead(4, 0.5)
    one, two = bulkhead.for_credential(), bulkhead.for_credential()
    await _enter(one)
    await _enter(one)
    third = asyncio.create_task(_enter(one))
    assert await is_waiting(third)
    await _enter(two)  # another credential is not kept waiting by the first one's queue
    await _exit(one)
    await third  # the first credential's own slot freed: its waiting request goes in
    await _exit(one)
    await _exit(one)
    await _exit(two)


async def test_every_credential_together_never_holds_more_than_the_whole() -> None:
    bulkhead = Bulkhead(4, 0.5)
    one, two, three = (bulkhead.for_credential() for _ in range(3))
    for slots in (one, one, two, two):
        await _enter(slots)
    waiting = asyncio.create_task(_enter(three))
    assert await is_waiting(waiting)
    await _exit(two)
    await waiting
    await _exit(three)


async def test_a_request_cancelled_while_waiting_for_the_whole_gives_its_share_back() -> None:
    bulkhead = Bulkhead(2, 0.5)  # one slot per credential, two in all
    one, two, three = (bulkhead.for_credential() for _ in range(3))
    await _enter(one)
    await _enter(two)
    waiting = asyncio.create_task(_enter(three))
    assert await is_waiting(waiting)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await _exit(one)
    again = asyncio.create_task(_enter(three))
    assert not await is_waiting(again)  # its one slot was given back: else it waits forever
    await again


async def _true(value: bool) -> bool:
    return value
