"""The fleet's edges: Redis round trips per lookup and per change, bounded memory that never
forgets what still counts, start-up refusals of a Redis that will never accept us, readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from gateway import fixtures
from gateway.errors import Throttled
from gateway.fleet import CacheEntry, Demand, Fleet, MemoryEntries, MemoryMemos, open_fleet
from gateway.fleet.counters import MemoryCounters
from gateway.plivo.client import Credential, PlivoClient, create_http_client
from gateway.plivo.transport import HttpxUpstream
from gateway.verify.sessions import CachePolicy, SessionService
from tests.conftest import AUTH_ID, AUTH_TOKEN, IN_CI, eventually, gateway_client, make_settings
from tests.redis_server import own_redis, require_shared_redis, unique_prefix
from tests.servers import free_port, process, wait_for_http

ROOT = Path(__file__).resolve().parents[1]
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PLIVO_", "GATEWAY_"))}
UUID = fixtures.DOCS_EXAMPLE_UUID
OTHER_UUID = "11111111-2222-4333-8444-555555555555"
BASE_URL = "https://api.plivo.test"
CREDENTIALS = 1_000
SERVER_ARGS = ("--save", "", "--appendonly", "no")
START_UP = 10.0  # seconds a refusal at start-up may take (it takes about one)


# --- helpers ------------------------------------------------------------------------------


@dataclass
class FakePlivo:
    """Plivo behind httpx.MockTransport: every session exists and is expired (cached long)."""

    calls: list[str] = field(default_factory=list)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        uuid = request.url.path.rstrip("/").rsplit("/", 1)[1]
        self.calls.append(uuid)
        body = copy.deepcopy(fixtures.load("get-docs-example"))
        assert isinstance(body, dict)
        body.update(session_uuid=uuid, status="expired")
        return httpx.Response(200, json=body)

    def http(self) -> httpx.AsyncClient:
        return create_http_client(
            BASE_URL, connect_timeout=1, read_timeout=5, transport=httpx.MockTransport(self.handle)
        )


def services(
    http: httpx.AsyncClient, fleet: Fleet, prefix: str, count: int
) -> list[SessionService]:
    """`count` services over one fleet's entries, each with a credential of its own."""
    policy = CachePolicy(key_prefix=prefix)
    return [
        SessionService(
            PlivoClient(HttpxUpstream(http), Credential(f"MA{n:018d}", f"token-{n}")),
            fleet.entries,
            policy,
            base_url=BASE_URL,
        )
        for n in range(count)
    ]


async def in_batches(sessions: list[SessionService], uuid: str) -> list[str]:
    """Each service looks `uuid` up (fifty at a time); the sources, in order."""
    sources: list[str] = []
    for start in range(0, len(sessions), 50):
        batch = sessions[start : start + 50]
        lookups = await asyncio.gather(*(service.get(uuid) for service in batch))
        sources.extend(lookup.source for lookup in lookups)
    return sources


@asynccontextmanager
async def shared_fleet() -> AsyncIterator[tuple[Fleet, str, str]]:
    """A started fleet on the shared Redis, under a prefix of its own (its keys go after)."""
    url = require_shared_redis()
    prefix = unique_prefix()
    fleet = open_fleet(url, prefix=prefix, max_entries=100, timeout=1.0, generation_ttl=100.0)
    assert await fleet.start()
    try:
        yield fleet, url, prefix
    finally:
        assert fleet.link is not None
        client: Any = fleet.link.client
        keys = await client.keys(f"{prefix}*")
        if keys:
            await client.delete(*keys)
        await fleet.close()


@dataclass(frozen=True)
class Seen:
    """One command as MONITOR reported it."""

    client: str  # "address:port", or "lua" for a command a script ran
    command: str


