"""Code guessing and recipients at rest: validation limits, ended sessions, cost, phone numbers.

What reaches Plivo is counted by a transport between the gateway and the simulator (the
simulator's own stats count session reads and creates, not validations).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aioredis

from gateway.errors import Throttled
from gateway.operations.principals import key_digest
from gateway.plivo.flow import MESSAGES, ListFilter, Validation, ValidationResult
from gateway.simulator import SimulatorSettings, create_simulator
from gateway.verify.flow import FlowPolicy, VerificationService
from gateway.verify.sessions import CachePolicy
from tests.conftest import (
    AUTH_ID,
    AUTH_TOKEN,
    Simulator,
    eventually,
    gateway_client,
    make_settings,
)
from tests.servers import serve_in_thread
from tests.test_flow import call as flow_call

WRITER, OTHER, BROKER = "guess-writer-0000", "guess-other-1111", "guess-broker-2222"
KEYS = ",".join(
    [
        f"app:{key_digest(WRITER)}:read+write",
        f"other:{key_digest(OTHER)}:read+write",
        f"broker:{key_digest(BROKER)}:read+write+passthrough",
    ]
)
SUB_ID, SUB_TOKEN = "SAODZKMDFJMJU3MTEYNG", "the-subaccounts-token"
START = """mutation Start($input: StartVerificationInput!) {
  startVerification(input: $input) { sessionUuid }
}"""
VALIDATE = """mutation Check($uuid: ID!, $otp: String!) {
  validateSession(uuid: $uuid, otp: $otp) { sessionUuid result message }
}"""
VALIDATE_WITH_SESSION = """mutation Check($uuid: ID!, $otp: String!) {
  validateSession(uuid: $uuid, otp: $otp) { result message session { status } }
}"""
SESSION = "query S($uuid: ID!) { session(uuid: $uuid) { status } }"
LIST = """query L($recipient: String!) {
  sessions(first: 5, filter: {recipient: $recipient}) { nodes { sessionUuid recipient } }
}"""
SESSION_PATH = re.compile(r"/Verify/Session/[0-9a-f-]{36}/$")
NUMBER = "14155550199"


class Recorder(httpx.AsyncBaseTransport):
    """The network between one gateway and the simulator: records each request it carries."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[str, str, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path, await request.aread()))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def validations(self) -> int:
        """Validations sent to Plivo (a POST to a session's own path)."""
        return sum(1 for m, path, _ in self.sent if m == "POST" and SESSION_PATH.search(path))

    @property
    def creates(self) -> list[dict[str, Any]]:
        """The bodies of the starts sent to Plivo."""
        return [
            json.loads(body)
            for method, path, body in self.sent
            if method == "POST" and path.endswith("/Verify/Session/")
        ]


class Gateways:
    """One or two gateway instances (two share Redis), each with its own recorder."""

    def __init__(self) -> None:
        self.clients: list[httpx.AsyncClient] = []
        self.recorders: list[Recorder] = []

    @property
    def one(self) -> httpx.AsyncClient:
        return self.clients[0]

    @property
    def two(self) -> httpx.AsyncClient:
        return self.clients[-1]

    @property
    def validations(self) -> int:
        return sum(recorder.validations for recorder in self.recorders)


@asynccontextmanager
async def gateways(sim: Simulator, backend: str, **extra: object) -> AsyncIterator[Gateways]:
    """`memory`: one instance (one and two are the same); `redis`: two on one Redis prefix.

    With Redis, the prefix's keys are dropped at the end, unless the caller named the prefix.
    """
    options: dict[str, object] = {"GATEWAY_AUTH": "keys", "GATEWAY_API_KEYS": KEYS, **extra}
    count, owned = 1, False
    if backend == "redis":
        from tests.redis_server import require_shared_redis, unique_prefix

        options |= {"GATEWAY_CACHE_URL": require_shared_redis()}
        owned = "GATEWAY_CACHE_PREFIX" not in options
        options.setdefault("GATEWAY_CACHE_PREFIX", unique_prefix())
        count = 2
    settings = make_settings(sim.url, **options)
    found = Gateways()
    async with AsyncExitStack() as stack:
        for _ in range(count):
            recorder = Recorder()
            client = await stack.enter_async_context(gateway_client(settings, transport=recorder))
            found.clients.append(client)
            found.recorders.append(recorder)
        yield found
    if owned:
        await drop_keys(str(options["GATEWAY_CACHE_PREFIX"]))


