"""docs/caching-and-fleet.md's degradation table, row by row, with a real Redis paused or stopped.

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
from gateway.fleet import Demand, Fleet, RedisEntries, open_fleet
from gateway.fleet.link import RedisLink
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
async def fleet_on(server: OwnRedis, prefix: str = "fleet") -> AsyncIterator[Fleet]:
    """An instance's fleet state on `server` (timeouts short: the test waits them out)."""
    fleet = open_fleet(
        server.url,
        prefix=prefix,
        max_entries=100,
        timeout=0.2,
        generation_ttl=60.0,
    )
    assert await fleet.start()
    try:
        yield fleet
    finally:
        await fleet.close()


@asynccontextmanager
async def listening(*fleets: Fleet) -> AsyncIterator[None]:
    """Each instance subscribed to the change feed (so it counts the instances listening)."""
    heard: list[list[bool]] = [[] for _ in fleets]

    async def listen(fleet: Fleet, states: list[bool]) -> None:
        async for _ in fleet.feed.messages(states.append):
            pass

    tasks = [asyncio.create_task(listen(f, h)) for f, h in zip(fleets, heard, strict=True)]
    try:
        for fleet, states in zip(fleets, heard, strict=True):
            assert fleet.link is not None
            link = fleet.link

            async def counted(states: list[bool] = states, link: RedisLink = link) -> bool:
                await asyncio.sleep(0)
                return bool(states) and link.peers_known and link.peers == len(fleets)

            await eventually(counted, within=20)  # instances are counted every 5 s
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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
            sessions = service(plivo, fleet.entries, CachePolicy(budget_requests=4, key_share=1.0))
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
    # One instance that knows it is alone decides exactly: 3 before, 2 more, then refused.
    with own_redis() as server:
        async with fleet_on(server) as fleet, listening(fleet):
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
async def test_several_instances_refuse_throttled_starts_while_redis_is_away(how: str) -> None:
    # What the others took is unknown to each: a share could go past the limit, so they refuse.
    with own_redis() as server:
        async with fleet_on(server) as one, fleet_on(server) as two, listening(one, two):
            plivo = FakeFlow()
            first, second = (flow_on(f, plivo) for f in (one, two))
            await first.start("app", StartParams(recipient="919999000004"), None)
            with outage(server, how):
                for flow in (first, second, first, second):
                    for recipient in ("919999000004", "919999000005"):
                        with pytest.raises(Throttled):
                            await flow.start("app", StartParams(recipient=recipient), None)
            assert len(plivo.sent) == 1


@pytest.mark.parametrize("how", OUTAGES)
async def test_an_instance_that_never_counted_the_fleet_refuses_throttled_starts(how: str) -> None:
    with own_redis() as server:
        async with fleet_on(server) as fleet:  # not subscribed: it does not know it is alone
            plivo = FakeFlow()
            flow = flow_on(fleet, plivo)
            with outage(server, how), pytest.raises(Throttled):
                await flow.start("app", StartParams(recipient="919999000006"), None)
            assert plivo.sent == []


async def test_takes_made_during_an_outage_are_counted_before_the_next_decision() -> None:
    with own_redis() as server:
        async with fleet_on(server) as fleet, listening(fleet):
            plivo = FakeFlow()
            flow = flow_on(fleet, plivo, FlowPolicy(starts_per_recipient=(5, 600.0)))
            for _ in range(3):
                await flow.start("app", StartParams(recipient="919999000007"), None)
            with outage(server, "paused"):
                for _ in range(2):
                    await flow.start("app", StartParams(recipient="919999000007"), None)
            assert fleet.link is not None
            link = fleet.link

            async def back() -> bool:
                return not link.degraded or await link.ping()

            await eventually(back)
            with pytest.raises(Throttled):  # Redis counted the outage's two before deciding
                await flow.start("app", StartParams(recipient="919999000007"), None)
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
            server.resume() if how == "paused" else server.start()
            plivo.during = None

            await eventually(link.ping)  # what the next call would do: the record goes first
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
            if how == "stopped":  # it came back empty: seed the copy again
                await sessions.get(changed)

            async def forgotten() -> bool:
                assert link is not None
                await link.ping()
                claim = await entries.claim(key, changed, "t", 1, force=False, demand=Demand(None))
                return claim.state == "fetch"

            await eventually(forgotten)