class Monitor:
    """MONITOR on a connection of its own, and markers sent from another connection.

    A marker is waited for until MONITOR reported it, so what was run between two markers is
    exactly what MONITOR lists between them, whatever the timing.
    """

    def __init__(self, url: str, prefix: str) -> None:
        self._watcher = Redis.from_url(url)
        self._marker = Redis.from_url(url)
        self.prefix = prefix
        self.seen: list[Seen] = []
        self._reader: asyncio.Task[None] | None = None
        self._marks = 0

    async def __aenter__(self) -> Monitor:
        ready = asyncio.get_running_loop().create_future()

        async def read() -> None:
            async with self._watcher.monitor() as monitor:
                ready.set_result(None)
                while True:
                    info = await monitor.next_command()
                    where = (
                        "lua"
                        if info["client_type"] == "lua"
                        else f"{info['client_address']}:{info['client_port']}"
                    )
                    self.seen.append(Seen(where, info["command"]))

        self._reader = asyncio.create_task(read())
        await ready
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._reader is not None
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._watcher.aclose()
        await self._marker.aclose()

    async def mark(self) -> int:
        """Send a marker and wait until MONITOR reported it: the position just after it."""
        self._marks += 1
        name = f"{self.prefix}:mark:{self._marks}"
        await self._marker.echo(name)

        async def position() -> int | None:
            for index, seen in enumerate(self.seen):
                if seen.command == f"ECHO {name}":
                    return index + 1
            return None

        return await eventually(position, within=5.0)

    async def clients_of(self, client: Any) -> set[str]:
        """The addresses `client` (a redis-py client) sends from, learnt with a probe."""
        name = f"{self.prefix}:probe:{self._marks}"
        await client.echo(name)
        self._marks += 1

        async def found() -> set[str] | None:
            return {seen.client for seen in self.seen if seen.command == f"ECHO {name}"} or None

        return await eventually(found, within=5.0)

    def issued(self, start: int, end: int, clients: set[str]) -> list[Seen]:
        """Top-level commands between two marks that came from `clients` or touch our keys.

        Commands a Lua script ran are not round trips; markers and other tests' traffic on the
        shared server are not ours.
        """
        return [
            seen
            for seen in self.seen[start : end - 1]
            if seen.client != "lua"
            and (seen.client in clients or self.prefix in seen.command)
            and ":mark:" not in seen.command
        ]


class CountingOrder(OrderedDict[str, str | None]):
    """The memory entries' index of keys, counting the keys taken out of it."""

    def __init__(self, items: OrderedDict[str, str | None]) -> None:
        super().__init__(items)
        self.popped: list[str] = []

    def pop(self, key: Any, /, *default: Any) -> Any:
        self.popped.append(key)
        return super().pop(key, *default)


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (CI must run this test)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return binary


@contextmanager
def redis_process(*extra: str) -> Iterator[int]:
    """A redis-server of our own with `extra` arguments; yields its port, killed after."""
    port = free_port()
    child = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", *SERVER_ARGS, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert child.poll() is None, "redis-server exited at start"
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        yield port
    finally:
        child.kill()
        child.wait()