async def drop_keys(prefix: str) -> None:
    from tests.redis_server import SHARED_URL

    client = aioredis.from_url(SHARED_URL)
    try:
        keys = await client.keys(f"{prefix}*")
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def redis_keys(prefix: str) -> list[str]:
    from tests.redis_server import SHARED_URL

    client = aioredis.from_url(SHARED_URL)
    try:
        keys = await client.keys(f"{prefix}*")
        return sorted(key.decode() if isinstance(key, bytes) else key for key in keys)
    finally:
        await client.aclose()


async def call(
    client: httpx.AsyncClient,
    query: str,
    variables: Mapping[str, object] | None = None,
    *,
    key: str = WRITER,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """test_flow's `call`, with this file's keys."""
    return await flow_call(client, query, variables, key=key, headers=headers)


async def start(client: httpx.AsyncClient, recipient: str, **options: Any) -> str:
    body = await call(client, START, {"input": {"recipient": recipient}}, **options)
    assert "errors" not in body, body
    uuid: str = body["data"]["startVerification"]["sessionUuid"]
    return uuid


async def validate(
    client: httpx.AsyncClient, uuid: str, otp: str, *, key: str = WRITER
) -> dict[str, Any]:
    """The payload, or the first error (with its code) when the validation was refused."""
    body = await call(client, VALIDATE, {"uuid": uuid, "otp": otp}, key=key)
    if body.get("errors"):
        error: dict[str, Any] = body["errors"][0]
        return error
    payload: dict[str, Any] = body["data"]["validateSession"]
    return payload


def code_of(sim: Simulator, uuid: str) -> str:
    with sim.admin() as admin:
        code: str = admin.get(f"/__simulator/codes/{uuid}").json()["code"]
        return code


def wrong_code(sim: Simulator, uuid: str) -> str:
    return "111111" if code_of(sim, uuid) != "111111" else "222222"


def plivo_direct(sim: Simulator) -> httpx.Client:
    """The simulator as Plivo, with the configured account's credential."""
    return httpx.Client(
        base_url=f"{sim.url}/v1/Account/{AUTH_ID}/Verify/Session/",
        auth=(AUTH_ID, AUTH_TOKEN),
        timeout=5.0,
    )


@contextmanager
def simulator(**settings: Any) -> Iterator[Simulator]:
    app = create_simulator(SimulatorSettings(AUTH_ID, AUTH_TOKEN, expose_codes=True, **settings))
    with serve_in_thread(app) as url:
        yield Simulator(url)


async def expired(sim: Simulator, uuid: str) -> None:
    """Wait until the simulator holds the session expired."""

    async def check() -> bool:
        with plivo_direct(sim) as plivo:
            return bool(plivo.get(f"{uuid}/").json()["status"] == "expired")

    await eventually(check)


BACKENDS = ["memory", "redis"]


# 3. Cost and budget ------------------------------------------------------------------------


async def test_two_hundred_aliased_validations_are_refused_by_cost_before_anything_runs(
    flow_sim: Simulator,
) -> None:
    # The alias and token limits are raised so that only the cost limit (20) stands in the way.
    extra = {"GATEWAY_MAX_ALIASES": "1000", "GATEWAY_MAX_TOKENS": "100000"}
    async with gateways(flow_sim, "memory", **extra) as gw:
        uuid = await start(gw.one, "+919999000301")
        fields = " ".join(
            f'v{n}: validateSession(uuid: "{uuid}", otp: "000000") {{ result }}' for n in range(200)
        )
        response = await gw.one.post(
            "/graphql",
            json={"query": f"mutation {{ {fields} }}"},
            headers={"Authorization": f"Bearer {WRITER}"},
        )
        assert response.status_code == 400
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        assert error["extensions"]["limit"] == "cost"
        assert error["extensions"]["cost"] == 200
        assert gw.validations == 0


async def test_validations_spend_from_the_plivo_budget(flow_sim: Simulator) -> None:
    budget = {
        "PLIVO_BUDGET_REQUESTS": "3",
        "PLIVO_BUDGET_WINDOW": "600",
        "GATEWAY_KEY_BUDGET_SHARE": "1",
    }
    async with gateways(flow_sim, "memory", **budget) as gw:
        uuid = await start(gw.one, "+919999000302")  # the budget's first request
        wrong = wrong_code(flow_sim, uuid)
        assert (await validate(gw.one, uuid, wrong))["result"] == "WRONG_CODE"
        assert (await validate(gw.one, uuid, wrong))["result"] == "WRONG_CODE"
        refused = await validate(gw.one, uuid, wrong)
        assert refused["extensions"]["code"] == "RATE_LIMITED"
        assert "budget" in refused["message"]
        assert gw.validations == 2


# 1. Limits per session and per API key -----------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_eleventh_try_on_a_session_is_refused_whatever_the_key_and_never_sent(
    flow_sim: Simulator, backend: str
) -> None:
    async with gateways(flow_sim, backend) as gw:
        uuid = await start(gw.one, "+919999000303")
        wrong = wrong_code(flow_sim, uuid)
        for n in range(10):  # two keys, and with Redis two instances: one count for the session
            client, key = (gw.one, WRITER) if n % 2 else (gw.two, OTHER)
            assert (await validate(client, uuid, wrong, key=key))["result"] == "WRONG_CODE"
        for client, key, otp in ((gw.one, WRITER, wrong), (gw.two, OTHER, code_of(flow_sim, uuid))):
            refused = await validate(client, uuid, otp, key=key)
            assert refused["extensions"]["code"] == "RATE_LIMITED"
            assert refused["extensions"]["retryAfter"] > 0
            assert uuid in refused["message"]
        assert gw.validations == 10
        other = await start(gw.one, "+919999000304")  # another session has tries of its own
        assert (await validate(gw.two, other, code_of(flow_sim, other)))["result"] == "VERIFIED"


