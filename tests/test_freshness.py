"""Freshness within Plivo's budget: stale copies over refusals, headroom for first reads, an
adaptive refresh interval, per-key shares, pass-through credentials, pollers, callbacks first,
and the least recently refreshed copies refreshed first.

Budgets are small (8 or 16 requests a minute, 4 a second for a poller that must see the
window pass), and copies are made old by writing them with an old `stored_at` rather than by
sleeping; what happens in the background is waited for with `eventually` or by the next item
of a watch. Most tests go through the HTTP app, in memory and on the real Redis.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import pytest
from asgi_lifespan import LifespanManager
from redis import Redis

from gateway import fixtures
from gateway.app import create_app
from gateway.config import Settings
from gateway.errors import Throttled, UpstreamRateLimited
from gateway.fleet import CacheEntry, Fleet, open_fleet
from gateway.operations.principals import key_digest
from gateway.plivo.models import Session, parse_session
from gateway.plivo.signature import signature_v3
from gateway.simulator.seed import seed_sessions
from gateway.verify.sessions import CachePolicy, Lookup, SessionService
from gateway.verify.watch import SessionWatcher
from tests.conftest import AUTH_ID, AUTH_TOKEN, Simulator, eventually, make_settings
from tests.redis_server import require_shared_redis, unique_prefix
from tests.test_sessions import FakePlivo, fresh_cache, service

DOCS = fixtures.DOCS_EXAMPLE_UUID  # expired in the simulator
IN_PROGRESS = sorted(u for u, body in seed_sessions().items() if body["status"] == "in-progress")
SESSION = "query S($uuid: ID!) { session(uuid: $uuid) { sessionUuid status } }"
LIST = "query L($first: Int!) { sessions(first: $first) { edges { node { sessionUuid } } } }"
START = """mutation S($input: StartVerificationInput!) {
  startVerification(input: $input) { sessionUuid }
}"""
PUBLIC = "https://gateway.example"
SMALL_BUDGET = {"PLIVO_BUDGET_REQUESTS": "8", "PLIVO_BUDGET_WINDOW": "60"}
ONE_CALLER = {**SMALL_BUDGET, "GATEWAY_KEY_BUDGET_SHARE": "1"}  # shares tested on their own
NO_STALE_WHILE_REVALIDATE = {"GATEWAY_CACHE_STALE_WHILE_REVALIDATE": "0"}
NO_RESPONSE_CACHE = {"GATEWAY_RESPONSE_CACHE_ENTRIES": "0"}


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Settings for the session cache in this process, or on the real Redis (prefix cleaned)."""
    if request.param == "memory":
        yield {}
        return
    url, prefix = require_shared_redis(), unique_prefix()
    yield {"GATEWAY_CACHE_URL": url, "GATEWAY_CACHE_PREFIX": prefix}
    client = Redis.from_url(url)
    keys = cast(list[bytes], client.keys(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def backend_fleet(request: pytest.FixtureRequest) -> Fleet:
    """A fleet in this process, or on the real Redis (conftest's `shared_redis`)."""
    if request.param == "memory":
        return open_fleet(None, prefix="t", max_entries=1000, timeout=1.0, generation_ttl=60.0)
    fleet: Fleet = request.getfixturevalue("shared_redis")[0]
    return fleet


@asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app in-process, and its Starlette state (its fleet and session services)."""
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client, cast(Any, app).app.state


def keyed(**names: str) -> str:
    """GATEWAY_API_KEYS for `name=scopes` (each key's secret is its name)."""
    return ",".join(f"{name}:{key_digest(name)}:{scopes}" for name, scopes in names.items())


async def ask(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, object],
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    extra = {"Authorization": f"Bearer {key}"} if key else {}
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={**extra, **(headers or {})},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def read(client: httpx.AsyncClient, session_uuid: str, **options: Any) -> str:
    """Read a session: its cache status ("miss", "hit" or "stale"), or the error's code."""
    body = await ask(client, SESSION, {"uuid": session_uuid}, **options)
    if body.get("errors"):
        code: str = body["errors"][0]["extensions"]["code"]
        return code
    status: str = body["extensions"]["cache"][session_uuid]["status"]
    return status


def new_uuid() -> str:
    """A session Plivo does not know (a 404 that spends a request like any other read)."""
    return str(uuid.uuid4())


def a_session(session_uuid: str, status: str = "in-progress") -> Session:
    body = copy.deepcopy(fixtures.load("get-docs-example"))
    assert isinstance(body, dict)
    body.update(session_uuid=session_uuid, status=status)
    return parse_session(body)


async def plant(state: Any, session_uuid: str, *, age: float, expired_for: float) -> None:
    """A copy fetched `age` s ago that stopped being fresh `expired_for` s ago."""
    now = time.time()
    entry = CacheEntry(a_session(session_uuid), stored_at=now - age, fresh_until=now - expired_for)
    key = state.services.default.cache_key(session_uuid)
    await state.fleet.entries.put(key, session_uuid, entry, 3600)


def signed_callback(session_uuid: str) -> tuple[dict[str, str], dict[str, str]]:
    """A status callback for the session, signed as Plivo signs one to the public URL."""
    form = {"SessionUUID": session_uuid, "SessionStatus": "in-progress", "Channel": "sms"}
    nonce = "8675309"
    signature = signature_v3(
        "POST", f"{PUBLIC}/plivo/callbacks", nonce, AUTH_TOKEN, {k: [v] for k, v in form.items()}
    )
    return form, {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}


@dataclass
class Recorded:
    """A session service whose lookups are kept, in order (for what a poller read)."""

    inner: SessionService
    lookups: list[Lookup] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.inner.namespace

    async def get(self, session_uuid: str, **options: Any) -> Lookup:
        lookup = await self.inner.get(session_uuid, **options)
        self.lookups.append(lookup)
        return lookup


# --- 1. stale over refusals ---------------------------------------------------------------


async def test_a_spent_budget_answers_any_copy_up_to_max_stale_and_refuses_only_without_one(
    simulator: Simulator, backend: dict[str, str]
) -> None:
    settings = make_settings(simulator.url, **ONE_CALLER, **backend)
    async with gateway(settings) as (client, state):
        assert [await read(client, new_uuid()) for _ in range(8)] == ["miss"] * 8
        assert await read(client, new_uuid()) == "RATE_LIMITED"  # no copy at all
        await plant(state, DOCS, age=400, expired_for=398)  # 398 s past freshness
        body = await ask(client, SESSION, {"uuid": DOCS})
        assert "errors" not in body, body
        assert body["extensions"]["cache"][DOCS]["status"] == "stale"
        assert body["extensions"]["cache"][DOCS]["age"] >= 400
        assert body["data"]["session"]["sessionUuid"] == DOCS
        await plant(state, DOCS, age=700, expired_for=698)  # past GATEWAY_CACHE_MAX_STALE
        assert await read(client, DOCS) == "RATE_LIMITED"
    assert simulator.served() == 8


async def test_no_copy_older_than_max_stale_is_served_while_it_is_refreshed(
    simulator: Simulator,
) -> None:
    # Stale-while-revalidate would serve it (1 s past freshness, within 10 s); max_stale wins.
    settings = make_settings(simulator.url, GATEWAY_CACHE_MAX_STALE="30", **NO_RESPONSE_CACHE)
    async with gateway(settings) as (client, state):
        await plant(state, DOCS, age=40, expired_for=1)
        assert await read(client, DOCS) == "miss"  # the fetch, not the 40 s old copy
        await plant(state, DOCS, age=20, expired_for=1)
        assert await read(client, DOCS) == "stale"  # within both: served while refreshed


# --- 2. headroom --------------------------------------------------------------------------


async def test_refreshes_of_polled_sessions_stop_at_three_quarters_and_first_reads_go_on(
    simulator: Simulator, backend: dict[str, str]
) -> None:
    settings = make_settings(
        simulator.url, **ONE_CALLER, **NO_STALE_WHILE_REVALIDATE, **NO_RESPONSE_CACHE, **backend
    )
    polled = IN_PROGRESS[:4]
    async with gateway(settings) as (client, state):
        assert [await read(client, u) for u in polled] == ["miss"] * 4  # 4 of 8 spent
        for session_uuid in polled:  # their copies just expired
            await plant(state, session_uuid, age=3, expired_for=1)
        refreshed = [await read(client, u) for u in polled]
        assert refreshed == ["miss", "miss", "stale", "stale"]  # refreshes stop at 6 of 8
        assert [await read(client, new_uuid()) for _ in range(2)] == ["miss", "miss"]
        assert await read(client, new_uuid()) == "RATE_LIMITED"  # the whole budget is spent
    assert simulator.served() == 8


async def test_refreshes_of_sessions_nobody_polls_stop_at_half_the_budget(
    simulator: Simulator, backend: dict[str, str]
) -> None:
    settings = make_settings(
        simulator.url, **ONE_CALLER, **NO_STALE_WHILE_REVALIDATE, **NO_RESPONSE_CACHE, **backend
    )
    unpolled = [new_uuid() for _ in range(6)]
    async with gateway(settings) as (client, state):
        for session_uuid in unpolled:  # copies read elsewhere (a page), just expired
            await plant(state, session_uuid, age=0.5, expired_for=0.1)
        refreshed = [await read(client, u) for u in unpolled]
        assert refreshed == ["miss"] * 4 + ["stale"] * 2
        assert [await read(client, new_uuid()) for _ in range(4)] == ["miss"] * 4
        assert await read(client, new_uuid()) == "RATE_LIMITED"
    assert simulator.served() == 8


# --- 3. the adaptive interval -------------------------------------------------------------


def planned(polled: int, requests: int, window: float) -> float:
    """The refresh interval of `polled` sessions: 3/4 of the budget, with 20 % slack."""
    return polled / (requests * 0.75 / window) * 1.2


async def test_a_fetch_stays_fresh_as_long_as_the_polled_sessions_need_to_fit_the_budget() -> None:
    plivo = FakePlivo(session_status="in-progress")
    policy = CachePolicy(in_progress_ttl=0.01, budget_requests=20, budget_window=60)
    sessions = service(plivo, fresh_cache(), policy)
    lookups = [await sessions.get(new_uuid()) for _ in range(5)]
    expected = [max(0.01, planned(n, 20, 60)) for n in range(5)]  # n polled before each
    assert [lookup.fresh_for for lookup in lookups] == pytest.approx(expected)


async def test_metrics_show_the_live_sessions_and_the_refresh_interval(
    simulator: Simulator,
) -> None:
    settings = make_settings(simulator.url, **ONE_CALLER, GATEWAY_CACHE_TTL_IN_PROGRESS="0.01")
    async with gateway(settings) as (client, _):
        for session_uuid in IN_PROGRESS[:3]:
            assert await read(client, session_uuid) == "miss"
        scraped = (await client.get("/metrics")).text
    # the third fetch saw the first two in the live set
    assert "gateway_live_sessions 2.0" in scraped
    assert f"gateway_refresh_interval_seconds {planned(2, 8, 60)}" in scraped


async def test_a_key_polling_many_sessions_does_not_stretch_another_keys_few(
    backend_fleet: Fleet,
) -> None:
    plivo = FakePlivo(session_status="in-progress")
    policy = CachePolicy(
        in_progress_ttl=0.01, budget_requests=40, budget_window=60, key_prefix=unique_prefix()
    )
    sessions = service(plivo, backend_fleet.entries, policy)
    for _ in range(10):
        await sessions.get(new_uuid(), caller="many")
    many = await sessions.get(new_uuid(), caller="many")
    few = [await sessions.get(new_uuid(), caller="few") for _ in range(2)]
    assert many.fresh_for == pytest.approx(planned(10, 40, 60))  # the fleet's 10 at 3/4
    assert few[0].fresh_for == pytest.approx(0.01)  # it polls none yet
    # its one session at its half of the 3/4, not the other key's eleven
    assert few[1].fresh_for == pytest.approx(planned(1, 40, 60) / 0.5)


def test_the_refresh_interval_never_outgrows_max_stale() -> None:
    policy = CachePolicy(in_progress_ttl=2, max_stale=30)
    in_progress = a_session(new_uuid())
    assert policy.ttl_for(in_progress, live=10) == pytest.approx(max(2, planned(10, 300, 5)))
    assert policy.ttl_for(in_progress, live=100_000) == 30  # a hit is never older than that


async def test_the_polled_sessions_are_counted_across_the_fleet(
    shared_redis: tuple[Fleet, str],
) -> None:
    fleet, prefix = shared_redis
    other = open_fleet(
        require_shared_redis(), prefix=prefix, max_entries=1000, timeout=1.0, generation_ttl=60.0
    )
    assert await other.start()
    try:
        plivo = FakePlivo(session_status="in-progress")
        policy = CachePolicy(
            in_progress_ttl=0.01, budget_requests=20, budget_window=60, key_prefix=prefix
        )
        one, two = service(plivo, fleet.entries, policy), service(plivo, other.entries, policy)
        for _ in range(3):
            await one.get(new_uuid())
        lookup = await two.get(new_uuid())  # another instance: it sees the three
    finally:
        await other.close()
    assert lookup.source == "miss"
    assert lookup.fresh_for == pytest.approx(planned(3, 20, 60))


async def test_the_response_cache_keeps_an_answer_for_the_planned_interval(
    simulator: Simulator,
) -> None:
    settings = make_settings(
        simulator.url,
        **ONE_CALLER,
        **NO_STALE_WHILE_REVALIDATE,
        GATEWAY_CACHE_TTL_IN_PROGRESS="0",
    )
    first, second = IN_PROGRESS[:2]
    async with gateway(settings) as (client, _):
        assert await read(client, first) == "miss"  # polled now: one session in the set
        assert await read(client, second) == "miss"  # fresh for 1 / (8 * 0.75 / 60) * 1.2 s
        assert await read(client, second) == "hit"
        metrics = (await client.get("/metrics")).text
    assert simulator.served(second) == 1
    assert "gateway_response_cache_hits_total 1.0" in metrics


# --- 4. per-key shares --------------------------------------------------------------------


async def test_a_key_at_its_share_is_refused_while_another_key_still_reads(
    simulator: Simulator, backend: dict[str, str]
) -> None:
    settings = make_settings(
        simulator.url,
        GATEWAY_AUTH="keys",
        GATEWAY_API_KEYS=keyed(greedy="read", modest="read"),
        PLIVO_BUDGET_REQUESTS="16",
        PLIVO_BUDGET_WINDOW="60",
        GATEWAY_KEY_BUDGET_SHARE="0.25",  # 4 requests a key
        **backend,
    )
    async with gateway(settings) as (client, _):
        greedy = [await read(client, new_uuid(), key="greedy") for _ in range(6)]
        modest = [await read(client, new_uuid(), key="modest") for _ in range(2)]
    assert greedy == ["miss"] * 4 + ["RATE_LIMITED"] * 2
    assert modest == ["miss", "miss"]
    assert simulator.served() == 6


async def test_a_keys_refreshes_leave_a_quarter_of_its_share_to_its_first_reads(
    simulator: Simulator, backend: dict[str, str]
) -> None:
    # A share of 8: refreshes stop at 6 (4 for sessions nobody polls), first reads go to 8.
    settings = make_settings(
        simulator.url,
        GATEWAY_AUTH="keys",
        GATEWAY_API_KEYS=keyed(poller="read"),
        PLIVO_BUDGET_REQUESTS="16",
        PLIVO_BUDGET_WINDOW="60",
        **NO_STALE_WHILE_REVALIDATE,
        **NO_RESPONSE_CACHE,
        **backend,
    )
    sessions = [new_uuid() for _ in range(6)]
    async with gateway(settings) as (client, state):
        assert [await read(client, u, key="poller") for u in sessions] == ["miss"] * 6
        for session_uuid in sessions:
            await plant(state, session_uuid, age=3, expired_for=1)
        refreshed = [await read(client, u, key="poller") for u in sessions]
        first_reads = [await read(client, new_uuid(), key="poller") for _ in range(3)]
    assert refreshed == ["stale"] * 6  # 6 of its 8 spent: no refresh fits
    assert first_reads == ["miss", "miss", "RATE_LIMITED"]
    assert simulator.served() == 8


async def test_a_key_at_its_share_gets_its_last_copy_stale(simulator: Simulator) -> None:
    settings = make_settings(
        simulator.url,
        GATEWAY_AUTH="keys",
        GATEWAY_API_KEYS=keyed(greedy="read", modest="read"),
        PLIVO_BUDGET_REQUESTS="16",
        PLIVO_BUDGET_WINDOW="60",
        GATEWAY_KEY_BUDGET_SHARE="0.25",
        GATEWAY_CACHE_TTL_TERMINAL="0",  # every read of DOCS wants a refresh
        **NO_STALE_WHILE_REVALIDATE,
    )
    async with gateway(settings) as (client, _):
        assert await read(client, DOCS, key="greedy") == "miss"
        for _ in range(3):
            assert await read(client, new_uuid(), key="greedy") == "miss"  # its share is spent
        assert await read(client, DOCS, key="greedy") == "stale"
        assert await read(client, DOCS, key="modest") == "miss"
    assert simulator.served(DOCS) == 2


# --- 5. pass-through credentials ----------------------------------------------------------


CREDENTIAL_KEYS = keyed(broker="read+passthrough", reader="read")
WRONG_TOKEN = {"X-Plivo-Auth-Id": AUTH_ID, "X-Plivo-Auth-Token": "not-the-accounts-token"}


async def test_no_account_id_becomes_a_metric_label(simulator: Simulator) -> None:
    settings = make_settings(
        simulator.url,
        GATEWAY_AUTH="keys",
        GATEWAY_API_KEYS=CREDENTIAL_KEYS,
        PLIVO_BREAKER_THRESHOLD="1",
        PLIVO_RETRY_ATTEMPTS="1",
    )
    own = {"X-Plivo-Auth-Id": AUTH_ID, "X-Plivo-Auth-Token": AUTH_TOKEN}
    simulator.queue_fault("503")
    async with gateway(settings) as (client, _):
        assert await read(client, DOCS, key="broker", headers=own) == "UPSTREAM_ERROR"
        scraped = (await client.get("/metrics")).text
    assert 'gateway_breaker_state{breaker="passthrough:' in scraped  # its breaker opened
    assert AUTH_ID not in scraped


async def test_a_wrong_pass_through_token_spends_the_keys_share_not_the_accounts_budget(
    simulator: Simulator,
) -> None:
    settings = make_settings(
        simulator.url, **SMALL_BUDGET, GATEWAY_AUTH="keys", GATEWAY_API_KEYS=CREDENTIAL_KEYS
    )
    async with gateway(settings) as (client, _):
        wrong = [await read(client, DOCS, key="broker", headers=WRONG_TOKEN) for _ in range(6)]
        assert simulator.served() == 4  # the broker's share: the last two never reached Plivo
        right = [await read(client, new_uuid(), key="reader") for _ in range(4)]
    assert wrong == ["UPSTREAM_UNAUTHENTICATED"] * 4 + ["RATE_LIMITED"] * 2
    assert right == ["miss"] * 4
    assert simulator.served() == 8


async def test_a_wrong_pass_through_token_does_not_lock_the_account_out_of_listing(
    simulator: Simulator,
) -> None:
    settings = make_settings(
        simulator.url, **SMALL_BUDGET, GATEWAY_AUTH="keys", GATEWAY_API_KEYS=CREDENTIAL_KEYS
    )
    async with gateway(settings) as (client, _):
        codes = []
        for first in range(1, 21):  # Plivo's list limit, with a token Plivo refuses
            body = await ask(client, LIST, {"first": first}, key="broker", headers=WRONG_TOKEN)
            codes.append(body["errors"][0]["extensions"]["code"])
        listed = await ask(client, LIST, {"first": 5}, key="reader")
    assert codes == ["UPSTREAM_UNAUTHENTICATED"] * 4 + ["RATE_LIMITED"] * 16
    assert "errors" not in listed, listed
    assert listed["data"]["sessions"]["edges"] is not None


# --- 6. pollers ---------------------------------------------------------------------------


async def test_a_poller_pushes_a_change_with_the_first_read_after_its_copy_expires() -> None:
    plivo = FakePlivo(session_status="in-progress")
    policy = CachePolicy(in_progress_ttl=0.05, stale_while_revalidate=10)
    sessions = Recorded(service(plivo, fresh_cache(), policy))
    watcher = SessionWatcher(interval=0.01, max_interval=0.05)
    watch = watcher.watch(cast(SessionService, sessions), DOCS)
    first = await asyncio.wait_for(anext(watch), 5)
    assert first is not None
    assert first.status.value == "in-progress"
    plivo.session_status = "verified"
    changed = await asyncio.wait_for(anext(watch), 5)
    assert changed is not None
    assert changed.status.value == "verified"
    # Never a stale copy while it is refreshed: the read after expiry fetched the change.
    assert [lookup.source for lookup in sessions.lookups if lookup.source != "hit"] == [
        "miss",
        "miss",
    ]
    assert len(plivo.calls) == 2


async def test_a_poller_keeps_its_last_copy_under_a_spent_budget_then_pushes_the_change() -> None:
    plivo = FakePlivo(session_status="in-progress")
    # A one-second window, so that the budget has room again soon; nothing waits for it but
    # the watch's next item.
    policy = CachePolicy(in_progress_ttl=0.05, budget_requests=4, budget_window=1)
    sessions = Recorded(service(plivo, fresh_cache(), policy))
    watcher = SessionWatcher(interval=0.01, max_interval=0.05)
    watch = watcher.watch(cast(SessionService, sessions), DOCS)
    first = await asyncio.wait_for(anext(watch), 5)
    assert first is not None

    async def spend_the_rest() -> None:
        for _ in range(10):
            await sessions.inner.get(new_uuid())

    with pytest.raises(UpstreamRateLimited):
        await spend_the_rest()

    async def refused() -> bool:
        return any(lookup.source == "stale" for lookup in sessions.lookups)

    await eventually(refused)  # the poller read again: the last copy, no error
    late = watcher.watch(cast(SessionService, sessions), DOCS)
    current = await asyncio.wait_for(anext(late), 5)  # a new subscriber gets the last copy
    assert current is not None
    assert current.status.value == "in-progress"
    plivo.session_status = "verified"
    changed = await asyncio.wait_for(anext(watch), 5)  # once the window has room
    assert changed is not None
    assert changed.status.value == "verified"
    assert sessions.lookups[-1].source == "miss"  # the change came with the first fetch
    stale = [lookup for lookup in sessions.lookups if lookup.source == "stale"]
    assert all(lookup.retry_in > 0 for lookup in stale)  # refusals only, never a revalidation
    await late.aclose()


async def test_a_key_holds_at_most_its_share_of_an_instances_pollers() -> None:
    plivo = FakePlivo(session_status="in-progress")
    sessions = service(plivo, fresh_cache(), CachePolicy(in_progress_ttl=60))
    watcher = SessionWatcher(interval=1, max_interval=1, max_pollers=4, key_share=0.5)
    held = [watcher.watch(sessions, new_uuid(), "greedy") for _ in range(2)]
    for watch in held:
        assert await asyncio.wait_for(anext(watch), 5) is not None
    over = watcher.watch(sessions, new_uuid(), "greedy")
    with pytest.raises(Throttled):
        await anext(over)
    joined = watcher.watch(sessions, new_uuid(), "modest")
    assert await asyncio.wait_for(anext(joined), 5) is not None
    assert watcher.pollers == 3
    for watch in [*held, joined]:
        await watch.aclose()


async def test_reads_and_mutations_spend_one_budget(
    flow_sim: Simulator, backend: dict[str, str]
) -> None:
    # In memory the reads once spent a counter of their own: reads and starts got a budget each.
    settings = make_settings(
        flow_sim.url,
        GATEWAY_AUTH="keys",
        GATEWAY_API_KEYS=keyed(app="read+write"),
        PLIVO_BUDGET_REQUESTS="2",
        PLIVO_BUDGET_WINDOW="60",
        GATEWAY_KEY_BUDGET_SHARE="1",
        **backend,
    )
    async with gateway(settings) as (client, _):
        reads = [await read(client, new_uuid(), key="app") for _ in range(2)]
        body = await ask(client, START, {"input": {"recipient": "919999002101"}}, key="app")
    assert reads == ["miss", "miss"]
    assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert flow_sim.stats()["creates"] == 0


async def test_each_retry_is_paid_for_and_stops_when_the_budget_cannot_afford_it(
    simulator: Simulator, backend: dict[str, str]
) -> None:
    # A budget of 4: the first try is urgent (1 of 4), a retry is a refresh's worth (up to 2).
    settings = make_settings(
        simulator.url,
        PLIVO_BUDGET_REQUESTS="4",
        PLIVO_BUDGET_WINDOW="60",
        GATEWAY_KEY_BUDGET_SHARE="1",
        PLIVO_RETRY_ATTEMPTS="3",
        **backend,
    )
    simulator.queue_fault("503", times=2)  # the third try would have answered
    async with gateway(settings) as (client, _):
        failed = await read(client, new_uuid())
        after = [await read(client, new_uuid()) for _ in range(3)]
    assert failed == "UPSTREAM_ERROR"
    assert simulator.served() == 4  # 2 tries (not 3), then 2 more first reads
    assert after == ["miss", "miss", "RATE_LIMITED"]


async def test_a_refusal_is_not_logged_as_an_upstream_error(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    # A flood of refusals must not flood the log: they are counted in the metrics instead.
    settings = make_settings(
        simulator.url, PLIVO_BUDGET_REQUESTS="1", PLIVO_BUDGET_WINDOW="60", **NO_RESPONSE_CACHE
    )
    async with gateway(settings) as (client, _):
        assert await read(client, new_uuid()) == "miss"
        with caplog.at_level(logging.INFO):
            assert [await read(client, new_uuid()) for _ in range(3)] == ["RATE_LIMITED"] * 3
        scraped = (await client.get("/metrics")).text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "gateway_budget_refusals_total 3.0" in scraped


# --- 7. callbacks first -------------------------------------------------------------------


def callbacks_settings(url: str, backend: dict[str, str]) -> Settings:
    return make_settings(
        url,
        GATEWAY_AUTH="keys",
        GATEWAY_API_KEYS=keyed(app="read+write"),
        GATEWAY_PUBLIC_URL=PUBLIC,
        GATEWAY_CACHE_TTL_IN_PROGRESS="0",  # without callbacks, every read would fetch
        **NO_STALE_WHILE_REVALIDATE,
        **backend,
    )


async def test_a_session_started_with_callbacks_is_fetched_again_only_when_one_arrives(
    flow_sim: Simulator, backend: dict[str, str]
) -> None:
    async with gateway(callbacks_settings(flow_sim.url, backend)) as (client, _):
        body = await ask(client, START, {"input": {"recipient": "919999002001"}}, key="app")
        started = body["data"]["startVerification"]["sessionUuid"]
        assert [await read(client, started, key="app") for _ in range(3)] == ["miss", "hit", "hit"]
        assert flow_sim.served(started) == 1
        form, headers = signed_callback(started)
        assert (
            await client.post("/plivo/callbacks", data=form, headers=headers)
        ).status_code == 200
        assert [await read(client, started, key="app") for _ in range(3)] == ["miss", "hit", "hit"]
    assert flow_sim.served(started) == 2


async def test_a_callback_for_a_polled_session_turns_it_over_to_callbacks(
    simulator: Simulator, backend: dict[str, str]
) -> None:
    session_uuid = IN_PROGRESS[0]
    async with gateway(callbacks_settings(simulator.url, backend)) as (client, _):
        assert await read(client, session_uuid, key="app") == "miss"
        form, headers = signed_callback(session_uuid)
        assert (
            await client.post("/plivo/callbacks", data=form, headers=headers)
        ).status_code == 200
        reads = [await read(client, session_uuid, key="app") for _ in range(3)]
    assert reads == ["miss", "hit", "hit"]  # one refetch, then fresh for the callbacks' TTL
    assert simulator.served(session_uuid) == 2


async def test_a_covered_session_stays_fresh_for_the_callback_ttl_on_every_instance(
    shared_redis: tuple[Fleet, str],
) -> None:
    fleet, prefix = shared_redis
    other = open_fleet(
        require_shared_redis(), prefix=prefix, max_entries=1000, timeout=1.0, generation_ttl=60.0
    )
    assert await other.start()
    try:
        plivo = FakePlivo(session_status="in-progress")
        policy = CachePolicy(in_progress_ttl=0.01, stale_while_revalidate=0, key_prefix=prefix)
        one, two = service(plivo, fleet.entries, policy), service(plivo, other.entries, policy)
        await one.cover(DOCS)  # its callbacks will arrive (here: told to another instance)
        fetched = await two.get(DOCS)
        again = await two.get(DOCS)
    finally:
        await other.close()
    assert (fetched.source, fetched.fresh_for) == ("miss", 60)  # GATEWAY_CACHE_TTL_CALLBACKS
    assert again.source == "hit"
    assert len(plivo.calls) == 1


# --- 8. the least recently refreshed first ------------------------------------------------


async def test_an_overdue_copy_is_refreshed_when_a_just_expired_one_is_refused(
    simulator: Simulator, backend: dict[str, str]
) -> None:
    settings = make_settings(
        simulator.url, **ONE_CALLER, **NO_STALE_WHILE_REVALIDATE, **NO_RESPONSE_CACHE, **backend
    )
    recent, overdue = IN_PROGRESS[:2]
    async with gateway(settings) as (client, state):
        assert [await read(client, u) for u in (recent, overdue)] == ["miss", "miss"]  # polled
        assert [await read(client, new_uuid()) for _ in range(4)] == ["miss"] * 4  # 6 of 8
        # Two polled sessions: planned every 24 s, overdue past 48 s.
        await plant(state, recent, age=25, expired_for=1)
        await plant(state, overdue, age=100, expired_for=76)
        assert await read(client, recent) == "stale"  # the watched limit (6) is reached
        assert await read(client, overdue) == "miss"  # overdue: up to 7
    assert simulator.served(recent) == 1
    assert simulator.served(overdue) == 2
