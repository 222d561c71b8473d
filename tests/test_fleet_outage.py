"""The README's degradation table, row by row, with a real redis-server paused or stopped.

A paused server (SIGSTOP) is how a stuck Redis looks: connections stay open and nothing is
answered. A stopped one refuses connections. Each row is shown both ways.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from gateway.errors import StateUnavailable, Throttled, UpstreamRateLimited
from gateway.fleet import Fleet, RedisEntries, open_fleet
from gateway.plivo.flow import Started, StartParams
from gateway.verify.flow import FlowPolicy, VerificationService
from gateway.verify.sessions import CachePolicy
from tests.conftest import eventually
from tests.redis_server import OwnRedis, own_redis
from tests.test_sessions import FakePlivo, service

OUTAGES = ["paused", "stopped"]


@contextmanager
def outage(server: OwnRedis, how: str) -> Iterator[None]:
    """Redis paused (SIGSTOP) or stopped for the block; answering again after it."""
    server.pause() if how == "paused" else server.stop()
    try:
        yield
    finally:
        server.resume() if how == "paused" else server.start()


@asynccontextmanager
async def fleet_on(server: OwnRedis) -> AsyncIterator[Fleet]:
    """An instance's fleet state on `server` (timeouts short: the test waits them out)."""
    fleet = open_fleet(
        server.url,
        prefix=f"t{uuid.uuid4().hex[:8]}",
        max_entries=100,
        timeout=0.2,
        generation_ttl=60.0,
    )
    assert await fleet.start()
    try:
        yield fleet
    finally:
        await fleet.close()


def new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass
class FakeFlow:
    """Plivo's create endpoint: counts what was sent; `during` runs inside the call."""

    sent: list[str] = field(default_factory=list)
    during: Callable[[], None] | None = None

    async def create_session(self, params: StartParams) -> Started:
        if self.during is not None:
            self.during()
        self.sent.append(params.recipient)
        return Started(new_uuid(), "Session initiated", "api-1")


def flow_on(fleet: Fleet, plivo: FakeFlow, policy: FlowPolicy | None = None) -> VerificationService:
    async def changed(session_uuid: str) -> None:
        pass

    sessions = service(FakePlivo(), fleet.entries, CachePolicy(key_prefix="t"))
    return VerificationService(
        cast(Any, plivo),  # only starts are made
        sessions,
        policy or FlowPolicy(lease=1.0),
        entries=fleet.entries,
        counters=fleet.counters,
        memos=fleet.memos,
        changed=changed,
    )


@pytest.mark.parametrize("how", OUTAGES)
async def test_reads_degrade_to_a_cache_and_single_flight_of_this_process(how: str) -> None:
    with own_redis() as server:
        async with fleet_on(server) as fleet:
            plivo = FakePlivo(latency=0.05)
            sessions = service(plivo, fleet.entries)
            assert (await sessions.get(new_uuid())).source == "miss"
            with outage(server, how):
                during = new_uuid()
                lookups = await asyncio.gather(*(sessions.get(during) for _ in range(20)))
                assert all(lookup.session is not None for lookup in lookups)
                assert len(plivo.calls) == 2  # one for 20 lookups: single-flight, here
                assert (await sessions.get(during)).source == "hit"  # the cache, here
                assert len(plivo.calls) == 2


@pytest.mark.parametrize("how", OUTAGES)
async def test_the_budget_falls_back_to_this_instances_share_never_unlimited(how: str) -> None:
    with own_redis() as server:
        async with fleet_on(server) as fleet:
            plivo = FakePlivo()
            sessions = service(plivo, fleet.entries, CachePolicy(budget_requests=4))
            for _ in range(2):
                await sessions.get(new_uuid())
            with outage(server, how):
                for _ in range(2):  # one instance: its share is the whole budget, 2 left
                    await sessions.get(new_uuid())
                with pytest.raises(UpstreamRateLimited):
                    await sessions.get(new_uuid())
            assert len(plivo.calls) == 4