async def test_the_session_limit_is_a_setting(flow_sim: Simulator) -> None:
    async with gateways(flow_sim, "memory", GATEWAY_VALIDATIONS_PER_SESSION="3/600") as gw:
        uuid = await start(gw.one, "+919999000305")
        wrong = wrong_code(flow_sim, uuid)
        results = [await validate(gw.one, uuid, wrong) for _ in range(4)]
        assert [r.get("result") for r in results[:3]] == ["WRONG_CODE"] * 3
        assert results[3]["extensions"]["code"] == "RATE_LIMITED"
        assert gw.validations == 3


@pytest.mark.parametrize("backend", BACKENDS)
async def test_validations_are_limited_per_api_key(flow_sim: Simulator, backend: str) -> None:
    async with gateways(flow_sim, backend, GATEWAY_VALIDATIONS_PER_KEY="3/60") as gw:
        uuids = [await start(gw.one, f"+91999900031{n}") for n in range(4)]
        for client, uuid in zip((gw.one, gw.two, gw.one), uuids, strict=False):
            assert (await validate(client, uuid, wrong_code(flow_sim, uuid)))["result"]
        refused = await validate(gw.two, uuids[3], code_of(flow_sim, uuids[3]))
        assert refused["extensions"]["code"] == "RATE_LIMITED"
        assert "API key" in refused["message"]
        assert refused["extensions"]["retryAfter"] > 0
        # Another key has a limit of its own.
        right = await validate(gw.two, uuids[3], code_of(flow_sim, uuids[3]), key=OTHER)
        assert right["result"] == "VERIFIED"
        assert gw.validations == 4


# 2. Sessions known to have ended -----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_after_verified_a_validation_is_already_verified_and_not_sent(
    flow_sim: Simulator, backend: str
) -> None:
    async with gateways(flow_sim, backend) as gw:
        uuid = await start(gw.one, "+919999000321")
        code = code_of(flow_sim, uuid)
        assert (await validate(gw.one, uuid, code))["result"] == "VERIFIED"  # learnt on one
        sent = gw.validations
        for otp in (code, "000000"):  # known on two: no code is checked, right or wrong
            body = await call(gw.two, VALIDATE_WITH_SESSION, {"uuid": uuid, "otp": otp})
            answer = body["data"]["validateSession"]
            assert answer["result"] == "ALREADY_VERIFIED"
            assert (
                answer["message"] == "the session was verified earlier; this code was not checked"
            )
            assert answer["session"] == {"status": "VERIFIED"}
        assert gw.validations == sent == 1


@pytest.mark.parametrize("backend", BACKENDS)
async def test_after_too_many_attempts_a_validation_is_not_sent(backend: str) -> None:
    with simulator() as sim:
        extra = {"GATEWAY_VALIDATIONS_PER_SESSION": "20/600"}  # Plivo's own limit answers
        async with gateways(sim, backend, **extra) as gw:
            uuid = await start(gw.one, "+919999000322")
            wrong = wrong_code(sim, uuid)
            results = [(await validate(gw.one, uuid, wrong))["result"] for _ in range(11)]
            assert results == ["WRONG_CODE"] * 10 + ["TOO_MANY_ATTEMPTS"]
            assert gw.validations == 11
            again = await validate(gw.two, uuid, code_of(sim, uuid))
            assert again["result"] == "TOO_MANY_ATTEMPTS"
            assert gw.validations == 11


