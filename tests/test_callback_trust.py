"""Whom a status callback is trusted from: the gateway's own tokens, V3 strictly, each nonce once.

Headers are computed with Plivo's own SDK (`plivo.utils.signature_v3`); the V2 pair with the
simulator's signer, and checked with the SDK's `plivo.utils.validate_signature` before use.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import cast

import httpx
import pytest
from plivo.utils import validate_signature
from plivo.utils.signature_v3 import (
    construct_get_url,
    construct_post_url,
    get_signature_v3,
    validate_v3_signature,
)
from redis import Redis

from gateway.errors import StateUnavailable
from gateway.fleet import MemoryNonces, open_fleet
from gateway.simulator.verify import sign_v2
from tests.conftest import AUTH_TOKEN, Simulator, eventually, gateway_client, make_settings
from tests.redis_server import own_redis, require_shared_redis, unique_prefix

PUBLIC = "https://gateway.example"
URL = f"{PUBLIC}/plivo/callbacks"
NOWHERE = "http://127.0.0.1:9"  # callbacks never reach Plivo
SUBACCOUNT = ("SAMJU3MTEYNGMDFJMJAB", "a-subaccounts-token")
SESSION = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"
UUID = "6a5e2dd4-54a2-4a6e-9a87-04f3e0c0f1a1"
OTHER_UUID = "0b9c4a3e-1f2d-4c5b-8a7e-6d5c4b3a2f10"


def form_for(uuid: str = UUID) -> dict[str, str]:
    return {"SessionUUID": uuid, "SessionStatus": "in-progress", "AttemptSequence": "1"}


def new_nonce() -> str:
    return str(secrets.randbelow(10**20))


def v3(form: dict[str, str], nonce: str, token: str = AUTH_TOKEN, method: str = "POST") -> str:
    """X-Plivo-Signature-V3 as Plivo's SDK computes it."""
    base = (construct_post_url if method == "POST" else construct_get_url)(URL, dict(form))
    signature = get_signature_v3(token.encode(), base.decode(), nonce.encode()).decode()
    assert validate_v3_signature(method, URL, nonce, token, signature, dict(form))
    return cast(str, signature)


def v3_headers(form: dict[str, str], token: str = AUTH_TOKEN) -> dict[str, str]:
    nonce = new_nonce()
    return {"X-Plivo-Signature-V3": v3(form, nonce, token), "X-Plivo-Signature-V3-Nonce": nonce}


def v2_headers(token: str = AUTH_TOKEN, nonce: str | None = None) -> dict[str, str]:
    """A V2 pair (it signs the URL and the nonce only), accepted by Plivo's SDK."""
    nonce = nonce or new_nonce()
    signature = sign_v2(URL, nonce, token)
    assert validate_signature(URL, nonce, signature, token)
    return {"X-Plivo-Signature-V2": signature, "X-Plivo-Signature-V2-Nonce": nonce}


@asynccontextmanager
async def gateway(**extra: object) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(make_settings(NOWHERE, GATEWAY_PUBLIC_URL=PUBLIC, **extra)) as gw:
        yield gw


async def post(gw: httpx.AsyncClient, form: dict[str, str], headers: dict[str, str]) -> int:
    return (await gw.post("/plivo/callbacks", data=form, headers=headers)).status_code


# --- whose tokens -------------------------------------------------------------------------


async def test_a_pass_through_token_used_in_a_query_cannot_sign_a_callback(
    simulator: Simulator,
) -> None:
    mine = {"X-Plivo-Auth-Id": "MAMINEMINEMINEMINE00", "X-Plivo-Auth-Token": "mine"}
    async with gateway_client(make_settings(simulator.url, GATEWAY_PUBLIC_URL=PUBLIC)) as gw:
        answer = await gw.post(
            "/graphql", json={"query": SESSION, "variables": {"uuid": UUID}}, headers=mine
        )
        assert answer.status_code == 200  # the gateway sent a request with the caller's token
        form = form_for()
        assert await post(gw, form, v3_headers(form, "mine")) == 403
        assert await post(gw, form, v2_headers("mine")) == 403
        assert await post(gw, form, v3_headers(form)) == 200  # the account's own token