def serve(cache_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `serve` command with a complete environment (and GATEWAY_CACHE_URL, if any)."""
    env = CLEAN_ENV | {
        "PLIVO_AUTH_ID": AUTH_ID,
        "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
        "PLIVO_API_URL": "http://127.0.0.1:9",
        "GATEWAY_AUTH": "none",
    }
    if cache_url is not None:
        env["GATEWAY_CACHE_URL"] = cache_url
    try:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "serve", "--port", str(free_port()), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=START_UP,
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"serve still ran after {START_UP} s: it started, stderr: {stderr}")


def refused_at_start(result: subprocess.CompletedProcess[str], *secrets: str) -> str:
    """Exit 2, one line on stderr naming GATEWAY_CACHE_URL and none of `secrets`: the line."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "GATEWAY_CACHE_URL" in lines[0]
    for secret in secrets:
        assert secret not in result.stderr
        assert secret not in result.stdout
    return lines[0]


# --- round trips ----------------------------------------------------------------------------


async def test_a_new_session_costs_two_redis_round_trips() -> None:
    plivo = FakePlivo()
    async with shared_fleet() as (fleet, url, prefix), Monitor(url, prefix) as monitor:
        http = plivo.http()
        try:
            (sessions,) = services(http, fleet, prefix, 1)
            assert fleet.link is not None
            ours = await monitor.clients_of(fleet.link.client)
            start = await monitor.mark()
            first = await sessions.get(UUID)
            middle = await monitor.mark()
            second = await sessions.get(UUID)
            end = await monitor.mark()
        finally:
            await http.aclose()
    assert (first.source, second.source) == ("miss", "hit")
    assert len(plivo.calls) == 1
    new = monitor.issued(start, middle, ours)
    hit = monitor.issued(middle, end, ours)
    assert len(new) <= 2, new
    assert len(hit) == 1, hit
    assert all(seen.command.upper().startswith("EVALSHA") for seen in new + hit)


async def test_forgetting_a_session_costs_one_round_trip_whatever_the_credentials_seen() -> None:
    plivo = FakePlivo()
    async with shared_fleet() as (fleet, url, prefix):
        http = plivo.http()
        try:
            many = services(http, fleet, prefix, CREDENTIALS)
            assert await in_batches(many, UUID) == ["miss"] * CREDENTIALS
            assert len(plivo.calls) == CREDENTIALS
            async with Monitor(url, prefix) as monitor:
                assert fleet.link is not None
                ours = await monitor.clients_of(fleet.link.client)
                start = await monitor.mark()
                await fleet.feed.announce(UUID, json.dumps({"origin": "test", "uuid": UUID}))
                end = await monitor.mark()
            announced = monitor.issued(start, end, ours)
            assert len(announced) == 1, announced
            # The generation bump forgot every credential's copy at once.
            assert await in_batches(many, UUID) == ["miss"] * CREDENTIALS
            assert len(plivo.calls) == 2 * CREDENTIALS
        finally:
            await http.aclose()


async def test_forgetting_a_session_in_memory_touches_its_copies_not_the_credentials_seen() -> None:
    plivo = FakePlivo()
    fleet = open_fleet(
        None, prefix=unique_prefix(), max_entries=5_000, timeout=1.0, generation_ttl=100.0
    )
    entries = fleet.entries
    assert isinstance(entries, MemoryEntries)
    http = plivo.http()
    try:
        many = services(http, fleet, "mem", CREDENTIALS)
        assert await in_batches(many, OTHER_UUID) == ["miss"] * CREDENTIALS  # all seen
        holders = many[:1]
        assert await in_batches(holders, UUID) == ["miss"]
        assert await in_batches(holders, UUID) == ["hit"]
        order = entries._order = CountingOrder(entries._order)
        entries.forget_here(UUID)
        assert len(order.popped) == 1  # the one copy, not a thousand credentials
        assert await in_batches(holders, UUID) == ["miss"]
        assert await in_batches(many[:10], OTHER_UUID) == ["hit"] * 10  # the others stay
        # With several copies, each goes, and only those.
        several = many[:3]
        assert await in_batches(several, UUID) == ["hit", "miss", "miss"]
        order.popped.clear()
        entries.forget_here(UUID)
        assert sorted(order.popped) == sorted(service.cache_key(UUID) for service in several)
        assert await in_batches(several, UUID) == ["miss"] * 3
    finally:
        await http.aclose()


# --- bounded memory -------------------------------------------------------------------------


@dataclass
class Clock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_the_memory_counter_store_never_forgets_an_open_window() -> None:
    clock = Clock()
    counters = MemoryCounters(max_keys=10, clock=clock)
    rate = (3, 10.0)  # at most 3 in any 10 s; a window ends 11 s after its last take
    for n in range(9):
        assert await counters.take(f"live-{n}", rate) is None
    clock.now += 5
    for _ in range(3):
        assert await counters.take("limited", rate) is None
    wait = await counters.take("limited", rate)
    assert wait is not None
    assert wait > 0
    assert len(counters) == 10

    with pytest.raises(Throttled) as refused:
        await counters.take("newcomer", rate)
    assert refused.value.retry_after > 0
    assert len(counters) == 10
    assert await counters.take("limited", rate) is not None  # not reset to make room

    clock.now += 7  # the nine live windows ended; "limited" is still open
    assert await counters.take("newcomer", rate) is None
    assert len(counters) == 2  # the ended ones went first, all of them
    assert await counters.take("limited", rate) is not None
    for n in range(8):
        assert await counters.take(f"later-{n}", rate) is None
    with pytest.raises(Throttled):
        await counters.take("one-too-many", rate)
    assert await counters.take("limited", rate) is not None  # never dropped to admit one

    clock.now += 5  # past the end of the limited window too
    assert await counters.take("limited", rate) is None


async def test_the_memory_memo_store_refuses_new_claims_rather_than_drop_a_record() -> None:
    memos = MemoryMemos(max_entries=3)
    for n in range(3):
        claim = await memos.claim(f"key-{n}", f"marker-{n}", 60.0)
        assert claim.mine
    await memos.settle("key-0", "marker-0", "record-0", 60.0)
    await memos.settle("key-1", "marker-1", "record-1", 60.0)  # key-2 is still in flight

    with pytest.raises(Throttled) as refused:
        await memos.claim("key-3", "marker-3", 60.0)
    assert refused.value.retry_after > 0
    assert len(memos) == 3
    assert (await memos.claim("key-0", "again", 60.0)).record == "record-0"
    assert (await memos.claim("key-1", "again", 60.0)).record == "record-1"
    assert (await memos.claim("key-2", "again", 60.0)).busy


# --- start-up ---------------------------------------------------------------------------------


def test_a_redis_that_refuses_our_password_stops_start_up_with_exit_2() -> None:
    with redis_process("--requirepass", "the-right-one") as port:
        result = serve(f"redis://:not-the-password@127.0.0.1:{port}/0")
    refused_at_start(result, "not-the-password", "the-right-one")


def test_a_redis_that_needs_a_password_we_lack_stops_start_up_with_exit_2() -> None:
    with redis_process("--requirepass", "the-right-one") as port:
        result = serve(f"redis://127.0.0.1:{port}/0")
    refused_at_start(result, "the-right-one")


def test_a_redis_without_our_acl_user_stops_start_up_with_exit_2() -> None:
    with redis_process() as port:
        result = serve(f"redis://nobody:user-secret@127.0.0.1:{port}/0")
    refused_at_start(result, "user-secret")


def test_tls_to_a_redis_that_does_not_speak_it_stops_start_up_with_exit_2() -> None:
    with redis_process() as port:
        result = serve(f"rediss://127.0.0.1:{port}/0")
    line = refused_at_start(result)
    assert "TLS" in line


def test_several_workers_with_state_in_memory_are_refused_at_start() -> None:
    result = serve(None, "--workers", "2")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "GATEWAY_CACHE_URL=redis" in lines[0]


def test_a_redis_not_running_at_start_does_not_stop_start_up(tmp_path: Path) -> None:
    port, nothing = free_port(), free_port()
    env = {
        "PLIVO_AUTH_ID": AUTH_ID,
        "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
        "PLIVO_API_URL": "http://127.0.0.1:9",
        "GATEWAY_AUTH": "none",
        "GATEWAY_CACHE_URL": f"redis://127.0.0.1:{nothing}/0",
    }
    with process("serve", "--port", str(port), env=env, log=tmp_path / "gateway.log") as child:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=15)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert child.poll() is None
    assert ready.status_code == 503
    assert ready.json()["fleet"] == "unreachable"