@pytest.mark.parametrize("backend", BACKENDS)
async def test_after_expired_a_validation_is_not_sent(backend: str) -> None:
    with simulator(code_expiry=0.3) as sim:
        async with gateways(sim, backend) as gw:
            uuid = await start(gw.one, "+919999000323")
            code = code_of(sim, uuid)
            await expired(sim, uuid)
            assert (await validate(gw.one, uuid, code))["result"] == "EXPIRED"
            assert gw.validations == 1
            assert (await validate(gw.two, uuid, code))["result"] == "EXPIRED"
            assert gw.validations == 1


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_session_caches_copy_of_an_ended_status_answers_too(backend: str) -> None:
    with simulator(code_expiry=2.0) as sim:
        async with gateways(sim, backend) as gw:
            verified = await start(gw.one, "+919999000324")
            with plivo_direct(sim) as plivo:  # verified behind the gateway's back
                plivo.post(f"{verified}/", json={"otp": code_of(sim, verified)})
            lapsed = await start(gw.one, "+919999000325")
            await expired(sim, lapsed)
            for uuid, status in ((verified, "VERIFIED"), (lapsed, "EXPIRED")):
                read = await call(gw.one, SESSION, {"uuid": uuid})  # cached on one (or Redis)
                assert read["data"]["session"]["status"] == status
            assert (await validate(gw.two, verified, "123456"))["result"] == "ALREADY_VERIFIED"
            assert (await validate(gw.two, lapsed, "123456"))["result"] == "EXPIRED"
            assert gw.validations == 0


# 4. Phone numbers --------------------------------------------------------------------------