@pytest.mark.parametrize("how", OUTAGES)
async def test_starts_to_one_recipient_never_exceed_the_limit_across_an_outage(how: str) -> None:
    with own_redis() as server:
        async with fleet_on(server) as fleet:
            plivo = FakeFlow()
            flow = flow_on(fleet, plivo, FlowPolicy(starts_per_recipient=(5, 600.0)))
            for _ in range(3):
                await flow.start("app", StartParams(recipient="919999000001"), None)
            with outage(server, how):
                refused = 0
                for _ in range(5):
                    try:
                        await flow.start("app", StartParams(recipient="919999000001"), None)
                    except Throttled:
                        refused += 1
            assert refused == 3
            assert len(plivo.sent) == 5


@pytest.mark.parametrize("how", OUTAGES)
async def test_an_idempotent_start_is_never_sent_twice_across_an_outage(how: str) -> None:
    with own_redis() as server:
        async with fleet_on(server) as one, fleet_on(server) as two:
            plivo = FakeFlow()
            first, second = flow_on(one, plivo), flow_on(two, plivo)
            params = StartParams(recipient="919999000002")
            sent = await first.start("app", params, "signup-1")
            with outage(server, how):
                # The instance that recorded it replays its own copy...
                again = await first.start("app", params, "signup-1")
                assert again.replayed
                assert again.started == sent.started
                # ...one that holds no copy refuses, retryably, rather than send again.
                with pytest.raises(StateUnavailable) as refused:
                    await second.start("app", params, "signup-1")
                assert refused.value.retry_after > 0
                with pytest.raises(StateUnavailable):
                    await first.start("app", params, "never-seen-before")
            if how == "paused":  # a stopped server without persistence comes back empty
                assert two.link is not None
                await eventually(two.link.ping)
                later = await second.start("app", params, "signup-1")
                assert later.replayed
                assert later.started == sent.started
            assert len(plivo.sent) == 1


@pytest.mark.parametrize("how", OUTAGES)
async def test_a_record_that_could_not_be_written_is_written_once_redis_is_back(
    how: str,
) -> None:
    with own_redis() as server:
        async with fleet_on(server) as one, fleet_on(server) as two:
            lost: list[bool] = []

            def redis_goes() -> None:  # after the claim, before the record is written
                server.pause() if how == "paused" else server.stop()
                lost.append(True)

            plivo = FakeFlow(during=redis_goes)
            params = StartParams(recipient="919999000003")
            sent = await flow_on(one, plivo).start("app", params, "signup-2")
            assert lost
            link = one.link
            assert link is not None
            assert link.pending == 1
            server.resume() if how == "paused" else server.start()
            plivo.during = None

            async def replayed() -> bool:
                await link.ping()  # what the next call would do: Redis is back
                return link.pending == 0

            await eventually(replayed)
            assert two.link is not None
            await eventually(two.link.ping)  # its connections may have to be made again
            later = await flow_on(two, plivo).start("app", params, "signup-2")
            assert later.replayed
            assert later.started == sent.started
            assert len(plivo.sent) == 1


@pytest.mark.parametrize("how", OUTAGES)
async def test_a_change_announced_during_an_outage_reaches_the_fleet_when_it_is_back(
    how: str,
) -> None:
    with own_redis() as server:
        async with fleet_on(server) as fleet:
            entries, link = fleet.entries, fleet.link
            assert isinstance(entries, RedisEntries)
            assert fleet.link is not None
            sessions = service(FakePlivo(), entries)
            changed = new_uuid()
            await sessions.get(changed)
            key = sessions.cache_key(changed)
            with outage(server, how):
                await fleet.feed.announce(changed, "{}")
                assert fleet.link.pending >= 1
            if how == "stopped":  # it came back empty: seed the copy again
                await sessions.get(changed)

            async def forgotten() -> bool:
                assert link is not None
                await link.ping()
                claim = await entries.claim(key, changed, "t", 1, force=False, budget=None)
                return claim.state == "fetch"

            await eventually(forgotten)