@pytest.mark.parametrize("failure", ["timeout", "5xx"])
async def test_a_start_plivo_may_have_sent_keeps_its_key(failure: str) -> None:
    # A timeout or a 5xx after the request left: Plivo may have sent the code. A retry with the
    # same key must not send another; it is told the outcome is unknown.
    from gateway.errors import IdempotencyConflict, UpstreamFailed, UpstreamTimeout

    with own_redis() as server:
        async with fleet_on(server) as one, fleet_on(server) as two:
            plivo = FakeFlow()

            def fails() -> None:
                if failure == "timeout":
                    raise UpstreamTimeout("no answer", method="POST", path="/Verify/Session/")
                raise UpstreamFailed("503", method="POST", path="/Verify/Session/")

            plivo.during = fails
            params = StartParams(recipient="919999000008")
            with pytest.raises((UpstreamTimeout, UpstreamFailed)):
                await flow_on(one, plivo).start("app", params, "signup-3")
            plivo.during = None
            for flow in (flow_on(one, plivo), flow_on(two, plivo)):
                with pytest.raises(IdempotencyConflict, match="unknown"):
                    await flow.start("app", params, "signup-3")
            assert plivo.sent == []
            # A start refused before anything was sent leaves its key free.
            throttled = flow_on(one, plivo, FlowPolicy(starts_per_recipient=(0, 600.0)))
            with pytest.raises(Throttled):
                await throttled.start("app", params, "signup-4")
            again = await flow_on(two, plivo).start("app", params, "signup-4")
            assert not again.replayed
            assert len(plivo.sent) == 1


async def test_a_redis_that_lost_its_data_gets_the_records_back_before_they_are_trusted() -> None:
    with own_redis() as server:
        async with fleet_on(server) as one, fleet_on(server) as two:
            plivo = FakeFlow()
            params = StartParams(recipient="919999000009")
            sent = await flow_on(one, plivo).start("app", params, "signup-5")
            server.flush()  # or a restart without persistence: every record is gone
            assert two.link is not None
            assert one.link is not None
            # The instance that holds the record replays it and writes it back...
            again = await flow_on(one, plivo).start("app", params, "signup-5")
            assert again.replayed
            assert again.started == sent.started
            later = await flow_on(two, plivo).start("app", params, "signup-5")
            assert later.replayed
            assert later.started == sent.started
            assert len(plivo.sent) == 1


async def test_an_instance_that_sees_the_data_lost_refuses_keys_it_holds_no_copy_of() -> None:
    from gateway.errors import StateUnavailable

    with own_redis() as server:
        async with fleet_on(server) as fleet:
            assert fleet.link is not None
            plivo = FakeFlow()
            server.stop()
            server.start()  # no persistence: it comes back empty
            await eventually(fleet.link.ping)  # its connection is made again
            assert fleet.link.lost_recently
            with pytest.raises(StateUnavailable):
                await flow_on(fleet, plivo).start("app", StartParams(recipient="919999000012"), "k")
            assert plivo.sent == []


async def test_an_empty_idempotency_key_is_refused() -> None:
    from gateway.errors import InvalidInput

    plivo = FakeFlow()
    fleet = open_fleet(None, prefix="t", max_entries=10, timeout=1.0, generation_ttl=1.0)
    for blank in ("", "   "):
        with pytest.raises(InvalidInput, match="Idempotency-Key"):
            await flow_on(fleet, plivo).start("app", StartParams(recipient="919999000010"), blank)
    assert plivo.sent == []


async def test_readyz_says_not_ready_when_redis_refuses_writes() -> None:
    with own_redis() as server:
        async with fleet_on(server) as fleet:
            assert await fleet.is_ready()
            assert fleet.link is not None
            await fleet.link.client.execute_command("REPLICAOF", "127.0.0.1", "1")  # read-only
            try:
                assert not await fleet.is_ready()
            finally:
                await fleet.link.client.execute_command("REPLICAOF", "NO", "ONE")