async def test_a_listed_subaccount_can_sign_a_callback_and_an_unlisted_one_cannot() -> None:
    listed = f"{SUBACCOUNT[0]}:{SUBACCOUNT[1]}"
    async with gateway(PLIVO_CALLBACK_SUBACCOUNTS=listed) as gw:
        form = form_for()
        assert await post(gw, form, v3_headers(form, SUBACCOUNT[1])) == 200
        assert await post(gw, form, v3_headers(form, "an-unlisted-subaccounts-token")) == 403
        assert await post(gw, form, v3_headers(form)) == 200  # the main account still can


# --- V3 decides when it is sent ----------------------------------------------------------


@pytest.mark.parametrize(
    "v3_sent",
    [
        {"X-Plivo-Signature-V3": "bm90LWl0", "X-Plivo-Signature-V3-Nonce": "1"},
        {"X-Plivo-Signature-Ma-V3": "bm90LWl0"},
        {"X-Plivo-Signature-V3-Nonce": "1"},
        {"X-Plivo-Signature-V3": ""},
    ],
    ids=["invalid", "ma-only", "nonce-only", "empty"],
)
async def test_a_valid_v2_pair_does_not_count_beside_a_v3_header(v3_sent: dict[str, str]) -> None:
    async with gateway() as gw:
        form = form_for()
        assert await post(gw, form, {**v2_headers(), **v3_sent}) == 403
        assert await post(gw, form, v2_headers()) == 200  # V2 alone still works


async def test_a_non_ascii_signature_is_refused_not_a_crash() -> None:
    async with gateway() as gw:
        answer = await gw.post(
            "/plivo/callbacks",
            data=form_for(),
            headers=[
                (b"X-Plivo-Signature-V3", "sig\xe9".encode("latin-1")),
                (b"X-Plivo-Signature-V3-Nonce", b"1"),
            ],
        )
    assert answer.status_code == 403


# --- each nonce once ---------------------------------------------------------------------


async def test_a_captured_v2_pair_is_not_accepted_twice_whatever_the_body() -> None:
    async with gateway() as gw:
        captured = v2_headers()
        assert await post(gw, form_for(UUID), captured) == 200
        assert await post(gw, form_for(OTHER_UUID), captured) == 403  # V2 does not sign the body
        assert await post(gw, form_for(UUID), captured) == 403


async def test_a_v3_callback_stripped_to_its_v2_pair_is_not_accepted_again() -> None:
    async with gateway() as gw:
        form, nonce = form_for(), new_nonce()  # Plivo sends both with one nonce
        both = {
            **v2_headers(nonce=nonce),
            "X-Plivo-Signature-V3": v3(form, nonce),
            "X-Plivo-Signature-V3-Nonce": nonce,
        }
        assert await post(gw, form, both) == 200
        stripped = {k: v for k, v in both.items() if "V3" not in k}
        assert await post(gw, form_for(OTHER_UUID), stripped) == 403


async def test_a_replayed_v3_callback_is_refused_and_not_applied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.web.callbacks")
    async with gateway() as gw:
        form = form_for()
        headers = v3_headers(form)
        assert [await post(gw, form, headers) for _ in range(3)] == [200, 403, 403]
        scraped = (await gw.get("/metrics")).text
    assert caplog.text.count(f"status callback for session {UUID}") == 1  # applied once
    assert 'gateway_status_callbacks_total{outcome="accepted"} 1.0' in scraped
    assert 'gateway_status_callbacks_total{outcome="replayed"} 2.0' in scraped


async def test_a_forged_callback_does_not_burn_the_nonce_of_the_real_one() -> None:
    async with gateway() as gw:
        form = form_for()
        real = v3_headers(form)
        forged = {**real, "X-Plivo-Signature-V3": v3(form, real["X-Plivo-Signature-V3-Nonce"], "x")}
        assert await post(gw, form, forged) == 403
        assert await post(gw, form, real) == 200


