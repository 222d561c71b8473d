"""The whole flow through the gateway, in-process: list, start, validate, callbacks, fleet."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest

from gateway.operations.principals import key_digest
from gateway.plivo.signature import signature_v3
from gateway.simulator import SimulatorSettings, create_simulator
from gateway.simulator.seed import RECENT_IN_PROGRESS
from tests.conftest import (
    AUTH_ID,
    AUTH_TOKEN,
    Simulator,
    eventually,
    gateway_client,
    make_settings,
)
from tests.servers import serve_in_thread

WRITER, READER, OTHER = "writer-key-0000", "reader-key-1111", "other-writer-2222"
WRITE_ONLY = "write-only-key-3333"
APP_KEY_ID = f"app#{key_digest(WRITER)[:12]}"  # audit lines name a key and its digest
KEYS = ",".join(
    [
        f"app:{key_digest(WRITER)}:read+write",
        f"dash:{key_digest(READER)}:read",
        f"other:{key_digest(OTHER)}:read+write",
        f"kiosk:{key_digest(WRITE_ONLY)}:write",
    ]
)
START = """mutation Start($input: StartVerificationInput!) {
  startVerification(input: $input) { sessionUuid replayed session { status count } }
}"""
VALIDATE = """mutation Check($uuid: ID!, $otp: String!) {
  validateSession(uuid: $uuid, otp: $otp) { sessionUuid result message session { status } }
}"""
LIST = """query L($filter: SessionFilter, $first: Int!, $after: String) {
  sessions(filter: $filter, first: $first, after: $after) {
    edges { cursor node { sessionUuid recipient status } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""
SESSION = "query S($uuid: ID!) { session(uuid: $uuid) { status count } }"
PUBLIC = "https://gateway.example"


def settings_for(sim: Simulator, **extra: object) -> Any:
    return make_settings(
        sim.url,
        GATEWAY_AUTH="keys",
        GATEWAY_API_KEYS=KEYS,
        GATEWAY_PUBLIC_URL=PUBLIC,
        GATEWAY_CACHE_TTL_IN_PROGRESS="60",
        **extra,
    )


def fleet_settings(sim: Simulator) -> Any:
    """Settings for instances that share the real Redis, under a prefix of the test's own."""
    from tests.redis_server import require_shared_redis, unique_prefix

    return settings_for(
        sim, GATEWAY_CACHE_URL=require_shared_redis(), GATEWAY_CACHE_PREFIX=unique_prefix()
    )


@pytest.fixture
async def gw(flow_sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(settings_for(flow_sim)) as client:
        yield client


async def call(
    client: httpx.AsyncClient,
    query: str,
    variables: Mapping[str, object] | None = None,
    *,
    key: str = WRITER,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": dict(variables or {})},
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def start(client: httpx.AsyncClient, recipient: str, **options: object) -> dict[str, Any]:
    body = await call(client, START, {"input": {"recipient": recipient, **options}})
    assert "errors" not in body, body
    started: dict[str, Any] = body["data"]["startVerification"]
    return started


def code_of(sim: Simulator, session_uuid: str) -> str:
    with sim.admin() as admin:
        code: str = admin.get(f"/__simulator/codes/{session_uuid}").json()["code"]
        return code


async def test_start_then_validate_a_wrong_and_the_right_code(
    gw: httpx.AsyncClient, flow_sim: Simulator
) -> None:
    started = await start(gw, "+919999000301", channel="SMS", codeLength=5)
    assert started["session"] == {"status": "IN_PROGRESS", "count": 1}
    assert started["replayed"] is False
    uuid = started["sessionUuid"]
    wrong = await call(gw, VALIDATE, {"uuid": uuid, "otp": "00000"})
    assert wrong["data"]["validateSession"]["result"] in ("WRONG_CODE", "VERIFIED")
    right = await call(gw, VALIDATE, {"uuid": uuid, "otp": code_of(flow_sim, uuid)})
    result = right["data"]["validateSession"]
    assert result["result"] == "VERIFIED"
    assert result["session"] == {"status": "VERIFIED"}
    # The in-progress copy was cached for 60 s; the validation made the gateway forget it.
    read = await call(gw, SESSION, {"uuid": uuid}, key=READER)
    assert read["data"]["session"]["status"] == "VERIFIED"


async def test_a_wrong_code_is_a_result_and_the_eleventh_try_is_too_many(
    flow_sim: Simulator,
) -> None:
    # The gateway's own limit (10 a session) would refuse the eleventh before Plivo: lifted
    # here, to see Plivo's answer to it read as TOO_MANY_ATTEMPTS.
    async with gateway_client(
        settings_for(flow_sim, GATEWAY_VALIDATIONS_PER_SESSION="20/600")
    ) as gw:
        uuid = (await start(gw, "919999000302"))["sessionUuid"]
        wrong = "1" * 6 if code_of(flow_sim, uuid) != "1" * 6 else "2" * 6
        results = [
            (await call(gw, VALIDATE, {"uuid": uuid, "otp": wrong}))["data"]["validateSession"][
                "result"
            ]
            for _ in range(11)
        ]
    assert results == ["WRONG_CODE"] * 10 + ["TOO_MANY_ATTEMPTS"]


async def test_an_expired_session_is_a_result() -> None:
    app = create_simulator(
        SimulatorSettings(AUTH_ID, AUTH_TOKEN, expose_codes=True, code_expiry=0.2)
    )
    with serve_in_thread(app) as url:
        sim = Simulator(url)
        async with gateway_client(settings_for(sim)) as gw:
            uuid = (await start(gw, "919999000303"))["sessionUuid"]
            await asyncio.sleep(0.3)
            body = await call(gw, VALIDATE, {"uuid": uuid, "otp": code_of(sim, uuid)})
    assert body["data"]["validateSession"]["result"] == "EXPIRED"
    assert body["data"]["validateSession"]["session"] == {"status": "EXPIRED"}


async def test_mutations_need_the_write_scope_and_a_post(gw: httpx.AsyncClient) -> None:
    body = await call(gw, START, {"input": {"recipient": "919999000304"}}, key=READER)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    response = await gw.get(
        "/graphql",
        params={"query": 'mutation { validateSession(uuid: "x", otp: "1") { result } }'},
        headers={"Authorization": f"Bearer {WRITER}"},
    )
    assert response.status_code == 405


@pytest.mark.parametrize(
    "given",
    [
        {"recipient": "not a number"},
        {"recipient": "919999000305", "codeLength": 9},
        {"recipient": "919999000305", "channel": "UNKNOWN"},
        {"recipient": "919999000305", "otp": "12ab"},
    ],
)
async def test_bad_start_input_is_refused_before_anything_is_sent(
    gw: httpx.AsyncClient, flow_sim: Simulator, given: dict[str, object]
) -> None:
    body = await call(gw, START, {"input": given})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert flow_sim.stats()["creates"] == 0


async def test_an_idempotency_key_returns_the_first_start(
    gw: httpx.AsyncClient, flow_sim: Simulator
) -> None:
    variables = {"input": {"recipient": "919999000306"}}
    same = {"Idempotency-Key": "order-42"}
    first, again, other_key = await asyncio.gather(
        call(gw, START, variables, headers=same),
        call(gw, START, variables, headers=same),
        call(gw, START, variables, headers=same, key=OTHER),
    )
    later = await call(gw, START, variables, headers=same)
    uuids = {b["data"]["startVerification"]["sessionUuid"] for b in (first, again, later)}
    assert len(uuids) == 1
    replays = [b["data"]["startVerification"]["replayed"] for b in (first, again, later)]
    assert sorted(replays) == [False, True, True]
    # Another key's same Idempotency-Key value is its own: a second code was sent for it.
    assert other_key["data"]["startVerification"]["replayed"] is False
    assert flow_sim.stats()["creates"] == 2


async def test_starts_are_throttled_per_recipient_and_per_key(flow_sim: Simulator) -> None:
    settings = settings_for(
        flow_sim, GATEWAY_STARTS_PER_RECIPIENT="2/600", GATEWAY_STARTS_PER_KEY="4/600"
    )
    async with gateway_client(settings) as gw:
        for _ in range(2):
            await start(gw, "919999000307")
        third = await call(gw, START, {"input": {"recipient": "+919999000307"}})
        assert third["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert third["errors"][0]["extensions"]["retryAfter"] > 0
        await start(gw, "919999000308")  # the key's fourth: refused ones count too
        fourth = await call(gw, START, {"input": {"recipient": "919999000309"}})
        assert fourth["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert "API key" in fourth["errors"][0]["message"]
    assert flow_sim.stats()["creates"] == 3


async def test_mutations_are_audit_logged_without_the_code(
    gw: httpx.AsyncClient, flow_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.audit")
    uuid = (await start(gw, "919999000310"))["sessionUuid"]
    code = code_of(flow_sim, uuid)
    await call(gw, VALIDATE, {"uuid": uuid, "otp": code})
    records = [r for r in caplog.records if r.name == "gateway.audit"]
    audits = [vars(r)["audit"] for r in records]
    assert audits == [
        {
            "key": APP_KEY_ID,
            "operation": "startVerification",
            "session_uuid": uuid,
            "outcome": "started",
        },
        {
            "key": APP_KEY_ID,
            "operation": "validateSession",
            "session_uuid": uuid,
            "outcome": "verified",
        },
    ]
    assert all(code not in r.getMessage() for r in records)


async def test_the_list_pages_with_opaque_cursors_and_fills_the_session_cache(
    gw: httpx.AsyncClient, flow_sim: Simulator
) -> None:
    uuids = [(await start(gw, f"91999900040{n}"))["sessionUuid"] for n in range(3)]
    first = await call(gw, LIST, {"first": 2, "filter": {"status": "IN_PROGRESS"}}, key=READER)
    page = first["data"]["sessions"]
    assert page["pageInfo"]["hasNextPage"] is True
    assert page["pageInfo"]["hasPreviousPage"] is False
    after = page["pageInfo"]["endCursor"]
    second = await call(
        gw, LIST, {"first": 2, "after": after, "filter": {"status": "IN_PROGRESS"}}, key=READER
    )
    rest = second["data"]["sessions"]
    assert rest["pageInfo"]["hasPreviousPage"] is True
    listed = [e["node"]["sessionUuid"] for e in page["edges"] + rest["edges"]]
    assert sorted(listed) == sorted([*uuids, RECENT_IN_PROGRESS])  # the seed's recent one too
    # Each listed session is in the session cache now: reading one costs no GET.
    flow_sim.reset()
    read = await call(gw, SESSION, {"uuid": uuids[0]}, key=READER)
    assert read["data"]["session"]["status"] == "IN_PROGRESS"
    assert flow_sim.served(uuids[0]) == 0


async def test_identical_pages_are_cached_briefly(
    gw: httpx.AsyncClient, flow_sim: Simulator
) -> None:
    for _ in range(3):
        body = await call(gw, LIST, {"first": 5}, key=READER)
        assert "errors" not in body
    assert flow_sim.stats()["lists"] == 1


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"first": 21}, "first"),
        ({"first": 0}, "first"),
        ({"first": 5, "after": "bm90IGEgY3Vyc29y"}, "cursor"),
        ({"first": 5, "filter": {"sessionTimeGt": "yesterday"}}, "sessionTimeGt"),
        ({"first": 5, "filter": {"subaccount": "MA0000"}}, "subaccount"),
    ],
)
async def test_bad_list_arguments_are_bad_user_input(
    gw: httpx.AsyncClient, variables: dict[str, object], message: str
) -> None:
    body = await call(gw, LIST, variables, key=READER)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert message in body["errors"][0]["message"]


async def test_a_cursor_of_another_filter_is_refused(gw: httpx.AsyncClient) -> None:
    await start(gw, "919999000501")
    first = await call(gw, LIST, {"first": 1}, key=READER)
    cursor = first["data"]["sessions"]["pageInfo"]["endCursor"]
    other = await call(
        gw, LIST, {"first": 1, "after": cursor, "filter": {"status": "VERIFIED"}}, key=READER
    )
    assert other["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def signed_callback(
    uuid: str, status: str, token: str = AUTH_TOKEN
) -> tuple[dict[str, str], dict[str, str]]:
    form = {"SessionUUID": uuid, "SessionStatus": status, "AttemptSequence": "1", "Channel": "sms"}
    nonce = "1234567890"
    signature = signature_v3(
        "POST", f"{PUBLIC}/plivo/callbacks", nonce, token, {k: [v] for k, v in form.items()}
    )
    return form, {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}


async def test_callbacks_without_a_valid_signature_are_403(gw: httpx.AsyncClient) -> None:
    form, headers = signed_callback("6a5e2dd4-54a2-4a6e-9a87-04f3e0c0f1a1", "in-progress")
    assert (await gw.post("/plivo/callbacks", data=form)).status_code == 403
    forged = signed_callback("6a5e2dd4-54a2-4a6e-9a87-04f3e0c0f1a1", "in-progress", "wrong")[1]
    assert (await gw.post("/plivo/callbacks", data=form, headers=forged)).status_code == 403
    tampered = {**form, "SessionStatus": "expired"}
    assert (await gw.post("/plivo/callbacks", data=tampered, headers=headers)).status_code == 403
    assert (await gw.post("/plivo/callbacks", data=form, headers=headers)).status_code == 200


async def test_a_signed_callback_makes_the_gateway_forget_the_session(
    gw: httpx.AsyncClient, flow_sim: Simulator
) -> None:
    uuid = (await start(gw, "919999000601"))["sessionUuid"]
    for _ in range(2):  # cached (60 s in-progress TTL), and the response cached too
        await call(gw, SESSION, {"uuid": uuid}, key=READER)
    flow_sim.reset()
    await call(gw, SESSION, {"uuid": uuid}, key=READER)
    assert flow_sim.served(uuid) == 0
    form, headers = signed_callback(uuid, "in-progress")
    assert (await gw.post("/plivo/callbacks", data=form, headers=headers)).status_code == 200
    await call(gw, SESSION, {"uuid": uuid}, key=READER)
    assert flow_sim.served(uuid) == 1


async def test_callbacks_are_off_without_a_public_url(flow_sim: Simulator) -> None:
    settings = make_settings(flow_sim.url)
    async with gateway_client(settings) as gw:
        form, headers = signed_callback("6a5e2dd4-54a2-4a6e-9a87-04f3e0c0f1a1", "in-progress")
        assert (await gw.post("/plivo/callbacks", data=form, headers=headers)).status_code == 404


async def test_starts_ask_plivo_for_callbacks_at_the_public_url(
    gw: httpx.AsyncClient, flow_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.simulator.verify")
    await start(gw, "919999000701")
    await asyncio.sleep(0.2)
    # The simulator was given https://gateway.example/plivo/callbacks and refused to leave the
    # machine: the URL came from GATEWAY_PUBLIC_URL, not from the caller.
    warnings = [r.getMessage() for r in caplog.records]
    assert f"callback to {PUBLIC}/plivo/callbacks not sent: not a loopback address" in warnings


async def test_a_change_on_one_instance_reaches_the_other_through_redis(
    flow_sim: Simulator,
) -> None:
    settings = fleet_settings(flow_sim)
    async with gateway_client(settings) as one, gateway_client(settings) as two:
        uuid = (await start(one, "919999000801"))["sessionUuid"]
        for _ in range(2):
            await call(two, SESSION, {"uuid": uuid}, key=READER)  # two caches the response
        flow_sim.reset()
        await call(two, SESSION, {"uuid": uuid}, key=READER)
        assert flow_sim.served(uuid) == 0
        form, headers = signed_callback(uuid, "in-progress")
        assert (await one.post("/plivo/callbacks", data=form, headers=headers)).status_code == 200

        async def heard() -> bool:  # the message crosses Redis: instance two reads Plivo again
            await call(two, SESSION, {"uuid": uuid}, key=READER)
            return flow_sim.served(uuid) > 0

        await eventually(heard)
        assert flow_sim.served(uuid) == 1


async def test_one_idempotency_key_sends_one_code_across_a_fleet(flow_sim: Simulator) -> None:
    settings = fleet_settings(flow_sim)
    variables = {"input": {"recipient": "919999000901"}}
    same = {"Idempotency-Key": "signup-7"}
    async with gateway_client(settings) as one, gateway_client(settings) as two:
        answers = await asyncio.gather(
            *(call(gw, START, variables, headers=same) for gw in (one, two, one, two))
        )
    uuids = {a["data"]["startVerification"]["sessionUuid"] for a in answers}
    assert len(uuids) == 1
    assert sum(not a["data"]["startVerification"]["replayed"] for a in answers) == 1
    assert flow_sim.stats()["creates"] == 1


async def test_a_blank_code_is_refused_and_a_failed_validation_is_audited(
    gw: httpx.AsyncClient, flow_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.audit")
    uuid = (await start(gw, "919999000902"))["sessionUuid"]
    blank = await call(gw, VALIDATE, {"uuid": uuid, "otp": " "})
    assert blank["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    flow_sim.configure(fault="503")  # a standing fault: the validation fails upstream
    failed = await call(gw, VALIDATE, {"uuid": uuid, "otp": "123456"})
    flow_sim.configure(fault=None)
    assert failed["errors"][0]["extensions"]["code"] == "UPSTREAM_ERROR"
    outcomes = [vars(r)["audit"]["outcome"] for r in caplog.records if r.name == "gateway.audit"]
    assert outcomes == ["started", "UpstreamFailed"]


async def test_the_gateway_keeps_to_plivos_twenty_list_requests_a_minute(
    flow_sim: Simulator,
) -> None:
    async with gateway_client(settings_for(flow_sim, GATEWAY_KEY_BUDGET_SHARE="1")) as gw:
        answers = [await call(gw, LIST, {"first": n}, key=READER) for n in range(1, 21)]
        assert all("errors" not in a for a in answers)  # 20 distinct pages: 20 list requests
        refused = await call(
            gw, LIST, {"first": 1, "filter": {"recipient": "+14155550100"}}, key=READER
        )
    error = refused["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert 0 < error["extensions"]["retryAfter"] <= 66  # a sliding window: 60 s and a tenth
    assert flow_sim.stats()["lists"] == 20  # the 21st never reached Plivo


@pytest.mark.parametrize(
    "cache", [{"GATEWAY_CACHE_URL": "none"}, {"GATEWAY_CACHE_MAX_ENTRIES": "1"}]
)
async def test_an_idempotency_key_holds_without_a_cache_and_under_eviction(
    flow_sim: Simulator, cache: dict[str, str]
) -> None:
    async with gateway_client(settings_for(flow_sim, **cache)) as gw:
        same = {"Idempotency-Key": "checkout-9"}
        first = await call(gw, START, {"input": {"recipient": "919999001101"}}, headers=same)
        for n in range(3):  # other sessions push everything else out of a one-entry cache
            await start(gw, f"91999900111{n}")
        again = await call(gw, START, {"input": {"recipient": "919999001101"}}, headers=same)
    assert again["data"]["startVerification"]["replayed"] is True
    uuid = first["data"]["startVerification"]["sessionUuid"]
    assert again["data"]["startVerification"]["sessionUuid"] == uuid
    assert flow_sim.stats()["creates"] == 4


async def test_an_oversized_callback_is_413(gw: httpx.AsyncClient) -> None:
    big = b"SessionUUID=" + b"x" * 70_000
    assert (await gw.post("/plivo/callbacks", content=big)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(70):
            yield b"x" * 1024

    assert (await gw.post("/plivo/callbacks", content=chunks())).status_code == 413


async def test_flow_callbacks_and_watches_are_in_the_metrics(
    gw: httpx.AsyncClient, flow_sim: Simulator
) -> None:
    uuid = (await start(gw, "919999001201"))["sessionUuid"]
    await call(gw, VALIDATE, {"uuid": uuid, "otp": code_of(flow_sim, uuid)})
    form, headers = signed_callback(uuid, "verified")
    await gw.post("/plivo/callbacks", data=form, headers=headers)
    await gw.post("/plivo/callbacks", data=form)
    text = (await gw.get("/metrics")).text
    for line in (
        'gateway_flow_operations_total{operation="startVerification",outcome="started"} 1.0',
        'gateway_flow_operations_total{operation="validateSession",outcome="verified"} 1.0',
        'gateway_status_callbacks_total{outcome="accepted"} 1.0',
        'gateway_status_callbacks_total{outcome="invalid_signature"} 1.0',
        "gateway_watched_sessions 0.0",
    ):
        assert line in text, line


async def test_an_idempotency_key_reused_for_another_start_is_refused(
    gw: httpx.AsyncClient, flow_sim: Simulator
) -> None:
    same = {"Idempotency-Key": "reused"}
    first = await call(gw, START, {"input": {"recipient": "919999001301"}}, headers=same)
    assert "errors" not in first
    other = await call(gw, START, {"input": {"recipient": "919999001302"}}, headers=same)
    assert other["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Idempotency-Key" in other["errors"][0]["message"]
    assert flow_sim.stats()["creates"] == 1


async def test_a_write_only_key_gets_results_but_never_reads_a_session_through_them(
    gw: httpx.AsyncClient, flow_sim: Simulator
) -> None:
    uuid = (await start(gw, "919999000930"))["sessionUuid"]  # the reader-writer key
    await call(gw, VALIDATE, {"uuid": uuid, "otp": code_of(flow_sim, uuid)})  # VERIFIED
    detail = """mutation Check($uuid: ID!, $otp: String!) {
      validateSession(uuid: $uuid, otp: $otp) { result session { recipient status } }
    }"""
    # Answered from what the gateway knows (no try spent): the result, and not the session.
    body = await call(gw, detail, {"uuid": uuid, "otp": "000000"}, key=WRITE_ONLY)
    assert body["data"]["validateSession"] == {"result": "ALREADY_VERIFIED", "session": None}
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    started = await call(
        gw,
        "mutation S($input: StartVerificationInput!) {"
        " startVerification(input: $input) { sessionUuid session { recipient } } }",
        {"input": {"recipient": "919999000931"}},
        key=WRITE_ONLY,
    )
    assert started["data"]["startVerification"]["session"] is None
    assert started["data"]["startVerification"]["sessionUuid"]
    assert [e["extensions"]["code"] for e in started["errors"]] == ["FORBIDDEN"]