async def test_one_number_written_four_ways_is_one_recipient(flow_sim: Simulator) -> None:
    async with gateways(flow_sim, "memory", GATEWAY_STARTS_PER_RECIPIENT="3/600") as gw:
        uuids = {await start(gw.one, given) for given in ("+14155550199", "0014155550199")}
        uuids.add(await start(gw.one, "+0014155550199", key=OTHER))
        assert len(uuids) == 1  # Plivo got one number: the same session, three attempts
        fourth = await call(gw.one, START, {"input": {"recipient": "1 (415) 555-0199"}})
        assert fourth["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert "recipient" in fourth["errors"][0]["message"]
        assert [body["recipient"] for body in gw.recorders[0].creates] == [NUMBER] * 3
        # The list's recipient filter reads the number the same way.
        listed = await call(gw.one, LIST, {"recipient": "+1 415 555 0199"})
        assert listed["data"]["sessions"]["nodes"] == [
            {"sessionUuid": uuids.pop(), "recipient": NUMBER}
        ]


@pytest.mark.parametrize(
    "given",
    [
        "1234567",  # too short for any country
        "99912345678",  # no such country code
        "+447700900123",  # a UK number reserved for drama: possible, never valid
        "+1 415 555 019",  # a digit short
        "1-800-FLOWERS",
        "+14155550199;ext=1",
        "٤١٥٥٥٥٠١٩٩",  # digits, but not ASCII ones
        "",
        "9" * 300,
    ],
)
async def test_an_invalid_number_is_bad_user_input_and_nothing_is_sent(
    flow_sim: Simulator, given: str
) -> None:
    async with gateways(flow_sim, "memory") as gw:
        started = await call(gw.one, START, {"input": {"recipient": given}})
        listed = await call(gw.one, LIST, {"recipient": given})
        for body in (started, listed):
            error = body["errors"][0]
            assert error["extensions"]["code"] == "BAD_USER_INPUT"
            assert "recipient" in error["message"]
            assert given not in error["message"] or not given
        assert gw.recorders[0].sent == []


# 5. Recipients at rest ---------------------------------------------------------------------


async def test_the_redis_key_of_a_recipient_is_an_hmac_under_the_secret(
    flow_sim: Simulator,
) -> None:
    from tests.redis_server import require_shared_redis, unique_prefix

    require_shared_redis()
    prefix = unique_prefix()
    bare = [hashlib.sha256(text.encode()).hexdigest()[:16] for text in (NUMBER, f"+{NUMBER}")]
    filter_digest = ListFilter(recipient=NUMBER).digest
    recipient_keys: list[set[str]] = []
    try:
        for secret in ("first-secret-0123456789", "other-secret-0123456789", None):
            extra = {"GATEWAY_CACHE_PREFIX": prefix}
            if secret is not None:
                extra["GATEWAY_RECIPIENT_SECRET"] = secret
            async with gateways(flow_sim, "redis", **extra) as gw:
                await start(gw.one, f"+{NUMBER}")
                await call(gw.one, LIST, {"recipient": f"+{NUMBER}"})
                keys = await redis_keys(prefix)
            recipient_keys.append({k for k in keys if ":starts:recipient:" in k})
            for key in keys:
                assert NUMBER not in key
                assert all(digest not in key for digest in bare)
                assert filter_digest not in key
    finally:
        await drop_keys(prefix)
    first, other, derived = recipient_keys
    assert len(first) == 1
    assert len(other) == 2  # the same number under another secret: another key
    assert len(derived) == 3  # no secret: a key derived from the auth token, another again


# 6. Per account ----------------------------------------------------------------------------


async def test_one_accounts_starts_do_not_block_the_number_for_another() -> None:
    with simulator(extra_credentials=((SUB_ID, SUB_TOKEN),)) as sim:
        async with gateways(sim, "memory", GATEWAY_STARTS_PER_RECIPIENT="1/600") as gw:
            tenant = {"X-Plivo-Auth-Id": SUB_ID, "X-Plivo-Auth-Token": SUB_TOKEN}
            forged = {"X-Plivo-Auth-Id": AUTH_ID, "X-Plivo-Auth-Token": "a-guessed-token"}
            variables = {"input": {"recipient": f"+{NUMBER}"}}
            # A caller with the account's id and a wrong token: its start is the wrong token's.
            refused = await call(gw.one, START, variables, key=BROKER, headers=forged)
            assert refused["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAUTHENTICATED"
            await start(gw.one, f"+{NUMBER}")  # the configured account
            again = await call(gw.one, START, variables)
            assert again["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
            await start(gw.one, f"+{NUMBER}", key=BROKER, headers=tenant)  # another account
            third = await call(gw.one, START, variables, key=BROKER, headers=tenant)
            assert third["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert sim.stats()["creates"] == 2  # the refused ones were never sent


# Redis away ---------------------------------------------------------------------------------


@dataclass
class FakeValidations:
    """Plivo's validate endpoint: counts what was sent, answers a wrong code."""

    sent: list[str] = field(default_factory=list)

    async def validate_session(self, session_uuid: str, otp: str) -> Validation:
        self.sent.append(session_uuid)
        result = ValidationResult.WRONG_CODE
        return Validation(session_uuid, result, MESSAGES[result])


@pytest.mark.parametrize("how", ["paused", "stopped"])
async def test_while_redis_is_away_each_instance_takes_its_share_of_a_sessions_tries(
    how: str,
) -> None:
    # People can still sign in during an outage, and the fleet still sends no more tries of a
    # session than its limit: each of the two instances listening takes its share of what
    # was left when it last heard from Redis.
    from tests.redis_server import own_redis
    from tests.test_fleet_outage import fleet_on, listening, outage
    from tests.test_sessions import FakePlivo, service

    async def changed(session_uuid: str) -> None:
        pass

    with own_redis() as server:
        async with fleet_on(server) as one, fleet_on(server) as two, listening(one, two):
            plivo = FakeValidations()
            flows = [
                VerificationService(
                    cast(Any, plivo),  # only validations are made
                    service(FakePlivo(), fleet.entries, CachePolicy(key_prefix="t")),
                    FlowPolicy(key_prefix="t", validations_per_session=(6, 600.0)),
                    entries=fleet.entries,
                    counters=fleet.counters,
                    memos=fleet.memos,
                    changed=changed,
                )
                for fleet in (one, two)
            ]
            uuid = "5c533d15-1975-4f20-80be-40174142ea37"
            for flow in flows:
                assert (await flow.validate("app", uuid, "123456")).result.name == "WRONG_CODE"
            with outage(server, how):
                answered = 0
                for flow in flows:
                    for _ in range(6):
                        try:
                            await flow.validate("app", uuid, "123456")
                        except Throttled:
                            continue
                        answered += 1
                assert answered == 4  # not refused outright: 4 of the 4 tries left
            assert len(plivo.sent) == 6  # and never more than the session's limit, fleet-wide