async def test_an_idle_instance_writes_what_it_owes_once_it_hears_redis_again() -> None:
    # The instance that kept a record gets no request after the outage: its subscription,
    # made again, is what writes the record, so another instance can replay it.
    from gateway.errors import IdempotencyConflict, StateUnavailable

    with own_redis() as server:
        async with fleet_on(server) as one, fleet_on(server) as two, listening(one, two):
            plivo = FakeFlow(during=server.pause)  # Redis stops answering mid-start
            params = StartParams(recipient="919999000011")
            sent = await flow_on(one, plivo).start("app", params, "signup-6")
            plivo.during = None
            server.resume()

            async def replayed() -> bool:
                try:
                    later = await flow_on(two, plivo).start("app", params, "signup-6")
                except (IdempotencyConflict, StateUnavailable):
                    return False
                return later.replayed and later.started == sent.started

            await eventually(replayed, within=30)
            assert len(plivo.sent) == 1


async def test_a_claim_not_answered_during_a_pause_makes_no_reader_wait_its_lease() -> None:
    # The claim sent to a paused Redis times out here (the read is answered from this
    # process), but Redis runs it when it goes on: the fetch lock is taken for a holder that
    # left. The first read once Redis answers again must not wait for that lock's lease.
    with own_redis() as server:
        async with fleet_on(server) as fleet:
            assert fleet.link is not None
            link = fleet.link
            sessions = service(FakePlivo(), fleet.entries, CachePolicy(fetch_lease=30.0))
            session = new_uuid()
            with outage(server, "paused"):
                assert (await sessions.get(session)).source == "miss"  # fetched here
            await eventually(link.ping)  # Redis ran the claim; this instance hears it again
            async with asyncio.timeout(10):  # a third of the lease
                again = await sessions.get(session)
            assert again.session is not None


async def test_a_lock_taken_by_a_claim_that_ran_after_the_release_does_not_hold_readers() -> None:
    # A claim that runs even later than the release owed for it (its connection was slower
    # than the new one): this instance knows the token, lets the lock go and fetches.
    with own_redis() as server:
        async with fleet_on(server) as fleet:
            entries, link = fleet.entries, fleet.link
            assert isinstance(entries, RedisEntries)
            assert link is not None
            session = new_uuid()
            key = f"fleet:session:{session}"
            with outage(server, "paused"):
                lost = await entries.claim(
                    key, session, "lost", 30.0, force=False, demand=Demand(None)
                )
                assert lost.state == "fetch"  # this process's own claim
            await eventually(link.ping)  # the release owed is made
            await link.call("HSET", f"fleet:lock:{key}", "t", "lost")  # the claim, late
            await link.call("PEXPIRE", f"fleet:lock:{key}", 30_000)
            other = await entries.claim(
                key, session, "next", 30.0, force=False, demand=Demand(None)
            )
            assert other.state == "fetch"
            assert await link.call("HGET", f"fleet:lock:{key}", "t") == b"next"


async def test_a_start_refused_because_the_throttles_cannot_be_read_says_so() -> None:
    # Refused, as the degradation table says, but for what it is: not the recipient's fault,
    # and worth trying again shortly rather than in a tenth of the throttle's window.
    with own_redis() as server:
        async with fleet_on(server) as fleet, listening(fleet):
            plivo = FakeFlow()
            flow = flow_on(fleet, plivo, FlowPolicy(starts_per_recipient=(5, 600.0)))
            await flow.start("app", StartParams(recipient="919999000013"), None)
            with outage(server, "paused"), pytest.raises(Throttled) as refused:
                await flow.start("app", StartParams(recipient="919999000014"), None)
            message = str(refused.value)
            assert "recipient" not in message
            assert "throttle counters cannot be reached" in message
            assert 0 < refused.value.retry_after <= 5
            assert len(plivo.sent) == 1
