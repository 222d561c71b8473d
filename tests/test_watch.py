"""SessionWatcher and Changes with fakes at their edges: sharing, backoff, failures, the fleet."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from gateway import fixtures
from gateway.errors import UpstreamRejected, UpstreamTimeout
from gateway.fleet import Changes, MemoClaim
from gateway.operations.response_cache import ResponseCache
from gateway.plivo.models import Session, parse_session
from gateway.verify.sessions import Lookup, SessionService
from gateway.verify.watch import SessionWatcher

UUID = fixtures.DOCS_EXAMPLE_UUID


def session(status: str, attempts: int = 1) -> Session:
    body = copy.deepcopy(fixtures.load("get-docs-example"))
    assert isinstance(body, dict)
    body["status"] = status
    body["attempt_details"] = body["attempt_details"][:attempts]
    return parse_session(body)


@dataclass
class Script:
    """A session service that answers from a list of outcomes, the last one repeated."""

    outcomes: list[Any]
    namespace: str = "test"
    reads: int = 0

    async def get(
        self,
        session_uuid: str,
        *,
        refresh: bool = False,
        caller: str = "anonymous",
        watched: bool = False,
    ) -> Lookup:
        outcome = self.outcomes[min(self.reads, len(self.outcomes) - 1)]
        self.reads += 1
        if isinstance(outcome, Exception):
            raise outcome
        return Lookup(outcome, "miss", 0.0)


def watcher_of(script: Script) -> tuple[SessionWatcher, SessionService]:
    return SessionWatcher(interval=0.01, max_interval=0.02), cast(SessionService, script)


async def collect(watch: AsyncIterator[Session | None]) -> list[str | None]:
    return [None if s is None else s.status.value async for s in watch]


async def test_changes_are_pushed_and_the_watch_ends_at_a_terminal_status() -> None:
    script = Script(
        [
            session("in-progress"),
            session("in-progress"),
            session("in-progress", 2),
            session("verified"),
        ]
    )
    watcher, service = watcher_of(script)
    assert await asyncio.wait_for(collect(watcher.watch(service, UUID)), 5) == [
        "in-progress",
        "in-progress",  # a second attempt is a change too
        "verified",
    ]
    assert watcher.pollers == 0


async def test_a_transient_failure_is_ridden_out() -> None:
    failure = UpstreamTimeout("slow", method="GET", path="/")
    script = Script([failure, failure, session("expired")])
    watcher, service = watcher_of(script)
    assert await asyncio.wait_for(collect(watcher.watch(service, UUID)), 5) == ["expired"]


async def test_a_refusal_ends_every_watch_with_the_error() -> None:
    script = Script([UpstreamRejected("no", method="GET", path="/", status_code=401)])
    watcher, service = watcher_of(script)
    with pytest.raises(UpstreamRejected):
        await asyncio.wait_for(collect(watcher.watch(service, UUID)), 5)


async def test_subscribers_share_a_poller_and_a_late_one_starts_from_the_current_state() -> None:
    script = Script([session("in-progress")])
    watcher = SessionWatcher(interval=0.05, max_interval=0.05)
    service = cast(SessionService, script)
    first = watcher.watch(service, UUID)
    assert (await anext(first)) is not None
    late = watcher.watch(service, UUID.upper())
    current = await asyncio.wait_for(anext(late), 1)
    assert current is not None
    assert current.status.value == "in-progress"
    assert watcher.pollers == 1
    await first.aclose()
    assert watcher.pollers == 1
    await late.aclose()
    assert watcher.pollers == 0


@pytest.mark.parametrize("everything", [False, True])
async def test_a_wake_reads_at_once(everything: bool) -> None:
    script = Script([session("in-progress"), session("verified")])
    watcher = SessionWatcher(interval=30.0, max_interval=30.0)
    watch = watcher.watch(cast(SessionService, script), UUID)
    assert (await anext(watch)) is not None
    pending = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.05)
    assert not pending.done()  # a 30 s interval: nothing without a wake
    if everything:
        watcher.wake_all()
    else:
        watcher.wake(UUID)
    verified = await asyncio.wait_for(pending, 1)
    assert verified is not None
    assert verified.status.value == "verified"


@dataclass
class Channel:
    """A feed that delivers the given messages, and records what is announced."""

    incoming: list[str] = field(default_factory=list)
    published: list[tuple[str, str]] = field(default_factory=list)
    outages: int = 0  # the subscription is lost and made again this many times, at the end

    async def announce(self, uuid: str, message: str) -> None:
        self.published.append((uuid, message))

    async def messages(self, listening: Callable[[bool], None]) -> AsyncIterator[str]:
        listening(True)
        for message in self.incoming:
            yield message
        for _ in range(self.outages):
            listening(False)
            yield '{"origin": "elsewhere", "uuid": "not-a-uuid"}'
            listening(True)


async def test_changes_apply_here_tell_the_fleet_and_hear_the_others() -> None:
    applied: list[str] = []

    async def apply(uuid: str) -> None:
        if uuid.startswith("00000000"):
            raise RuntimeError("a broken apply is logged, not fatal")
        applied.append(uuid)

    cache = Channel()
    changes = Changes(cast(Any, cache), apply, lambda: None)
    await changes.changed(UUID.upper())
    assert applied == [UUID]
    assert cache.published[0][0] == UUID
    other = "8e712097-8090-4644-81e7-8f4265d8354e"
    cache.incoming = [
        cache.published[0][1],  # our own: already applied
        "not json",
        '{"origin": "elsewhere", "uuid": "not-a-uuid"}',
        '{"origin": "elsewhere", "uuid": "00000000-0000-4000-8000-000000000000"}',
        f'{{"origin": "elsewhere", "uuid": "{other}"}}',
    ]
    await changes.listen()
    assert applied == [UUID, other]


async def test_each_subscription_drops_what_was_held_while_deaf() -> None:
    async def apply(uuid: str) -> None:
        pass

    resyncs: list[bool] = []
    cache = Channel(outages=2)
    changes = Changes(cast(Any, cache), apply, lambda: resyncs.append(changes.listening))
    assert not changes.listening
    listener = asyncio.create_task(changes.listen())
    await asyncio.wait_for(changes.subscribed(), 1)
    await listener
    # Subscribed at start and after each of two outages: three resyncs, each before the
    # listener says it hears the fleet (a request in between cannot cache what was missed).
    assert resyncs == [False, False, False]
    assert changes.listening


def test_the_response_cache_can_drop_everything() -> None:
    responses = ResponseCache(10)
    responses.put(b"k", {"data": 1}, {UUID: (0.0, time.time() + 60)}, "q")
    assert responses.get(b"k") is not None
    responses.clear()
    assert responses.get(b"k") is None
    assert len(responses) == 0


class Locked:
    """Idempotency records whose every key is held by a start in flight elsewhere."""

    async def claim(self, key: str, marker: str, ttl: float) -> MemoClaim:
        return MemoClaim()

    async def settle(self, key: str, marker: str, record: str, ttl: float) -> None:
        raise AssertionError("nothing was sent")

    async def release(self, key: str, marker: str) -> None:
        raise AssertionError("nothing was claimed")


async def test_a_start_whose_key_is_held_elsewhere_too_long_is_a_conflict() -> None:
    from gateway.errors import IdempotencyConflict
    from gateway.fleet import MemoryCounters, MemoryEntries
    from gateway.plivo.flow import StartParams
    from gateway.verify.flow import FlowPolicy, VerificationService

    class NoClient:
        async def create_session(self, params: StartParams) -> None:
            raise AssertionError("nothing may be sent while another instance holds the key")

    async def changed(uuid: str) -> None:
        raise AssertionError("nothing changed")

    flow = VerificationService(
        cast(Any, NoClient()),
        cast(SessionService, Script([None])),
        FlowPolicy(lease=0.1),
        entries=MemoryEntries(10),
        counters=MemoryCounters(),
        memos=Locked(),
        changed=changed,
    )
    with pytest.raises(IdempotencyConflict) as conflict:
        await flow.start("app", StartParams(recipient="919999000012"), "key-1")
    assert conflict.value.retry_after is not None  # still in flight: worth trying again


def test_the_flow_errors_have_their_codes() -> None:
    from gateway.errors import IdempotencyConflict, InvalidInput, StateUnavailable, Throttled
    from gateway.schema.errors import gateway_error_extensions

    assert gateway_error_extensions(InvalidInput("x")) == {"code": "BAD_USER_INPUT"}
    assert gateway_error_extensions(Throttled("x", retry_after=1.5)) == {
        "code": "RATE_LIMITED",
        "retryAfter": 1.5,
    }
    assert gateway_error_extensions(IdempotencyConflict("x")) == {"code": "CONFLICT"}
    assert gateway_error_extensions(IdempotencyConflict("x", retry_after=1.0)) == {
        "code": "CONFLICT",
        "retryAfter": 1.0,
    }
    assert gateway_error_extensions(StateUnavailable("x", retry_after=2.0)) == {
        "code": "STATE_UNAVAILABLE",
        "retryAfter": 2.0,
    }


async def test_an_instance_watches_a_bounded_number_of_sessions() -> None:
    from gateway.errors import Throttled

    script = Script([session("in-progress")])
    watcher = SessionWatcher(interval=0.05, max_interval=0.05, max_pollers=1)
    service = cast(SessionService, script)
    first = watcher.watch(service, UUID)
    assert (await anext(first)) is not None
    same = watcher.watch(service, UUID)
    assert (await anext(same)) is not None  # another subscriber of a watched session is fine
    other = watcher.watch(service, "8e712097-8090-4644-81e7-8f4265d8354e")
    with pytest.raises(Throttled):
        await anext(other)
    await first.aclose()
    await same.aclose()