# --- readiness --------------------------------------------------------------------------------


async def test_readyz_is_503_while_redis_is_paused() -> None:
    with own_redis() as redis:
        settings = make_settings(
            "http://127.0.0.1:9",
            GATEWAY_CACHE_URL=redis.url,
            GATEWAY_CACHE_TIMEOUT=0.3,
            GATEWAY_CACHE_PREFIX=unique_prefix(),
        )
        assert redis.process is not None
        pid = redis.process.pid
        async with gateway_client(settings) as client:

            async def status_is(code: int) -> bool:
                return (await client.get("/readyz")).status_code == code

            assert await status_is(200)
            os.kill(pid, signal.SIGSTOP)
            try:
                await eventually(lambda: status_is(503), within=5.0)
            finally:
                os.kill(pid, signal.SIGCONT)
            await eventually(lambda: status_is(200), within=5.0)


async def test_a_session_another_instance_is_fetching_costs_one_round_trip_and_the_wait() -> None:
    plivo = FakePlivo()
    async with shared_fleet() as (holder, url, prefix), Monitor(url, prefix) as monitor:
        waiter = open_fleet(url, prefix=prefix, max_entries=100, timeout=1.0, generation_ttl=100.0)
        assert await waiter.start()
        heard: list[bool] = []

        async def listen() -> None:  # the waiting instance hears landings on its subscription
            async for _ in waiter.feed.messages(heard.append):
                pass

        listener = asyncio.create_task(listen())
        http = plivo.http()
        try:
            await eventually(lambda: asyncio.sleep(0, bool(heard)))
            assert waiter.link is not None
            probe = f"{prefix}:probe:wire"
            await waiter.link.call("ECHO", probe)

            async def wire() -> set[str] | None:
                return {seen.client for seen in monitor.seen if seen.command == f"ECHO {probe}"}

            ours = await eventually(wire)
            (sessions,) = services(http, waiter, prefix, 1)
            key = sessions.cache_key(UUID)
            claim = await holder.entries.claim(
                key, UUID, "holder", 5, force=False, demand=Demand(None)
            )
            assert claim.state == "fetch"  # the other instance holds the fetch lock
            start = await monitor.mark()
            lookup = asyncio.create_task(sessions.get(UUID))
            assert holder.link is not None

            async def waiting() -> bool:
                flag = await holder.link.client.hget(f"{prefix}:lock:{key}", "w")  # type: ignore[union-attr]
                return flag is not None

            await eventually(waiting)
            now = time.time()
            landed = CacheEntry(None, stored_at=now, fresh_until=now + 60)
            await holder.entries.settle(key, UUID, landed, claim, 60, "holder", demand=Demand(None))
            found = await asyncio.wait_for(lookup, 5)
            end = await monitor.mark()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await http.aclose()
            await waiter.close()
    assert (found.source, found.session) == ("hit", None)
    assert plivo.calls == []
    issued = [seen for seen in monitor.issued(start, end, ours) if seen.client in ours]
    assert len(issued) == 1, issued  # the claim; what landed came on the subscription


def test_a_password_for_a_redis_that_has_none_stops_start_up_with_exit_2() -> None:
    # redis-py lets it pass; the request path's own connection would fail on every call.
    with redis_process() as port:
        result = serve(f"redis://:a-password-it-lacks@127.0.0.1:{port}/0")
    refused_at_start(result, "a-password-it-lacks")


def test_a_database_number_redis_does_not_have_stops_start_up_with_exit_2() -> None:
    with redis_process() as port:
        result = serve(f"redis://127.0.0.1:{port}/99")
    refused_at_start(result)