async def test_nonces_in_memory_are_bounded_and_expire() -> None:
    now = [0.0]
    nonces = MemoryNonces(max_entries=2, clock=lambda: now[0])
    assert await nonces.remember([("v3", "a")], 60)
    assert not await nonces.remember([("v3", "a")], 60)
    assert await nonces.remember([("v2", "a")], 60)  # another version: another nonce
    assert await nonces.remember([("v3", "b")], 60)  # full: the oldest ("v3", "a") goes
    assert len(nonces) == 2
    assert await nonces.remember([("v3", "a")], 60)
    now[0] = 61.0
    assert await nonces.remember([("v3", "b")], 60)  # its window closed
    assert len(nonces) == 1  # the expired ones went


# --- fleet-wide, with Redis --------------------------------------------------------------


@pytest.fixture
def shared_prefix() -> Iterator[tuple[str, str]]:
    """The shared Redis and a prefix of this test's own (its keys deleted afterwards)."""
    url, prefix = require_shared_redis(), unique_prefix()
    yield url, prefix
    client = Redis.from_url(url)
    keys = cast(list[bytes], client.keys(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


async def test_a_callback_replayed_at_another_instance_is_refused(
    shared_prefix: tuple[str, str],
) -> None:
    url, prefix = shared_prefix
    fleet = {
        "GATEWAY_CACHE_URL": url,
        "GATEWAY_CACHE_PREFIX": prefix,
        "GATEWAY_CALLBACK_REPLAY_WINDOW": "120",
    }
    async with gateway(**fleet) as one, gateway(**fleet) as two:
        form = form_for()
        headers = v3_headers(form)
        assert await post(one, form, headers) == 200
        assert await post(two, form, headers) == 403
        captured = v2_headers()
        assert await post(two, form, captured) == 200
        assert await post(one, form_for(OTHER_UUID), captured) == 403
    client = Redis.from_url(url)
    keys = cast(list[bytes], client.keys(f"{prefix}:nonce:*"))
    ttls = [client.pttl(key) for key in keys]
    client.close()
    assert len(keys) == 2  # a digest each: the nonce itself is no key
    assert headers["X-Plivo-Signature-V3-Nonce"].encode() not in b"".join(keys)
    assert all(0 < ttl <= 120_000 for ttl in ttls)  # GATEWAY_CALLBACK_REPLAY_WINDOW


async def test_a_callback_is_refused_while_redis_is_paused_and_taken_once_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with own_redis() as redis:
        async with gateway(GATEWAY_CACHE_URL=redis.url, GATEWAY_CACHE_TIMEOUT="0.3") as gw:
            form = form_for()
            first, second = v3_headers(form), v3_headers(form)
            with caplog.at_level(logging.WARNING, logger="gateway.fleet.nonces"):
                redis.pause()
                answers = [
                    await gw.post("/plivo/callbacks", data=form, headers=h)
                    for h in (first, second, first)
                ]
                redis.resume()

                redelivered: list[int] = []

                async def taken() -> bool:  # Plivo delivers it again: taken, not a "replay"
                    redelivered.append(await post(gw, form, first))
                    return redelivered[-1] == 200

                await eventually(taken)
            assert [a.status_code for a in answers] == [503] * 3
            assert all(a.headers["retry-after"] == "5" for a in answers)
            assert await post(gw, form, first) == 403  # and now it is a replay
            assert await post(gw, form, second) == 200
            scraped = (await gw.get("/metrics")).text
    refusals = [r for r in caplog.records if "refused (503)" in r.getMessage()]
    assert len(refusals) == 1  # once per outage, not per request
    assert set(redelivered[:-1]) <= {503}  # until Redis answered again
    unavailable = 3 + len(redelivered) - 1
    assert (
        f'gateway_status_callbacks_total{{outcome="store_unavailable"}} {unavailable}.0' in scraped
    )


async def test_a_redis_store_refuses_rather_than_guesses() -> None:
    with own_redis() as redis:
        fleet = open_fleet(redis.url, prefix="t", max_entries=10, timeout=0.2, generation_ttl=60.0)
        assert await fleet.start()
        try:
            assert await fleet.nonces.remember([("v3", "n")], 60)
            redis.stop()
            with pytest.raises(StateUnavailable):
                await fleet.nonces.remember([("v3", "m")], 60)
            assert not await fleet.nonces.remember([("v3", "n")], 60)  # this instance's copy
        finally:
            await fleet.close()
